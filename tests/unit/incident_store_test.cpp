#include "mxward/incident_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <set>
#include <string>

#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;  // 2027-01-15

Incident MakeIncident(const std::string& key, UnixMicros first, int evidence = 3, int actions = 1) {
  Incident inc;
  inc.playbook = "postfix-sasl";
  inc.description = "SASL brute force";
  inc.severity = Severity::kHigh;
  inc.key_kind = "client_ip";
  inc.key = key;
  inc.trigger = "20 auth_failure in 10m (count >= 20)";
  inc.first_seen = first;
  inc.last_seen = first + 60 * kMicrosPerSecond;
  inc.count = 20;
  inc.window_seconds = 600;
  for (int i = 0; i < evidence; ++i) {
    inc.evidence.push_back({first + i * kMicrosPerSecond, "line " + std::to_string(i)});
  }
  for (int i = 0; i < actions; ++i) {
    inc.actions.push_back({"ban", {{"address", key}, {"duration_s", 3600}}, false});
  }
  return inc;
}

class IncidentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
  }

  std::int64_t Record(Incident inc) {
    std::vector<Incident> batch{std::move(inc)};
    Status s = store_->RecordIncidents(&batch, kT0);
    EXPECT_OK(s);
    return batch[0].id;
  }

  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
};

TEST_F(IncidentStoreTest, RecordsABatchAndReadsItBack) {
  std::vector<Incident> batch{MakeIncident("192.0.2.1", kT0), MakeIncident("192.0.2.2", kT0 + 1)};
  batch[1].mode = PlaybookMode::kDryRun;
  ASSERT_TRUE(store_->RecordIncidents(&batch, kT0).ok());
  EXPECT_GT(batch[0].id, 0);
  EXPECT_GT(batch[1].id, batch[0].id);

  auto inc = store_->GetIncident(batch[0].id);
  ASSERT_OK(inc);
  EXPECT_EQ(inc->playbook, "postfix-sasl");
  EXPECT_EQ(inc->key, "192.0.2.1");
  EXPECT_EQ(inc->key_kind, "client_ip");
  EXPECT_EQ(inc->severity, Severity::kHigh);
  EXPECT_EQ(inc->trigger, "20 auth_failure in 10m (count >= 20)");
  EXPECT_EQ(inc->count, 20u);
  EXPECT_EQ(inc->status, IncidentStatus::kOpen);
  ASSERT_EQ(inc->evidence.size(), 3u);
  EXPECT_EQ(inc->evidence[2].text, "line 2");
  EXPECT_EQ(inc->evidence[2].time, kT0 + 2 * kMicrosPerSecond);

  auto actions = store_->ActionsForIncident(batch[0].id);
  ASSERT_OK(actions);
  ASSERT_EQ(actions->size(), 1u);
  EXPECT_EQ((*actions)[0].status, ActionStatus::kPending);
  EXPECT_EQ((*actions)[0].idempotency_key, "mxward-" + std::to_string((*actions)[0].id));
  EXPECT_EQ((*actions)[0].params.at("address"), "192.0.2.1");

  // A dry-run playbook's actions are recorded, never queued.
  auto dry = store_->ActionsForIncident(batch[1].id);
  ASSERT_OK(dry);
  ASSERT_EQ(dry->size(), 1u);
  EXPECT_EQ((*dry)[0].status, ActionStatus::kDryRun);
  auto due = store_->DueActions(kT0, 10);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].incident_id, batch[0].id);
}

TEST_F(IncidentStoreTest, EvidenceIsBoundedToFirstAndLastLines) {
  const std::int64_t id = Record(MakeIncident("192.0.2.1", kT0, 500));
  auto inc = store_->GetIncident(id);
  ASSERT_OK(inc);
  ASSERT_EQ(inc->evidence.size(), IncidentStore::kMaxEvidence);
  EXPECT_EQ(inc->evidence.front().text, "line 0");
  EXPECT_EQ(inc->evidence.back().text, "line 499");
  EXPECT_EQ(inc->evidence[IncidentStore::kMaxEvidence / 2].text,
            "line " + std::to_string(500 - IncidentStore::kMaxEvidence / 2));
}

TEST_F(IncidentStoreTest, ListFiltersAndOrdersNewestFirst) {
  Record(MakeIncident("192.0.2.1", kT0));
  Incident other = MakeIncident("192.0.2.2", kT0 + 3600 * kMicrosPerSecond);
  other.playbook = "dovecot-auth";
  const std::int64_t b = Record(other);
  const std::int64_t c = Record(MakeIncident("192.0.2.1", kT0 + 7200 * kMicrosPerSecond));

  IncidentQuery all;
  auto list = store_->ListIncidents(all);
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].id, c);
  EXPECT_TRUE((*list)[0].evidence.empty());

  IncidentQuery by_playbook;
  by_playbook.playbook = "dovecot-auth";
  list = store_->ListIncidents(by_playbook);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, b);

  IncidentQuery by_key;
  by_key.key = "192.0.2.1";
  by_key.since = kT0 + 3600 * kMicrosPerSecond;
  list = store_->ListIncidents(by_key);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, c);

  IncidentQuery limited;
  limited.limit = 2;
  EXPECT_EQ(store_->ListIncidents(limited)->size(), 2u);

  ASSERT_TRUE(store_->AcknowledgeIncident(b, "looking").ok());
  IncidentQuery acked;
  acked.status = IncidentStatus::kAcknowledged;
  list = store_->ListIncidents(acked);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, b);
}

TEST_F(IncidentStoreTest, AckAndResolveKeepNotesAndReportMissingIds) {
  const std::int64_t id = Record(MakeIncident("192.0.2.1", kT0));
  ASSERT_TRUE(store_->AcknowledgeIncident(id, "known scanner").ok());
  EXPECT_EQ(store_->GetIncident(id)->status, IncidentStatus::kAcknowledged);
  ASSERT_TRUE(store_->ResolveIncident(id, "").ok());
  EXPECT_EQ(store_->GetIncident(id)->status, IncidentStatus::kResolved);
  // Acknowledging a resolved incident would reopen it silently: refused.
  EXPECT_EQ(store_->AcknowledgeIncident(id, "").code(), Status::Code::kInvalidArgument);

  auto notes = store_->NotesForIncident(id);
  ASSERT_OK(notes);
  ASSERT_EQ(notes->size(), 1u);
  EXPECT_EQ((*notes)[0].kind, "ack");
  EXPECT_EQ((*notes)[0].text, "known scanner");

  EXPECT_EQ(store_->AcknowledgeIncident(9999, "").code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->ResolveIncident(9999, "").code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->GetIncident(9999).status().code(), Status::Code::kNotFound);
}

