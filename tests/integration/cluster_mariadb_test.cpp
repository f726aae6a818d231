// Issue 18, MariaDB as the cluster's second engine: the propagation test of
// cluster_postgres_test.cpp (three real `mxward serve` nodes in network namespaces of their own,
// tests/support/cluster_nodes.h) with a real MariaDB the test starts (tests/support/
// mariadb_server.h), which the nodes poll (no doorbell). One server for the whole file; each case
// has a database of its own. Plus the decision log's SQL against that server, and the refusals
// of what MariaDB does not hold (shared windows, cluster-wide incidents).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/cluster/mariadb_decision_log.h"
#include "support/cluster_nodes.h"
#include "support/eventually.h"
#include "support/mariadb_server.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::Eventually;
using testing::MariadbServer;
using testing::RunCommand;

// Polled every 250 ms (the default), so a ban arrives in well under a second; the deadline only
// bounds a failure: 20 s was once too short for three ASan-built nodes on a loaded 2-core machine
// (the run failed after 66 s, three such waits).
constexpr auto kPropagation = std::chrono::seconds(60);

class ClusterMariadbTest : public testing::ClusterNodesTest {
 protected:
  // One server for every case (mariadb-install-db and the start cost seconds each).
  static void SetUpTestSuite() {
    if (geteuid() != 0 || !std::filesystem::exists("/usr/sbin/mariadbd")) return;
    server_ = new MariadbServer();
    start_error_ = server_->Start();
    if (!start_error_.empty()) return;
    // The nodes' user, password-authenticated over the unix socket, on the cases' databases.
    const auto r = server_->Sql(
        "CREATE USER 'mxward'@'localhost' IDENTIFIED BY 'cluster-secret';"
        "GRANT ALL ON `mxward\\_%`.* TO 'mxward'@'localhost';");
    if (r.exit_code != 0) start_error_ = "creating the user: " + r.err;
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ClusterNodesTest::SetUp();
    if (IsSkipped()) return;
    if (server_ == nullptr) GTEST_SKIP() << "mariadb-server is not installed";
    ASSERT_EQ(start_error_, "");
    database_ = "mxward_" + std::to_string(++cases_);
    ASSERT_EQ(server_->Sql("CREATE DATABASE " + database_).exit_code, 0);
    MakeNodes();
  }

  void TearDown() override {
    ClusterNodesTest::TearDown();
    // A case that stopped the server and failed before starting it again leaves it running for
    // the next.
    if (server_ != nullptr && server_->Sql("SELECT 1").exit_code != 0) {
      EXPECT_EQ(server_->Start(), "");
    }
  }

  std::string ClusterSettings() const override {
    // safety_tick: the node rows `status` shows are read back at each tick (as in the
    // PostgreSQL test's status case), so B's view catches up with C's heartbeat within a second.
    return "engine = \"mariadb\"\nsocket = \"" + server_->socket() +
           "\"\nuser = \"mxward\"\ndatabase = \"" + database_ + "\"\nsafety_tick = \"1s\"\n";
  }

