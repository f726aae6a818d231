// Cluster-wide incidents, the local half (issue 18, docs/cluster.md "Cluster-wide incidents"):
// the store's marks of changed incidents (schema v10: every change of a live incident is marked in
// its own transaction, a mark is forgotten only at the version that was published), the NODE:ID
// references, and the text PostgreSQL must be able to hold. The PostgreSQL half runs against a
// real server in tests/integration/cluster_postgres_test.cpp.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/cluster/cluster_incidents.h"
#include "mxward/incident_store.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

Incident MakeIncident(const std::string& key, IncidentOrigin origin = IncidentOrigin::kLive) {
  Incident inc;
  inc.playbook = "postfix-sasl";
  inc.severity = Severity::kHigh;
  inc.key_kind = "client_ip";
  inc.key = key;
  inc.first_seen = kT0;
  inc.last_seen = kT0 + 60 * kMicrosPerSecond;
  inc.count = 20;
  inc.origin = origin;
  inc.evidence.push_back({kT0, "line for " + key});
  inc.actions.push_back({"ban", {{"address", key}, {"duration_s", 3600}}, false});
  return inc;
}

class IncidentChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
  }

  std::int64_t Record(Incident inc) {
    std::vector<Incident> batch{std::move(inc)};
    EXPECT_OK(store_->RecordIncidents(&batch, kT0));
    return batch[0].id;
  }

  std::vector<IncidentChange> Changes() {
    auto c = store_->ChangedIncidents(100);
    EXPECT_OK(c);
    return c.ok() ? c->changes : std::vector<IncidentChange>{};
  }

  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
};

TEST_F(IncidentChangesTest, NothingIsMarkedBeforeTheLinkStarts) {
  Record(MakeIncident("192.0.2.1"));
  EXPECT_TRUE(Changes().empty());
}

TEST_F(IncidentChangesTest, EveryChangeOfALiveIncidentIsMarkedAndForgottenOnlyAtItsVersion) {
  ASSERT_OK(store_->StartRecordingIncidentChanges());
  ASSERT_OK(store_->StartRecordingIncidentChanges());  // idempotent
  const std::int64_t id = Record(MakeIncident("192.0.2.1"));
  Record(MakeIncident("192.0.2.2", IncidentOrigin::kReplay));  // a replay is not marked
  auto changes = Changes();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].incident_id, id);
  const std::int64_t opened = changes[0].version;

  // Its ban settled: marked again (the version moved).
  auto actions = store_->ActionsForIncident(id);
  ASSERT_OK(actions);
  ASSERT_EQ(actions->size(), 1u);
  ASSERT_OK(store_->MarkActionDone((*actions)[0].id, kT0 + 1));
  changes = Changes();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_GT(changes[0].version, opened);

  // The link published the version it read before the ban settled: the mark stays.
  ASSERT_OK(store_->ForgetIncidentChanges({{id, opened}}));
  ASSERT_EQ(Changes().size(), 1u);
  // At the version it read last, it goes.
  ASSERT_OK(store_->ForgetIncidentChanges(changes));
  EXPECT_TRUE(Changes().empty());

  // An ack (with its note), a resolve, an undo queued: each marks it again.
  ASSERT_OK(store_->AcknowledgeIncident(id, "looking"));
  ASSERT_EQ(Changes().size(), 1u);
  ASSERT_OK(store_->ForgetIncidentChanges(Changes()));
  ASSERT_OK(store_->EnqueueAction(id, {"ban", {{"address", "192.0.2.1"}}, false}, true, kT0 + 2));
  ASSERT_EQ(Changes().size(), 1u);
  ASSERT_OK(store_->ForgetIncidentChanges(Changes()));
  ASSERT_OK(store_->ResolveIncident(id, ""));
  ASSERT_EQ(Changes().size(), 1u);
  // An action queued by hand (no incident) marks nothing.
  ASSERT_OK(store_->ForgetIncidentChanges(Changes()));
  ASSERT_OK(store_->EnqueueAction(0, {"ban", {{"address", "192.0.2.9"}}, false}, false, kT0 + 3));
  EXPECT_TRUE(Changes().empty());
}

TEST_F(IncidentChangesTest, ChangedIncidentsCountsAllAndReturnsTheLimit) {
  ASSERT_OK(store_->StartRecordingIncidentChanges());
  for (int i = 1; i <= 5; ++i) Record(MakeIncident("192.0.2." + std::to_string(i)));
  auto c = store_->ChangedIncidents(2);
  ASSERT_OK(c);
  EXPECT_EQ(c->total, 5);
  ASSERT_EQ(c->changes.size(), 2u);
  EXPECT_LT(c->changes[0].incident_id, c->changes[1].incident_id);
}

