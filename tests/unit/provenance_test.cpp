// Provenance: the [provenance] table read through SettingsReader, user names resolved to uids,
// the verdict per transport (journal, unix-socket peer, forwarder with the stated writer, none),
// the stated-writer element read only where the forwarder's template puts it, and the Pipeline
// dropping a line whose writer is not one of its program's users while it counts the rest as
// verified or unverified per input.
#include "mxward/provenance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/base/settings_reader.h"
#include "mxward/metrics_registry.h"
#include "mxward/pipeline.h"
#include "mxward/syslog_message.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

using ::testing::HasSubstr;

const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";
constexpr std::uint32_t kDaemonUid = 1;  // Debian's "daemon": on every host
constexpr std::uint32_t kNobodyUid = 65534;

Config ConfigFrom(const std::string& text, std::vector<Diagnostic>* diags) {
  Config c = Config::Defaults();
  c.source = "mxward.toml";
  EXPECT_OK(ParseToml(text, c.source, &c.document, diags));
  return c;
}

// postfix lines from root and daemon; a forwarder is root only.
ProvenancePolicy DaemonWritesPostfix() {
  ProvenanceSettings s = DefaultProvenanceSettings();
  s.writers = {{"postfix", {"daemon"}}};
  std::vector<std::string> warnings;
  ProvenancePolicy p = ProvenancePolicy::Resolve(s, &warnings);
  EXPECT_TRUE(warnings.empty());
  return p;
}

LineOrigin Journal(std::uint32_t uid) {
  LineOrigin o;
  o.transport = LineOrigin::Transport::kJournal;
  o.uid = uid;
  return o;
}

TEST(ProvenanceTest, DefaultsListDebiansUsersPerParser) {
  const ProvenanceSettings s = DefaultProvenanceSettings();
  auto users = [&](const std::string& parser) {
    for (const auto& [p, u] : s.writers) {
      if (p == parser) return u;
    }
    return std::vector<std::string>{"(none)"};
  };
  EXPECT_EQ(users("postfix"), std::vector<std::string>{"postfix"});
  EXPECT_EQ(users("dovecot"), (std::vector<std::string>{"dovecot", "dovenull"}));
  EXPECT_EQ(users("roundcube"), std::vector<std::string>{"www-data"});
  EXPECT_EQ(users("rspamd"), std::vector<std::string>{"_rspamd"});
  EXPECT_EQ(users("policyd-spf"), (std::vector<std::string>{"policyd-spf", "nobody"}));
  EXPECT_TRUE(s.enforce);
  EXPECT_EQ(s.forwarders, std::vector<std::string>{"root"});
}

TEST(ProvenanceTest, SettingsReplaceOneParsersUsersAndReportMistakesWithTheirPlace) {
  std::vector<Diagnostic> diags;
  Config c = ConfigFrom(
      "[provenance]\nenforce = false\nforwarders = [\"daemon\"]\n"
      "[provenance.writers]\npostfix = [\"daemon\", \"nobody\"]\nmyfilter = \"daemon\"\n",
      &diags);
  ProvenanceSettings s;
  ASSERT_OK(ReadProvenanceSettings(c, &s, &diags));
  EXPECT_FALSE(s.enforce);
  EXPECT_EQ(s.forwarders, std::vector<std::string>{"daemon"});
  std::vector<std::string> warnings;
  const ProvenancePolicy p = ProvenancePolicy::Resolve(s, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  ASSERT_NE(p.Writers("postfix"), nullptr);
  EXPECT_EQ(*p.Writers("postfix"), (std::vector<std::uint32_t>{kDaemonUid, kNobodyUid}));
  ASSERT_NE(p.Writers("myfilter"), nullptr);
  ASSERT_NE(p.Writers("dovecot"), nullptr);  // the other defaults stay
  EXPECT_TRUE(p.IsForwarder(0));
  EXPECT_TRUE(p.IsForwarder(kDaemonUid));
  EXPECT_FALSE(p.IsForwarder(kNobodyUid));

  std::vector<Diagnostic> bad;
  Config wrong =
      ConfigFrom("[provenance]\nenforc = true\n[provenance.writers]\npostfix = 7\n", &bad);
  EXPECT_FALSE(ReadProvenanceSettings(wrong, &s, &bad).ok());
  ASSERT_EQ(bad.size(), 2u);
  std::string all = bad[0].ToString() + "\n" + bad[1].ToString();
  EXPECT_THAT(all, HasSubstr("mxward.toml:2:1: error: unknown key 'enforc' in [provenance]"));
  EXPECT_THAT(all, HasSubstr("mxward.toml:4:11: error: 'postfix': expected"));
}

TEST(ProvenanceTest, AUserTheHostLacksLeavesRootOnlyAndIsAWarningOnlyWhenConfigured) {
  ProvenanceSettings s = DefaultProvenanceSettings();
  s.writers = {{"postfix", {"no-such-user-mxward"}}, {"rspamd", {"no-such-user-either"}}};
  s.configured = {"postfix"};
  s.source = "mxward.toml:3:1";
  std::vector<std::string> warnings, notes;
  const ProvenancePolicy p = ProvenancePolicy::Resolve(s, &warnings, &notes);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("mxward.toml:3:1: warning: [provenance] user "
                                     "'no-such-user-mxward' (a writer of postfix lines) is not a "
                                     "user on this host; postfix lines are believed from root "
                                     "only"));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_THAT(notes[0], HasSubstr("'no-such-user-either'"));
  EXPECT_EQ(p.Judge("postfix", Journal(kDaemonUid), "").kind, ProvenanceVerdict::Kind::kForged);
  EXPECT_EQ(p.Judge("postfix", Journal(0), "").kind, ProvenanceVerdict::Kind::kVerified);
}

