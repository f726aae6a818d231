// Issue 18, part 1: three real `mxward serve` nodes, each in a network namespace of its own with
// its own nftables ruleset, share ban decisions through a real PostgreSQL started by the test
// (tests/support/postgres_server.h; the nodes reach it over its unix socket, which a network
// namespace does not separate). Each node reads its own log file, so the test feeds a brute
// force to one node by appending to that node's file, and reads a node's kernel sets with
// `nsenter --net=/proc/<pid>/ns/net nft`.
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/cluster/postgres_decision_log.h"
#include "mxward/incident_store.h"
#include "support/cluster_nodes.h"
#include "support/daemon.h"
#include "support/eventually.h"
#include "support/postgres_server.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::Eventually;
using testing::PostgresServer;
using testing::RunCommand;
using testing::ServeProcess;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
// Only bounds a failure (the waits end when the condition holds); 20 s was once too short for
// cluster_mariadb_test's three ASan-built nodes on a loaded 2-core machine, the same fixture.
constexpr auto kPropagation = std::chrono::seconds(60);

class ClusterPostgresTest : public testing::ClusterNodesTest {
 protected:
  void SetUp() override {
    ClusterNodesTest::SetUp();
    if (IsSkipped()) return;
    if (!std::filesystem::exists(std::string(testing::kPostgresBin) + "/postgres")) {
      GTEST_SKIP() << "postgresql-15 is not installed";
    }
    ASSERT_EQ(pg_.Start(), "");
    ASSERT_EQ(pg_.Sql("CREATE ROLE mxward LOGIN PASSWORD 'cluster-secret'").exit_code, 0);
    ASSERT_EQ(pg_.Sql("CREATE DATABASE mxward OWNER mxward").exit_code, 0);
    MakeNodes();
  }

  std::string ClusterSettings() const override {
    return "dsn = \"host=" + pg_.socket_dir() + " port=" + std::to_string(pg_.port()) +
           " dbname=mxward user=mxward\"\n";
  }

