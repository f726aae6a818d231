// `mxward serve` end to end, in a network namespace of the test's own (its syslog and metrics
// ports cannot clash with anything): lines over TCP become incidents in the store; SIGHUP with a
// broken playbook keeps the running set; SIGHUP with valid playbooks keeps the window state of
// unchanged ones; SIGTERM stops cleanly, also in the middle of a burst, with every incident the
// engine opened in the store.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::HttpGet;
using testing::NetworkNamespace;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
constexpr int kPort = 5514;

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = dir_.file("rules.d");
    std::filesystem::copy(kRules, rules_, std::filesystem::copy_options::recursive);
    db_ = dir_.file("state.db");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n"
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort
                           << "\"\nallowed_senders = [\"127.0.0.1\"]\n";
    ASSERT_TRUE(daemon_.Start(kBinary,
                              {"--db", db_, "--config", config_, "--rules", rules_, "--socket",
                               dir_.file("control.sock")},
                              dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << "serve did not get ready: " << daemon_.Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  // Sends n Postfix SASL failures for addr over one TCP connection (LF framing), stamped now.
  static void SendFailures(const std::string& addr, int n) {
    const std::string stamp = SyslogStampNow();
    std::string data;
    for (int i = 0; i < n; ++i) {
      data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
              "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
    ASSERT_TRUE(SendTcp(kPort, data));
  }

  static std::string Metrics() { return HttpGet(9580, "/metrics"); }

  bool HasIncident(const std::string& key) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return false;
    IncidentQuery q;
    q.playbook = "postfix-sasl";
    q.key = key;
    auto list = (*store)->ListIncidents(q);
    return list.ok() && !list->empty();
  }

  std::string Log() const { return daemon_.Log(); }
  template <typename Cond>
  bool WaitFor(Cond cond) {
    return daemon_.WaitFor(cond);
  }
  void Reload() { ASSERT_TRUE(daemon_.Signal(SIGHUP)); }

  TempDir dir_;
  std::string rules_, db_, config_;
  ServeProcess daemon_;
};

TEST_F(ServeTest, TcpLinesBecomeAnIncident) {
  SendFailures("203.0.113.50", 19);
  SendFailures("203.0.113.50", 1);
  EXPECT_TRUE(WaitFor([&] { return HasIncident("203.0.113.50"); })) << Log();
}

// Issue 16, points 2 and 3: after a real incident every metric family the Grafana dashboard
// queries has a sample (six of them were declared and never exported), and the log has an audit
// line for the incident: playbook, key, why, and its actions.
TEST_F(ServeTest, EveryDashboardFamilyIsExportedAndTheLogIsAnAuditTrail) {
  SendFailures("203.0.113.60", 20);
  ASSERT_TRUE(WaitFor([&] { return HasIncident("203.0.113.60"); })) << Log();
  ASSERT_TRUE(WaitFor([&] {
    const std::string m = Metrics();
    return m.find("mxward_incidents_total{playbook=\"postfix-sasl\"} 1\n") != std::string::npos &&
           m.find("\nmxward_outbox_depth ") != std::string::npos;
  })) << Metrics();
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("mxward_playbook_triggers_total{playbook=\"postfix-sasl\"} 1\n"),
            std::string::npos);

  std::ifstream in(std::string(MXWARD_SOURCE_DIR) + "/packaging/grafana/mxward-dashboard.json");
  ASSERT_TRUE(in);
  const std::string dashboard((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  std::set<std::string> families;
  for (std::size_t pos = dashboard.find("mxward_"); pos != std::string::npos;
       pos = dashboard.find("mxward_", pos + 1)) {
    std::size_t end = pos;
    while (end < dashboard.size() &&
           (std::islower(static_cast<unsigned char>(dashboard[end])) || dashboard[end] == '_')) {
      ++end;
    }
    families.insert(dashboard.substr(pos, end - pos));
  }
  ASSERT_GT(families.size(), 10u);
  // Per-input families exist only for inputs of their kind; this daemon has one tcp input.
  families.erase("mxward_input_journal_skipped_seconds_total");
  for (const std::string& f : families) {
    const bool sampled = metrics.find("\n" + f + "{") != std::string::npos ||
                         metrics.find("\n" + f + " ") != std::string::npos ||
                         metrics.find("\n" + f + "_bucket{") != std::string::npos;
    EXPECT_TRUE(sampled) << "the dashboard queries " << f << " but /metrics has no sample of it";
  }

  // dry_run = true: the engine records its actions as dry-run; the audit line says so.
  const std::string log = Log();
  EXPECT_NE(log.find("opened: postfix-sasl client_ip=203.0.113.60 ("), std::string::npos) << log;
  EXPECT_NE(log.find("; actions: ban (dry-run)"), std::string::npos) << log;
}

TEST_F(ServeTest, BrokenPlaybookOnReloadKeepsTheRunningSet) {
  std::ofstream(rules_ + "/broken.toml")
      << "description = \"x\"\n[trigger]\ntype = \"sometimes\"\n";
  Reload();
  ASSERT_TRUE(WaitFor([&] { return Log().find("reload refused") != std::string::npos; })) << Log();
  EXPECT_NE(Log().find("broken.toml:"), std::string::npos) << "diagnostic names the file" << Log();
  SendFailures("203.0.113.51", 20);
  EXPECT_TRUE(WaitFor([&] { return HasIncident("203.0.113.51"); })) << Log();
}

TEST_F(ServeTest, ReloadKeepsTheWindowsOfUnchangedPlaybooks) {
  SendFailures("203.0.113.52", 10);
  // The first ten must be counted by the old engine, or this test would pass without state kept.
  ASSERT_TRUE(WaitFor([&] {
    return Metrics().find("mxward_events_total{type=\"auth_failure\"} 10\n") != std::string::npos;
  })) << Metrics();
  EXPECT_FALSE(HasIncident("203.0.113.52"));
  Reload();
  ASSERT_TRUE(WaitFor([&] { return Log().find("reloaded:") != std::string::npos; })) << Log();
  SendFailures("203.0.113.52", 10);
  EXPECT_TRUE(WaitFor([&] { return HasIncident("203.0.113.52"); })) << Log();
}

// SIGTERM while a burst is still arriving: the daemon stops within a bound, exits 0, and every
// incident the engine opened before it stopped is in the store (the recorder was drained).
TEST_F(ServeTest, SigtermDuringABurstDrainsTheEngineAndTheRecorder) {
  std::atomic<bool> stop_sending{false};
  std::atomic<int> attackers_sent{0};
  std::thread sender([&] {
    int fd = testing::ConnectLoopbackTcp(kPort);
    if (fd < 0) return;
    const std::string stamp = SyslogStampNow();
    for (int i = 0; i < 60000 && !stop_sending; ++i) {
      const std::string addr =
          "198.18." + std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
      std::string data;
      for (int j = 0; j < 20; ++j) {
        data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
                "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
      }
      // MSG_NOSIGNAL: the daemon closes the connection when it stops.
      if (send(fd, data.data(), data.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(data.size())) {
        break;
      }
      ++attackers_sent;
    }
    close(fd);
  });
  // The burst is being worked on: incidents are being opened and recorded.
  ASSERT_TRUE(WaitFor([&] {
    const std::string m = Metrics();
    const std::size_t at = m.find("\nmxward_lines_total ");
    return at != std::string::npos && std::stod(m.substr(at + 20)) >= 4000;
  })) << Metrics();
  ASSERT_TRUE(daemon_.Signal(SIGTERM));
  const bool exited =
      testing::Eventually([&] { return !daemon_.running(); }, std::chrono::seconds(20));
  stop_sending = true;
  sender.join();
  ASSERT_TRUE(exited) << "still running 20 s after SIGTERM: " << Log();
  EXPECT_TRUE(daemon_.Stop()) << "exit status; " << Log();

  // "stopped: N lines, N events, N incidents": what the engine did before it stopped.
  const std::string log = Log();
  const std::size_t at = log.find("stopped: ");
  ASSERT_NE(at, std::string::npos) << log;
  unsigned long long lines = 0, events = 0, incidents = 0;
  ASSERT_EQ(std::sscanf(log.c_str() + at, "stopped: %llu lines, %llu events, %llu incidents",
                        &lines, &events, &incidents),
            3)
      << log.substr(at, 200);
  EXPECT_GE(lines, 4000u);
  EXPECT_GT(incidents, 0u);
  auto store = IncidentStore::Open(db_);
  ASSERT_OK(store);
  IncidentQuery q;
  q.limit = 1'000'000;
  auto list = (*store)->ListIncidents(q);
  ASSERT_OK(list);
  EXPECT_EQ(list->size(), incidents) << "every incident the engine opened is in the store";
  RecordProperty("lines_before_stop", std::to_string(lines));
  RecordProperty("incidents_recorded", std::to_string(incidents));
}

}  // namespace
}  // namespace mxward
