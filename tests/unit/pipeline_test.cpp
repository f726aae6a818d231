// Pipeline: the counters it keeps per line and the metrics only it can label (events per parser,
// unmatched lines per program the parser pack knows).
#include "mxward/pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mxward/metrics_registry.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

TEST(PipelineTest, EventsPerParserAndUnmatchedPerKnownProgram) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(pack);
  Config config = Config::Defaults();
  Collect sink;
  PipelineOptions options;
  options.replay = true;
  options.reference = (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond;
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack),
                    PlaybookEngine::Create({}, config), &sink, nullptr, options);

  const std::vector<std::string> lines = {
      "Nov 23 10:00:00 mx1 postfix/postscreen[5102]: DNSBL rank 4 for [203.0.113.9]:51234",
      "Nov 23 10:00:01 mx1 postfix/smtpd[4606]: warning: unknown[203.0.113.7]: SASL LOGIN "
      "authentication failed: UGFzc3dvcmQ6",
      // Recognised by no pattern: counted under the program's known name, never its text.
      "Nov 23 10:00:02 mx1 postfix/smtpd[4606]: something no pattern knows",
      "Nov 23 10:00:03 mx1 postfix/evilname[1]: something else",
      "Nov 23 10:00:04 mx1 CRON[77]: (root) CMD (run-parts /etc/cron.hourly)",
      "not syslog at all",
  };
  for (const auto& l : lines) pipeline.OnLine(l, 0, 0);

  const PipelineCounters& c = pipeline.counters();
  EXPECT_EQ(c.lines.load(), 6u);
  EXPECT_EQ(c.malformed.load(), 1u);
  EXPECT_EQ(c.events.load(), 2u);

  MetricsRegistry registry;
  std::vector<MetricsRegistry::Handle> handles;
  pipeline.RegisterMetrics(&registry, &handles);
  const std::string out = registry.Render();
  EXPECT_THAT(out, HasSubstr("mxward_events_by_parser_total{parser=\"postfix\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("mxward_events_by_parser_total{parser=\"dovecot\"} 0\n"));
  EXPECT_THAT(out,
              HasSubstr("mxward_lines_unmatched_by_program_total{program=\"postfix/smtpd\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("mxward_lines_unmatched_by_program_total{program=\"postfix\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("mxward_lines_unmatched_by_program_total{program=\"other\"} 1\n"));
  EXPECT_THAT(out, Not(HasSubstr("evil")));
  EXPECT_THAT(out, Not(HasSubstr("CRON")));
  EXPECT_THAT(out, HasSubstr("mxward_metrics_rejected_samples_total 0\n"));
}

// An input's format hint: a Dovecot log_path line without timestamp or level word is Dovecot's on
// the input that says so, and not syslog elsewhere; Roundcube's file lines on theirs.
TEST(PipelineTest, InputFormatHintsPerInput) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(pack);
  Config config = Config::Defaults();
  Collect sink;
  PipelineOptions options;
  options.input_formats = {LogFormat::kSyslog, LogFormat::kDovecotLog, LogFormat::kRoundcubeLog};
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack),
                    PlaybookEngine::Create({}, config), &sink, nullptr, options);
  const std::string dovecot =
      "imap-login: Disconnected (auth failed, 3 attempts in 9 secs): user=<bob>, method=PLAIN, "
      "rip=192.0.2.40, lip=192.0.2.1, session=<x>";
  pipeline.OnLine(dovecot, 1'700'000'000 * kMicrosPerSecond, 0);
  EXPECT_EQ(pipeline.counters().malformed.load(), 1u);
  EXPECT_EQ(pipeline.counters().events.load(), 0u);
  pipeline.OnLine(dovecot, 1'700'000'000 * kMicrosPerSecond, 1);
  EXPECT_EQ(pipeline.counters().events.load(), 1u);
  pipeline.OnLine(
      "[03-Mar-2025 10:12:01 Europe/Berlin] errors: <ab> IMAP Error: Login failed for "
      "bob against localhost from 203.0.113.40. AUTHENTICATE PLAIN: Authentication "
      "failed. (POST /?_task=login&_action=login)",
      1'700'000'000 * kMicrosPerSecond, 2);
  EXPECT_EQ(pipeline.counters().events.load(), 2u);
  EXPECT_EQ(pipeline.counters().malformed.load(), 1u);
}

}  // namespace
}  // namespace mxward