  // The log's rows matching where, "kind scope node" each, one per line.
  std::string LogRows(const std::string& where) {
    std::string out = server_
                          ->Sql(
                              "SELECT CONCAT(kind, ' ', scope, ' ', node) FROM mxward_decisions "
                              "WHERE " +
                                  where + " ORDER BY seq",
                              database_)
                          .out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  MariadbDecisionLog::Target Target() const {
    MariadbDecisionLog::Target t;
    t.socket = server_->socket();
    t.user = "mxward";
    t.password = "cluster-secret";
    t.database = database_;
    return t;
  }

  static MariadbServer* server_;
  static std::string start_error_;
  static int cases_;
  std::string database_;
};

MariadbServer* ClusterMariadbTest::server_ = nullptr;
std::string ClusterMariadbTest::start_error_;
int ClusterMariadbTest::cases_ = 0;

TEST_F(ClusterMariadbTest, BanOnOneNodeReachesAllAndRemovalOnAnotherLiftsIt) {
  for (Node& n : nodes_) StartNode(n);
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Node& c = nodes_[2];
  const std::string addr = "203.0.113.7";
  Attack(a, addr, 25);
  EXPECT_TRUE(a.process->WaitFor([&] { return InKernel(a, addr); }, kPropagation))
      << a.process->Log();
  EXPECT_TRUE(b.process->WaitFor([&] { return InKernel(b, addr); }, kPropagation))
      << b.process->Log();
  EXPECT_TRUE(c.process->WaitFor([&] { return InKernel(c, addr); }, kPropagation))
      << c.process->Log();
  EXPECT_EQ(LogRows("scope = '" + addr + "'"), "ban 203.0.113.7 a");
  EXPECT_EQ(LogRows("scope = '" + addr + "' AND playbook = 'postfix-sasl'"), "ban 203.0.113.7 a");

  // Lifted on C (which only received the ban): every node lifts it.
  const auto removed = Cli(c, {"bans", "remove", addr});
  ASSERT_EQ(removed.exit_code, 0) << removed.out << removed.err;
  EXPECT_TRUE(a.process->WaitFor([&] { return !InKernel(a, addr); }, kPropagation))
      << a.process->Log();
  EXPECT_TRUE(b.process->WaitFor([&] { return !InKernel(b, addr); }, kPropagation))
      << b.process->Log();
  EXPECT_TRUE(c.process->WaitFor([&] { return !InKernel(c, addr); }, kPropagation));
  EXPECT_TRUE(Eventually(
      [&] { return LogRows("scope = '" + addr + "' AND kind = 'unban'") == "unban 203.0.113.7 c"; },
      kPropagation));
  // One ban each: A's own, B's and C's from the log; nothing came back to A.
  EXPECT_EQ(BanActions(a, addr), 1);
  EXPECT_EQ(BanActions(b, addr), 1);
  EXPECT_EQ(BanActions(c, addr), 1);

  // status on B: the engine, and the three nodes having read the whole log.
  nlohmann::json cluster;
  EXPECT_TRUE(b.process->WaitFor(
      [&] {
        const auto r = Cli(b, {"status", "--json"});
        if (r.exit_code != 0) return false;
        cluster = nlohmann::json::parse(r.out, nullptr, false).value("cluster", nlohmann::json());
        if (!cluster.is_object() || !cluster.contains("nodes") || cluster["nodes"].size() != 3) {
          return false;
        }
        for (const auto& n : cluster["nodes"]) {
          if (n.value("lag", -1) != 0) return false;
        }
        return cluster.value("head", 0) >= 2;
      },
      kPropagation))
      << cluster.dump();
  EXPECT_EQ(cluster.value("engine", ""), "mariadb");
  EXPECT_EQ(cluster.value("poll_interval_ms", 0), 250);
  EXPECT_TRUE(cluster.value("connected", false));
  const auto text = Cli(b, {"status"});
  EXPECT_NE(text.out.find("engine: mariadb, polled every 250 ms"), std::string::npos) << text.out;
}

TEST_F(ClusterMariadbTest, MariadbDownDuringAttackPublishesOnceWhenBack) {
  for (Node& n : nodes_) StartNode(n);
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Node& c = nodes_[2];
  server_->Stop();
  const std::string addr = "198.51.100.23";
  Attack(a, addr, 25);
  // Local first: A bans without the database.
  ASSERT_TRUE(a.process->WaitFor([&] { return InKernel(a, addr); }, kPropagation))
      << a.process->Log();
  EXPECT_FALSE(InKernel(b, addr));
  ASSERT_EQ(server_->Start(), "");
  EXPECT_TRUE(b.process->WaitFor([&] { return InKernel(b, addr); }, kPropagation))
      << b.process->Log();
  EXPECT_TRUE(c.process->WaitFor([&] { return InKernel(c, addr); }, kPropagation))
      << c.process->Log();
  EXPECT_EQ(LogRows("scope = '" + addr + "'"), "ban 198.51.100.23 a");
  EXPECT_EQ(BanActions(a, addr), 1);
  EXPECT_EQ(BanActions(b, addr), 1);
  EXPECT_EQ(BanActions(c, addr), 1);
}

// Runtime allowlist entries travel as allow / unallow rows, as with PostgreSQL (the same case).
TEST_F(ClusterMariadbTest, RuntimeAllowlistEntriesReachEveryNode) {
  for (Node& n : nodes_) StartNode(n);
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Node& c = nodes_[2];
  const auto added =
      Cli(a, {"allow", "add", "203.0.113.0/28", "--for", "1h", "--note", "office NAT"});
  ASSERT_EQ(added.exit_code, 0) << added.out << added.err;
  auto listed_on = [&](Node& n) {
    const auto r = Cli(n, {"allow", "list"});
    return r.exit_code == 0 && r.out.find("203.0.113.0/28") != std::string::npos &&
           r.out.find("cluster:a") != std::string::npos &&
           r.out.find("office NAT") != std::string::npos;
  };
  EXPECT_TRUE(b.process->WaitFor([&] { return listed_on(b); }, kPropagation))
      << Cli(b, {"allow", "list"}).out << b.process->Log();
  EXPECT_TRUE(c.process->WaitFor([&] { return listed_on(c); }, kPropagation));
  EXPECT_EQ(LogRows("kind = 'allow'"), "allow 203.0.113.0/28 a") << "published once, by a only";

  // B's playbooks and dispatcher now leave the prefix alone: a brute force from inside it opens
  // no incident there, while one from outside is banned (the marker that B has read the lines).
  Attack(b, "203.0.113.5", 25);
  Attack(b, "198.51.100.40", 25);
  EXPECT_TRUE(b.process->WaitFor([&] { return InKernel(b, "198.51.100.40"); }, kPropagation))
      << b.process->Log();
  EXPECT_FALSE(InKernel(b, "203.0.113.5"));
  EXPECT_EQ(BanActions(b, "203.0.113.5"), 0);

  // Removed on C: gone on A and B too.
  const auto removed = Cli(c, {"allow", "remove", "203.0.113.0/28"});
  ASSERT_EQ(removed.exit_code, 0) << removed.out << removed.err;
  for (Node* n : {&a, &b}) {
    EXPECT_TRUE(n->process->WaitFor(
        [&] {
          const auto r = Cli(*n, {"allow", "list"});
          return r.exit_code == 0 && r.out.find("203.0.113.0/28") == std::string::npos;
        },
        kPropagation))
        << Cli(*n, {"allow", "list"}).out;
  }
  EXPECT_TRUE(Eventually([&] { return LogRows("kind = 'unallow'") == "unallow 203.0.113.0/28 c"; },
                         kPropagation))
      << LogRows("true");
}

// The decision log's SQL against the real server: the schema, sequence numbers, extensions,
// idempotent publication, expiry on the server's clock, node rows and pruning.
TEST_F(ClusterMariadbTest, DecisionLogAgainstTheRealDatabase) {
  MariadbDecisionLog a(Target(), "a");
  MariadbDecisionLog b(Target(), "b");
  ASSERT_OK(a.Connect());
  ASSERT_OK(b.Connect());  // the tables exist: migrated once
  EXPECT_FALSE(a.has_doorbells());
  EXPECT_EQ(server_->Sql("SELECT version FROM mxward_cluster_schema", database_).out, "1\n");
  EXPECT_EQ(server_
                ->Sql("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = '" +
                      database_ + "' AND TABLE_NAME = 'mxward_decisions'")
                .out,
            "InnoDB\n");

  DecisionToPublish ban;
  ban.scope = "192.0.2.1";
  ban.duration_s = 3600;
  ban.playbook = "postfix-sasl";
  ban.incident_id = 7;
  ban.origin_action_id = 11;
  auto seq = a.Publish({ban});
  ASSERT_OK(seq);
  EXPECT_EQ(*seq, 1);
  // Published again (a retry after a lost COMMIT answer): still one row.
  ASSERT_OK(a.Publish({ban}));
  DecisionToPublish again = ban;  // a second ban of the scope while the first runs
  again.origin_action_id = 12;
  again.duration_s = 0;
  DecisionToPublish unban;
  unban.kind = "unban";
  unban.scope = "192.0.2.1";
  unban.origin_action_id = 13;
  DecisionToPublish allow;
  allow.kind = "allow";
  allow.scope = "198.51.100.0/24";
  allow.duration_s = 0;
  allow.note = "partner's relay";
  allow.origin_action_id = -2;
  auto last = a.Publish({again, unban, allow});
  ASSERT_OK(last);
  EXPECT_EQ(*last, 5);  // 2 was taken by the retry's row, which wrote nothing

  auto rows = b.ReadAfter(0, 100);
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 4u);
  const DecisionRow& r0 = (*rows)[0];
  EXPECT_EQ(r0.seq, 1);
  EXPECT_EQ(r0.kind, "ban");
  EXPECT_EQ(r0.scope, "192.0.2.1");
  EXPECT_EQ(r0.ports, "mail");
  EXPECT_TRUE(r0.has_expiry);
  EXPECT_FALSE(r0.permanent);
  EXPECT_GE(r0.remaining_s, 3590);
  EXPECT_LE(r0.remaining_s, 3600);
  EXPECT_EQ(r0.playbook, "postfix-sasl");
  EXPECT_EQ(r0.node, "a");
  EXPECT_EQ(r0.incident_id, 7);
  EXPECT_EQ(r0.uuid.size(), 36u);
  EXPECT_EQ((*rows)[1].seq, 3);
  EXPECT_EQ((*rows)[1].kind, "extension");
  EXPECT_TRUE((*rows)[1].permanent);
  EXPECT_FALSE((*rows)[1].has_expiry);
  EXPECT_NE((*rows)[1].uuid, r0.uuid);
  EXPECT_EQ((*rows)[2].kind, "unban");
  EXPECT_EQ((*rows)[3].kind, "allow");
  EXPECT_EQ((*rows)[3].note, "partner's relay");
  auto after = b.ReadAfter(3, 100);
  ASSERT_OK(after);
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ((*after)[0].seq, 4);
  // After the removal, a ban is a ban again, not an extension.
  DecisionToPublish rebanned = ban;
  rebanned.origin_action_id = 14;
  ASSERT_OK(a.Publish({rebanned}));
  EXPECT_EQ(LogRows("seq = 6"), "ban 192.0.2.1 a");