TEST_F(IncidentStoreTest, OutboxRetriesAndFinishes) {
  ActionRequest req{"ban", {{"address", "198.51.100.0/24"}, {"duration_s", 60}}, false};
  auto id = store_->EnqueueAction(0, req, /*revert=*/false, kT0);
  ASSERT_OK(id);
  auto stats = store_->GetOutboxStats();
  EXPECT_EQ(stats->pending, 1);
  EXPECT_EQ(stats->oldest_created_at, kT0);

  ASSERT_TRUE(store_->MarkActionRetry(*id, "nft: busy", kT0 + 10, kT0 + 1).ok());
  EXPECT_TRUE(store_->DueActions(kT0 + 9, 10)->empty());
  auto due = store_->DueActions(kT0 + 10, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].attempts, 1);
  EXPECT_EQ((*due)[0].last_error, "nft: busy");
  EXPECT_EQ((*due)[0].idempotency_key, "mxward-" + std::to_string(*id));
  EXPECT_FALSE((*due)[0].revert);

  ASSERT_TRUE(store_->MarkActionDone(*id, kT0 + 11).ok());
  EXPECT_TRUE(store_->DueActions(kT0 + 100, 10)->empty());
  EXPECT_EQ(store_->GetOutboxStats()->pending, 0);
  auto a = store_->GetAction(*id);
  ASSERT_OK(a);
  EXPECT_EQ(a->status, ActionStatus::kDone);
  EXPECT_EQ(a->attempts, 2);
  EXPECT_EQ(a->last_error, "");

  auto undo = store_->EnqueueAction(0, req, /*revert=*/true, kT0 + 20);
  ASSERT_OK(undo);
  ASSERT_TRUE(store_->MarkActionFinal(*undo, ActionStatus::kFailed, "no such set", kT0 + 21).ok());
  a = store_->GetAction(*undo);
  EXPECT_TRUE(a->revert);
  EXPECT_EQ(a->status, ActionStatus::kFailed);
  EXPECT_EQ(a->last_error, "no such set");
  EXPECT_EQ(store_->MarkActionDone(424242, kT0).code(), Status::Code::kNotFound);
}

// A batch's outcomes in one transaction: all recorded done, or (an id that is not there) none.
TEST_F(IncidentStoreTest, MarkActionsDoneRecordsAWholeBatchOrNothing) {
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = store_->EnqueueAction(
        0, {"ban", {{"address", "198.51.100." + std::to_string(i)}}, false}, false, kT0);
    ASSERT_OK(id);
    ids.push_back(*id);
  }
  EXPECT_EQ(store_->MarkActionsDone({ids[0], 424242}, kT0 + 1).code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->GetAction(ids[0])->status, ActionStatus::kPending);
  ASSERT_OK(store_->MarkActionsDone(ids, kT0 + 2));
  for (std::int64_t id : ids) {
    auto a = store_->GetAction(id);
    ASSERT_OK(a);
    EXPECT_EQ(a->status, ActionStatus::kDone);
    EXPECT_EQ(a->attempts, 1);
    EXPECT_EQ(a->updated_at, kT0 + 2);
  }
  EXPECT_EQ(store_->GetOutboxStats()->pending, 0);
  EXPECT_OK(store_->MarkActionsDone({}, kT0 + 3));
}

TEST_F(IncidentStoreTest, BansAndSuspensions) {
  ASSERT_TRUE(store_->UpsertBan({"192.0.2.7", kT0, kT0 + 100, 3, "brute force"}).ok());
  ASSERT_TRUE(store_->UpsertBan({"2001:db8::/64", kT0, 0, 0, "by hand"}).ok());
  ASSERT_TRUE(store_->UpsertBan({"192.0.2.7", kT0, kT0 + 200, 4, "again"}).ok());
  auto bans = store_->ActiveBans(kT0 + 150);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 2u);
  EXPECT_EQ(store_->ActiveBans(kT0 + 250)->size(), 1u);  // the permanent one
  ASSERT_TRUE(store_->RemoveBan("2001:db8::/64").ok());
  EXPECT_TRUE(store_->ActiveBans(kT0 + 250)->empty());

  SuspensionRecord s{"alice@example.org", "suspend_sending", {{"smtp_active", 1}}, kT0, 0, 3};
  ASSERT_TRUE(store_->UpsertSuspension(s).ok());
  s.previous = {{"smtp_active", 0}};  // what a second suspension would see: must not win
  ASSERT_TRUE(store_->UpsertSuspension(s).ok());
  auto sus = store_->ActiveSuspensions();
  ASSERT_EQ(sus->size(), 1u);
  EXPECT_EQ((*sus)[0].previous.at("smtp_active"), 1);
  ASSERT_TRUE(store_->RemoveSuspension("alice@example.org", "suspend_sending").ok());
  EXPECT_TRUE(store_->ActiveSuspensions()->empty());
}

TEST_F(IncidentStoreTest, BaselinesAreUpsertedAndPruned) {
  ASSERT_TRUE(
      store_->SaveBaselines("novel-country", {{"alice", "DE", kT0, 0}, {"alice", "FR", kT0 + 5, 0}})
          .ok());
  ASSERT_TRUE(store_->SaveBaselines("novel-country", {{"alice", "DE", kT0 + 10, 0}}).ok());
  auto b = store_->LoadBaselines("novel-country", 0);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].value, "DE");
  EXPECT_EQ((*b)[0].last_seen, kT0 + 10);
  EXPECT_EQ(store_->LoadBaselines("novel-country", kT0 + 5)->size(), 1u);
  EXPECT_TRUE(store_->LoadBaselines("other", 0)->empty());
  EXPECT_EQ(*store_->PruneBaselines(kT0 + 6), 1);
  EXPECT_EQ(store_->LoadBaselines("novel-country", 0)->size(), 1u);
}

