// Pipeline: the counters it keeps per line and the metrics only it can label (events per parser,
// unmatched lines per program the parser pack knows).
#include "mxward/pipeline.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mxward/metrics_registry.h"
#include "mxward/time.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

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

// A reload swaps the parser pack (ReplaceParsers): the next line is matched with the new pack,
// and each event is counted under its own parser's name even though the new pack numbers its
// parsers differently; a parser the start did not have is not counted as another one.
TEST(PipelineTest, ReplacedParsersMatchTheNextLineAndCountUnderTheirOwnNames) {
  testing::TempDir dir;
  std::filesystem::copy_file(kParsers + "/dovecot.toml", dir.file("dovecot.toml"));
  std::vector<Diagnostic> diags;
  auto dovecot_only = ParserPack::Load({dir.path()}, &diags);
  ASSERT_OK(dovecot_only);
  auto full = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(full);
  ASSERT_NE((*full)->parser_names().front(), "dovecot") << "the test needs another numbering";
  Config config = Config::Defaults();
  Collect sink;
  PipelineOptions options;
  options.replay = true;
  options.reference = (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond;
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*dovecot_only),
                    PlaybookEngine::Create({}, config), &sink, nullptr, options);
  const std::string postfix =
      "Nov 23 10:00:01 mx1 postfix/smtpd[4606]: warning: unknown[203.0.113.7]: SASL LOGIN "
      "authentication failed: UGFzc3dvcmQ6";
  const std::string dovecot =
      "Nov 23 10:00:02 mx1 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 "
      "secs): user=<a@example.org>, method=PLAIN, rip=203.0.113.8, lip=192.0.2.1, TLS, "
      "session=<abcdef>";
  pipeline.OnLine(postfix, 0, 0);
  EXPECT_EQ(pipeline.counters().events.load(), 0u) << "no Postfix parser yet";

  pipeline.ReplaceParsers(*full);
  pipeline.OnLine(postfix, 0, 0);
  pipeline.OnLine(dovecot, 0, 0);
  pipeline.OnLine(dovecot, 0, 0);
  pipeline.ReleaseHeld();
  EXPECT_EQ(pipeline.counters().events.load(), 3u);
  MetricsRegistry registry;
  std::vector<MetricsRegistry::Handle> handles;
  pipeline.RegisterMetrics(&registry, &handles);
  const std::string out = registry.Render();
  EXPECT_THAT(out, HasSubstr("mxward_events_by_parser_total{parser=\"dovecot\"} 2\n")) << out;
  EXPECT_THAT(out, Not(HasSubstr("parser=\"postfix\"")));
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

// Issue 21, point 6: a live line's own time is believed only within [arrival - max_age, arrival +
// max_skew]. One line dated a day ahead must not squeeze 20 failures over 10 hours into one window.
TEST(PipelineTest, LiveLinesDatedAheadCountAtArrivalAndStaleOnesAreSkipped) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(pack);
  Config config = Config::Defaults();
  config.rule_dirs = {std::string(MXWARD_SOURCE_DIR) + "/rules.d"};
  const UnixMicros t0 = (DaysFromCivil(2026, 11, 23) * 86400 + 8 * 3600) * kMicrosPerSecond;
  auto line = [](std::string_view stamp, int host) {
    return fmt::format(
        "{} mx1 postfix/smtpd[4606]: warning: unknown[198.51.100.{}]: SASL LOGIN "
        "authentication failed: UGFzc3dvcmQ6",
        stamp, host);
  };
  // 20 failures of one address arriving 30 minutes apart: never 20 in a window. One of them
  // (the first) claims to be from tomorrow; believed, every later one counts at that instant
  // (SlidingWindowCounter counts a late attempt at the key's newest time).
  auto feed = [&](Pipeline* pipeline) {
    for (int i = 0; i < 20; ++i) {
      const UnixMicros arrival = t0 + i * 1800 * kMicrosPerSecond;
      const std::string stamp =
          i == 0 ? "2026-11-24T20:00:00Z" : FormatRfc3339(arrival, /*local=*/false);
      pipeline->OnLine(line(stamp, 7), arrival, 0);
    }
  };

  Collect sink;
  auto engine = PlaybookEngine::Load(config, &diags);
  ASSERT_OK(engine);
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack), std::move(*engine), &sink,
                    nullptr, PipelineOptions{});
  feed(&pipeline);
  EXPECT_EQ(pipeline.counters().time_future.load(), 1u);
  EXPECT_EQ(pipeline.counters().events.load(), 20u);
  EXPECT_TRUE(sink.incidents.empty()) << sink.incidents.front().playbook;

  // The same lines with the line's time believed (what happened before the clamp): a ban.
  PipelineOptions believing;
  believing.max_skew_seconds = 30 * 86400;
  Collect fooled;
  auto engine2 = PlaybookEngine::Load(config, &diags);
  ASSERT_OK(engine2);
  Pipeline gullible(SyslogParser(), EventExtractor::Create(*pack), std::move(*engine2), &fooled,
                    nullptr, believing);
  feed(&gullible);
  EXPECT_FALSE(fooled.incidents.empty());

  // A line a month old arriving now is skipped and counted, not counted at some other time.
  const UnixMicros now = t0 + 20 * 1800 * kMicrosPerSecond;
  pipeline.OnLine(line("2026-10-20T08:00:00Z", 8), now, 0);
  EXPECT_EQ(pipeline.counters().time_stale.load(), 1u);
  EXPECT_EQ(pipeline.counters().events.load(), 20u);
}

