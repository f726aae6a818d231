// The cluster link's local half (issue 18): the [cluster] reader, and the store's bookkeeping of
// what was published and what was queued (engine/cluster/, IncidentStore's cluster section).
// The PostgreSQL half runs against real servers in tests/integration/cluster_postgres_test.cpp.
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "engine/cluster/cluster_options.h"
#include "mxward/incident_store.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

class ClusterOptionsTest : public ::testing::Test {
 protected:
  Result<ClusterOptions> Read(const std::string& toml) {
    std::ofstream(dir_.file("mxward.toml")) << toml;
    diags_.clear();
    auto config = Config::Load(dir_.file("mxward.toml"), &diags_);
    if (!config.ok()) return config.status();
    return ClusterOptions::FromConfig(*config, &diags_);
  }
  std::string Diagnostics() const {
    std::string out;
    for (const auto& d : diags_) out += d.ToString() + "\n";
    return out;
  }
  TempDir dir_;
  std::vector<Diagnostic> diags_;
};

TEST_F(ClusterOptionsTest, AbsentSectionLeavesTheNodeAlone) {
  auto o = Read("[store]\npath = \"/tmp/x.db\"\n");
  ASSERT_OK(o);
  EXPECT_FALSE(o->enabled);
}

TEST_F(ClusterOptionsTest, ReadsEverySetting) {
  const std::string secret = dir_.file("pg.secret");
  std::ofstream(secret) << "s3cret\n";
  chmod(secret.c_str(), 0600);
  auto o = Read(
      "[cluster]\nnode = \"mx1.example.org\"\ndsn = \"host=/run/pg dbname=mxward\"\n"
      "password_file = \"" +
      secret + "\"\nrole = \"enforcer\"\nsafety_tick = \"10s\"\n");
  ASSERT_OK(o) << Diagnostics();
  EXPECT_TRUE(o->enabled);
  EXPECT_EQ(o->node, "mx1.example.org");
  EXPECT_EQ(o->dsn, "host=/run/pg dbname=mxward");
  EXPECT_EQ(o->password, "s3cret");
  EXPECT_EQ(o->role, ClusterRole::kEnforcer);
  EXPECT_EQ(o->safety_tick_ms, 10'000);
}

TEST_F(ClusterOptionsTest, ReadsTheMariadbEngine) {
  const std::string secret = dir_.file("db.secret");
  std::ofstream(secret) << "s3cret\n";
  chmod(secret.c_str(), 0600);
  auto o = Read(
      "[cluster]\nnode = \"mx1\"\nengine = \"mariadb\"\nhost = \"db1.example.org\"\n"
      "port = 3307\nuser = \"mxward\"\ndatabase = \"mxward\"\npassword_file = \"" +
      secret + "\"\npoll_interval = \"100ms\"\n");
  ASSERT_OK(o) << Diagnostics();
  EXPECT_EQ(o->engine, ClusterEngine::kMariadb);
  EXPECT_EQ(o->host, "db1.example.org");
  EXPECT_EQ(o->port, 3307);
  EXPECT_EQ(o->socket, "");
  EXPECT_EQ(o->user, "mxward");
  EXPECT_EQ(o->database, "mxward");
  EXPECT_EQ(o->password, "s3cret");
  EXPECT_EQ(o->poll_interval_ms, 100);

  // A socket instead of host and port; the default poll interval.
  o = Read(
      "[cluster]\nnode = \"mx1\"\nengine = \"mariadb\"\nsocket = \"/run/mysqld/mysqld.sock\"\n"
      "user = \"mxward\"\ndatabase = \"mxward\"\n");
  ASSERT_OK(o) << Diagnostics();
  EXPECT_EQ(o->socket, "/run/mysqld/mysqld.sock");
  EXPECT_EQ(o->poll_interval_ms, 250);
  // Without engine: PostgreSQL, as before.
  o = Read("[cluster]\nnode = \"mx1\"\ndsn = \"host=/run/pg dbname=mxward\"\n");
  ASSERT_OK(o) << Diagnostics();
  EXPECT_EQ(o->engine, ClusterEngine::kPostgresql);
}

TEST_F(ClusterOptionsTest, RefusesSettingsOfTheOtherEngineWhereTheyAre) {
  // MariaDB with PostgreSQL's dsn, both host and socket, no user or database, a bad interval.
  auto o = Read(
      "[cluster]\nnode = \"mx1\"\nengine = \"mariadb\"\ndsn = \"host=db dbname=mxward\"\n"
      "host = \"db\"\nsocket = \"/run/mysqld/mysqld.sock\"\npoll_interval = \"5ms\"\n");
  EXPECT_FALSE(o.ok());
  std::string d = Diagnostics();
  EXPECT_NE(d.find("mxward.toml:4:7: error: 'dsn' is PostgreSQL's connection string"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("mxward.toml:6:10: error: [cluster] with engine = \"mariadb\" needs either "
                   "host (and port) or socket, not both"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("needs user"), std::string::npos) << d;
  EXPECT_NE(d.find("needs database"), std::string::npos) << d;
  EXPECT_NE(d.find("mxward.toml:7:17: error: 'poll_interval' must be between 20ms and 60s"),
            std::string::npos)
      << d;
  // PostgreSQL (the default) with MariaDB's settings.
  o = Read(
      "[cluster]\nnode = \"mx1\"\ndsn = \"host=db dbname=mxward\"\nsocket = \"/run/x.sock\"\n"
      "poll_interval = \"1s\"\n");
  EXPECT_FALSE(o.ok());
  d = Diagnostics();
  EXPECT_NE(d.find("mxward.toml:4:10: error: 'socket' is a MariaDB setting"), std::string::npos)
      << d;
  EXPECT_NE(d.find("mxward.toml:5:17: error: 'poll_interval' is a MariaDB setting"),
            std::string::npos)
      << d;
  o = Read("[cluster]\nnode = \"mx1\"\nengine = \"mysql\"\n");
  EXPECT_FALSE(o.ok());
  EXPECT_NE(Diagnostics().find("mxward.toml:3:10:"), std::string::npos) << Diagnostics();
}

TEST_F(ClusterOptionsTest, ReportsEachMistakeWhereItIs) {
  const std::string secret = dir_.file("open.secret");
  std::ofstream(secret) << "s3cret\n";
  chmod(secret.c_str(), 0644);  // readable by everyone: refused
  auto o = Read(
      "[cluster]\nnode = \"mx 1\"\ndsn = \"host=db password=oops\"\n"
      "password_file = \"" +
      secret + "\"\nrole = \"leader\"\nnodes = 3\n");
  EXPECT_FALSE(o.ok());
  const std::string d = Diagnostics();
  EXPECT_NE(d.find("mxward.toml:2:8: error: 'node': 'mx 1' is not a node name"), std::string::npos)
      << d;
  EXPECT_NE(d.find("mxward.toml:3:7: error: 'dsn' must not hold a password"), std::string::npos)
      << d;
  EXPECT_NE(d.find("mxward.toml:4:"), std::string::npos) << d;  // the open password file
  EXPECT_NE(d.find("mxward.toml:5:"), std::string::npos) << d;  // role
  EXPECT_NE(d.find("unknown key 'nodes' in [cluster]"), std::string::npos) << d;
}

TEST_F(ClusterOptionsTest, APasswordInAnyFormOfTheDsnIsRefusedWhereItIs) {
  // libpq reads a password from key=value, from a URI's user:secret@ and from its ?password=;
  // none of the URI forms contains the word the old check looked for.
  for (const std::string dsn :
       {"postgresql://mxward:s3cret@db.example.org/mxward", "postgres://mxward:s3cret@db/mxward",
        "postgresql://db.example.org/mxward?user=mxward&password=s3cret",
        "host=db user=mxward password = 's3cret'"}) {
    auto o = Read("[cluster]\nnode = \"mx1\"\ndsn = \"" + dsn + "\"\n");
    EXPECT_FALSE(o.ok()) << dsn;
    EXPECT_NE(Diagnostics().find("mxward.toml:3:7: error: 'dsn' must not hold a password"),
              std::string::npos)
        << dsn << "\n"
        << Diagnostics();
    EXPECT_EQ(Diagnostics().find("s3cret"), std::string::npos) << "the secret is not repeated";
  }
  // Without a password both forms are fine, even where the word appears elsewhere.
  for (const std::string dsn : {"postgresql://mxward@db.example.org/mxward?sslmode=verify-full",
                                "host=db dbname=password_reset user=mxward sslmode=verify-full"}) {
    auto o = Read("[cluster]\nnode = \"mx1\"\ndsn = \"" + dsn + "\"\n");
    EXPECT_OK(o) << dsn << "\n" << Diagnostics();
  }
  // What libpq cannot parse is refused at start too, where it is, without repeating libpq's
  // message: it quotes the part it could not read, here a password.
  auto o = Read("[cluster]\nnode = \"mx1\"\ndsn = \"postgresql://u:s3cret@[db/x\"\n");
  EXPECT_FALSE(o.ok());
  EXPECT_NE(Diagnostics().find("mxward.toml:3:7: error: 'dsn' is not a libpq connection string"),
            std::string::npos)
      << Diagnostics();
  EXPECT_EQ(Diagnostics().find("s3cret"), std::string::npos) << Diagnostics();
}

TEST_F(ClusterOptionsTest, NodeAndDsnAreRequired) {
  auto o = Read("[cluster]\nrole = \"full\"\n");
  EXPECT_FALSE(o.ok());
  EXPECT_NE(Diagnostics().find("[cluster] needs node"), std::string::npos) << Diagnostics();
  EXPECT_NE(Diagnostics().find("[cluster] needs dsn"), std::string::npos) << Diagnostics();
}

class ClusterStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
  }
  std::int64_t Ban(const std::string& addr, bool revert = false) {
    auto id = store_->EnqueueAction(0, {"ban", {{"address", addr}, {"duration_s", 60}}, false},
                                    revert, kT0);
    EXPECT_OK(id);
    return id.ok() ? *id : 0;
  }
  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
};

TEST_F(ClusterStoreTest, PublishesDoneBansOnceAndHoldsTheFloorBelowPendingOnes) {
  const std::int64_t first = Ban("192.0.2.1");
  const std::int64_t second = Ban("192.0.2.2");
  const std::int64_t removal = Ban("192.0.2.1", /*revert=*/true);
  ASSERT_OK(store_->MarkActionDone(second, kT0));
  ASSERT_OK(store_->MarkActionDone(removal, kT0));

  // The first is still pending: the later ones are published, the floor stays below the first.
  auto p = store_->UnpublishedBanActions(0, 100);
  ASSERT_OK(p);
  ASSERT_EQ(p->actions.size(), 2u);
  EXPECT_EQ(p->actions[0].id, second);
  EXPECT_EQ(p->actions[1].id, removal);
  EXPECT_TRUE(p->actions[1].revert);
  EXPECT_EQ(p->floor, first - 1);
  ASSERT_OK(store_->MarkBansPublished({second, removal}, p->floor));

  // Published ones are not offered again; once the first is done it is, and the floor passes all.
  p = store_->UnpublishedBanActions(first - 1, 100);
  ASSERT_OK(p);
  EXPECT_TRUE(p->actions.empty());
  ASSERT_OK(store_->MarkActionDone(first, kT0));
  p = store_->UnpublishedBanActions(first - 1, 100);
  ASSERT_OK(p);
  ASSERT_EQ(p->actions.size(), 1u);
  EXPECT_EQ(p->actions[0].id, first);
  EXPECT_EQ(p->floor, removal);
}

TEST_F(ClusterStoreTest, FailedBansAreNotPublishedAndDoNotHoldTheFloor) {
  const std::int64_t failed = Ban("192.0.2.9");
  ASSERT_OK(store_->MarkActionFinal(failed, ActionStatus::kFailed, "no", kT0));
  auto p = store_->UnpublishedBanActions(0, 100);
  ASSERT_OK(p);
  EXPECT_TRUE(p->actions.empty());
  EXPECT_EQ(p->floor, failed);
}

TEST_F(ClusterStoreTest, DecisionsAreQueuedOncePerUuidWithTheCursor) {
  ClusterDecision d;
  d.uuid = "4f1c2b1e-0000-4000-8000-000000000001";
  d.seq = 7;
  d.request = {"ban", {{"address", "198.51.100.7"}, {"duration_s", 120}}, false};
  auto ids = store_->QueueClusterDecisions({d}, 7, kT0);
  ASSERT_OK(ids);
  ASSERT_EQ(ids->size(), 1u);
  auto cursor = store_->LoadClusterValue("cursor");
  ASSERT_OK(cursor);
  EXPECT_EQ(cursor->value_or(-1), 7);
  auto action = store_->GetAction((*ids)[0]);
  ASSERT_OK(action);
  EXPECT_EQ(action->params.value("cluster_uuid", ""), d.uuid);

  // Read again (a crash before the cursor moved on the database side): queued once.
  ids = store_->QueueClusterDecisions({d}, 8, kT0);
  ASSERT_OK(ids);
  EXPECT_TRUE(ids->empty());
  cursor = store_->LoadClusterValue("cursor");
  ASSERT_OK(cursor);
  EXPECT_EQ(cursor->value_or(-1), 8);

  // A ban received from the cluster is never published back.
  ASSERT_OK(store_->MarkActionDone(action->id, kT0));
  auto p = store_->UnpublishedBanActions(0, 100);
  ASSERT_OK(p);
  EXPECT_TRUE(p->actions.empty());
}

// The record of applied uuids is kept only while a decision could be read again: above the
// cursor, or applied less than the grace ago.
TEST_F(ClusterStoreTest, AppliedDecisionsAtOrBelowTheCursorAreForgotten) {
  auto Pruned = [&](UnixMicros before) -> std::int64_t {
    auto n = store_->PruneClusterApplied(before);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : -1;
  };
  auto decision = [](std::int64_t seq) {
    ClusterDecision d;
    d.uuid = "4f1c2b1e-0000-4000-8000-00000000000" + std::to_string(seq);
    d.seq = seq;
    d.request = {"ban", {{"address", "198.51.100." + std::to_string(seq)}}, false};
    return d;
  };
  EXPECT_EQ(Pruned(kT0), 0);  // no cursor yet
  ASSERT_OK(store_->QueueClusterDecisions({decision(3), decision(5)}, 5, kT0));
  // A row above the cursor (queued, cursor not yet moved past it: as if read ahead).
  ASSERT_OK(store_->QueueClusterDecisions({decision(9)}, 5, kT0));
  EXPECT_EQ(Pruned(kT0), 0) << "applied at the grace's edge";
  EXPECT_EQ(Pruned(kT0 + 1), 2);
  EXPECT_EQ(Pruned(kT0 + 1), 0);
  // seq 9 is still known: read again, it is not queued twice.
  auto again = store_->QueueClusterDecisions({decision(9)}, 9, kT0 + 2);
  ASSERT_OK(again);
  EXPECT_TRUE(again->empty());
}

// --- the bulk path: a read batch becomes bans rows, uuids, the cursor and ONE record ----------

ReceivedDecision Received(std::int64_t seq, const std::string& prefix, bool remove = false,
                          const std::string& node = "a", const std::string& ports = "mail") {
  ReceivedDecision d;
  d.uuid = "9b6e0c2a-0000-4000-8000-" + fmt::format("{:012}", seq);
  d.seq = seq;
  d.node = node;
  d.playbook = remove ? "" : "postfix-sasl";
  d.remove = remove;
  d.prefix = prefix;
  d.ports = ports;
  d.until = remove ? 0 : kT0 + 3600 * kMicrosPerSecond;
  d.reason = "cluster: " + node;
  return d;
}

std::vector<ActionRecord> ActionsOfType(IncidentStore& store, const std::string& type) {
  auto all = store.ListActions({});
  EXPECT_TRUE(all.ok());
  std::vector<ActionRecord> out;
  if (!all.ok()) return out;
  for (ActionRecord& a : *all) {
    if (a.type == type) out.push_back(std::move(a));
  }
  return out;
}

TEST_F(ClusterStoreTest, ABatchIsBansRowsUuidsCursorAndOneRecord) {
  std::vector<ReceivedDecision> batch;
  for (int i = 1; i <= 2000; ++i) {
    batch.push_back(
        Received(100 + i, fmt::format("198.51.{}.{}", i / 256, i % 256), false, i % 2 ? "a" : "b"));
  }
  auto outcome = store_->ApplyClusterBatch(batch, 2100, kT0);
  ASSERT_OK(outcome);
  EXPECT_EQ(outcome->bans, 2000);
  EXPECT_EQ(outcome->removals, 0);
  EXPECT_NE(outcome->action_id, 0);

  auto cursor = store_->LoadClusterValue("cursor");
  ASSERT_OK(cursor);
  EXPECT_EQ(cursor->value_or(-1), 2100);
  // The bans in force, with the decision each came from.
  auto bans = store_->ActiveBans(kT0);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 2000u);
  const BanRecord& first = (*bans)[0];
  EXPECT_EQ(first.until, kT0 + 3600 * kMicrosPerSecond);
  EXPECT_EQ(first.playbook, "postfix-sasl");
  EXPECT_FALSE(first.decision_uuid.empty());
  EXPECT_TRUE(first.origin_node == "a" || first.origin_node == "b");
  // ONE outbox record for the 2,000, pending for the kernel, saying what it holds.
  const auto records = ActionsOfType(*store_, "cluster_batch");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id, outcome->action_id);
  EXPECT_EQ(records[0].status, ActionStatus::kPending);
  EXPECT_EQ(records[0].params.value("summary", ""),
            "2000 ban(s), 0 removal(s) from node(s) a,b, seq 101..2100");
  EXPECT_EQ(records[0].params.value("bans", 0), 2000);
  EXPECT_EQ(ActionsOfType(*store_, "ban").size(), 0u) << "no outbox row per decision";
  auto ops = store_->ClusterBatchOps(outcome->action_id);
  ASSERT_OK(ops);
  ASSERT_EQ(ops->size(), 2000u);
  EXPECT_FALSE((*ops)[0].remove);
  EXPECT_EQ((*ops)[0].prefix, "198.51.0.1");
  EXPECT_EQ((*ops)[0].until, kT0 + 3600 * kMicrosPerSecond);
  EXPECT_FALSE((*ops)[0].refresh) << "no bans row before: a new kernel element, one add";
  // An extension of a ban in force replaces the kernel element's timeout.
  auto extended = store_->ApplyClusterBatch({Received(3000, "198.51.0.1", false, "b")}, 3000,
                                            kT0 + kMicrosPerSecond);
  ASSERT_OK(extended);
  ops = store_->ClusterBatchOps(extended->action_id);
  ASSERT_OK(ops);
  ASSERT_EQ(ops->size(), 1u);
  EXPECT_TRUE((*ops)[0].refresh);
  // Received bans are never published back.
  ASSERT_OK(store_->MarkActionDone(outcome->action_id, kT0));
  auto p = store_->UnpublishedBanActions(0, 100);
  ASSERT_OK(p);
  EXPECT_TRUE(p->actions.empty());
}