TEST_F(IncidentStoreTest, BaselinesKeepTheEarliestKnownFirstUseAndAnswerPerKey) {
  ASSERT_OK(store_->SaveBaselines("out", {{"alice", "a.example", kT0 + 50, 0},
                                          {"alice", "b.example", kT0 + 60, kT0 + 20},
                                          {"bob", "c.example", kT0 + 70, kT0 + 70}}));
  // Later saves: a known first use replaces an unknown one, an earlier one wins, 0 keeps it.
  ASSERT_OK(store_->SaveBaselines("out", {{"alice", "a.example", kT0 + 80, kT0 + 30},
                                          {"alice", "b.example", kT0 + 90, kT0 + 10},
                                          {"bob", "c.example", kT0 + 95, 0}}));
  auto alice = store_->BaselineOfKey("out", "alice");
  ASSERT_OK(alice);
  ASSERT_EQ(alice->size(), 2u);
  EXPECT_EQ((*alice)[0].value, "a.example");
  EXPECT_EQ((*alice)[0].first_seen, kT0 + 30);
  EXPECT_EQ((*alice)[0].last_seen, kT0 + 80);
  EXPECT_EQ((*alice)[1].first_seen, kT0 + 10);
  EXPECT_EQ((*store_->BaselineOfKey("out", "bob"))[0].first_seen, kT0 + 70);
  EXPECT_TRUE(store_->BaselineOfKey("out", "carol")->empty());
  EXPECT_EQ(*store_->BaselineLearningSince("out"), kT0 + 10);
  EXPECT_EQ(*store_->BaselineLearningSince("other"), 0);
}

TEST_F(IncidentStoreTest, AReplayedIncidentIsRecordedOnceAndLiveOnesAlways) {
  Incident replayed = MakeIncident("192.0.2.7", kT0);
  replayed.origin = IncidentOrigin::kReplay;
  const std::int64_t first = Record(replayed);
  // The same lines replayed again: the same incident, no second row, no second action.
  EXPECT_EQ(Record(replayed), first);
  // Another first line is another incident.
  Incident other = replayed;
  other.evidence[0].text = "another line";
  EXPECT_NE(Record(other), first);
  // Live incidents without a life (open_until 0) are never merged, however alike.
  Incident live = MakeIncident("192.0.2.7", kT0);
  const std::int64_t live1 = Record(live);
  EXPECT_NE(Record(live), live1);
  IncidentQuery q;
  q.limit = 100;
  auto all = store_->ListIncidents(q);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 4u);
  int replays = 0;
  for (const auto& i : *all) replays += i.origin == IncidentOrigin::kReplay;
  EXPECT_EQ(replays, 2);
  EXPECT_EQ(store_->ActionsForIncident(first)->size(), 1u);
  EXPECT_NE(ReplayIdentity(replayed), ReplayIdentity(other));
}

// A trigger of a key whose open incident of the same playbook is still in its life updates that
// incident: one row and one ban per key however often it fires; evidence stays bounded (the
// first lines and the newest); a resolved incident, another playbook or a trigger after the
// life open a new one with its actions.
TEST_F(IncidentStoreTest, ARepeatWithinAnOpenIncidentsLifeUpdatesIt) {
  const UnixMicros life = kT0 + 3600 * kMicrosPerSecond;
  auto trigger = [&](UnixMicros t, int lines) {
    Incident inc = MakeIncident("192.0.2.7", t, lines);
    inc.open_until = life;
    return inc;
  };
  const std::int64_t id = Record(trigger(kT0, 3));
  // 30 repeats in two batches (a batch may hold the incident it updates, too).
  std::vector<Incident> batch;
  for (int i = 1; i <= 30; ++i) {
    batch.push_back(trigger(kT0 + i * 60 * kMicrosPerSecond, 8));
    batch.back().evidence.back().text = "newest " + std::to_string(i);
    if (i == 15 || i == 30) {
      ASSERT_OK(store_->RecordIncidents(&batch, kT0));
      for (const Incident& r : batch) {
        EXPECT_EQ(r.id, id);
        EXPECT_TRUE(r.merged);
      }
      batch.clear();
    }
  }
  auto inc = store_->GetIncident(id);
  ASSERT_OK(inc);
  EXPECT_EQ(inc->triggers, 31u);
  EXPECT_EQ(inc->count, 31u * 20);
  EXPECT_EQ(inc->last_seen, kT0 + 30 * 60 * kMicrosPerSecond + 60 * kMicrosPerSecond);
  EXPECT_EQ(inc->first_seen, kT0);
  EXPECT_EQ(inc->open_until, life);
  ASSERT_EQ(inc->evidence.size(), IncidentStore::kMaxEvidence);
  EXPECT_EQ(inc->evidence[0].text, "line 0");  // how it started
  EXPECT_EQ(inc->evidence.back().text, "newest 30");
  EXPECT_EQ(store_->ActionsForIncident(id)->size(), 1u);  // one ban, not 31
  IncidentQuery q;
  q.limit = 100;
  EXPECT_EQ(store_->ListIncidents(q)->size(), 1u);

  // Another playbook, the same key: its own incident.
  Incident other = trigger(kT0 + 31 * 60 * kMicrosPerSecond, 3);
  other.playbook = "postfix-rbl";
  EXPECT_NE(Record(other), id);
  // Resolved: the next trigger inside its life opens a new one (the admin said it is over).
  ASSERT_OK(store_->ResolveIncident(id, "false positive"));
  std::vector<Incident> one{trigger(kT0 + 40 * 60 * kMicrosPerSecond, 3)};
  ASSERT_OK(store_->RecordIncidents(&one, kT0));
  EXPECT_NE(one[0].id, id);
  EXPECT_FALSE(one[0].merged);
  EXPECT_EQ(store_->ActionsForIncident(one[0].id)->size(), 1u);
  // An open incident that only recorded its ban (dry-run) does not absorb one that bans (the
  // playbook was switched to enforce); the other way round it does.
  Incident dry = MakeIncident("192.0.2.8", kT0);
  dry.open_until = life;
  dry.mode = PlaybookMode::kDryRun;
  const std::int64_t dry_id = Record(dry);
  Incident enforce = MakeIncident("192.0.2.8", kT0 + 60 * kMicrosPerSecond);
  enforce.open_until = life;
  const std::int64_t enforce_id = Record(enforce);
  EXPECT_NE(enforce_id, dry_id);
  EXPECT_EQ(store_->ActionsForIncident(enforce_id)->at(0).status, ActionStatus::kPending);
  dry.last_seen = kT0 + 120 * kMicrosPerSecond;
  EXPECT_EQ(Record(dry), enforce_id);
  // After the life: a new incident with its ban.
  Incident after = trigger(life, 3);
  after.last_seen = life;
  after.open_until = life + 3600 * kMicrosPerSecond;
  const std::int64_t later = Record(after);
  EXPECT_NE(later, one[0].id);
  EXPECT_EQ(store_->ActionsForIncident(later)->size(), 1u);
}

