// The CLI while the real daemon runs: `mxward serve` in a network namespace of the test's own
// (so its syslog ports cannot clash with anything), and state-changing commands that must go
// through its control socket rather than to the file, while reads go to the store.
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

class CliDaemonTest : public ::testing::Test {
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
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n";
    {
      auto store = IncidentStore::Open(db_);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      Incident inc;
      inc.playbook = "postfix-sasl";
      inc.key_kind = "client_ip";
      inc.key = "203.0.113.7";
      inc.first_seen = inc.last_seen = SystemClock::Instance()->Now();
      std::vector<Incident> batch{inc};
      ASSERT_TRUE((*store)->RecordIncidents(&batch, inc.first_seen).ok());
    }
    daemon_ = fork();
    ASSERT_GE(daemon_, 0);
    if (daemon_ == 0) {
      const std::string log = dir_.file("serve.log");
      FILE* f = freopen(log.c_str(), "w", stderr);
      if (!f || !freopen(log.c_str(), "a", stdout)) _exit(126);
      execl(kBinary.c_str(), kBinary.c_str(), "serve", "--db", db_.c_str(), "--config",
            config_.c_str(), "--rules", kRules.c_str(), "--socket", socket_.c_str(), nullptr);
      _exit(127);
    }
    // Poll for the socket with a deadline: the daemon creates it once it is ready to answer.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    struct stat st {};
    while (stat(socket_.c_str(), &st) != 0) {
      int status = 0;
      ASSERT_EQ(waitpid(daemon_, &status, WNOHANG), 0) << "serve exited: " << Log();
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no control socket: " << Log();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
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
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--db", db_, "--config", config_, "--socket", socket_});
    return RunCommand(argv, "", {"TZ=UTC"});
  }

  static inline bool in_own_netns_ = false;
  static inline std::string unshare_error_;
  TempDir dir_;
  std::string db_, socket_, config_;
  pid_t daemon_ = -1;
};

TEST_F(CliDaemonTest, StateChangesGoThroughTheDaemonAndReadsSeeThem) {
  struct stat st {};
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  auto r = Mxward({"incidents", "ack", "1", "--note", "seen"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("acting directly"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "incident 1 acknowledged\n");

  r = Mxward({"bans", "add", "192.0.2.9", "--for", "5m"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("queued in the daemon"), std::string::npos) << r.out;

  EXPECT_EQ(Mxward({"incidents", "ack", "77"}).exit_code, 1);
  EXPECT_EQ(Mxward({"bans", "add", "192.0.2.9/24", "--for", "5m"}).exit_code, 2);

  r = Mxward({"incidents", "list", "--json", "--status", "acknowledged"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].at("id"), 1);
}

}  // namespace
}  // namespace mxward