  // The log's rows matching where, "kind scope node" each, one per line.
  std::string LogRows(const std::string& where) {
    std::string out = pg_.Sql(
                             "SELECT kind || ' ' || scope || ' ' || node FROM mxward_decisions "
                             "WHERE " +
                                 where + " ORDER BY seq",
                             "mxward")
                          .out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  PostgresServer pg_;
};

TEST_F(ClusterPostgresTest, BanOnOneNodeReachesAllAndRemovalOnAnotherLiftsIt) {
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
  // The deciding playbook travels with the decision (the test's rules hold postfix-sasl only).
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
}

TEST_F(ClusterPostgresTest, PostgresDownDuringAttackPublishesOnceWhenBack) {
  for (Node& n : nodes_) StartNode(n);
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Node& c = nodes_[2];
  pg_.Stop();
  const std::string addr = "198.51.100.23";
  Attack(a, addr, 25);
  // Local first: A bans without the database.
  ASSERT_TRUE(a.process->WaitFor([&] { return InKernel(a, addr); }, kPropagation))
      << a.process->Log();
  EXPECT_FALSE(InKernel(b, addr));
  ASSERT_EQ(pg_.Start(), "");
  EXPECT_TRUE(b.process->WaitFor([&] { return InKernel(b, addr); }, kPropagation))
      << b.process->Log();
  EXPECT_TRUE(c.process->WaitFor([&] { return InKernel(c, addr); }, kPropagation))
      << c.process->Log();
  EXPECT_EQ(LogRows("scope = '" + addr + "'"), "ban 198.51.100.23 a");
  EXPECT_EQ(BanActions(a, addr), 1);
  EXPECT_EQ(BanActions(b, addr), 1);
  EXPECT_EQ(BanActions(c, addr), 1);
}

TEST_F(ClusterPostgresTest, StoppedNodeCatchesUpOnRestart) {
  for (Node& n : nodes_) StartNode(n);
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Node& c = nodes_[2];
  StopNode(c);
  const std::vector<std::string> addrs = {"192.0.2.10", "192.0.2.11", "192.0.2.12"};
  for (const auto& addr : addrs) Attack(a, addr, 25);
  for (const auto& addr : addrs) {
    ASSERT_TRUE(b.process->WaitFor([&] { return InKernel(b, addr); }, kPropagation))
        << b.process->Log();
  }
  // C comes back in a fresh namespace (an empty ruleset): it has every decision made meanwhile.
  StartNode(c);
  for (const auto& addr : addrs) {
    EXPECT_TRUE(c.process->WaitFor([&] { return InKernel(c, addr); }, kPropagation))
        << addr << "\n"
        << c.process->Log();
    EXPECT_EQ(BanActions(c, addr), 1);
  }
}

// A node that missed thousands of decisions catches up through the bulk path (docs/cluster.md,
// "Catching up"): 5,000 bans of a peer written to the log while C is down (as that peer's
// publication would: one transaction), a ban then its removal of one address in the same stretch
// of the log, a ban whose scope is `web`, and one for an address C's [allow] covers. C ends with
// every ban in its kernel and its store, the removed address not banned, the web ban in the web
// set, and the allowlisted one refused.
TEST_F(ClusterPostgresTest, ThousandsOfMissedDecisionsCaughtUpInBulk) {
  Node& a = nodes_[0];
  Node& c = nodes_[2];
  std::ofstream(c.config, std::ios::app) << "[allow]\naddresses = [\"10.88.0.77/32\"]\n";
  StartNode(a);
  StartNode(c);
  StopNode(c);
  constexpr int kBulk = 5'000;
  const auto bulk = pg_.Sql(
      "BEGIN; UPDATE mxward_decision_counter SET last = last + " + std::to_string(kBulk) +
          "; INSERT INTO mxward_decisions (seq, kind, scope, expires_at, node, origin_action_id) "
          "SELECT k.last - " +
          std::to_string(kBulk) +
          " + g, 'ban', '10.88.' || (g >> 8) || '.' || (g & 255), now() + interval '2 hours', "
          "'peer', g FROM generate_series(1, " +
          std::to_string(kBulk) +
          ") g, mxward_decision_counter k; SELECT pg_notify('mxward_decisions', last::text) "
          "FROM mxward_decision_counter; COMMIT;",
      "mxward");
  ASSERT_EQ(bulk.exit_code, 0) << bulk.err;
  // Real decisions of node A: a ban and its removal, and a ban of the web ports.
  ASSERT_EQ(Cli(a, {"bans", "add", "198.51.100.7", "--for", "1h"}).exit_code, 0);
  ASSERT_TRUE(
      a.process->WaitFor([&] { return LogRows("scope = '198.51.100.7'") != ""; }, kPropagation));
  ASSERT_EQ(Cli(a, {"bans", "remove", "198.51.100.7"}).exit_code, 0);
  ASSERT_EQ(Cli(a, {"bans", "add", "198.51.100.8", "--for", "1h", "--ports", "web"}).exit_code, 0);
  ASSERT_TRUE(a.process->WaitFor(
      [&] {
        return LogRows("scope IN ('198.51.100.7', '198.51.100.8')") ==
               "ban 198.51.100.7 a\nunban 198.51.100.7 a\nban 198.51.100.8 a";
      },
      kPropagation))
      << LogRows("scope IN ('198.51.100.7', '198.51.100.8')");

  StartNode(c);
  // Every bulk ban but the allowlisted one in C's kernel and its `bans` table, through a few
  // cluster_batch actions (one per read batch of 2,000), all done, and no outbox row per decision.
  EXPECT_TRUE(c.process->WaitFor([&] { return KernelCount(c, "10.88.") == kBulk - 1; },
                                 std::chrono::seconds(120)))
      << KernelCount(c, "10.88.") << "\n"
      << c.process->Log();
  EXPECT_TRUE(c.process->WaitFor(
      [&] {
        return StoreCount(c,
                          "SELECT count(*) FROM actions WHERE type = 'cluster_batch' AND "
                          "status = 'pending'") == 0;
      },
      std::chrono::seconds(60)));
  EXPECT_EQ(StoreCount(c, "SELECT count(*) FROM bans WHERE prefix LIKE '10.88.%'"), kBulk - 1);
  EXPECT_EQ(StoreCount(c,
                       "SELECT count(*) FROM bans WHERE prefix LIKE '10.88.%' AND "
                       "origin_node = 'peer' AND decision_uuid IS NOT NULL"),
            kBulk - 1);
  EXPECT_EQ(StoreCount(c,
                       "SELECT count(*) FROM actions WHERE type = 'ban' AND "
                       "json_extract(params, '$.address') LIKE '10.88.%'"),
            0);
  const std::int64_t batches =
      StoreCount(c, "SELECT count(*) FROM actions WHERE type = 'cluster_batch'");
  EXPECT_GE(batches, 3);
  EXPECT_LE(batches, 5);
  EXPECT_EQ(StoreCount(c, "SELECT count(*) FROM cluster_batch_ops"), 0);
  EXPECT_FALSE(InKernel(c, "10.88.0.77"));
  // The allowlisted one: refused, with the reason, in its batch's record.
  EXPECT_EQ(StoreCount(c,
                       "SELECT count(*) FROM actions a, json_each(a.params, '$.refused') r "
                       "WHERE a.type = 'cluster_batch' AND json_extract(r.value, '$.scope') = "
                       "'10.88.0.77' AND json_extract(r.value, '$.reason') LIKE "
                       "'%is allowlisted%'"),
            1);
  // The removal came after the ban: applied in that order, the address is not banned.
  EXPECT_EQ(StoreCount(c,
                       "SELECT count(*) FROM cluster_applied WHERE scope = '198.51.100.7' AND "
                       "outcome = 'unban'"),
            1);
  EXPECT_FALSE(InKernel(c, "198.51.100.7"));
  EXPECT_EQ(StoreCount(c, "SELECT count(*) FROM bans WHERE prefix = '198.51.100.7'"), 0);
  // The web-scoped ban is in the web set, not the mail set.
  EXPECT_TRUE(c.process->WaitFor([&] { return InKernel(c, "198.51.100.8", "banned_v4_web"); },
                                 kPropagation))
      << c.process->Log();
  EXPECT_FALSE(InKernel(c, "198.51.100.8"));
  // Each decision applied once.
  EXPECT_EQ(BanActions(c, "10.88.1.1"), 1);
  EXPECT_EQ(BanActions(c, "198.51.100.8"), 1);
}

TEST_F(ClusterPostgresTest, StatusShowsTheNodesAndHowFarEachHasRead) {
  for (Node& n : nodes_) {
    std::ifstream in(n.config);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string anchor = "retry_max = \"2s\"\n";
    text.replace(text.find(anchor), anchor.size(), anchor + "safety_tick = \"1s\"\n");
    std::ofstream(n.config) << text;
    StartNode(n);
  }
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Attack(a, "203.0.113.77", 25);
  ASSERT_TRUE(b.process->WaitFor([&] { return InKernel(b, "203.0.113.77"); }, kPropagation))
      << b.process->Log();
  // B's view: the three nodes, each having read the whole log (a's ban) by its heartbeat.
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
        return cluster.value("head", 0) >= 1;
      },
      kPropagation))
      << cluster.dump();
  EXPECT_EQ(cluster.value("node", ""), "b");
  EXPECT_EQ(cluster.value("role", ""), "full");
  EXPECT_TRUE(cluster.value("connected", false));
  EXPECT_EQ(cluster.value("lag", -1), 0);
  EXPECT_EQ(cluster["nodes"][0].value("node", ""), "a");
  EXPECT_EQ(cluster["nodes"][2].value("node", ""), "c");
  const auto text = Cli(b, {"status"});
  EXPECT_NE(text.out.find("Cluster: node b (full), connected"), std::string::npos) << text.out;

  // C stops: B's view keeps C's last heartbeat, which falls behind the log's head.
  StopNode(nodes_[2]);
  Attack(a, "203.0.113.78", 25);
  EXPECT_TRUE(b.process->WaitFor(
      [&] {
        const auto r = Cli(b, {"status", "--json"});
        cluster = nlohmann::json::parse(r.out, nullptr, false).value("cluster", nlohmann::json());
        return cluster.is_object() && cluster.contains("nodes") && cluster["nodes"].size() == 3 &&
               cluster["nodes"][2].value("lag", 0) >= 1 && cluster["nodes"][0].value("lag", 1) == 0;
      },
      kPropagation))
      << cluster.dump();
}

