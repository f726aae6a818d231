// Issue 16, "a CLI that tells the truth", against the real daemon (`mxward serve` in a network
// namespace of the test's own, with real nftables there): a write command waits for its action's
// outcome and says it (done, dry-run, refused, failed) with an exit code to match; `actions
// list|show` read the outbox; and a command given the --db of another store than the daemon's is
// refused before anything changes, naming both stores.
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/control_protocol.h"
#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/nft_sets.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::KernelSetAddresses;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::ServeProcess;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

// One incident (id 1) in a new store at path.
void StoreWithOneIncident(const std::string& path, const std::string& key) {
  auto store = IncidentStore::Open(path);
  ASSERT_OK(store);
  Incident inc;
  inc.playbook = "postfix-sasl";
  inc.key_kind = "client_ip";
  inc.key = key;
  inc.first_seen = inc.last_seen = SystemClock::Instance()->Now();
  std::vector<Incident> batch{inc};
  ASSERT_OK((*store)->RecordIncidents(&batch, inc.first_seen));
}

class CliTruthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace (integration tests run as root): "
                         << ns.error();
    ASSERT_EQ(RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
    RunCommand({"nft", "flush", "ruleset"});
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "[nftables]\nenabled = true\n";
    StoreWithOneIncident(db_, "203.0.113.7");
    ASSERT_TRUE(daemon_.Start(
        kBinary, {"--db", db_, "--config", config_, "--rules", kRules, "--socket", socket_},
        dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog(" ready: ")) << daemon_.Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  CommandResult Mxward(std::vector<std::string> args, const std::string& db = "") {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(),
                {"--db", db.empty() ? db_ : db, "--config", config_, "--socket", socket_});
    return RunCommand(argv, "", {"TZ=UTC", "NO_COLOR=1"});
  }

  TempDir dir_;
  std::string db_, socket_, config_;
  ServeProcess daemon_;
};

TEST_F(CliTruthTest, WriteCommandsSayWhatBecameOfTheAction) {
  auto r = Mxward({"bans", "add", "192.0.2.9", "--for", "5m"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ban 192.0.2.9 for 5m (ports: mail): done (action #1)\n") << r.err;
  EXPECT_EQ(KernelSetAddresses("banned_v4"), (std::set<std::string>{"192.0.2.9"}));

  // Loopback is in the default allowlist: the daemon refuses, and the command says so.
  r = Mxward({"bans", "add", "127.0.0.1", "--for", "5m"});
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_NE(r.out.find("ban 127.0.0.1 for 5m (ports: mail): refused: 127.0.0.1 is allowlisted"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(KernelSetAddresses("banned_v4"), (std::set<std::string>{"192.0.2.9"}));

  // No [postfixadmin]: the suspension is only recorded, and the command says why.
  r = Mxward({"accounts", "suspend", "alice@example.org"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.out.find("suspend alice@example.org: dry-run, not applied: "), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("postfixadmin"), std::string::npos) << r.out;

  r = Mxward({"bans", "remove", "192.0.2.9"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "unban 192.0.2.9: done (action #4)\n");
  EXPECT_TRUE(KernelSetAddresses("banned_v4").empty());

  // The outbox, row by row.
  r = Mxward({"actions", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 4u) << r.out;
  std::vector<std::string> states;
  for (const auto& a : list) states.push_back(a.at("state"));
  EXPECT_EQ(states, (std::vector<std::string>{"done", "dry_run", "refused", "done"}));
  EXPECT_EQ(list[0].at("revert"), true);
  EXPECT_EQ(list[2].at("params").at("address"), "127.0.0.1");
  EXPECT_EQ(list[2].at("incident_id"), nullptr);

  r = Mxward({"actions", "list", "--state", "refused"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("127.0.0.1"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("192.0.2.9"), std::string::npos) << r.out;

  r = Mxward({"actions", "show", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Action 2  ban  refused"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("outcome:   refused: 127.0.0.1 is allowlisted"), std::string::npos) << r.out;
  EXPECT_EQ(Mxward({"actions", "show", "99"}).exit_code, 1);

  // A port group nobody configured: the executor gives up, the command says why (exit 7).
  r = Mxward({"bans", "add", "192.0.2.6", "--for", "5m", "--ports", "imaps"});
  EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
  EXPECT_NE(r.out.find("ban 192.0.2.6 for 5m (ports: imaps): failed after 1 attempt: "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("unknown port group 'imaps'"), std::string::npos) << r.out;

  // --no-wait returns at once: whatever the action's state then, the command says it and a
  // pending one points at `actions show`.
  r = Mxward({"bans", "add", "192.0.2.10", "--for", "5m", "--no-wait"});
  if (r.exit_code == 5) {
    EXPECT_NE(r.out.find("still pending; follow it with: mxward actions show 6"), std::string::npos)
        << r.out;
  } else {
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  EXPECT_TRUE(daemon_.WaitFor(
      [&] { return KernelSetAddresses("banned_v4") == std::set<std::string>{"192.0.2.10"}; }));
}

TEST_F(CliTruthTest, AChangeForAnotherStoreIsRefusedNamingBoth) {
  const std::string other = dir_.file("other.db");
  StoreWithOneIncident(other, "198.51.100.1");

  // The daemon says which store it serves.
  auto ping = CallControl(socket_, {{"op", "ping"}});
  ASSERT_OK(ping);
  auto result = ControlResult(*ping);
  ASSERT_OK(result);
  std::string daemon_store_id;
  {
    auto store = IncidentStore::Open(db_);
    ASSERT_OK(store);
    auto id = (*store)->StoreId();
    ASSERT_OK(id);
    daemon_store_id = *id;
  }
  EXPECT_EQ(daemon_store_id.size(), 32u);
  EXPECT_EQ((*result)["store"]["path"], CanonicalStorePath(db_));
  EXPECT_EQ((*result)["store"]["id"], daemon_store_id);

  auto r = Mxward({"incidents", "ack", "1"}, other);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("this daemon serves the store " + CanonicalStorePath(db_)),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("not " + CanonicalStorePath(other)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing was changed"), std::string::npos) << r.err;
  r = Mxward({"bans", "add", "192.0.2.77", "--for", "5m"}, other);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;

  for (const std::string& path : {db_, other}) {
    auto store = IncidentStore::Open(path);
    ASSERT_OK(store);
    auto inc = (*store)->GetIncident(1);
    ASSERT_OK(inc);
    EXPECT_EQ(inc->status, IncidentStatus::kOpen) << path;
    EXPECT_TRUE((*store)->ListActions({})->empty()) << path;
  }

  // The same store by another path (a symlinked directory) is the daemon's: served.
  const std::string link = dir_.file("link");
  std::filesystem::create_directory_symlink(std::filesystem::path(db_).parent_path(), link);
  r = Mxward({"incidents", "ack", "1"}, link + "/state.db");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("acting directly"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mxward