// A crash after the store commit and before the database cursor could matter: the same rows
// read again apply nothing twice and add no second record.
TEST_F(ClusterStoreTest, ABatchReadAgainAppliesNothingTwice) {
  const std::vector<ReceivedDecision> batch = {Received(1, "192.0.2.1"), Received(2, "192.0.2.2")};
  auto first = store_->ApplyClusterBatch(batch, 2, kT0);
  ASSERT_OK(first);
  ASSERT_OK(store_->RemoveBan("192.0.2.1"));  // lifted here since (a local `bans remove`)
  auto again = store_->ApplyClusterBatch(batch, 2, kT0 + 5);
  ASSERT_OK(again);
  EXPECT_EQ(again->action_id, 0);
  EXPECT_EQ(again->repeated, 2);
  EXPECT_EQ(again->bans, 0);
  EXPECT_EQ(ActionsOfType(*store_, "cluster_batch").size(), 1u);
  auto bans = store_->ActiveBans(kT0);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 1u) << "the repeat did not ban 192.0.2.1 again";
  EXPECT_EQ((*bans)[0].prefix, "192.0.2.2");
}

// The log's order holds inside a batch: a removal after its ban stays a removal, a ban after a
// removal stays a ban, and an extension replaces the end.
TEST_F(ClusterStoreTest, ABatchKeepsTheLogsOrderOfBansAndRemovals) {
  ASSERT_OK(store_->UpsertBan({"203.0.113.9", kT0, 0, 0, "local", "mail"}));
  std::vector<ReceivedDecision> batch = {
      Received(1, "192.0.2.1"),                   // banned, then removed below
      Received(2, "192.0.2.2", /*remove=*/true),  // removed, then banned again below
      Received(3, "192.0.2.1", /*remove=*/true),
      Received(4, "192.0.2.2"),
      Received(5, "192.0.2.3"),  // extended below
      Received(6, "192.0.2.3"),
      Received(7, "203.0.113.9", /*remove=*/true, "b", "*"),  // every scope of a local ban
  };
  batch[5].until = kT0 + 7200 * kMicrosPerSecond;
  auto outcome = store_->ApplyClusterBatch(batch, 7, kT0);
  ASSERT_OK(outcome);
  EXPECT_EQ(outcome->bans, 4);
  EXPECT_EQ(outcome->removals, 3);
  auto bans = store_->ActiveBans(kT0);
  ASSERT_OK(bans);
  std::map<std::string, UnixMicros> in_force;
  for (const BanRecord& b : *bans) in_force[b.prefix] = b.until;
  EXPECT_EQ(in_force,
            (std::map<std::string, UnixMicros>{{"192.0.2.2", kT0 + 3600 * kMicrosPerSecond},
                                               {"192.0.2.3", kT0 + 7200 * kMicrosPerSecond}}));
  // The kernel's work: every removal first, then the bans still standing (and the longer end).
  auto ops = store_->ClusterBatchOps(outcome->action_id);
  ASSERT_OK(ops);
  std::vector<std::string> got;
  for (const ClusterBatchOp& op : *ops) {
    got.push_back(fmt::format("{}{} {} {}", op.remove ? "-" : "+", op.prefix, op.ports,
                              op.until == 0 ? 0 : (op.until - kT0) / kMicrosPerSecond));
  }
  EXPECT_EQ(got,
            (std::vector<std::string>{"-192.0.2.2 mail 0", "-192.0.2.1 mail 0", "-203.0.113.9 * 0",
                                      "+192.0.2.2 mail 3600", "+192.0.2.3 mail 7200"}));
}