// Not a test: what the marks cost the store writer (docs/cluster.md). Records 20,000 incidents
// in the recorder's batches of 256, each with 10 evidence lines and a ban settled afterwards,
// into a store that does not mark and one that does; prints both times. Run it with
// --gtest_also_run_disabled_tests --gtest_filter='*MarkCost*'.
TEST(IncidentChangesCostTest, DISABLED_MarkCost) {
  for (const bool marking : {false, true, false, true}) {
    TempDir dir;
    auto store = IncidentStore::Open(dir.file("state.db"));
    ASSERT_OK(store);
    if (marking) {
      ASSERT_OK((*store)->StartRecordingIncidentChanges());
    }
    const auto start = std::chrono::steady_clock::now();
    std::int64_t next = 0;
    for (int batch = 0; batch < 20'000 / 250; ++batch) {
      std::vector<Incident> incidents;
      for (int i = 0; i < 250; ++i, ++next) {
        Incident inc =
            MakeIncident("10." + std::to_string(next >> 16) + "." +
                         std::to_string((next >> 8) & 255) + "." + std::to_string(next & 255));
        for (int e = 1; e < 10; ++e) inc.evidence.push_back({kT0 + e, "evidence line"});
        incidents.push_back(std::move(inc));
      }
      ASSERT_OK((*store)->RecordIncidents(&incidents, kT0));
      std::vector<std::int64_t> ids;
      for (const Incident& inc : incidents) {
        auto actions = (*store)->ActionsForIncident(inc.id);
        ASSERT_OK(actions);
        ids.push_back(actions->front().id);
      }
      ASSERT_OK((*store)->MarkActionsDone(ids, kT0 + 1));
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto marks = (*store)->ChangedIncidents(1);
    ASSERT_OK(marks);
    std::printf("%s: 20000 incidents recorded and their bans settled in %.2f s (%lld marks)\n",
                marking ? "marking" : "not marking", s, static_cast<long long>(marks->total));
  }
}

TEST(IncidentRefTest, NodeAndIdOrNothing) {
  std::string node;
  std::int64_t id = 0;
  EXPECT_TRUE(ParseIncidentRef("mx-1.example_2:17", &node, &id));
  EXPECT_EQ(node, "mx-1.example_2");
  EXPECT_EQ(id, 17);
  for (const char* bad :
       {"17", ":17", "a:", "a:0", "a:-3", "a:17x", "a b:17", "a:b:17", "a:99999999999999999999"}) {
    EXPECT_FALSE(ParseIncidentRef(bad, &node, &id)) << bad;
  }
}

TEST(PostgresSafeTextTest, InvalidUtf8AndNulBecomeReplacementCharacters) {
  EXPECT_EQ(PostgresSafeText("caf\xc3\xa9 ok"), "caf\xc3\xa9 ok");
  EXPECT_EQ(PostgresSafeText(std::string("a\0b", 3)),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(PostgresSafeText("bad\xff\xfe"), "bad\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(PostgresSafeText("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(PostgresSafeText("cut\xe2\x82"), "cut\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(IncidentColumnsTest, EvidenceActionsAndNotesComeBackAsWritten) {
  const std::vector<EvidenceLine> evidence = {
      {kT0, "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed"},
      {kT0 + 1, std::string("user \"x\\y\" \0 \xff", 15)}};
  auto ev = EvidenceFromColumn(EvidenceColumn(evidence));
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].time, kT0);
  EXPECT_EQ(ev[0].text, evidence[0].text);
  EXPECT_EQ(ev[1].text, PostgresSafeText(evidence[1].text));
  // No NUL escape, which jsonb refuses.
  EXPECT_EQ(EvidenceColumn(evidence).find("\\u0000"), std::string::npos);

  ActionRecord a;
  a.id = 7;
  a.type = "ban";
  a.params = {{"address", "203.0.113.7"}, {"user\xff", std::string("v\0", 2)}};
  a.status = ActionStatus::kReverted;
  a.revert = true;
  a.attempts = 2;
  a.last_error = "nft: busy";
  a.updated_at = kT0 + 5;
  auto acts = ActionsFromColumn(ActionsColumn({a}));
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].id, 7);
  EXPECT_EQ(acts[0].type, "ban");
  EXPECT_EQ(acts[0].status, ActionStatus::kReverted);
  EXPECT_TRUE(acts[0].revert);
  EXPECT_EQ(acts[0].attempts, 2);
  EXPECT_EQ(acts[0].last_error, "nft: busy");
  EXPECT_EQ(acts[0].updated_at, kT0 + 5);
  EXPECT_EQ(acts[0].params.value("address", ""), "203.0.113.7");
  EXPECT_EQ(acts[0].params.value("user\xEF\xBF\xBD", ""), "v\xEF\xBF\xBD");

  auto notes = NotesFromColumn(NotesColumn({{kT0, "resolve", "false positive"}}));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].kind, "resolve");
  EXPECT_EQ(notes[0].text, "false positive");
  // Anything that is not our array reads as nothing, not a crash.
  EXPECT_TRUE(EvidenceFromColumn("not json").empty());
  EXPECT_TRUE(ActionsFromColumn("{\"a\": 1}").empty());
}

}  // namespace
}  // namespace mxward