// What the engine takes at start (PlaybookEngine::ImportOpenIncidents): exactly the incidents a
// trigger would update, i.e. live, not resolved, life not ended.
TEST_F(IncidentStoreTest, IncidentsInTheirLifeAreThoseATriggerWouldUpdate) {
  const UnixMicros now = kT0 + 600 * kMicrosPerSecond;
  auto with_life = [&](const std::string& key, UnixMicros until) {
    Incident inc = MakeIncident(key, kT0);
    inc.open_until = until;
    return inc;
  };
  const std::int64_t open = Record(with_life("192.0.2.1", now + 3600 * kMicrosPerSecond));
  Record(with_life("192.0.2.2", now));  // ended at now
  Record(with_life("192.0.2.3", 0));    // no life (replayed, cluster)
  const std::int64_t resolved = Record(with_life("192.0.2.4", now + kMicrosPerSecond));
  ASSERT_OK(store_->ResolveIncident(resolved, "false positive"));
  const std::int64_t acked = Record(with_life("192.0.2.5", now + kMicrosPerSecond));
  ASSERT_OK(store_->AcknowledgeIncident(acked, "looking"));
  Incident replayed = with_life("192.0.2.6", now + kMicrosPerSecond);
  replayed.origin = IncidentOrigin::kReplay;
  Record(replayed);

  auto live = store_->IncidentsInTheirLife(now, 100);
  ASSERT_OK(live);
  std::vector<std::int64_t> ids;
  for (const Incident& i : *live) ids.push_back(i.id);
  EXPECT_EQ(ids, (std::vector<std::int64_t>{open, acked}));
  EXPECT_EQ(live->front().open_until, now + 3600 * kMicrosPerSecond);
  EXPECT_EQ(live->front().key, "192.0.2.1");
  EXPECT_EQ(store_->IncidentsInTheirLife(now, 1)->size(), 1u);
}

TEST_F(IncidentStoreTest, EventCountsAddUpAcrossWritesAndComposeInOneTransaction) {
  const UnixMicros h = kT0 - kT0 % (3600 * kMicrosPerSecond);
  Status s = store_->InTransaction([&]() -> Status {
    MXWARD_RETURN_IF_ERROR(store_->AddEventCounts(h, {{"auth_failure", 10}, {"delivery", 3}}));
    return store_->AddEventCounts(h, {{"auth_failure", 5}});
  });
  ASSERT_OK(s);
  ASSERT_TRUE(store_->AddEventCounts(h + 3600 * kMicrosPerSecond, {{"delivery", 1}}).ok());
  auto c = store_->EventCountsSince(h);
  ASSERT_OK(c);
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0], (std::pair<std::string, std::int64_t>{"auth_failure", 15}));
  EXPECT_EQ((*c)[1], (std::pair<std::string, std::int64_t>{"delivery", 4}));
  EXPECT_EQ(store_->EventCountsSince(h + 1)->size(), 1u);

  // A failing transaction leaves nothing behind, nested writes included.
  s = store_->InTransaction([&]() -> Status {
    MXWARD_RETURN_IF_ERROR(store_->AddEventCounts(h, {{"auth_failure", 1000}}));
    return Status::Internal("changed my mind");
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ((*store_->EventCountsSince(h))[0].second, 15);
}

TEST_F(IncidentStoreTest, InputCursorsAreKeptPerInputAndReplaced) {
  auto none = store_->LoadInputCursor("journal");
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  ASSERT_OK(store_->SaveInputCursor("journal", "s=1;i=5", kT0));
  ASSERT_OK(store_->SaveInputCursor("remote", "/var/log/journal/remote\ts=2;i=9\n", kT0));
  ASSERT_OK(store_->SaveInputCursor("journal", "s=1;i=6", kT0 + 1));
  auto c = store_->LoadInputCursor("journal");
  ASSERT_OK(c);
  EXPECT_EQ(c->value_or(""), "s=1;i=6");
  c = store_->LoadInputCursor("remote");
  ASSERT_OK(c);
  EXPECT_EQ(c->value_or(""), "/var/log/journal/remote\ts=2;i=9\n");
}

TEST_F(IncidentStoreTest, SummariesForStats) {
  const UnixMicros hour = 3600 * kMicrosPerSecond;
  const UnixMicros h0 = kT0 - kT0 % hour;
  Record(MakeIncident("192.0.2.1", h0 + 5));
  Record(MakeIncident("192.0.2.1", h0 + 10));
  Incident d = MakeIncident("192.0.2.2", h0 + 2 * hour);
  d.playbook = "dovecot-auth";
  Record(d);
  auto pb = store_->IncidentsPerPlaybook(h0);
  ASSERT_EQ(pb->size(), 2u);
  EXPECT_EQ((*pb)[0].name, "postfix-sasl");
  EXPECT_EQ((*pb)[0].count, 2);
  auto top = store_->TopOffenders(h0, 1);
  ASSERT_EQ(top->size(), 1u);
  EXPECT_EQ((*top)[0].name, "client_ip 192.0.2.1");
  auto per_hour = store_->IncidentsPerHour(h0);
  ASSERT_EQ(per_hour->size(), 2u);
  EXPECT_EQ((*per_hour)[0], (std::pair<UnixMicros, std::int64_t>{h0, 2}));
  EXPECT_EQ((*per_hour)[1], (std::pair<UnixMicros, std::int64_t>{h0 + 2 * hour, 1}));
}

TEST_F(IncidentStoreTest, PruneResolvedDeletesOldResolvedIncidentsWithTheirRows) {
  const std::int64_t old_resolved = Record(MakeIncident("192.0.2.1", kT0));
  const std::int64_t old_open = Record(MakeIncident("192.0.2.2", kT0));
  const std::int64_t new_resolved =
      Record(MakeIncident("192.0.2.3", kT0 + 86400 * kMicrosPerSecond));
  ASSERT_TRUE(store_->ResolveIncident(old_resolved, "done").ok());
  ASSERT_TRUE(store_->ResolveIncident(new_resolved, "").ok());
  auto old_actions = store_->ActionsForIncident(old_resolved);
  ASSERT_OK(old_actions);
  for (const auto& a : *old_actions) {
    ASSERT_TRUE(store_->MarkActionDone(a.id, kT0).ok());
  }
  auto n = store_->PruneResolved(kT0 + 3600 * kMicrosPerSecond);
  ASSERT_OK(n);
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(store_->GetIncident(old_resolved).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(store_->ActionsForIncident(old_resolved)->empty());
  EXPECT_TRUE(store_->NotesForIncident(old_resolved)->empty());
  EXPECT_TRUE(store_->GetIncident(old_open).ok());
  EXPECT_TRUE(store_->GetIncident(new_resolved).ok());
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(store_->db(), "SELECT count(*) FROM evidence WHERE incident_id = ?",
                               -1, &q, nullptr),
            SQLITE_OK);
  sqlite3_bind_int64(q, 1, old_resolved);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(q, 0), 0);
  sqlite3_finalize(q);
}

