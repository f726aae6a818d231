// The CLI while the real daemon runs: `mxward serve` in a network namespace of the test's own
// (so its syslog ports cannot clash with anything), and state-changing commands that must go
// through its control socket rather than to the file, while reads go to the store.
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
#include "support/daemon.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::ServeProcess;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

class CliDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n";
    {
      auto store = IncidentStore::Open(db_);
      ASSERT_OK(store);
      Incident inc;
      inc.playbook = "postfix-sasl";
      inc.key_kind = "client_ip";
      inc.key = "203.0.113.7";
      inc.first_seen = inc.last_seen = SystemClock::Instance()->Now();
      std::vector<Incident> batch{inc};
      ASSERT_TRUE((*store)->RecordIncidents(&batch, inc.first_seen).ok());
    }
    ASSERT_TRUE(daemon_.Start(
        kBinary, {"--db", db_, "--config", config_, "--rules", kRules, "--socket", socket_},
        dir_.file("serve.log")));
    // The daemon creates the socket once it is ready to answer.
    struct stat st {};
    ASSERT_TRUE(daemon_.WaitFor([&] { return stat(socket_.c_str(), &st) == 0; }))
        << "no control socket: " << Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << Log(); }

  std::string Log() const { return daemon_.Log(); }

  CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--db", db_, "--config", config_, "--socket", socket_});
    return RunCommand(argv, "", {"TZ=UTC"});
  }

  TempDir dir_;
  std::string db_, socket_, config_;
  ServeProcess daemon_;
};

TEST_F(CliDaemonTest, StateChangesGoThroughTheDaemonAndReadsSeeThem) {
  struct stat st {};
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  auto r = Mxward({"incidents", "ack", "1", "--note", "seen"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("acting directly"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "incident 1 acknowledged\n");

  // dry_run = true: the daemon records the ban without applying it, and the command says so
  // (exit 4) instead of "queued" and 0.
  r = Mxward({"bans", "add", "192.0.2.9", "--for", "5m"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(r.out,
            "ban 192.0.2.9 for 5m (ports: mail): dry-run, not applied: dry_run = true in "
            "mxward.toml (action #1)\n");

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
