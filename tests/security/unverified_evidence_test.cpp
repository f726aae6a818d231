// Issue 21, point 1, through the real `mxward serve` (own network namespace): a line nobody
// vouches for must not act on a mailbox. The daemon has a TCP input on loopback (any local user
// can write to it: its lines are unverified) and a unix-dgram input (each datagram's writer comes
// from SCM_CREDENTIALS; the test runs as root, which mxward takes for a forwarder like rsyslog, so
// each line states its writer as packaging/rsyslog/60-mxward-trusted.conf writes it, here root).
// A playbook that suspends an account's sending counts only the verified ones; a ban playbook
// counts both.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::HttpGet;
using testing::MetricSample;
using testing::NetworkNamespace;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
constexpr int kPort = 5514;

// Three messages of one account in an hour suspend its sending (dry-run here).
constexpr char kSendingLimit[] = R"(
description = "an account sending too much"
key = "sasl_user"
[match]
events = ["message_submitted"]
[trigger]
type = "count"
threshold = 3
window = "1h"
[[action]]
type = "suspend_sending"
)";

// Three SASL failures of one address ban it: address playbooks count every line by default.
constexpr char kSaslBan[] = R"(
key = "client_ip"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 3
window = "10m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

class UnverifiedEvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    const std::string rules = dir_.file("rules.d");
    std::filesystem::create_directories(rules);
    std::filesystem::copy(std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers", rules + "/parsers",
                          std::filesystem::copy_options::recursive);
    std::ofstream(rules + "/sending-limit.toml") << kSendingLimit;
    std::ofstream(rules + "/sasl-ban.toml") << kSaslBan;
    db_ = dir_.file("state.db");
    dgram_ = dir_.file("log.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n"
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort << "\"\n"
                           << "[[input]]\ntype = \"unix-dgram\"\npath = \"" << dgram_ << "\"\n";
    ASSERT_TRUE(daemon_.Start(
        kBinary,
        {"--db", db_, "--config", config_, "--rules", rules, "--socket", dir_.file("control.sock")},
        dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << "serve did not get ready: " << daemon_.Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  // smtpd's first line of a message from an authenticated account, queue id `qid`.
  static std::string Submission(const std::string& user, int qid) {
    char id[16];
    std::snprintf(id, sizeof id, "4Xz%08X", qid);
    return "<22>" + SyslogStampNow() + " mx1 postfix/submission/smtpd[4101]: " + id +
           ": client=unknown[198.51.100.20], sasl_method=PLAIN, sasl_username=" + user;
  }
  static std::string SaslFailure(const std::string& address) {
    return "<22>" + SyslogStampNow() + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" +
           address + "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6";
  }

  // The same line as rsyslog's MxwardTrusted template forwards it: RFC 5424 with the writer
  // (uid 0: root) in the first structured-data element.
  static std::string Forwarded(const std::string& line) {
    const std::string body = line.substr(line.find("postfix/submission/smtpd[4101]: ") + 32);
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string("<22>1 ") + stamp +
           " mx1 postfix/submission/smtpd 4101 - [mxward@32473 uid=\"0\" pid=\"4101\"] " + body;
  }

  // One datagram per line to the unix-dgram input; the kernel attaches our (root's) credentials.
  void SendDatagram(const std::string& line) {
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", dgram_.c_str());
    EXPECT_EQ(sendto(fd, line.data(), line.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa),
              static_cast<ssize_t>(line.size()));
    close(fd);
  }

  std::vector<Incident> Incidents(const std::string& playbook) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return {};
    IncidentQuery q;
    q.playbook = playbook;
    auto list = (*store)->ListIncidents(q);
    return list.ok() ? *list : std::vector<Incident>{};
  }

  static double Metric(const std::string& series) {
    return MetricSample(HttpGet(9580, "/metrics"), series);
  }

  TempDir dir_;
  std::string db_, dgram_, config_;
  ServeProcess daemon_;
};

// 104 lines any local user could have written (the count that once suspended ceo@example.org's
// sending) open nothing; three lines root wrote do. The ignored ones are counted and said once.
TEST_F(UnverifiedEvidenceTest, ForgedLinesNeverSuspendAnAccountVerifiedOnesDo) {
  std::string forged;
  for (int i = 0; i < 104; ++i) forged += Submission("ceo@example.org", i) + "\n";
  ASSERT_TRUE(SendTcp(kPort, forged));
  ASSERT_TRUE(daemon_.WaitFor([&] {
    return Metric("mxward_playbook_unverified_events_total{playbook=\"sending-limit\"}") == 104;
  })) << HttpGet(9580, "/metrics");
  EXPECT_EQ(Metric("mxward_input_lines_total{input=\"tcp:127.0.0.1:5514\",provenance="
                   "\"unverified\"}"),
            104);
  EXPECT_TRUE(Incidents("sending-limit").empty());
  EXPECT_NE(daemon_.Log().find("playbook sending-limit: acts on mailboxes, so it counts only "
                               "verified lines"),
            std::string::npos)
      << daemon_.Log();

  for (int i = 0; i < 3; ++i) SendDatagram(Forwarded(Submission("ceo@example.org", 1000 + i)));
  ASSERT_TRUE(daemon_.WaitFor([&] { return !Incidents("sending-limit").empty(); }))
      << daemon_.Log() << HttpGet(9580, "/metrics");
  const auto incidents = Incidents("sending-limit");
  ASSERT_EQ(incidents.size(), 1u);
  EXPECT_EQ(incidents[0].key, "ceo@example.org");
  EXPECT_EQ(incidents[0].count, 3u);  // the three verified lines, none of the 104
  auto store = IncidentStore::Open(db_);
  ASSERT_TRUE(store.ok());
  auto actions = (*store)->ActionsForIncident(incidents[0].id);
  ASSERT_TRUE(actions.ok());
  ASSERT_EQ(actions->size(), 1u);
  EXPECT_EQ((*actions)[0].type, "suspend_sending");
  EXPECT_EQ((*actions)[0].params.value("user", ""), "ceo@example.org");
  EXPECT_EQ(Metric("mxward_playbook_unverified_events_total{playbook=\"sending-limit\"}"), 104);
}

// The same unverified input still bans: address playbooks believe every line by default.
TEST_F(UnverifiedEvidenceTest, UnverifiedLinesStillBanAnAddress) {
  std::string lines;
  for (int i = 0; i < 3; ++i) lines += SaslFailure("203.0.113.77") + "\n";
  ASSERT_TRUE(SendTcp(kPort, lines));
  ASSERT_TRUE(daemon_.WaitFor([&] { return !Incidents("sasl-ban").empty(); })) << daemon_.Log();
  EXPECT_EQ(Incidents("sasl-ban")[0].key, "203.0.113.77");
  EXPECT_EQ(Metric("mxward_playbook_unverified_events_total{playbook=\"sasl-ban\"}"), 0);
}

}  // namespace
}  // namespace mxward