// WAL: the CLI reads while the daemon's writer holds its transaction open, without waiting, and
// sees only what was committed.
TEST_F(IncidentStoreTest, ReadersDoNotWaitForAnOpenWriteTransaction) {
  const std::int64_t committed = Record(MakeIncident("192.0.2.1", kT0));
  StoreOptions no_wait;
  no_wait.busy_timeout_ms = 0;
  auto reader = IncidentStore::Open(dir_.file("state.db"), no_wait);
  ASSERT_OK(reader);
  Status s = store_->InTransaction([&]() -> Status {
    std::vector<Incident> batch{MakeIncident("192.0.2.2", kT0)};
    MXWARD_RETURN_IF_ERROR(store_->RecordIncidents(&batch, kT0));
    auto seen = (*reader)->ListIncidents({});
    if (!seen.ok()) return seen.status();
    EXPECT_EQ(seen->size(), 1u);
    if (!seen->empty()) {
      EXPECT_EQ((*seen)[0].id, committed);
    }
    // A second writer cannot start meanwhile, and says so instead of hanging.
    EXPECT_EQ((*reader)->AcknowledgeIncident(committed, "").code(), Status::Code::kUnavailable);
    return Status::Ok();
  });
  ASSERT_OK(s);
  EXPECT_EQ((*reader)->ListIncidents({})->size(), 2u);
}

// --- claim protocol, dead owners, timed suspensions ---------------------------------------------

ClaimVerdict Take(const ActionRecord&) { return {}; }

TEST_F(IncidentStoreTest, ClaimTakesDueActionsOnceAndRecordsTheOwner) {
  const auto a = store_->EnqueueAction(0, {"ban", {{"address", "192.0.2.1"}}, false}, false, kT0);
  const auto b = store_->EnqueueAction(0, {"ban", {{"address", "192.0.2.2"}}, false}, false, kT0);
  const auto c = store_->EnqueueAction(0, {"mail", {{"to", "x@example.org"}}, false}, false, kT0);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ClaimRequest r;
  r.now = kT0;
  r.lease_until = kT0 + 300 * kMicrosPerSecond;
  r.owner = 77;
  r.skip_types = {"mail"};
  auto got = store_->ClaimDueActions(r, [&](const ActionRecord& x) -> ClaimVerdict {
    if (x.id == *b) return {ClaimVerdict::Kind::kSettle, ActionStatus::kRefused, "allowlisted"};
    return {};
  });
  ASSERT_OK(got);
  ASSERT_EQ(got->claimed.size(), 1u);
  EXPECT_EQ(got->claimed[0].id, *a);
  EXPECT_EQ(got->claimed[0].claimed_by, 77);
  EXPECT_EQ(store_->GetAction(*b)->status, ActionStatus::kRefused);
  EXPECT_EQ(store_->GetAction(*b)->last_error, "allowlisted");
  // A second claimer sees neither the claimed nor the settled one, only the mail.
  r.skip_types.clear();
  r.owner = 78;
  got = store_->ClaimDueActions(r, Take);
  ASSERT_OK(got);
  ASSERT_EQ(got->claimed.size(), 1u);
  EXPECT_EQ(got->claimed[0].id, *c);
  EXPECT_EQ(*store_->ClaimOwners(kT0), (std::vector<std::int64_t>{77, 78}));
  // Owner 77 died: its claim is due again at once; done actions lose their owner.
  EXPECT_EQ(*store_->ReleaseClaimsOf(77, kT0 + 1), 1);
  EXPECT_EQ(store_->GetAction(*a)->claimed_by, 0);
  ASSERT_TRUE(store_->MarkActionDone(*c, kT0 + 1).ok());
  EXPECT_EQ(store_->GetAction(*c)->claimed_by, 0);
  EXPECT_TRUE(store_->ClaimOwners(kT0 + 1)->empty());
  auto due = store_->DueActions(kT0 + 1, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].id, *a);
}

TEST_F(IncidentStoreTest, ReleaseHandsClaimedActionsBack) {
  const auto a = store_->EnqueueAction(0, {"ban", {{"address", "192.0.2.1"}}, false}, false, kT0);
  ClaimRequest r;
  r.now = kT0;
  r.lease_until = kT0 + 300 * kMicrosPerSecond;
  r.owner = 5;
  ASSERT_EQ(store_->ClaimDueActions(r, Take)->claimed.size(), 1u);
  EXPECT_TRUE(store_->DueActions(kT0, 10)->empty());
  ASSERT_TRUE(store_->ReleaseActions({*a}, kT0).ok());
  EXPECT_EQ(store_->DueActions(kT0, 10)->size(), 1u);
  EXPECT_EQ(store_->GetAction(*a)->claimed_by, 0);
}

TEST_F(IncidentStoreTest, AnExpiredSuspensionQueuesExactlyOneRevertAcrossConnections) {
  SuspensionRecord timed{
      "alice@example.org", "suspend", {{"active", true}}, kT0, kT0 + 3600 * kMicrosPerSecond, 7, 0};
  SuspensionRecord forever{
      "bob@example.org", "suspend_sending", {{"smtp_active", true}}, kT0, 0, 8, 0};
  ASSERT_TRUE(store_->UpsertSuspension(timed).ok());
  ASSERT_TRUE(store_->UpsertSuspension(forever).ok());
  EXPECT_TRUE(store_->QueueExpiredSuspensionReverts(kT0 + 3599 * kMicrosPerSecond)->empty());
  auto ids = store_->QueueExpiredSuspensionReverts(kT0 + 3600 * kMicrosPerSecond);
  ASSERT_OK(ids);
  ASSERT_EQ(ids->size(), 1u);
  auto revert = store_->GetAction((*ids)[0]);
  EXPECT_TRUE(revert->revert);
  EXPECT_EQ(revert->type, "suspend");
  EXPECT_EQ(revert->incident_id, 7);
  EXPECT_EQ(revert->params["user"], "alice@example.org");
  // Again, and from another connection (a restarted daemon): nothing more.
  EXPECT_TRUE(store_->QueueExpiredSuspensionReverts(kT0 + 7200 * kMicrosPerSecond)->empty());
  auto other = IncidentStore::Open(dir_.file("state.db"));
  ASSERT_OK(other);
  EXPECT_TRUE((*other)->QueueExpiredSuspensionReverts(kT0 + 7200 * kMicrosPerSecond)->empty());
  auto all = (*other)->ActiveSuspensions();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].revert_action_id, (*ids)[0]);
  EXPECT_EQ((*all)[1].revert_action_id, 0);
}