// Pruning against the real database: what ended more than log_retention ago goes; what a live
// node has not read yet, a permanent ban and a ban still running stay.
TEST_F(ClusterPostgresTest, PruningDeletesOnlyWhatEndedLongAgoAndEveryLiveNodeHasRead) {
  const std::string conninfo = "host=" + pg_.socket_dir() + " port=" + std::to_string(pg_.port()) +
                               " dbname=mxward user=mxward";
  PostgresDecisionLog a(conninfo, "cluster-secret", "a");
  PostgresDecisionLog b(conninfo, "cluster-secret", "b");
  ASSERT_OK(a.Connect());
  ASSERT_OK(b.Connect());
  std::int64_t action = 0;
  auto publish = [&](const std::string& scope, std::int64_t duration_s, bool unban = false) {
    DecisionToPublish d;
    d.scope = scope;
    d.duration_s = duration_s;
    d.kind = unban ? "unban" : "ban";
    d.origin_action_id = ++action;
    auto seq = a.Publish({d});
    EXPECT_OK(seq);
    return seq.ok() ? *seq : -1;
  };
  publish("192.0.2.1", 60);       // 1: expired 8 days ago
  publish("192.0.2.2", 0);        // 2: permanent, lifted 8 days ago by 3
  publish("192.0.2.2", 0, true);  // 3
  publish("192.0.2.3", 0);        // 4: permanent, never lifted
  const std::int64_t read_by_both = publish("192.0.2.4", 86400 * 30);  // 5: still running
  ASSERT_OK(a.Heartbeat(read_by_both, "full", true));
  ASSERT_OK(b.Heartbeat(read_by_both, "full", true));
  publish("192.0.2.5", 60);  // 6: expired 8 days ago, but b has not read it
  ASSERT_OK(a.Heartbeat(6, "full", false));
  auto age = [&](const std::string& set, const std::string& where) {
    ASSERT_EQ(pg_.Sql("UPDATE mxward_decisions SET " + set + " WHERE " + where, "mxward").exit_code,
              0);
  };
  age("created_at = now() - interval '9 days', expires_at = now() - interval '8 days'",
      "seq IN (1, 6)");
  age("created_at = now() - interval '9 days'", "seq IN (2, 4)");
  age("created_at = now() - interval '8 days'", "seq = 3");

  auto pruned = a.Prune(7 * 86400);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 3);  // 1, 2, then 3 (no ban of its scope left)
  EXPECT_EQ(LogRows("true"), "ban 192.0.2.3 a\nban 192.0.2.4 a\nban 192.0.2.5 a");

  // b not seen for longer than the retention: it no longer holds 6 back.
  ASSERT_EQ(pg_.Sql("UPDATE mxward_nodes SET last_seen = now() - interval '8 days' "
                    "WHERE node = 'b'",
                    "mxward")
                .exit_code,
            0);
  pruned = a.Prune(7 * 86400);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 1);
  EXPECT_EQ(LogRows("true"), "ban 192.0.2.3 a\nban 192.0.2.4 a");
  auto view = a.ReadView();
  ASSERT_OK(view);
  EXPECT_EQ(view->head, 6);
  EXPECT_EQ(view->rows, 2);
  ASSERT_EQ(view->nodes.size(), 2u);
  EXPECT_EQ(view->nodes[0].node, "a");
  EXPECT_EQ(view->nodes[0].cursor, 6);

  // Allowlist entries: one that expired long ago goes, with the removal of one lifted long ago;
  // a current one stays.
  DecisionToPublish allow;
  allow.kind = "allow";
  allow.scope = "198.51.100.0/24";
  allow.duration_s = 60;
  allow.origin_action_id = -2;
  ASSERT_OK(a.Publish({allow}));  // 7
  allow.scope = "198.51.100.7";
  allow.origin_action_id = -4;
  ASSERT_OK(a.Publish({allow}));  // 8
  allow.kind = "unallow";
  allow.origin_action_id = -5;
  ASSERT_OK(a.Publish({allow}));  // 9
  allow.kind = "allow";
  allow.scope = "198.51.100.8";
  allow.duration_s = 0;
  allow.origin_action_id = -6;
  ASSERT_OK(a.Publish({allow}));  // 10
  ASSERT_OK(a.Heartbeat(10, "full", false));
  age("created_at = now() - interval '9 days', expires_at = now() - interval '8 days'",
      "seq IN (7, 8, 9, 10)");
  age("expires_at = NULL", "seq = 10");
  pruned = a.Prune(7 * 86400);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 3);  // 7 expired, 8 removed by 9, then 9
  EXPECT_EQ(LogRows("true"), "ban 192.0.2.3 a\nban 192.0.2.4 a\nallow 198.51.100.8 a");
}