  // Node rows for status.
  ASSERT_OK(a.Heartbeat(6, "full", true));
  ASSERT_OK(b.Heartbeat(4, "enforcer", true));
  auto view = b.ReadView();
  ASSERT_OK(view);
  EXPECT_EQ(view->head, 6);
  EXPECT_EQ(view->rows, 5);
  ASSERT_EQ(view->nodes.size(), 2u);
  EXPECT_EQ(view->nodes[0].node, "a");
  EXPECT_EQ(view->nodes[0].cursor, 6);
  EXPECT_EQ(view->nodes[1].role, "enforcer");
  EXPECT_EQ(view->nodes[1].cursor, 4);
  EXPECT_LE(view->nodes[1].seen_ago_s, 5);

  // Pruning: the ban lifted (seq 1) and its extension (3), aged past the retention, go once
  // every live node has read them; the removal (4) then lifts nothing and goes too. Row 6 (the
  // ban in force) and the allowlist entry stay.
  ASSERT_EQ(server_
                ->Sql("UPDATE mxward_decisions SET created_at = UTC_TIMESTAMP(6) - INTERVAL 2 DAY "
                      "WHERE seq <= 4",
                      database_)
                .exit_code,
            0);
  auto pruned = a.Prune(86400);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 3);
  EXPECT_EQ(LogRows("TRUE"), "allow 198.51.100.0/24 a\nban 192.0.2.1 a");
  // A string that would be SQL if spliced stays a value.
  DecisionToPublish odd = ban;
  odd.scope = "192.0.2.9'; DROP TABLE mxward_decisions; --";
  odd.origin_action_id = 15;
  ASSERT_OK(a.Publish({odd}));
  EXPECT_EQ(LogRows("origin_action_id = 15"), "ban " + odd.scope + " a");
}