// The incidents, baselines and bans tables as schema version 1 created them: what later
// migrations alter.
#define kVersion1IncidentsBaselinesBans                                   \
  "CREATE TABLE incidents (id INTEGER PRIMARY KEY, playbook TEXT NOT "    \
  "NULL, description TEXT NOT NULL DEFAULT '', severity TEXT NOT NULL, "  \
  "mode TEXT NOT NULL, key_kind TEXT NOT NULL, key TEXT NOT NULL, "       \
  "trigger TEXT NOT NULL DEFAULT '', first_seen INTEGER NOT NULL, "       \
  "last_seen INTEGER NOT NULL, count INTEGER NOT NULL, window_seconds "   \
  "INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'open', "     \
  "evidence_count INTEGER NOT NULL DEFAULT 0, action_count INTEGER NOT "  \
  "NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT "  \
  "NULL);"                                                                \
  "CREATE TABLE baselines (playbook TEXT NOT NULL, key TEXT NOT NULL, "   \
  "value TEXT NOT NULL, last_seen INTEGER NOT NULL, PRIMARY KEY "         \
  "(playbook, key, value)) WITHOUT ROWID;"                                \
  "CREATE TABLE bans (prefix TEXT PRIMARY KEY, created_at INTEGER NOT "   \
  "NULL, until INTEGER NOT NULL DEFAULT 0, incident_id INTEGER NOT NULL " \
  "DEFAULT 0, reason TEXT NOT NULL DEFAULT '');"

// The notes and actions tables as version 1 created them: v10 puts its triggers on them.
#define kVersion1Notes                                                         \
  "CREATE TABLE notes (id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL, " \
  "time INTEGER NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL);"
#define kVersion1Actions                                                    \
  "CREATE TABLE actions (id INTEGER PRIMARY KEY, incident_id INTEGER "      \
  "NOT NULL DEFAULT 0, type TEXT NOT NULL, params TEXT NOT NULL, status "   \
  "TEXT NOT NULL, revert INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT " \
  "NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', idempotency_key "   \
  "TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, updated_at "      \
  "INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL DEFAULT 0);"

TEST(IncidentStoreOpenTest, MigratesAVersion1FileKeepingItsRows) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    // The version-1 tables the migrations touch, as version 1 created them.
    ASSERT_EQ(sqlite3_exec(db,
                           kVersion1Actions kVersion1Notes
                           "CREATE TABLE suspensions (user TEXT NOT NULL, kind TEXT NOT NULL, "
                           "previous TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, "
                           "until INTEGER NOT NULL DEFAULT 0, incident_id INTEGER NOT NULL "
                           "DEFAULT 0, PRIMARY KEY (user, kind));" kVersion1IncidentsBaselinesBans
                           "INSERT INTO actions (type, params, status, created_at, updated_at) "
                           "VALUES ('ban', '{}', 'pending', 1, 1);"
                           "INSERT INTO incidents (playbook, severity, mode, key_kind, key, "
                           "first_seen, last_seen, count, created_at, updated_at) VALUES "
                           "('postfix-sasl', 'high', 'enforce', 'client_ip', '192.0.2.7', 1, 2, "
                           "20, 1, 1);"
                           "INSERT INTO baselines VALUES ('out', 'alice', 'a.example', 5);"
                           "PRAGMA user_version=1;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  // Only the later migrations run (v1 would fail: the tables exist).
  auto s = IncidentStore::Open(path);
  ASSERT_OK(s);
  auto a = (*s)->GetAction(1);
  ASSERT_OK(a);
  EXPECT_EQ(a->claimed_by, 0);
  EXPECT_TRUE((*s)->ActiveSuspensions()->empty());
  // v5: an incident from before it is live; a baseline entry's first use is unknown.
  auto incidents = (*s)->ListIncidents(IncidentQuery{});
  ASSERT_OK(incidents);
  ASSERT_EQ(incidents->size(), 1u);
  EXPECT_EQ((*incidents)[0].origin, IncidentOrigin::kLive);
  auto b = (*s)->LoadBaselines("out", 0);
  ASSERT_OK(b);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].first_seen, 0);
}

// Issue 15: one ban per (prefix, ports); removal of one scope or of all.
TEST_F(IncidentStoreTest, BansOfOneAddressInTwoScopes) {
  BanRecord web{"192.0.2.7", kT0, kT0 + 100, 3, "webmail", "web"};
  BanRecord mail{"192.0.2.7", kT0, kT0 + 300, 4, "imap"};  // ports default: mail
  ASSERT_OK(store_->UpsertBan(web));
  ASSERT_OK(store_->UpsertBan(mail));
  web.until = kT0 + 200;  // a longer ban of the same scope replaces the first
  ASSERT_OK(store_->UpsertBan(web));
  auto bans = store_->ActiveBans(kT0 + 150);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 2u);
  std::set<std::string> scopes;
  for (const BanRecord& b : *bans) scopes.insert(b.ports + "@" + std::to_string(b.until - kT0));
  EXPECT_EQ(scopes, (std::set<std::string>{"mail@300", "web@200"}));
  ASSERT_OK(store_->RemoveBan("192.0.2.7", "web"));
  ASSERT_EQ(store_->ActiveBans(kT0)->size(), 1u);
  EXPECT_EQ(store_->ActiveBans(kT0)->front().ports, "mail");
  ASSERT_OK(store_->UpsertBan(web));
  ASSERT_OK(store_->RemoveBan("192.0.2.7"));
  EXPECT_TRUE(store_->ActiveBans(kT0)->empty());
}

