// `mxward serve` end to end, in a network namespace of the test's own (its syslog and metrics
// ports cannot clash with anything): lines over TCP become incidents in the store; SIGHUP with a
// broken playbook keeps the running set; SIGHUP with valid playbooks keeps the window state of
// unchanged ones; SIGTERM stops cleanly.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
constexpr int kPort = 5514;

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (unshare(CLONE_NEWNET) != 0) {
      unshare_error_ = std::strerror(errno);
      return;
    }
    in_own_netns_ = RunCommand({"ip", "link", "set", "lo", "up"}).exit_code == 0;
  }

  void SetUp() override {
    ASSERT_TRUE(in_own_netns_) << "cannot make a network namespace: " << unshare_error_;
    rules_ = dir_.file("rules.d");
    std::filesystem::copy(kRules, rules_, std::filesystem::copy_options::recursive);
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n"
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort
                           << "\"\n";
    daemon_ = fork();
    ASSERT_GE(daemon_, 0);
    if (daemon_ == 0) {
      const std::string log = dir_.file("serve.log");
      if (!freopen(log.c_str(), "w", stderr) || !freopen(log.c_str(), "a", stdout)) _exit(126);
      execl(kBinary.c_str(), kBinary.c_str(), "serve", "--db", db_.c_str(), "--config",
            config_.c_str(), "--rules", rules_.c_str(), "--socket", socket_.c_str(), nullptr);
      _exit(127);
    }
    ASSERT_TRUE(WaitFor([&] { return Log().find("ready:") != std::string::npos; }))
        << "serve did not get ready: " << Log();
  }

  void TearDown() override {
    if (daemon_ > 0) {
      kill(daemon_, SIGTERM);
      int status = 0;
      waitpid(daemon_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << Log();
    }
  }

  std::string Log() {
    std::ifstream in(dir_.file("serve.log"));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Polls cond every 20 ms until it holds or 30 s pass; false when it never held or serve died.
  template <typename Cond>
  bool WaitFor(Cond cond) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!cond()) {
      int status = 0;
      if (waitpid(daemon_, &status, WNOHANG) != 0) {
        daemon_ = -1;
        return false;
      }
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  // Sends n Postfix SASL failures for addr over one TCP connection (LF framing), stamped now.
  static void SendFailures(const std::string& addr, int n) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(kPort);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
    std::string data;
    for (int i = 0; i < n; ++i) {
      data += std::string("<22>") + stamp +
              " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
              "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    close(fd);
  }

  // GET /metrics from the daemon's metrics endpoint (127.0.0.1:9580 in our namespace).
  static std::string Metrics() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return "";
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(9580);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    std::string out;
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
        char buf[65536];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
      }
    }
    close(fd);
    return out;
  }

  bool HasIncident(const std::string& key) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return false;
    IncidentQuery q;
    q.playbook = "postfix-sasl";
    q.key = key;
    auto list = (*store)->ListIncidents(q);
    return list.ok() && !list->empty();
  }

  void Reload() { ASSERT_EQ(kill(daemon_, SIGHUP), 0); }

  static inline bool in_own_netns_ = false;
  static inline std::string unshare_error_;
  TempDir dir_;
  std::string rules_, db_, socket_, config_;
  pid_t daemon_ = -1;
};

TEST_F(ServeTest, TcpLinesBecomeAnIncident) {
  SendFailures("203.0.113.50", 19);
  SendFailures("203.0.113.50", 1);
  EXPECT_TRUE(WaitFor([&] { return HasIncident("203.0.113.50"); })) << Log();
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

}  // namespace
}  // namespace mxward
