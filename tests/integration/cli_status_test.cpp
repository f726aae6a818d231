// Issue 16, points 5 and 6 and the process metrics: what only a running daemon knows, asked of a
// real `mxward serve` (in a network namespace of the test's own) by the real CLI.
//   - `mxward status` shows what is loaded and what is building up (203.0.113.7 at 8/20);
//   - `mxward stats` includes the hour in progress, which the daemon writes only hourly;
//   - /metrics carries the conventional process families, and Debian's promtool finds nothing
//     to complain about in the whole exposition.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using testing::HttpGet;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
constexpr int kPort = 5514;

class CliStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = testing::WriteSaslBanRules(dir_.path());
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n"
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort
                           << "\"\nallowed_senders = [\"127.0.0.1\"]\n";
    ASSERT_TRUE(daemon_.Start(
        kBinary, {"--db", db_, "--config", config_, "--rules", rules_, "--socket", socket_},
        dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << "serve did not get ready: " << daemon_.Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  // n Postfix SASL failures from addr, stamped now, over one TCP connection.
  static void SendFailures(const std::string& addr, int n) {
    const std::string stamp = SyslogStampNow();
    std::string data;
    for (int i = 0; i < n; ++i) {
      data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
              "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
    ASSERT_TRUE(SendTcp(kPort, data));
  }

  CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--db", db_, "--config", config_, "--socket", socket_});
    return RunCommand(argv, "", {"TZ=UTC", "NO_COLOR=1"});
  }

  // `status --json`, parsed; null when the command failed or printed no JSON.
  nlohmann::json StatusJson() {
    const CommandResult r = Mxward({"status", "--json"});
    if (r.exit_code != 0) return nullptr;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  // The postfix-sasl entry's count for key in `status --json`; -1 when it is not building up.
  std::int64_t BuildingCount(const nlohmann::json& status, const std::string& key) {
    if (!status.is_object()) return -1;
    for (const auto& pb : status.at("playbooks")) {
      if (pb.at("name") != "postfix-sasl") continue;
      for (const auto& k : pb.at("building")) {
        if (k.at("key") == key) return k.at("count").get<std::int64_t>();
      }
    }
    return -1;
  }

  TempDir dir_;
  std::string rules_, db_, socket_, config_;
  ServeProcess daemon_;
};

TEST_F(CliStatusTest, StatusShowsWhatIsLoadedAndWhatIsBuildingUp) {
  SendFailures("203.0.113.7", 8);
  SendFailures("198.51.100.4", 3);
  ASSERT_TRUE(daemon_.WaitFor([&] { return BuildingCount(StatusJson(), "203.0.113.7") == 8; }))
      << Mxward({"status", "--json"}).out << Mxward({"status"}).err << daemon_.Log();

  const nlohmann::json s = StatusJson();
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s.at("dry_run"), true);
  EXPECT_EQ(s.at("store"), db_);
  ASSERT_EQ(s.at("playbooks").size(), 1u);
  const nlohmann::json& pb = s.at("playbooks")[0];
  EXPECT_EQ(pb.at("key"), "client_ip");
  EXPECT_EQ(pb.at("trigger").at("type"), "count");
  EXPECT_EQ(pb.at("trigger").at("threshold"), 20);
  EXPECT_EQ(pb.at("trigger").at("window"), "10m");
  // The file says enforce; the daemon runs with dry_run = true, so nothing is enforced.
  EXPECT_EQ(pb.at("mode"), "dry-run");
  EXPECT_EQ(pb.at("actions"), nlohmann::json::array({"ban"}));
  EXPECT_EQ(pb.at("keys_held"), 2);
  // Closest to the trigger first.
  ASSERT_EQ(pb.at("building").size(), 2u);
  EXPECT_EQ(pb.at("building")[0].at("key"), "203.0.113.7");
  EXPECT_EQ(pb.at("building")[0].at("threshold"), 20);
  EXPECT_EQ(pb.at("building")[1].at("key"), "198.51.100.4");
  EXPECT_EQ(pb.at("building")[1].at("count"), 3);
  ASSERT_EQ(s.at("inputs").size(), 1u);
  EXPECT_EQ(s.at("inputs")[0].at("address"), "tcp 127.0.0.1:5514");
  bool ban_listed = false;
  for (const auto& e : s.at("executors")) {
    if (e.at("type") != "ban") continue;
    ban_listed = true;
    EXPECT_EQ(e.at("mode"), "dry-run");
    EXPECT_THAT(e.at("reason").get<std::string>(), HasSubstr("dry_run = true"));
  }
  EXPECT_TRUE(ban_listed) << s.dump(2);

  // --top 1 keeps the closest key only.
  const CommandResult top = Mxward({"status", "--json", "--top", "1"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_EQ(nlohmann::json::parse(top.out).at("playbooks")[0].at("building").size(), 1u);

  // The text a person reads: the playbook line and "203.0.113.7  8/20 in 10m".
  const CommandResult text = Mxward({"status"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("postfix-sasl  dry-run  key client_ip  count >= 20 "
                                  "auth_failure in 10m  -> ban"));
  EXPECT_THAT(text.out, ::testing::ContainsRegex("203\\.0\\.113\\.7 +8/20 in 10m"));
  EXPECT_THAT(text.out, HasSubstr("tcp 127.0.0.1:5514"));

  // Twelve more reach the trigger: the key opens its incident and leaves the window.
  SendFailures("203.0.113.7", 12);
  EXPECT_TRUE(daemon_.WaitFor([&] { return BuildingCount(StatusJson(), "203.0.113.7") == -1; }))
      << Mxward({"status", "--json"}).out;
}

TEST_F(CliStatusTest, StatusWithoutADaemonSaysSo) {
  ASSERT_TRUE(daemon_.Stop()) << daemon_.Log();
  const CommandResult r = Mxward({"status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("no daemon answers on " + socket_));
}

// Issue 16, point 6: the daemon writes its event counts hourly; `stats` must not miss the hour
// in progress.
TEST_F(CliStatusTest, StatsIncludesTheCurrentHourOfARunningDaemon) {
  SendFailures("203.0.113.9", 5);
  ASSERT_TRUE(daemon_.WaitFor([&] { return BuildingCount(StatusJson(), "203.0.113.9") == 5; }))
      << daemon_.Log();
  const CommandResult r = Mxward({"stats", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("events").value("auth_failure", 0), 5) << r.out;
  EXPECT_EQ(j.at("includes_daemon_pending"), true);
  const CommandResult text = Mxward({"stats"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, ::testing::ContainsRegex("auth_failure +5\n"));

  // A store the daemon does not write: its pending counts are not added to it.
  ASSERT_TRUE(IncidentStore::Open(dir_.file("other.db")).ok());
  const CommandResult other = RunCommand({kBinary, "stats", "--json", "--db", dir_.file("other.db"),
                                          "--config", config_, "--socket", socket_},
                                         "", {"TZ=UTC"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(nlohmann::json::parse(other.out).at("events").value("auth_failure", 0), 0);
  EXPECT_THAT(other.err, HasSubstr("its current hour is not added"));

  // After a stop the daemon has written them: the store alone says the same.
  ASSERT_TRUE(daemon_.Stop()) << daemon_.Log();
  const CommandResult after = Mxward({"stats", "--json"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  const auto k = nlohmann::json::parse(after.out);
  EXPECT_EQ(k.at("events").value("auth_failure", 0), 5) << after.out;
  EXPECT_EQ(k.at("includes_daemon_pending"), false);
}

TEST_F(CliStatusTest, MetricsHaveProcessFamiliesAndPassPromtool) {
  // A real incident first, so the exposition has samples of every kind.
  SendFailures("203.0.113.60", 20);
  std::string metrics;
  ASSERT_TRUE(daemon_.WaitFor([&] {
    metrics = HttpGet(9580, "/metrics");
    return metrics.find("mxward_incidents_total{playbook=\"postfix-sasl\"} 1\n") !=
           std::string::npos;
  })) << metrics;
  const auto body = metrics.substr(metrics.find("\r\n\r\n") + 4);
  // Values: the start is the daemon's own (this test started it a moment ago), RSS is a real
  // amount of memory, and the daemon holds at least its listeners and store open.
  const auto value = [&](const std::string& family) {
    const auto pos = body.find("\n" + family + " ");
    if (pos == std::string::npos) return -1.0;
    return std::stod(body.substr(pos + family.size() + 2));
  };
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(value("process_start_time_seconds"), now - 600) << body;
  EXPECT_LE(value("process_start_time_seconds"), now + 1);
  EXPECT_GT(value("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(value("process_open_fds"), 4);
  EXPECT_THAT(body, HasSubstr("# TYPE process_open_fds gauge\n"));

  // /metrics' own refusals are exported: 9 idle connections from loopback (one peer, 8 allowed
  // by default), the 9th closed at accept, and the scrape after they are gone shows it.
  EXPECT_THAT(body, HasSubstr("mxward_metrics_refused_total{reason=\"peer_limit\"} 0\n"))
      << "no /metrics connection refused yet";
  std::vector<int> held;
  for (int i = 0; i < 9; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9580);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    held.push_back(fd);
  }
  // Which one is refused depends on when the sessions of the scrapes above ended: one of the
  // nine is closed at accept (EOF without a byte sent), the others wait for a request.
  EXPECT_TRUE(daemon_.WaitFor([&] {
    char byte = 0;
    for (int fd : held) {
      if (::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK) == 0) return true;
    }
    return false;
  })) << "none of 9 connections from loopback was closed at accept";
  for (int fd : held) ::close(fd);
  std::string after;
  EXPECT_TRUE(daemon_.WaitFor([&] {
    after = HttpGet(9580, "/metrics");
    const std::string family = "mxward_metrics_refused_total{reason=\"peer_limit\"} ";
    const auto at = after.find(family);
    return at != std::string::npos && after.compare(at + family.size(), 2, "0\n") != 0;
  })) << after;

  if (RunCommand({"sh", "-c", "command -v promtool"}).exit_code != 0) {
    GTEST_SKIP() << "promtool (Debian package prometheus) is not installed; "
                    "packaging/install-deps.sh test installs it";
  }
  const CommandResult check = RunCommand({"promtool", "check", "metrics"}, body);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_EQ(check.out + check.err, "") << "promtool has remarks on /metrics";
}

}  // namespace
}  // namespace mxward