// The v4 migration keeps every earlier ban, as a "mail" ban (what the kernel rule covered).
TEST(IncidentStoreOpenTest, MigratesVersion3BansToTheMailScope) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    // The version-3 tables later migrations change, as version 1 created them (v2 and v3 did
    // not touch them; v2 added a column to actions, which v10 does not need).
    ASSERT_EQ(sqlite3_exec(db,
                           kVersion1IncidentsBaselinesBans kVersion1Actions kVersion1Notes
                           "INSERT INTO bans VALUES ('192.0.2.7', 1, 0, 5, 'old');"
                           "INSERT INTO bans VALUES ('198.51.100.0/24', 1, 0, 6, 'old net');"
                           "PRAGMA user_version=3;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = IncidentStore::Open(path);
  ASSERT_OK(s);
  auto bans = (*s)->ActiveBans(2);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 2u);
  for (const BanRecord& b : *bans) EXPECT_EQ(b.ports, "mail") << b.prefix;
  EXPECT_EQ((*bans)[0].incident_id, 5);
  ASSERT_OK((*s)->UpsertBan({"192.0.2.7", 3, 0, 7, "webmail", "web"}));
  EXPECT_EQ((*s)->ActiveBans(4)->size(), 3u);
}

TEST(IncidentStoreOpenTest, RefusesAFileFromANewerVersion) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  {
    auto s = IncidentStore::Open(path);
    ASSERT_OK(s);
    ASSERT_EQ(sqlite3_exec((*s)->db(), "PRAGMA user_version=99", nullptr, nullptr, nullptr),
              SQLITE_OK);
  }
  auto s = IncidentStore::Open(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.status().message().find("newer mxward"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("99"), std::string::npos);
  EXPECT_NE(s.status().message().find(path), std::string::npos);
}

TEST(IncidentStoreOpenTest, ReopensWithoutMigratingAgainAndUsesWal) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  { ASSERT_TRUE(IncidentStore::Open(path).ok()); }
  auto s = IncidentStore::Open(path);
  ASSERT_OK(s);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2((*s)->db(), "PRAGMA journal_mode", -1, &q, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), "wal");
  sqlite3_finalize(q);
  ASSERT_EQ(sqlite3_prepare_v2((*s)->db(), "PRAGMA user_version", -1, &q, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), IncidentStore::kSchemaVersion);
  sqlite3_finalize(q);
}

TEST(IncidentStoreOpenTest, NotADatabaseIsAClearError) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("this is a text file, not SQLite, and it is long enough to have a header page\n", f);
  fclose(f);
  auto s = IncidentStore::Open(path);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("not an mxward database"), std::string::npos)
      << s.status().ToString();
}

TEST(IncidentStoreOpenTest, ReadOnlyOpenOfAMissingFileSaysSo) {
  TempDir dir;
  StoreOptions ro;
  ro.read_only = true;
  auto s = IncidentStore::Open(dir.file("none.db"), ro);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kNotFound);
}

// A writer killed at an arbitrary point leaves a file that passes integrity_check, in which every
// incident it committed is complete (all evidence and actions) and no incident is partial.
TEST(IncidentStoreCrashTest, KilledWriterLeavesAConsistentFile) {
  std::random_device rd;
  const unsigned seed = rd();
  std::mt19937 rng(seed);
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " round " + std::to_string(round));
    TempDir dir;
    const std::string path = dir.file("state.db");
    { ASSERT_TRUE(IncidentStore::Open(path).ok()); }
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      auto store = IncidentStore::Open(path);
      if (!store.ok()) _exit(1);
      for (int i = 0;; ++i) {
        std::vector<Incident> batch;
        for (int j = 0; j < 5; ++j) {
          batch.push_back(MakeIncident("192.0.2." + std::to_string(j), kT0 + i, 7 + j, 1 + j % 3));
        }
        if (!(*store)->RecordIncidents(&batch, kT0).ok()) _exit(2);
        if ((*store)->AddEventCounts(kT0, {{"auth_failure", 1}}).code() != Status::Code::kOk) {
          _exit(3);
        }
        // Report the committed ids; the parent kills us after a random number of them.
        for (const auto& inc : batch) {
          std::int64_t id = inc.id;
          if (write(fds[1], &id, sizeof id) != sizeof id) _exit(4);
        }
      }
    }
    close(fds[1]);
    const int kill_after = std::uniform_int_distribution<int>(1, 400)(rng);
    std::set<std::int64_t> committed;
    for (int n = 0; n < kill_after; ++n) {
      std::int64_t id = 0;
      ASSERT_EQ(read(fds[0], &id, sizeof id), static_cast<ssize_t>(sizeof id));
      committed.insert(id);
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited by itself: " << status;

    auto store = IncidentStore::Open(path);
    ASSERT_OK(store);
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2((*store)->db(), "PRAGMA integrity_check", -1, &q, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), "ok");
    sqlite3_finalize(q);

    IncidentQuery all;
    all.limit = 1'000'000;
    auto list = (*store)->ListIncidents(all);
    ASSERT_OK(list);
    std::set<std::int64_t> present;
    for (const Incident& listed : *list) {
      present.insert(listed.id);
      auto inc = (*store)->GetIncident(listed.id);
      ASSERT_OK(inc);
      const int j = inc->key.back() - '0';
      EXPECT_EQ(inc->evidence.size(), static_cast<std::size_t>(7 + j)) << listed.id;
      EXPECT_EQ(inc->actions.size(), static_cast<std::size_t>(1 + j % 3)) << listed.id;
    }
    for (std::int64_t id : committed) EXPECT_TRUE(present.count(id)) << "lost incident " << id;
    EXPECT_EQ(present.size() % 5, 0u) << "a batch was written in part";
  }
}