// Sequence numbers follow commit order (docs/cluster.md): two nodes publish at once, one decision
// per transaction, while a third reads after its cursor as fast as it can. A number handed out
// before an earlier one committed (what an AUTO_INCREMENT does) would let the reader's cursor pass
// a row still uncommitted and never read it; here the reader ends with every row, numbered 1..N.
TEST_F(ClusterMariadbTest, ConcurrentPublishersNeverLetAReaderSkipARow) {
  MariadbDecisionLog a(Target(), "a");
  MariadbDecisionLog b(Target(), "b");
  MariadbDecisionLog reader(Target(), "r");
  ASSERT_OK(a.Connect());
  ASSERT_OK(b.Connect());
  ASSERT_OK(reader.Connect());
  constexpr int kEach = 300;
  std::atomic<int> failures{0};
  auto publish = [&](MariadbDecisionLog* log, int net) {
    for (int i = 0; i < kEach; ++i) {
      DecisionToPublish d;
      d.scope = "10." + std::to_string(net) + "." + std::to_string(i >> 8) + "." +
                std::to_string(i & 255);
      d.duration_s = 3600;
      d.origin_action_id = i + 1;
      if (!log->Publish({d}).ok()) ++failures;
    }
  };
  std::set<std::int64_t> seen;
  std::int64_t cursor = 0;
  auto read = [&] {
    auto rows = reader.ReadAfter(cursor, 2000);
    if (!rows.ok()) return false;
    for (const DecisionRow& r : *rows) seen.insert(r.seq);
    if (!rows->empty()) cursor = rows->back().seq;
    return true;
  };
  std::thread ta(publish, &a, 1);
  std::thread tb(publish, &b, 2);
  int reads = 0;
  while (seen.size() < 2 * kEach && failures == 0 && reads < 1'000'000) {
    ASSERT_TRUE(read());
    ++reads;
  }
  ta.join();
  tb.join();
  ASSERT_TRUE(read());  // whatever committed after the loop's last read
  EXPECT_EQ(failures, 0);
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(2 * kEach)) << "rows the reader skipped";
  EXPECT_EQ(*seen.begin(), 1);
  EXPECT_EQ(*seen.rbegin(), 2 * kEach);
  std::printf("concurrent publication: %d rows read in %d reads\n", 2 * kEach, reads + 1);
}