TEST(NetClusterOpsTest, ARemovalOfEveryScopeUndoesEachScopesBanAndOneScopeOnlyItsOwn) {
  auto d = [](bool remove, const char* ports) {
    ReceivedDecision r;
    r.remove = remove;
    r.prefix = "192.0.2.5";
    r.ports = ports;
    return r;
  };
  auto ops = NetClusterOps({d(false, "mail"), d(false, "web"), d(true, "web")});
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_TRUE(ops[0].remove);
  EXPECT_EQ(ops[1].ports, "mail");
  ops = NetClusterOps({d(false, "mail"), d(false, "web"), d(true, "*")});
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_TRUE(ops[0].remove);
}

// Allowlisted here: not banned, recorded with the reason, and remembered like an applied one.
TEST_F(ClusterStoreTest, ARefusedDecisionIsRecordedNotBanned) {
  std::vector<ReceivedDecision> batch = {Received(1, "192.0.2.1"), Received(2, "10.0.0.1")};
  batch[1].refusal = "10.0.0.1 is allowlisted (10.0.0.0/8 in [allow] addresses)";
  auto outcome = store_->ApplyClusterBatch(batch, 2, kT0);
  ASSERT_OK(outcome);
  EXPECT_EQ(outcome->bans, 1);
  EXPECT_EQ(outcome->refused, 1);
  auto bans = store_->ActiveBans(kT0);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 1u);
  EXPECT_EQ((*bans)[0].prefix, "192.0.2.1");
  auto record = store_->GetAction(outcome->action_id);
  ASSERT_OK(record);
  ASSERT_EQ(record->params["refused"].size(), 1u);
  EXPECT_EQ(record->params["refused"][0].value("scope", ""), "10.0.0.1");
  EXPECT_EQ(record->params["refused"][0].value("reason", ""), batch[1].refusal);
  auto ops = store_->ClusterBatchOps(outcome->action_id);
  ASSERT_OK(ops);
  ASSERT_EQ(ops->size(), 1u);
  EXPECT_EQ((*ops)[0].prefix, "192.0.2.1");

  // A batch of refusals only: settled `refused` at once, nothing for the kernel.
  std::vector<ReceivedDecision> only = {Received(3, "10.0.0.2")};
  only[0].refusal = "allowlisted";
  outcome = store_->ApplyClusterBatch(only, 3, kT0);
  ASSERT_OK(outcome);
  record = store_->GetAction(outcome->action_id);
  ASSERT_OK(record);
  EXPECT_EQ(record->status, ActionStatus::kRefused);
  // Read again: neither refused twice nor recorded twice.
  outcome = store_->ApplyClusterBatch(only, 3, kT0);
  ASSERT_OK(outcome);
  EXPECT_EQ(outcome->action_id, 0);
  EXPECT_EQ(outcome->repeated, 1);
}

}  // namespace
}  // namespace mxward