// Issue 16: SQLite opens a file this user cannot write read-only even when asked for read-write,
// and such a connection never heals. Open refuses it instead, so a writer that opens again later
// (the executors and the dispatcher open lazily) gets a writable connection once the permissions
// are fixed, without a restart.
TEST(IncidentStoreOpenTest, ReadWriteOpenOfAFileThisUserCannotWriteIsRefusedThenHeals) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to open the store as another uid)";
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const std::string lib = dir.file("lib");
  ASSERT_EQ(::mkdir(lib.c_str(), 0755), 0);
  ASSERT_EQ(::chown(lib.c_str(), 65534, 65534), 0);  // the daemon's directory
  const std::string db = lib + "/state.db";
  ASSERT_OK(IncidentStore::Open(db));  // created by root, closed: no -wal left
  ASSERT_EQ(::chmod(db.c_str(), 0644), 0);

  // In a child running as uid 65534: 0 refused with PermissionDenied, 1 opened and wrote, 2
  // opened but could not write, 3 another error.
  auto open_as_nobody = [&] {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(4);
      auto store = IncidentStore::Open(db);
      if (!store.ok()) {
        ::_exit(store.status().code() == Status::Code::kPermissionDenied ? 0 : 3);
      }
      ::_exit((*store)->SaveClusterValue("probe", 1).ok() ? 1 : 2);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(open_as_nobody(), 0) << "a read-only connection was handed out as read-write";
  ASSERT_EQ(::chown(db.c_str(), 65534, 65534), 0);  // the admin fixes the owner
  EXPECT_EQ(open_as_nobody(), 1);
}

AllowRecord AllowRow(std::string prefix, UnixMicros created_at, UnixMicros expires_at,
                     std::string note, std::string by) {
  AllowRecord r;
  r.prefix = std::move(prefix);
  r.created_at = created_at;
  r.expires_at = expires_at;
  r.note = std::move(note);
  r.created_by = std::move(by);
  return r;
}

TEST_F(IncidentStoreTest, RuntimeAllowlistAddRemoveExpireList) {
  const UnixMicros hour = 3600 * kMicrosPerSecond;
  auto id = store_->AddAllow(AllowRow("203.0.113.0/24", kT0, kT0 + hour, "office NAT", "root"));
  ASSERT_OK(id);
  ASSERT_OK(store_->AddAllow(AllowRow("2001:db8::/64", kT0, 0, "", "alice")));
  // Not canonical: host bits after the prefix length.
  EXPECT_EQ(store_->AddAllow(AllowRow("203.0.113.9/24", kT0, 0, "", "root")).status().code(),
            Status::Code::kInvalidArgument);

  auto now = store_->ListAllow(kT0 + 1);
  ASSERT_OK(now);
  ASSERT_EQ(now->size(), 2u);
  EXPECT_EQ((*now)[0].prefix, "203.0.113.0/24");
  EXPECT_EQ((*now)[0].expires_at, kT0 + hour);
  EXPECT_EQ((*now)[0].note, "office NAT");
  EXPECT_EQ((*now)[0].created_by, "root");
  EXPECT_EQ((*now)[1].prefix, "2001:db8::/64");
  EXPECT_EQ((*now)[1].expires_at, 0);

  // Expired at its time: no longer listed, no longer removable.
  auto later = store_->ListAllow(kT0 + hour);
  ASSERT_OK(later);
  ASSERT_EQ(later->size(), 1u);
  EXPECT_EQ((*later)[0].prefix, "2001:db8::/64");
  EXPECT_EQ(store_->RemoveAllow("203.0.113.0/24", kT0 + hour, "root").code(),
            Status::Code::kNotFound);

  ASSERT_OK(store_->RemoveAllow("2001:db8::/64", kT0 + 2, "bob"));
  EXPECT_EQ(store_->RemoveAllow("2001:db8::/64", kT0 + 3, "bob").code(), Status::Code::kNotFound);
  auto left = store_->ListAllow(kT0 + 4);  // before its hour is over
  ASSERT_OK(left);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].prefix, "203.0.113.0/24");

  // Adding a prefix again replaces the current entry; --all keeps the history, newest first.
  ASSERT_OK(store_->AddAllow(AllowRow("192.0.2.7", kT0, 0, "first", "root")));
  ASSERT_OK(store_->AddAllow(AllowRow("192.0.2.7", kT0 + 5, 0, "second", "root")));
  auto current = store_->ListAllow(kT0 + 6);
  ASSERT_OK(current);
  ASSERT_EQ(current->size(), 2u);
  EXPECT_EQ((*current)[0].prefix, "192.0.2.7");  // by family and address
  EXPECT_EQ((*current)[0].note, "second");
  auto all = store_->ListAllow(kT0 + 6, /*all=*/true);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].note, "second");
  EXPECT_EQ((*all)[0].removed_at, 0);
  EXPECT_EQ((*all)[1].note, "first");
  EXPECT_EQ((*all)[1].removed_at, kT0 + 5);
  EXPECT_EQ((*all)[2].removed_by, "bob");
}

// The recorder's one transaction per batch (InTransactionNoSavepoints): the store's own methods
// inside it take no savepoint, and an error anywhere rolls every one of them back.
TEST(IncidentStoreTransactionTest, ANoSavepointTransactionIsAllOrNothing) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  std::vector<Incident> batch = {MakeIncident("198.51.100.1", kT0)};
  Status st = (*store)->InTransactionNoSavepoints([&]() -> Status {
    MXWARD_RETURN_IF_ERROR((*store)->AddEventCounts(kT0, {{"auth_failure", 3}}));
    MXWARD_RETURN_IF_ERROR((*store)->RecordIncidents(&batch, kT0));
    return Status::IoError("the disk went away");
  });
  EXPECT_FALSE(st.ok());
  IncidentQuery q;
  auto listed = (*store)->ListIncidents(q);
  ASSERT_OK(listed);
  EXPECT_TRUE(listed->empty());
  auto counts = (*store)->EventCountsSince(0);
  ASSERT_OK(counts);
  EXPECT_TRUE(counts->empty());

  // The same, succeeding, then a plain transaction after it still nests with savepoints.
  ASSERT_OK((*store)->InTransactionNoSavepoints([&]() -> Status {
    MXWARD_RETURN_IF_ERROR((*store)->AddEventCounts(kT0, {{"auth_failure", 3}}));
    return (*store)->RecordIncidents(&batch, kT0);
  }));
  EXPECT_GT(batch[0].id, 0);
  std::vector<Incident> second = {MakeIncident("198.51.100.2", kT0)};
  ASSERT_OK((*store)->InTransaction([&]() -> Status {
    Status inner = (*store)->InTransaction([&]() -> Status {
      MXWARD_RETURN_IF_ERROR((*store)->RecordIncidents(&second, kT0));
      return Status::IoError("inner");
    });
    EXPECT_FALSE(inner.ok());
    return Status::Ok();  // the outer goes on: the savepoint undid the inner's rows
  }));
  listed = (*store)->ListIncidents(q);
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, "198.51.100.1");
}

}  // namespace
}  // namespace mxward