// What MariaDB does not hold is refused with the engine named: a `shared = true` playbook (check
// reports it at the key, serve does not start) and `incidents list --cluster`.
TEST_F(ClusterMariadbTest, SharedWindowsAndClusterIncidentsAreRefusedNamingTheEngine) {
  Node& a = nodes_[0];
  std::ofstream(rules_ + "/shared-sasl.toml")
      << "description = \"SASL brute force, counted across the cluster\"\n"
         "severity = \"high\"\nkey = \"client_ip\"\nshared = true\n"
         "[match]\nevents = [\"auth_failure\"]\n"
         "[trigger]\ntype = \"count\"\nthreshold = 20\nwindow = \"1h\"\n"
         "[[action]]\ntype = \"ban\"\naddress = \"{client_ip}\"\nduration = \"1h\"\n";
  auto r = RunCommand({binary_, "--config", a.config, "--db", a.db, "--rules", rules_, "check"});
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find(rules_ + "/shared-sasl.toml:4:10: error: 'shared = true' (playbook "
                                "shared-sasl) needs [cluster] engine = \"postgresql\""),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("engine = \"mariadb\""), std::string::npos) << r.err;

  // In a network namespace of its own (its nftables table is not the host's); bounded, should
  // it start after all.
  r = RunCommand({"timeout", "60", wrapper_, "--config", a.config, "--db", a.db, "--rules", rules_,
                  "--socket", a.socket, "serve"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("'shared = true' on a cluster whose engine is mariadb"), std::string::npos)
      << r.err;

  r = Cli(a, {"incidents", "list", "--cluster"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("cluster-wide incidents are not available with [cluster] engine = "
                       "\"mariadb\""),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace mxward