TEST_F(ClusterPostgresTest, RuntimeAllowlistEntriesReachEveryNode) {
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

// A reset (schema v6, MariaDB v3) is a window event of its own kind: written in a batch with
// counts, read back by another node as a reset, at its time.
TEST_F(ClusterPostgresTest, WindowResetsTravelAsTheirKind) {
  const std::string conninfo = "host=" + pg_.socket_dir() + " port=" + std::to_string(pg_.port()) +
                               " dbname=mxward user=mxward";
  PostgresDecisionLog a(conninfo, "cluster-secret", "a");
  PostgresDecisionLog b(conninfo, "cluster-secret", "b");
  ASSERT_OK(a.Connect());
  ASSERT_OK(b.Connect());
  std::vector<WindowEvent> batch(2);
  batch[0] = {"shared-sasl", "203.0.113.5", 1'800'000'000'000'000, 1};
  batch[1] = {"shared-sasl", "203.0.113.5", 1'800'000'002'000'000, 1, WindowEventKind::kReset};
  auto written = a.PublishWindowEvents(batch, 2);
  ASSERT_OK(written);
  EXPECT_EQ(*written, 2);
  auto got = b.ReadWindowEventsAfter(0, 3600, 100, false);
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].event.kind, WindowEventKind::kCount);
  EXPECT_EQ((*got)[1].event.kind, WindowEventKind::kReset);
  EXPECT_EQ((*got)[1].event.time_us, 1'800'000'002'000'000);
  EXPECT_EQ((*got)[1].event.key, "203.0.113.5");
}

// A login success on one node resets the shared window on every node (cluster_nodes.h,
// CheckResetOnOneNodeResetsEveryNodesWindow); the reset is one typed row of the log.
TEST_F(ClusterPostgresTest, ResetOnOneNodeResetsEveryNodesWindow) {
  CheckResetOnOneNodeResetsEveryNodesWindow(kPropagation);
  EXPECT_EQ(pg_.Sql("SELECT node || ' ' || kind || ' ' || key FROM mxward_window_events WHERE kind "
                    "= 'reset'",
                    "mxward")
                .out,
            "b reset 198.51.100.62\n");
}

// Issue 18: a claim still waiting when `serve` stops is settled before it goes. Node a alone:
// the test holds a lock on the key's row of mxward_window_claims, so a's claim for 20 failures
// waits in the database; a is told to stop while it waits; the lock is let go once a says it is
// settling the claim at the stop. a opens the incident before it exits (before: the claim won after
// the engine's loop had stopped, its incident was dropped, and the claim row kept every other node
// from opening one: no incident anywhere). After a restart (which reads its 20 events back and
// claims again: held by a itself) and b's start (which folds them and claims: held by a),
// there is still exactly one incident in the cluster, a's, and its ban reaches b.
TEST_F(ClusterPostgresTest, ClaimWaitingAtStopIsSettledAndOpenedOnce) {
  UseSharedRules();
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  ResumeInputAcrossRestarts(a);
  StartNode(a);
  ASSERT_TRUE(a.process->WaitForLog("connected to the decision log", kPropagation))
      << a.process->Log();
  const std::string conninfo = "host=" + pg_.socket_dir() + " port=" + std::to_string(pg_.port()) +
                               " dbname=mxward user=mxward password=cluster-secret";
  PGconn* blocker = PQconnectdb(conninfo.c_str());
  ASSERT_EQ(PQstatus(blocker), CONNECTION_OK) << PQerrorMessage(blocker);
  const auto exec = [&](const char* sql) {
    PGresult* r = PQexec(blocker, sql);
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
  };
  // A claim of the key that ended (a's claim takes it over), locked by the test's transaction:
  // a's claim of it waits. (The row, not the table: a's hourly pruning, which runs at its
  // start, deletes only claims that ended long ago and does not wait for this one.)
  const std::string addr = "198.51.100.63";
  ASSERT_EQ(pg_.Sql("INSERT INTO mxward_window_claims (playbook, key, node, until) VALUES "
                    "('shared-sasl', '" +
                        addr + "', 'z', now() - interval '1 second')",
                    "mxward")
                .exit_code,
            0);
  ASSERT_TRUE(exec("BEGIN"));
  PGresult* locked =
      PQexec(blocker,
             ("SELECT 1 FROM mxward_window_claims WHERE key = '" + addr + "' FOR UPDATE").c_str());
  ASSERT_EQ(PQresultStatus(locked), PGRES_TUPLES_OK) << PQerrorMessage(blocker);
  PQclear(locked);
  Attack(a, addr, 20);
  // a's claim waits for the lock.
  ASSERT_TRUE(Eventually(
      [&] {
        return pg_.Sql(
                      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND query LIKE '%INSERT INTO mxward_window_claims%' AND usename = 'mxward'",
                      "mxward")
                   .out == "1\n";
      },
      kPropagation));
  ASSERT_TRUE(a.process->Signal(SIGTERM));
  EXPECT_TRUE(
      a.process->WaitForLog("settling 1 claim(s) of shared windows before stopping", kPropagation))
      << a.process->Log();
  ASSERT_TRUE(exec("COMMIT"));
  PQfinish(blocker);
  EXPECT_TRUE(Eventually([&] { return !a.process->running(); }, kPropagation));
  StopNode(a);  // reaped already: its exit status
  const std::string shared = "SELECT count(*) FROM incidents WHERE playbook = 'shared-sasl'";
  EXPECT_EQ(StoreCount(a, shared), 1);
  EXPECT_EQ(pg_.Sql("SELECT node FROM mxward_window_claims", "mxward").out, "a\n");

  StartNode(a);
  EXPECT_TRUE(a.process->WaitForLog("incident already opened by node a", kPropagation))
      << a.process->Log();
  StartNode(b);
  EXPECT_TRUE(b.process->WaitForLog("incident already opened by node a", kPropagation))
      << b.process->Log();
  EXPECT_TRUE(b.process->WaitFor([&] { return InKernel(b, addr); }, kPropagation))
      << b.process->Log();
  EXPECT_EQ(StoreCount(a, shared), 1);
  EXPECT_EQ(StoreCount(b, shared), 0);
}

// A node restarted mid-attack gets its own share of the window back from the log, once
// (cluster_nodes.h, CheckRestartedNodeReadsItsOwnEventsBackOnce).
TEST_F(ClusterPostgresTest, RestartedNodeReadsItsOwnWindowEventsBackOnce) {
  CheckRestartedNodeReadsItsOwnEventsBackOnce(kPropagation);
}

// Shared windows (docs/cluster.md "Shared windows"): a slow brute force spread evenly over the
// three nodes, 8 failures on each, below every node's threshold of 20 but 24 in the cluster, is
// caught by the shared playbook once: one incident in the three stores, the claim held by the
// node that opened it, and the address in every node's kernel set through the decision log. The
// unshared postfix-sasl playbook on the same nodes sees the same lines and counts per node: it
// opens nothing (the control).
TEST_F(ClusterPostgresTest, SlowBruteForceSpreadOverNodesIsCaughtOnceBySharedWindows) {
  UseSharedRules(kExecAction);
  const std::string calls = UseExecCounter();
  for (Node& n : nodes_) StartNode(n);
  const std::string addr = "203.0.113.88";
  const std::string opener = CheckSlowBruteForceCaughtOnce(addr, calls, kPropagation);
  ASSERT_FALSE(opener.empty());
  const std::string claims =
      pg_.Sql("SELECT playbook || ' ' || key || ' ' || node FROM mxward_window_claims", "mxward")
          .out;
  EXPECT_EQ(claims, "shared-sasl " + addr + " " + opener + "\n");
  // One ban in the log, by the node that opened the incident.
  EXPECT_EQ(LogRows("scope = '" + addr + "'"), "ban " + addr + " " + opener);
  // Every node published what it counted, at most its own 8 (a node stops counting, and
  // publishing, once its trigger fired and its cooldown started), nothing folded came back, and
  // the cluster saw at least the threshold.
  const std::string rows =
      pg_.Sql(
             "SELECT count(*) || ' ' || (sum(n) >= 20) || ' ' || bool_and(n <= 8) FROM (SELECT "
             "count(*) AS n FROM mxward_window_events WHERE key = '" +
                 addr + "' GROUP BY node) s",
             "mxward")
          .out;
  EXPECT_EQ(rows, "3 true true\n");
}

// The window-event table against the real database: a batch is one statement whose keys
// travel as one text[] parameter, so a key a client chose ("we\"ird\\,{user}" as a SASL user
// name) must stay one element and come back byte for byte, or an attacker could make every batch
// fail. Other nodes read only rows after their cursor and never their own; the first claim of a
// (playbook, key) wins and the second, by another node within the lease, does not.
TEST_F(ClusterPostgresTest, WindowEventsAndClaimsAgainstTheRealDatabase) {
  const std::string conninfo = "host=" + pg_.socket_dir() + " port=" + std::to_string(pg_.port()) +
                               " dbname=mxward user=mxward";
  PostgresDecisionLog a(conninfo, "cluster-secret", "a");
  PostgresDecisionLog b(conninfo, "cluster-secret", "b");
  ASSERT_OK(a.Connect());
  ASSERT_OK(b.Connect());
  const std::string odd = "we\"ird\\,{user} \xc3\xa9";
  std::vector<WindowEvent> batch(3);
  batch[0] = {"shared-sasl", "203.0.113.5", 1'800'000'000'000'000, 1};
  batch[1] = {"shared-imap", odd, 1'800'000'001'000'000, 3};
  batch[2] = {"unused slot", "not published", 0, 1};
  auto written = a.PublishWindowEvents(batch, 2);
  ASSERT_OK(written);
  EXPECT_EQ(*written, 2);
  auto mine = a.ReadWindowEventsAfter(0, 3600, 100, false);
  ASSERT_OK(mine);
  EXPECT_TRUE(mine->empty());  // a's own rows are not a's to fold
  // ... except at start, when a node reads its own rows back (its windows were lost with the
  // process).
  mine = a.ReadWindowEventsAfter(0, 3600, 100, true);
  ASSERT_OK(mine);
  ASSERT_EQ(mine->size(), 2u);
  EXPECT_EQ((*mine)[0].node, "a");
  EXPECT_EQ((*mine)[1].event.weight, 3u);
  EXPECT_EQ((*mine)[0].event.kind, WindowEventKind::kCount);
  auto got = b.ReadWindowEventsAfter(0, 3600, 100, false);
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].node, "a");
  EXPECT_EQ((*got)[0].event.playbook, "shared-sasl");
  EXPECT_EQ((*got)[0].event.key, "203.0.113.5");
  EXPECT_EQ((*got)[0].event.time_us, 1'800'000'000'000'000);
  EXPECT_EQ((*got)[1].event.key, odd);
  EXPECT_EQ((*got)[1].event.weight, 3u);
  EXPECT_GT((*got)[1].id, (*got)[0].id);
  auto after = b.ReadWindowEventsAfter((*got)[1].id, 3600, 100, false);
  ASSERT_OK(after);
  EXPECT_TRUE(after->empty());

  // A key that is not UTF-8 (a user name of raw bytes) would fail the whole statement: it is
  // left out, the others of its batch are written, and its claim is refused without asking.
  batch[0].key = "bad\xff\xfe";
  batch[1].key = "203.0.113.6";
  written = a.PublishWindowEvents(batch, 2);
  ASSERT_OK(written);
  EXPECT_EQ(*written, 1);
  EXPECT_TRUE(a.connected());
  got = b.ReadWindowEventsAfter(0, 3600, 100, false);
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[2].event.key, "203.0.113.6");
  EXPECT_EQ(a.ClaimWindow("p", "bad\xff", 60).status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(a.connected());
  EXPECT_FALSE(FitsPostgresText(std::string("nul\0inside", 10)));
  EXPECT_FALSE(FitsPostgresText("\xc0\xaf"));  // an overlong '/'
  EXPECT_TRUE(FitsPostgresText("caf\xc3\xa9"));

  auto first = b.ClaimWindow("shared-sasl", "203.0.113.5", 3600);
  ASSERT_OK(first);
  EXPECT_TRUE(first->won);
  auto second = a.ClaimWindow("shared-sasl", "203.0.113.5", 3600);
  ASSERT_OK(second);
  EXPECT_FALSE(second->won);
  EXPECT_EQ(second->holder, "b");
  auto other_key = a.ClaimWindow("shared-sasl", odd, 3600);
  ASSERT_OK(other_key);
  EXPECT_TRUE(other_key->won);
  // Once b's lease ended, a new attack on the key is a's to open.
  ASSERT_EQ(pg_.Sql("UPDATE mxward_window_claims SET until = now() - interval '1 second' "
                    "WHERE node = 'b'",
                    "mxward")
                .exit_code,
            0);
  auto later = a.ClaimWindow("shared-sasl", "203.0.113.5", 3600);
  ASSERT_OK(later);
  EXPECT_TRUE(later->won);
}

// `mxward check` says where `shared = true` is written when there is no [cluster] to share with
// (a warning: the playbook then counts this node's events, as without the key), and says
// nothing with one.
TEST_F(ClusterPostgresTest, CheckWarnsAboutSharedWithoutCluster) {
  UseSharedRules();
  const std::string alone = dir_.file("alone.toml");
  std::ofstream(alone) << "[store]\npath = \"" << dir_.file("alone.db") << "\"\n";
  auto r = RunCommand({kBinary, "--config", alone, "--rules", rules_, "check"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("warning: " + rules_ +
                       "/shared-sasl.toml:4:10: 'shared = true' without [cluster] in mxward.toml: "
                       "playbook shared-sasl counts this node's events only"),
            std::string::npos)
      << r.err;
  r = RunCommand({kBinary, "--config", nodes_[0].config, "--rules", rules_, "check"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("without [cluster]"), std::string::npos) << r.err;
}

// With PostgreSQL down a shared playbook decides on this node's count alone (its claim cannot be
// asked): a brute force on A is banned there at once, and reaches B through the decision log
// once the database is back.
TEST_F(ClusterPostgresTest, SharedWindowWithPostgresDownDecidesAlone) {
  UseSharedRules();
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  StartNode(a);
  StartNode(b);
  pg_.Stop();
  const std::string addr = "198.51.100.77";
  Attack(a, addr, 20);
  EXPECT_TRUE(a.process->WaitFor([&] { return InKernel(a, addr); }, kPropagation))
      << a.process->Log();
  EXPECT_NE(a.process->Log().find("cannot claim the shared window"), std::string::npos)
      << a.process->Log();
  EXPECT_EQ(StoreCount(a, "SELECT count(*) FROM incidents WHERE playbook = 'shared-sasl'"), 1);
  ASSERT_EQ(pg_.Start(), "");
  EXPECT_TRUE(b.process->WaitFor([&] { return InKernel(b, addr); }, kPropagation))
      << b.process->Log();
  EXPECT_EQ(StoreCount(b, "SELECT count(*) FROM incidents WHERE playbook = 'shared-sasl'"), 0);
}

// Cluster-wide incidents (docs/cluster.md "Cluster-wide incidents"): a brute force on A opens an
// incident there; B lists it with A's name and shows its evidence lines and action outcomes from
// the database; `resolve --revert` on C is applied by A to its own store (the owner's store stays
// the truth), and A's undo, published as a ban removal, lifts the ban in all three kernel sets.
// The incident's non-ban action (an exec) ran once in the cluster, on A: B and C received the
// ban, never the incident's actions.
TEST_F(ClusterPostgresTest, IncidentOnOneNodeIsListedShownAndResolvedFromAnyNode) {
  rules_ = testing::WriteSaslBanRules(dir_.file("rules-exec"), kExecAction);
  const std::string calls = UseExecCounter();
  for (Node& n : nodes_) StartNode(n);
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  Node& c = nodes_[2];
  const std::string addr = "203.0.113.61";
  Attack(a, addr, 25);
  for (Node* n : {&a, &b, &c}) {
    EXPECT_TRUE(n->process->WaitFor([&] { return InKernel(*n, addr); }, kPropagation))
        << n->name << "\n"
        << n->process->Log();
  }

  // B lists A's incident, named by A, with its actions' outcomes once they settled there.
  nlohmann::json published;
  ASSERT_TRUE(b.process->WaitFor(
      [&] {
        published = PublishedIncident(b, "a", addr);
        return Settled(published) && published["actions"].size() == 2;
      },
      kPropagation))
      << published.dump() << a.process->Log();
  EXPECT_EQ(published.value("node", ""), "a");
  EXPECT_EQ(published.value("playbook", ""), "postfix-sasl");
  EXPECT_EQ(published.value("status", ""), "open");
  EXPECT_EQ(published.value("count", 0), 20);
  const std::int64_t id = published.value("id", std::int64_t{0});
  const std::string ref = "a:" + std::to_string(id);
  const std::string where_id = " WHERE incident_id = " + std::to_string(id);
  EXPECT_EQ(published.value("ref", ""), ref);
  EXPECT_EQ(StoreCount(a, "SELECT count(*) FROM incidents WHERE id = " + std::to_string(id) +
                              " AND key = '" + addr + "'"),
            1);
  std::string outcomes;
  for (const auto& act : published["actions"]) {
    outcomes += act.value("type", "") + ":" + act.value("status", "") + " ";
  }
  EXPECT_EQ(outcomes, "ban:done exec:done ");
  const auto table = Cli(b, {"incidents", "list", "--cluster"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("NODE", 0), 0u) << table.out;
  std::istringstream rows(table.out);
  bool row_found = false;
  for (std::string row; std::getline(rows, row);) {
    if (row.find(addr) != std::string::npos) {
      row_found =
          row.rfind("a ", 0) == 0 && row.find(" " + std::to_string(id) + " ") != std::string::npos;
    }
  }
  EXPECT_TRUE(row_found) << table.out;

  // `show` on B: A's evidence lines (the lines A read), from the database.
  const auto shown = Cli(b, {"incidents", "show", ref});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("Incident " + ref + "  postfix-sasl"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("node:     a (published"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("mx-a postfix/submission/smtpd[4101]: warning: unknown[" + addr +
                           "]: SASL LOGIN authentication failed"),
            std::string::npos)
      << shown.out;
  const auto shown_json = Cli(b, {"incidents", "show", ref, "--json"});
  ASSERT_EQ(shown_json.exit_code, 0) << shown_json.err;
  const auto detail = nlohmann::json::parse(shown_json.out, nullptr, false);
  ASSERT_TRUE(detail.is_object()) << shown_json.out;
  EXPECT_EQ(static_cast<std::int64_t>(detail["evidence"].size()),
            StoreCount(a, "SELECT count(*) FROM evidence" + where_id));
  EXPECT_GE(detail["evidence"].size(), 1u);
  EXPECT_FALSE(detail.contains("in_effect"));  // A's kernel is not B's to tell

  // The exec ran once in the cluster, on A; B and C never held the incident's actions.
  EXPECT_TRUE(Eventually([&] { return !ReadFile(calls).empty(); }, kPropagation));
  EXPECT_EQ(ReadFile(calls), "a " + std::to_string(id) + " 0\n");
  EXPECT_EQ(StoreCount(b, "SELECT count(*) FROM actions WHERE type = 'exec'"), 0);
  EXPECT_EQ(StoreCount(c, "SELECT count(*) FROM actions WHERE type = 'exec'"), 0);
  EXPECT_EQ(StoreCount(b, "SELECT count(*) FROM incidents"), 0);
  EXPECT_EQ(StoreCount(c, "SELECT count(*) FROM incidents"), 0);

  // Resolved with --revert on C: applied by A to its own store, the note saying who asked.
  const auto resolved =
      Cli(c, {"incidents", "resolve", ref, "--revert", "--note", "false positive"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.out << resolved.err;
  EXPECT_NE(resolved.out.find("incident " + ref + " resolved; "), std::string::npos)
      << resolved.out;
  EXPECT_EQ(StoreCount(a, "SELECT count(*) FROM incidents WHERE id = " + std::to_string(id) +
                              " AND status = 'resolved'"),
            1);
  EXPECT_EQ(StoreCount(a, "SELECT count(*) FROM notes" + where_id +
                              " AND kind = 'resolve' AND text LIKE 'false positive (from node c, "
                              "user %)'"),
            1);
  // A's undo lifts the ban on A, and travels as a removal: lifted on B and C.
  for (Node* n : {&a, &b, &c}) {
    EXPECT_TRUE(n->process->WaitFor([&] { return !InKernel(*n, addr); }, kPropagation))
        << n->name << "\n"
        << n->process->Log();
  }
  EXPECT_TRUE(Eventually(
      [&] {
        return LogRows("scope = '" + addr + "' AND kind = 'unban'") == "unban " + addr + " a";
      },
      kPropagation))
      << LogRows("true");
  // The published copy follows A's store: resolved, with the undo done.
  EXPECT_TRUE(b.process->WaitFor(
      [&] {
        published = PublishedIncident(b, "a", addr);
        if (published.value("status", "") != "resolved" || !Settled(published)) return false;
        for (const auto& act : published["actions"]) {
          if (act.value("type", "") == "ban" && act.value("revert", false) &&
              act.value("status", "") == "done") {
            return true;
          }
        }
        return false;
      },
      kPropagation))
      << published.dump();
  EXPECT_EQ(ClusterIncidents(b, {"--status", "open"}).size(), 0u);
  // Figures for docs/cluster.md (printed, not asserted): the row's size and how often A
  // published this one incident from its opening to its resolution and undo.
  const std::string row = pg_.Sql(
                                 "SELECT pg_column_size(i.*) || ' bytes with ' || "
                                 "jsonb_array_length(evidence) || ' evidence lines' FROM "
                                 "mxward_incidents i WHERE node = 'a'",
                                 "mxward")
                              .out;
  const auto a_status = nlohmann::json::parse(Cli(a, {"status", "--json"}).out, nullptr, false);
  std::printf("published incident row: %s", row.c_str());
  if (a_status.is_object() && a_status.contains("cluster")) {
    std::printf("publications by a for it: %s\n",
                a_status["cluster"].value("incidents", nlohmann::json()).dump().c_str());
  }

  // Refusals: an ack of a resolved incident (by its owner), a reference to nothing, a --cluster
  // without [cluster].
  const auto ack = Cli(b, {"incidents", "ack", ref});
  EXPECT_EQ(ack.exit_code, 1) << ack.out << ack.err;
  EXPECT_NE(ack.err.find("node a refused: incident " + std::to_string(id) + " is already resolved"),
            std::string::npos)
      << ack.err;
  const auto missing = Cli(b, {"incidents", "show", "a:999999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no incident a:999999 in the cluster"), std::string::npos)
      << missing.err;
  const std::string alone = dir_.file("alone.toml");
  std::ofstream(alone) << "[store]\npath = \"" << dir_.file("alone.db") << "\"\n";
  const auto no_cluster =
      RunCommand({kBinary, "--config", alone, "incidents", "list", "--cluster"});
  EXPECT_EQ(no_cluster.exit_code, 2);
  EXPECT_NE(no_cluster.err.find("no [cluster] section in " + alone), std::string::npos)
      << no_cluster.err;
}

// An incident A opens while PostgreSQL is down waits in A's store (status says how many) and is
// published once the database is back; `incidents list --cluster` meanwhile says the database
// cannot be reached.
TEST_F(ClusterPostgresTest, IncidentOpenedWhilePostgresIsDownIsPublishedWhenItIsBack) {
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  StartNode(a);
  StartNode(b);
  pg_.Stop();
  const std::string addr = "198.51.100.61";
  Attack(a, addr, 25);
  ASSERT_TRUE(a.process->WaitFor([&] { return InKernel(a, addr); }, kPropagation))
      << a.process->Log();
  auto incidents_status = [&](const Node& n) {
    const auto r = Cli(n, {"status", "--json"});
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_object() || !j.contains("cluster") || !j["cluster"].is_object()) {
      return nlohmann::json::object();
    }
    return j["cluster"].value("incidents", nlohmann::json::object());
  };
  nlohmann::json waiting;
  EXPECT_TRUE(a.process->WaitFor(
      [&] {
        waiting = incidents_status(a);
        return waiting.value("unpublished", 0) == 1;
      },
      kPropagation))
      << waiting.dump();
  EXPECT_EQ(waiting.value("published", -1), 0);
  const auto down = Cli(b, {"incidents", "list", "--cluster"});
  EXPECT_EQ(down.exit_code, 3);
  EXPECT_NE(down.err.find("cannot reach the cluster's database"), std::string::npos) << down.err;

  ASSERT_EQ(pg_.Start(), "");
  nlohmann::json published;
  EXPECT_TRUE(b.process->WaitFor(
      [&] {
        published = PublishedIncident(b, "a", addr);
        return Settled(published);
      },
      kPropagation))
      << published.dump() << a.process->Log();
  EXPECT_EQ(published["actions"][0].value("status", ""), "done");
  EXPECT_EQ(pg_.Sql("SELECT count(*) FROM mxward_incidents WHERE node = 'a'", "mxward").out, "1\n");
  EXPECT_TRUE(a.process->WaitFor(
      [&] {
        waiting = incidents_status(a);
        return waiting.value("unpublished", -1) == 0 && waiting.value("published", 0) >= 1;
      },
      kPropagation))
      << waiting.dump();

  // The owner down: an ack asked on B waits for it (exit 5, saying so) and is applied by A's
  // link when A is back; its published copy follows.
  const std::string ref = published.value("ref", "");
  const std::int64_t id = published.value("id", std::int64_t{0});
  StopNode(a);
  const auto asked = Cli(b, {"incidents", "ack", ref, "--note", "on it", "--wait", "1s"});
  EXPECT_EQ(asked.exit_code, 5) << asked.out << asked.err;
  EXPECT_NE(asked.out.find("it is applied when node a's link reads it"), std::string::npos)
      << asked.out;
  EXPECT_EQ(StoreCount(a, "SELECT count(*) FROM incidents WHERE status = 'acknowledged'"), 0);
  StartNode(a);
  EXPECT_TRUE(a.process->WaitFor(
      [&] {
        return StoreCount(a, "SELECT count(*) FROM incidents WHERE id = " + std::to_string(id) +
                                 " AND status = 'acknowledged'") == 1;
      },
      kPropagation))
      << a.process->Log();
  EXPECT_TRUE(b.process->WaitFor(
      [&] { return PublishedIncident(b, "a", addr).value("status", "") == "acknowledged"; },
      kPropagation));
  EXPECT_EQ(pg_.Sql("SELECT ok || ' ' || outcome FROM mxward_incident_requests", "mxward").out,
            "true acknowledged\n");
}

// The incident tables against the real database: text a client chose (not UTF-8, a NUL, quotes)
// is published readable, never failing the transaction; the list's filters; a request rings only
// its owner's doorbell, is pending for the owner alone and carries its outcome back; pruning
// takes resolved incidents and done requests older than the retention only.
TEST_F(ClusterPostgresTest, IncidentTablesAgainstTheRealDatabase) {
  const std::string conninfo = "host=" + pg_.socket_dir() + " port=" + std::to_string(pg_.port()) +
                               " dbname=mxward user=mxward";
  PostgresDecisionLog a(conninfo, "cluster-secret", "a");
  PostgresDecisionLog b(conninfo, "cluster-secret", "b");
  ASSERT_OK(a.Connect());
  ASSERT_OK(b.Connect());
  SharedIncident inc;
  inc.incident.id = 7;
  inc.incident.playbook = "dovecot-auth";
  inc.incident.key_kind = "sasl_user";
  inc.incident.key = "we\"ird'user\xff";
  inc.incident.first_seen = 1'800'000'000'000'000;
  inc.incident.last_seen = 1'800'000'060'000'000;
  inc.incident.count = 20;
  inc.incident.evidence = {
      {1'800'000'000'000'000, std::string("auth failed user=<x") + '\0' + "y> \xfe"},
      {1'800'000'001'000'000, "plain line"}};
  ActionRecord ban;
  ban.id = 3;
  ban.type = "ban";
  ban.status = ActionStatus::kDone;
  ban.params = {{"address", "192.0.2.9"}};
  inc.actions = {ban};
  SharedIncident other = inc;
  other.incident.id = 8;
  other.incident.key = "192.0.2.10";
  other.incident.status = IncidentStatus::kResolved;
  ASSERT_OK(a.PublishIncidents({inc, other}));
  ASSERT_OK(a.PublishIncidents({inc}));  // republished: still one row
  EXPECT_TRUE(a.connected());

  auto got = b.GetIncident("a", 7);
  ASSERT_OK(got);
  EXPECT_EQ(got->node, "a");
  EXPECT_FALSE(got->uuid.empty());
  EXPECT_EQ(got->incident.key, PostgresSafeText(inc.incident.key));
  ASSERT_EQ(got->incident.evidence.size(), 2u);
  EXPECT_EQ(got->incident.evidence[0].text, PostgresSafeText(inc.incident.evidence[0].text));
  EXPECT_EQ(got->incident.evidence[1].time, 1'800'000'001'000'000);
  ASSERT_EQ(got->actions.size(), 1u);
  EXPECT_EQ(got->actions[0].status, ActionStatus::kDone);
  EXPECT_EQ(got->actions[0].params.value("address", ""), "192.0.2.9");
  EXPECT_EQ(b.GetIncident("a", 9).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(b.GetIncident("b", 7).status().code(), Status::Code::kNotFound);

  SharedIncidentQuery q;
  auto all = b.ListIncidents(q);
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 2u);
  EXPECT_TRUE((*all)[0].incident.evidence.empty());  // the list leaves evidence out
  q.status = "resolved";
  auto resolved = b.ListIncidents(q);
  ASSERT_OK(resolved);
  ASSERT_EQ(resolved->size(), 1u);
  EXPECT_EQ(resolved->front().incident.id, 8);
  q = {};
  q.key = inc.incident.key;  // the key as the node holds it finds the published one
  auto by_key = b.ListIncidents(q);
  ASSERT_OK(by_key);
  ASSERT_EQ(by_key->size(), 1u);
  EXPECT_EQ(by_key->front().incident.id, 7);
  q = {};
  q.node = "b";
  auto none = b.ListIncidents(q);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());

  IncidentRequest r;
  r.node = "a";
  r.incident_id = 7;
  r.kind = "resolve";
  r.revert = true;
  r.note = "false positive";
  r.requested_user = "root";
  auto id = b.RequestIncidentChange(r);
  ASSERT_OK(id);
  EXPECT_TRUE(Eventually(
      [&] {
        auto rang = a.ConsumeNotifications();
        return rang.ok() && (*rang & DecisionLog::kRequestsRang) != 0;
      },
      kPropagation));
  auto rang_b = b.ConsumeNotifications();  // b heard the doorbell too, but it is not b's
  ASSERT_OK(rang_b);
  EXPECT_EQ(*rang_b & DecisionLog::kRequestsRang, 0);
  auto for_b = b.PendingIncidentRequests(10);
  ASSERT_OK(for_b);
  EXPECT_TRUE(for_b->empty());
  auto for_a = a.PendingIncidentRequests(10);
  ASSERT_OK(for_a);
  ASSERT_EQ(for_a->size(), 1u);
  EXPECT_EQ(for_a->front().id, *id);
  EXPECT_EQ(for_a->front().requested_by, "b");
  EXPECT_EQ(for_a->front().requested_user, "root");
  EXPECT_TRUE(for_a->front().revert);
  EXPECT_EQ(for_a->front().note, "false positive");
  auto before = b.ReadIncidentRequest(*id);
  ASSERT_OK(before);
  EXPECT_FALSE(before->done);
  ASSERT_OK(a.FinishIncidentRequest(*id, {true, "resolved; 1 undo action(s) queued"}));
  auto after = b.ReadIncidentRequest(*id);
  ASSERT_OK(after);
  EXPECT_TRUE(after->done);
  EXPECT_TRUE(after->ok);
  EXPECT_EQ(after->outcome, "resolved; 1 undo action(s) queued");
  for_a = a.PendingIncidentRequests(10);
  ASSERT_OK(for_a);
  EXPECT_TRUE(for_a->empty());

  // Pruning: nothing is old yet; then the resolved incident and the done request, aged past the
  // retention, go, and the open incident stays.
  auto pruned = a.PruneIncidents(7 * 86400);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 0);
  ASSERT_EQ(pg_.Sql("UPDATE mxward_incidents SET published_at = now() - interval '8 days'; "
                    "UPDATE mxward_incident_requests SET done_at = now() - interval '8 days'",
                    "mxward")
                .exit_code,
            0);
  pruned = a.PruneIncidents(7 * 86400);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 2);
  all = b.ListIncidents({});
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().incident.id, 7);
}

// Not a test: the figure docs/cluster.md gives for the volume of shared-window events. One node
// with the shared playbook reads a 10,000 lines/s attack for 10 s from 10,000 addresses (a
// botnet: each address fails once a second, below every threshold, so every line is counted and
// published); prints how many events reached the log, in how many statements, and how many the
// batch dropped. Run it with --gtest_also_run_disabled_tests --gtest_filter='*PublicationRate*'.
TEST_F(ClusterPostgresTest, DISABLED_SharedWindowPublicationRate) {
  UseSharedRules();
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  StartNode(a);
  StartNode(b);
  // CPU time (user + system, all threads) of a node's process so far, in seconds.
  const auto cpu = [](const Node& n) {
    std::ifstream in("/proc/" + std::to_string(n.process->pid()) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string f;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
      if (i == 14 || i == 15) ticks += std::atof(f.c_str());
    }
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  };
  const double a_cpu0 = cpu(a), b_cpu0 = cpu(b);
  constexpr int kPerSecond = 10'000;
  constexpr int kSeconds = 10;
  const auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < kSeconds; ++s) {
    for (int tenth = 0; tenth < 10; ++tenth) {
      {
        std::ofstream out(a.maillog, std::ios::app);
        const std::string stamp = testing::SyslogStampNow();
        for (int i = 0; i < kPerSecond / 10; ++i) {
          const int host = tenth * (kPerSecond / 10) + i;
          out << stamp << " mx-a postfix/submission/smtpd[4101]: warning: unknown[10.77."
              << (host >> 8) << "." << (host & 255)
              << "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
        }
      }
      // Pacing the writer (not synchronising with the daemon): the next tenth of a second.
      std::this_thread::sleep_until(start +
                                    std::chrono::milliseconds(1000 * s + 100 * (tenth + 1)));
    }
  }
  const std::int64_t lines = std::int64_t{kPerSecond} * kSeconds;
  const auto published = [&] {
    return std::atoll(
        pg_.Sql("SELECT count(*) FROM mxward_window_events WHERE node = 'a'", "mxward")
            .out.c_str());
  };
  std::int64_t last = -1;
  // Until the count stops moving: the daemon has read the file and the link written its batches.
  Eventually(
      [&] {
        const std::int64_t now = published();
        const bool settled = now == last && now > 0;
        last = now;
        return settled;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(1000));
  const std::string shape =
      pg_.Sql(
             "SELECT count(DISTINCT created_at) || ' statements, ' || "
             "round(extract(epoch FROM max(created_at) - min(created_at))::numeric, 1) || ' s' "
             "FROM mxward_window_events WHERE node = 'a'",
             "mxward")
          .out;
  const std::string size =
      pg_.Sql("SELECT pg_size_pretty(pg_total_relation_size('mxward_window_events'))", "mxward")
          .out;
  std::printf("shared windows: %lld lines in %d s -> %lld events published in %s", (long long)lines,
              kSeconds, (long long)last, shape.c_str());
  std::printf("table with indexes: %s", size.c_str());
  const std::string log = a.process->Log();
  std::printf("batch full (drops said): %s\n",
              log.find("shared window batch is full") != std::string::npos ? "yes" : "no");
  // Node b reads and folds what a published: until its status says it received them all.
  std::int64_t received = 0;
  Eventually(
      [&] {
        const auto r = Cli(b, {"status", "--json"});
        received = nlohmann::json::parse(r.out, nullptr, false)["cluster"]["window_events"].value(
            "received", std::int64_t{0});
        return received >= last;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(200));
  std::printf(
      "node b received %lld; CPU during the run: a %.2f s (reading, counting, "
      "publishing), b %.2f s (reading the log, folding)\n",
      (long long)received, cpu(a) - a_cpu0, cpu(b) - b_cpu0);
}

// Not a test: the latency of a shared-window incident with PostgreSQL's doorbells, beside
// cluster_mariadb_test's polled figure (ClusterNodesTest::MeasureSharedIncidentLatency). Run it
// with --gtest_also_run_disabled_tests --gtest_filter='*IncidentLatency*'.
TEST_F(ClusterPostgresTest, DISABLED_SharedWindowIncidentLatency) {
  MeasureSharedIncidentLatency("PostgreSQL, doorbells", kPropagation);
}

}  // namespace
}  // namespace mxward