TEST(ProvenanceTest, VerdictPerTransport) {
  const ProvenancePolicy p = DaemonWritesPostfix();
  using K = ProvenanceVerdict::Kind;
  // Journal: _UID is the writer.
  EXPECT_EQ(p.Judge("postfix", Journal(kDaemonUid), "").kind, K::kVerified);
  EXPECT_EQ(p.Judge("postfix", Journal(kNobodyUid), "").kind, K::kForged);
  EXPECT_EQ(p.Judge("postfix", Journal(0), "").kind, K::kVerified);  // root writes anything
  // A parser without an entry, or a program no parser takes: nothing to hold the writer to.
  EXPECT_EQ(p.Judge("dovecot", Journal(kNobodyUid), "").kind, K::kUnverified);
  EXPECT_EQ(p.Judge("", Journal(kNobodyUid), "").kind, K::kUnverified);
  // A unix-socket peer that is not a forwarder is the writer, whatever the line states.
  const std::string stated_daemon = "[mxward@32473 uid=\"1\" pid=\"77\"]";
  EXPECT_EQ(p.Judge("postfix", LineOrigin::Peer(kNobodyUid, 5), stated_daemon).kind, K::kForged);
  EXPECT_EQ(p.Judge("postfix", LineOrigin::Peer(kDaemonUid, 5), "").kind, K::kVerified);
  // Root's peer is a forwarder: the writer is what it states, and nothing stated is unverified.
  const ProvenanceVerdict v = p.Judge("postfix", LineOrigin::Peer(0, 5), stated_daemon);
  EXPECT_EQ(v.kind, K::kVerified);
  EXPECT_TRUE(v.via_forwarder);
  EXPECT_EQ(v.writer_pid, 77);
  EXPECT_EQ(p.Judge("postfix", LineOrigin::Peer(0, 5), "[mxward@32473 uid=\"65534\"]").kind,
            K::kForged);
  EXPECT_EQ(p.Judge("postfix", LineOrigin::Peer(0, 5), "").kind, K::kUnverified);
  // No transport knowledge (udp, tcp, files): the element is never believed.
  EXPECT_EQ(p.Judge("postfix", LineOrigin(), stated_daemon).kind, K::kUnverified);
}

TEST(ProvenanceTest, TheStatedWriterIsReadOnlyFromTheFirstElementAsTheTemplateWritesIt) {
  std::uint32_t uid = 99;
  std::int64_t pid = 0;
  EXPECT_TRUE(
      ParseStatedWriter("[mxward@32473 uid=\"110\" pid=\"4\" comm=\"a\\\"]b\"]", &uid, &pid));
  EXPECT_EQ(uid, 110u);
  EXPECT_EQ(pid, 4);
  EXPECT_TRUE(ParseStatedWriter("[mxward@32473 uid=\"0\"][other@1 x=\"y\"]", &uid, &pid));
  for (const char* bad : {
           "",
           "-",
           "[other@1 x=\"y\"][mxward@32473 uid=\"1\"]",  // not first: another SD-ID came first
           "[mxward@32473 uid=\"\"]",                    // rsyslog had no trusted uid
           "[mxward@32473 uid=\"1\" uid=\"0\"]",         // stated twice
           "[mxward@32473 uid=\"-1\"]",
           "[mxward@32473 uid=\"4294967295\"]",  // (uid_t)-1: no one
           "[mxward@32473 uid=\"1x\"]",
           "[mxward@32473 uid=\"1\"",  // unterminated
           "[mxward@32473 pid=\"1\"]",
           "[mxward@324730 uid=\"1\"]",
       }) {
    EXPECT_FALSE(ParseStatedWriter(bad, &uid, &pid)) << bad;
  }
}