// `replay` reads history: it believes every line's time.
TEST(PipelineTest, ReplayBelievesTheLinesOwnTime) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(pack);
  Collect sink;
  PipelineOptions options;
  options.replay = true;
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack),
                    PlaybookEngine::Create({}, Config::Defaults()), &sink, nullptr, options);
  pipeline.OnLine(
      "2025-01-01T00:00:00Z mx1 postfix/smtpd[1]: warning: unknown[198.51.100.7]: "
      "SASL LOGIN authentication failed: x",
      (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond, 0);
  EXPECT_EQ(pipeline.counters().events.load(), 1u);
  EXPECT_EQ(pipeline.counters().time_stale.load(), 0u);
  EXPECT_EQ(pipeline.counters().last_event_time.load(),
            DaysFromCivil(2025, 1, 1) * 86400 * kMicrosPerSecond);
}

// A replay pipeline (reference 2026-11-23) with the shipped parsers and playbooks.
std::unique_ptr<Pipeline> ShippedReplayPipeline(IncidentSink* sink, PipelineOptions* options) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  Config config = Config::Defaults();
  config.rule_dirs = {std::string(MXWARD_SOURCE_DIR) + "/rules.d"};
  auto engine = PlaybookEngine::Load(config, &diags);
  if (!pack.ok() || !engine.ok()) return nullptr;
  options->replay = true;
  options->reference = (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond;
  return std::make_unique<Pipeline>(SyslogParser(), EventExtractor::Create(*pack),
                                    std::move(*engine), sink, nullptr, *options);
}

// A held line released later keeps the authenticated node it came from (a tls input's
// certificate name): the evidence says which mail host saw the attempts.
TEST(PipelineTest, ReleasedHeldLinesKeepTheNodeTheyCameFrom) {
  Collect sink;
  PipelineOptions options;
  auto owned = ShippedReplayPipeline(&sink, &options);
  ASSERT_NE(owned, nullptr);
  Pipeline& pipeline = *owned;
  for (int i = 0; i < 10; ++i) {
    const std::string node = "mx2.example.net";  // the caller's string: gone after the call
    pipeline.OnLineFrom(fmt::format("Nov 23 10:00:{:02} mx1 dovecot: auth: passwd-file(u{},"
                                    "203.0.113.52): unknown user",
                                    i, i),
                        0, 0, node);
  }
  pipeline.ReleaseHeld();
  ASSERT_EQ(sink.incidents.size(), 1u);
  ASSERT_FALSE(sink.incidents[0].evidence.empty());
  EXPECT_EQ(sink.incidents[0].evidence[0].text.rfind("[mx2.example.net] ", 0), 0u)
      << sink.incidents[0].evidence[0].text;
}

// Dovecot passdb lines whose login-process line never comes (another file) are held, then counted
// through the same path as any event: on the daemon's clock, and at the end of a replay.
TEST(PipelineTest, HeldPassdbLinesAreCountedWhenTheirLoginLineNeverComes) {
  Collect sink;
  PipelineOptions options;
  auto owned = ShippedReplayPipeline(&sink, &options);
  ASSERT_NE(owned, nullptr);
  Pipeline& pipeline = *owned;

  for (int i = 0; i < 10; ++i) {
    pipeline.OnLine(fmt::format("Nov 23 10:00:{:02} mx1 dovecot: auth: passwd-file(u{},"
                                "203.0.113.50): unknown user",
                                i, i),
                    0, 0);
  }
  EXPECT_EQ(pipeline.counters().events.load(), 0u);  // held: their login lines may follow
  EXPECT_TRUE(sink.incidents.empty());
  pipeline.ReleaseHeld();                            // end of replay
  EXPECT_EQ(pipeline.counters().events.load(), 1u);  // one event, weight 10
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].playbook, "dovecot-auth");
  EXPECT_EQ(sink.incidents[0].key, "203.0.113.50");

  // The daemon's clock ends a hold in a quiet log.
  pipeline.OnLine("Nov 23 10:05:00 mx1 dovecot: auth: passwd-file(x,203.0.113.51): unknown user", 0,
                  0);
  EXPECT_EQ(pipeline.counters().events.load(), 1u);
  pipeline.AdvanceTime(options.reference + (10 * 3600 + 5 * 60 + 19) * kMicrosPerSecond);
  EXPECT_EQ(pipeline.counters().events.load(), 1u);
  pipeline.AdvanceTime(options.reference + (10 * 3600 + 5 * 60 + 21) * kMicrosPerSecond);
  EXPECT_EQ(pipeline.counters().events.load(), 2u);
  const std::size_t n = pipeline.counters().parser_names.size();
  std::uint64_t dovecot_events = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (pipeline.counters().parser_names[i] == "dovecot") {
      dovecot_events = pipeline.counters().events_by_parser[i].load();
    }
  }
  EXPECT_EQ(dovecot_events, 2u);
}

}  // namespace
}  // namespace mxward