struct Collect : IncidentSink {
  void OnIncident(Incident) override {}
};

// The pipeline drops what the policy refuses and counts verified and unverified lines per input;
// the metric names the input, never text of the line.
TEST(ProvenanceTest, ThePipelineDropsForgedLinesAndCountsTheRestPerInput) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(pack);
  Config config = Config::Defaults();
  Collect sink;
  PipelineOptions options;
  options.replay = true;
  options.reference = (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond;
  options.provenance = std::make_shared<const ProvenancePolicy>(DaemonWritesPostfix());
  options.input_names = {"journal", "udp"};
  options.input_formats = {LogFormat::kSyslog, LogFormat::kSyslog};
  options.input_trusted = {false, false};
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack),
                    PlaybookEngine::Create({}, config), &sink, nullptr, options);
  const std::string line =
      "Nov 23 10:00:01 mx1 postfix/smtpd[4606]: warning: unknown[203.0.113.7]: SASL LOGIN "
      "authentication failed: UGFzc3dvcmQ6";
  pipeline.OnLineWithOrigin(line, 0, 0, Journal(kNobodyUid));  // forged
  EXPECT_EQ(pipeline.counters().events.load(), 0u);
  pipeline.OnLineWithOrigin(line, 0, 0, Journal(kDaemonUid));  // genuine
  EXPECT_EQ(pipeline.counters().events.load(), 1u);
  pipeline.OnLine(line, 0, 1);  // udp: unverified, still an event
  EXPECT_EQ(pipeline.counters().events.load(), 2u);

  MetricsRegistry registry;
  registry.DeclareStandardFamilies();
  std::vector<MetricsRegistry::Handle> handles;
  pipeline.RegisterMetrics(&registry, &handles);
  const std::string out = registry.Render();
  EXPECT_THAT(out,
              HasSubstr("mxward_input_lines_total{input=\"journal\",provenance=\"forged\"} 1\n"));
  EXPECT_THAT(out,
              HasSubstr("mxward_input_lines_total{input=\"journal\",provenance=\"verified\"} 1\n"));
  EXPECT_THAT(out,
              HasSubstr("mxward_input_lines_total{input=\"udp\",provenance=\"unverified\"} 1\n"));
  EXPECT_THAT(out,
              HasSubstr("mxward_input_dropped_total{input=\"journal\",reason=\"provenance\"} 1\n"));

  // enforce = false: counted as forged, kept (unverified).
  ProvenanceSettings audit = DefaultProvenanceSettings();
  audit.enforce = false;
  audit.writers = {{"postfix", {"daemon"}}};
  pipeline.ReplaceProvenance(
      std::make_shared<const ProvenancePolicy>(ProvenancePolicy::Resolve(audit, nullptr)));
  pipeline.OnLineWithOrigin(line, 0, 0, Journal(kNobodyUid));
  EXPECT_EQ(pipeline.counters().events.load(), 3u);
  EXPECT_EQ(pipeline.counters().forged_by_input[0].load(), 2u);
}

// The verdict reaches the event, also for a line the extractor holds and releases later.
TEST(ProvenanceTest, TheEventCarriesTheVerdict) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_OK(pack);
  auto extractor = EventExtractor::Create(*pack);
  SyslogParser parser;
  SyslogMessage msg;
  const std::string line =
      "Nov 23 10:00:01 mx1 postfix/smtpd[4606]: warning: unknown[203.0.113.7]: SASL LOGIN "
      "authentication failed: UGFzc3dvcmQ6";
  ASSERT_OK(parser.Parse(line, 0, &msg));
  Event event;
  msg.verified = true;
  ASSERT_TRUE(extractor->Extract(msg, &event));
  EXPECT_TRUE(event.verified);
  msg.verified = false;
  ASSERT_TRUE(extractor->Extract(msg, &event));
  EXPECT_FALSE(event.verified);
}

}  // namespace
}  // namespace mxward
