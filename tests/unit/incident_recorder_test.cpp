// IncidentRecorder against a real SQLite store, including one on a tiny tmpfs that the test fills
// (a real "database or disk is full") and empties again: incidents are held in memory without
// blocking the caller, evidence beyond the bound is shed and counted, the overflow is counted,
// store_error() reports it, and everything held is written in order when space returns. A store
// that is writable but behind (another connection holds SQLite's write lock) pushes back
// instead: the caller waits, nothing is dropped or shed.
#include "mxward/incident_recorder.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "support/eventually.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "support/tiny_filesystem.h"

using mxward::testing::Eventually;

namespace mxward {
namespace {

using testing::TempDir;
using testing::TinyFilesystem;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

Incident MakeIncident(int n, int evidence = 10) {
  Incident inc;
  inc.playbook = "postfix-sasl";
  inc.description = "SASL brute force";
  inc.key_kind = "client_ip";
  inc.key = "192.0.2." + std::to_string(n % 250 + 1);
  inc.trigger = "incident " + std::to_string(n);  // order check
  inc.first_seen = kT0 + n * kMicrosPerSecond;
  inc.last_seen = inc.first_seen;
  inc.count = 10;
  for (int i = 0; i < evidence; ++i) {
    // Long lines, so a few incidents need more room than a full tmpfs has.
    inc.evidence.push_back({inc.first_seen + i, "evidence " + std::to_string(i) + " " +
                                                    std::string(300, 'a' + i % 26)});
  }
  inc.actions.push_back({"ban", {{"address", inc.key}, {"duration_s", 3600}}, false});
  return inc;
}

std::vector<Incident> AllIncidents(const std::string& path) {
  auto store = IncidentStore::Open(path);
  EXPECT_OK(store);
  if (!store.ok()) return {};
  IncidentQuery q;
  q.limit = 100000;
  auto list = (*store)->ListIncidents(q);
  EXPECT_OK(list);
  std::vector<Incident> out;
  for (const auto& inc : *list) {
    auto full = (*store)->GetIncident(inc.id);
    EXPECT_OK(full);
    if (full.ok()) out.push_back(*full);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

TEST(IncidentRecorderTest, WritesAnIncidentWithoutAFlushAndNotifies) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  std::atomic<int> notified{0};
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  IncidentRecorder rec(
      std::move(*store), SystemClock::Instance(), [&] { ++notified; }, o);
  rec.OnIncident(MakeIncident(1));
  // No Flush(): the writer takes work as soon as it is idle, no timer.
  ASSERT_TRUE(Eventually([&] { return notified.load() == 1; }));
  EXPECT_EQ(rec.stats().recorded.load(), 1u);
  EXPECT_EQ(rec.stats().held.load(), 0u);
  EXPECT_OK(rec.store_error());
  EXPECT_EQ(rec.Stop(), 0u);
  auto all = AllIncidents(dir.file("state.db"));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].evidence.size(), 10u);
}

// Commits on a store's connection, counted by SQLite's commit hook (a savepoint inside a
// transaction is not one).
struct CommitCounter {
  std::atomic<int> commits{0};
  void Attach(IncidentStore* store) {
    sqlite3_commit_hook(
        store->db(),
        [](void* self) {
          ++static_cast<CommitCounter*>(self)->commits;
          return 0;
        },
        this);
  }
};

// Replay's writer (a linger) waits for a full batch: 256 incidents handed over one by one are
// one transaction, where the daemon's writer (no linger) would have committed as soon as the
// first arrived.
TEST(IncidentRecorderTest, WithALingerAFullBatchIsOneCommit) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  CommitCounter counter;
  counter.Attach(store->get());
  RecorderOptions o;
  o.overflow = OverflowPolicy::kBlock;
  o.linger = std::chrono::minutes(10);  // only a full batch, Flush() or Stop() ends it
  std::atomic<int> notified{0};
  IncidentRecorder rec(
      std::move(*store), SystemClock::Instance(), [&] { ++notified; }, o);
  for (int i = 0; i < 256; ++i) rec.OnIncident(MakeIncident(i, 2));
  ASSERT_TRUE(Eventually([&] { return notified.load() == 1; }));
  EXPECT_EQ(counter.commits.load(), 1);
  EXPECT_EQ(rec.stats().recorded.load(), 256u);
  EXPECT_EQ(rec.Stop(), 0u);
  EXPECT_EQ(AllIncidents(dir.file("state.db")).size(), 256u);
}

// The hourly counts and the incidents that wait with them are written in one commit, and Flush()
// does not wait out the linger.
TEST(IncidentRecorderTest, CountsAndIncidentsGoInOneCommitAndFlushSkipsTheLinger) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  CommitCounter counter;
  counter.Attach(store->get());
  RecorderOptions o;
  o.overflow = OverflowPolicy::kBlock;
  o.linger = std::chrono::minutes(10);
  IncidentRecorder rec(std::move(*store), SystemClock::Instance(), nullptr, o);
  rec.AddEventCounts(kT0, {{"auth_failure", 7}});
  rec.OnIncident(MakeIncident(1, 2));
  rec.OnIncident(MakeIncident(2, 2));
  ASSERT_TRUE(rec.Flush(std::chrono::seconds(30)));
  EXPECT_EQ(counter.commits.load(), 1);
  EXPECT_EQ(rec.stats().recorded.load(), 2u);
  EXPECT_EQ(rec.Stop(), 0u);
  auto check = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(check);
  auto counts = (*check)->EventCountsSince(0);
  ASSERT_OK(counts);
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].second, 7);
}

// An input batch's incidents and its cursor are written together: a trigger logs, at each write
// of the cursor row, how many incidents the store has at that moment. Exactly those of the
// batches up to that cursor: never fewer (the cursor would skip them after a crash), never more
// (the next batch's would be opened again when it is re-read).
TEST(IncidentRecorderTest, AnInputBatchIsWrittenWithItsCursorNeverApart) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  ASSERT_EQ(sqlite3_exec((*store)->db(),
                         "CREATE TABLE cursor_log (cursor TEXT, incidents INTEGER);"
                         "CREATE TRIGGER log_insert AFTER INSERT ON input_cursors BEGIN "
                         "INSERT INTO cursor_log SELECT NEW.cursor, count(*) FROM incidents; END;"
                         "CREATE TRIGGER log_update AFTER UPDATE ON input_cursors BEGIN "
                         "INSERT INTO cursor_log SELECT NEW.cursor, count(*) FROM incidents; END;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.batch_size = 3;  // odd: a write batch would end in the middle of an input batch
  IncidentRecorder rec(std::move(*store), SystemClock::Instance(), nullptr, o);
  constexpr int kN = 60;
  for (int i = 0; i < kN; ++i) {
    rec.BeginInputBatch("journal");
    rec.OnIncident(MakeIncident(2 * i, 1));
    rec.OnIncident(MakeIncident(2 * i + 1, 1));
    rec.SaveInputCursor("journal", std::to_string(i + 1));  // after 2 * (i + 1) incidents
  }
  ASSERT_TRUE(rec.Flush(std::chrono::seconds(30)));
  EXPECT_EQ(rec.Stop(), 0u);
  auto check = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(check);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2((*check)->db(), "SELECT cursor, incidents FROM cursor_log", -1, &q,
                               nullptr),
            SQLITE_OK);
  int rows = 0;
  std::string last;
  while (sqlite3_step(q) == SQLITE_ROW) {
    ++rows;
    last = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    EXPECT_EQ(sqlite3_column_int(q, 1), 2 * std::stoi(last)) << "cursor " << last;
  }
  sqlite3_finalize(q);
  EXPECT_GE(rows, 1);
  EXPECT_EQ(last, std::to_string(kN));
  EXPECT_EQ((*check)->LoadInputCursor("journal")->value_or(""), std::to_string(kN));
  EXPECT_EQ(AllIncidents(dir.file("state.db")).size(), 2u * kN);
}

// Another connection holding SQLite's write lock: the recorder's writer waits for it (a long
// busy timeout, so it never fails), like a writer that is merely behind.
class WriteLock {
 public:
  explicit WriteLock(const std::string& path) {
    auto s = IncidentStore::Open(path);
    EXPECT_OK(s);
    if (!s.ok()) return;
    store_ = std::move(*s);
    EXPECT_EQ(sqlite3_exec(store_->db(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  void Release() {
    if (store_ && !released_) {
      EXPECT_EQ(sqlite3_exec(store_->db(), "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
    }
    released_ = true;
  }
  ~WriteLock() { Release(); }

 private:
  std::unique_ptr<IncidentStore> store_;
  bool released_ = false;
};

std::unique_ptr<IncidentStore> PatientStore(const std::string& path) {
  StoreOptions so;
  so.busy_timeout_ms = 600'000;
  auto s = IncidentStore::Open(path, so);
  EXPECT_OK(s);
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(IncidentRecorderTest, AWritableStoreThatIsBehindPushesBackAndLosesNothing) {
  TempDir dir;
  const std::string db = dir.file("state.db");
  auto store = PatientStore(db);
  ASSERT_NE(store, nullptr);
  WriteLock lock(db);
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.max_held = 50;
  o.full_evidence_held = 8;  // where a writable store pushes back
  IncidentRecorder rec(std::move(store), SystemClock::Instance(), nullptr, o);
  std::atomic<int> handed{0};
  std::thread producer([&] {
    for (int i = 0; i < 200; ++i) {
      rec.OnIncident(MakeIncident(i));
      ++handed;
    }
  });
  ASSERT_TRUE(Eventually([&] { return rec.stats().pushed_back.load() > 0; }));
  // The ninth call waits while the writer waits for the lock: 8 held, none dropped.
  EXPECT_EQ(handed.load(), 8);
  EXPECT_EQ(rec.stats().held.load(), 8u);
  EXPECT_OK(rec.store_error());
  lock.Release();
  producer.join();
  ASSERT_TRUE(rec.Flush(std::chrono::seconds(60)));
  EXPECT_EQ(rec.Stop(), 0u);
  EXPECT_EQ(rec.stats().dropped.load(), 0u);
  EXPECT_EQ(rec.stats().evidence_shed.load(), 0u);
  EXPECT_EQ(rec.stats().write_errors.load(), 0u);
  EXPECT_EQ(rec.stats().last_dropped_at.load(), 0);
  EXPECT_GE(rec.stats().pushed_back.load(), 1u);
  auto all = AllIncidents(db);
  ASSERT_EQ(all.size(), 200u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(all[i].trigger, "incident " + std::to_string(i));  // in order
    EXPECT_EQ(all[i].evidence.size(), 10u) << i;                 // nothing shed
  }
}

// Stop() while the pipeline's thread is pushed back: the waiting call returns at once (it does
// not wait for the stuck writer), and Stop() finishes when the writer does.
TEST(IncidentRecorderTest, StopWhilePushedBackReleasesTheCallerAndFinishes) {
  TempDir dir;
  const std::string db = dir.file("state.db");
  auto store = PatientStore(db);
  ASSERT_NE(store, nullptr);
  WriteLock lock(db);
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.max_held = 20;
  o.full_evidence_held = 4;
  IncidentRecorder rec(std::move(store), SystemClock::Instance(), nullptr, o);
  std::atomic<bool> produced{false};
  std::thread producer([&] {
    for (int i = 0; i < 10; ++i) rec.OnIncident(MakeIncident(i));
    produced = true;
  });
  ASSERT_TRUE(Eventually([&] { return rec.stats().pushed_back.load() > 0; }));
  EXPECT_FALSE(produced.load());
  std::atomic<bool> stopped{false};
  std::size_t left = 99;
  std::thread stopper([&] {
    left = rec.Stop();
    stopped = true;
  });
  ASSERT_TRUE(Eventually([&] { return produced.load(); }));  // the writer is still stuck
  EXPECT_FALSE(stopped.load());
  lock.Release();
  stopper.join();
  producer.join();
  EXPECT_EQ(left, 0u);  // the last attempt wrote everything
  EXPECT_EQ(AllIncidents(db).size(), 10u);
  EXPECT_EQ(rec.stats().dropped.load(), 0u);
}

// A journal batch larger than where a writable store pushes back: the incidents of the open
// batch are written without waiting for its cursor (which comes only after the producer gets
// room), so the producer never waits for itself.
TEST(IncidentRecorderTest, AnInputBatchLongerThanThePushbackLimitDoesNotWaitForItself) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.full_evidence_held = 4;
  IncidentRecorder rec(std::move(*store), SystemClock::Instance(), nullptr, o);
  std::atomic<bool> done{false};
  std::thread producer([&] {
    rec.BeginInputBatch("journal");
    for (int i = 0; i < 100; ++i) rec.OnIncident(MakeIncident(i, 1));
    rec.SaveInputCursor("journal", "after-100");
    done = true;
  });
  const bool finished = Eventually([&] { return done.load(); });
  if (!finished) rec.Stop();  // releases the waiting producer: the test fails, it does not hang
  producer.join();
  ASSERT_TRUE(finished) << "the producer waited for its own batch";
  ASSERT_TRUE(rec.Flush(std::chrono::seconds(30)));
  EXPECT_EQ(rec.Stop(), 0u);
  EXPECT_EQ(rec.stats().dropped.load(), 0u);
  EXPECT_EQ(AllIncidents(dir.file("state.db")).size(), 100u);
}

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs_.Mount(dir_.file("tiny"), 512 * 1024)) << fs_.error();
    db_ = dir_.file("tiny") + "/state.db";
    auto store = IncidentStore::Open(db_);
    ASSERT_OK(store);
    store_ = std::move(*store);
  }

  TempDir dir_;
  TinyFilesystem fs_;  // after dir_: unmounted before the directory is removed
  std::string db_;
  std::unique_ptr<IncidentStore> store_;
};

TEST_F(DiskFullTest, HoldsShedsAndCountsWhileFullThenWritesEverythingInOrder) {
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.max_held = 40;
  o.full_evidence_held = 5;
  o.shed_evidence_keep = 3;
  o.retry_interval = std::chrono::milliseconds(50);
  std::atomic<int> notified{0};
  IncidentRecorder rec(
      std::move(store_), SystemClock::Instance(), [&] { ++notified; }, o);
  MetricsRegistry registry;
  std::vector<MetricsRegistry::Handle> handles;
  rec.RegisterMetrics(&registry, &handles);

  ASSERT_GT(fs_.Fill(), 0);
  // 50 incidents on a full disk: none of these calls waits longer than the first failed write
  // (the writable store pushes back until then; a call that kept waiting would hang the test).
  for (int i = 0; i < 50; ++i) rec.OnIncident(MakeIncident(i));
  ASSERT_TRUE(Eventually([&] { return rec.stats().write_errors.load() > 0; }));
  EXPECT_EQ(rec.stats().held.load(), 40u);
  EXPECT_EQ(rec.stats().dropped.load(), 10u);
  // Incidents 5..39 kept 3 of their 10 lines.
  EXPECT_EQ(rec.stats().evidence_shed.load(), 35u * 7);
  EXPECT_EQ(rec.stats().store_writable.load(), 0u);
  EXPECT_EQ(rec.stats().recorded.load(), 0u);
  const Status err = rec.store_error();
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.message().find("full"), std::string::npos) << err.message();
  EXPECT_NE(err.message().find("40 incident(s) held"), std::string::npos) << err.message();
  EXPECT_FALSE(rec.Flush(std::chrono::milliseconds(200)));
  const std::string text = registry.Render();
  EXPECT_NE(text.find("mxward_store_held_incidents 40"), std::string::npos) << text;
  EXPECT_NE(text.find("mxward_store_evidence_shed_total 245"), std::string::npos) << text;
  EXPECT_NE(text.find("mxward_store_incidents_dropped_total 10"), std::string::npos) << text;
  EXPECT_NE(text.find("mxward_store_writable 0"), std::string::npos) << text;

  ASSERT_TRUE(fs_.Free());
  ASSERT_TRUE(Eventually([&] { return rec.stats().recorded.load() == 40; }));
  EXPECT_TRUE(rec.Flush(std::chrono::seconds(10)));
  EXPECT_OK(rec.store_error());
  EXPECT_EQ(rec.stats().store_writable.load(), 1u);
  EXPECT_EQ(rec.stats().held.load(), 0u);
  EXPECT_TRUE(Eventually([&] { return notified.load() >= 1; }));  // runs after the commit
  EXPECT_EQ(rec.Stop(), 0u);

  auto all = AllIncidents(db_);
  ASSERT_EQ(all.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(all[i].trigger, "incident " + std::to_string(i));  // in order
    if (i < 5) {
      EXPECT_EQ(all[i].evidence.size(), 10u) << i;
    } else {
      ASSERT_EQ(all[i].evidence.size(), 4u) << i;  // 2 first, the note, the last
      EXPECT_EQ(all[i].evidence[0].text.rfind("evidence 0 ", 0), 0u);
      EXPECT_EQ(all[i].evidence[1].text.rfind("evidence 1 ", 0), 0u);
      EXPECT_NE(all[i].evidence[2].text.find("7 evidence line(s) not kept"), std::string::npos);
      EXPECT_EQ(all[i].evidence[3].text.rfind("evidence 9 ", 0), 0u);
    }
  }
  auto store = IncidentStore::Open(db_);
  ASSERT_OK(store);
  auto outbox = (*store)->GetOutboxStats();
  ASSERT_OK(outbox);
  EXPECT_EQ(outbox->pending, 40);  // their actions are in the outbox now, for the dispatcher
}

// A journal input's cursor never gets ahead of the incidents of the lines before it: while they
// cannot be written, neither is the cursor; when they are, the newest cursor goes with them.
TEST_F(DiskFullTest, AnInputCursorIsWrittenOnlyWithTheIncidentsBeforeIt) {
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.retry_interval = std::chrono::milliseconds(50);
  IncidentRecorder rec(std::move(store_), SystemClock::Instance(), nullptr, o);
  rec.SaveInputCursor("journal", "c0");  // nothing before it: written at once
  ASSERT_TRUE(rec.Flush(std::chrono::seconds(10)));
  auto cursor = [&]() -> std::string {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return "(store: " + store.status().ToString() + ")";
    auto c = (*store)->LoadInputCursor("journal");
    if (!c.ok()) return "(cursor: " + c.status().ToString() + ")";
    return c->value_or("(none)");
  };
  EXPECT_EQ(cursor(), "c0");
  ASSERT_GT(fs_.Fill(), 0);
  rec.OnIncident(MakeIncident(1));
  rec.SaveInputCursor("journal", "c1");
  rec.OnIncident(MakeIncident(2));
  rec.SaveInputCursor("journal", "c2");
  ASSERT_TRUE(Eventually([&] { return rec.stats().write_errors.load() > 0; }));
  EXPECT_EQ(cursor(), "c0") << "the cursor must wait for the incidents before it";
  ASSERT_TRUE(fs_.Free());
  ASSERT_TRUE(rec.Flush(std::chrono::seconds(10)));
  EXPECT_EQ(rec.Stop(), 0u);
  EXPECT_EQ(cursor(), "c2");
  EXPECT_EQ(AllIncidents(db_).size(), 2u);
}

TEST_F(DiskFullTest, StopWithAFullDiskReturnsAndSaysWhatWasNotWritten) {
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.retry_interval = std::chrono::milliseconds(50);
  IncidentRecorder rec(std::move(store_), SystemClock::Instance(), nullptr, o);
  ASSERT_GT(fs_.Fill(), 0);
  for (int i = 0; i < 5; ++i) rec.OnIncident(MakeIncident(i));
  ASSERT_TRUE(Eventually([&] { return rec.stats().write_errors.load() >= 2; }));
  EXPECT_EQ(rec.Stop(), 5u);
}

// Pushed back while the store was writable, then the store fails: the waiting call goes on and
// the rules of an unwritable store apply (hold with shed evidence, then drop, counted and
// stamped for /healthz); once space returns everything held is written.
TEST_F(DiskFullTest, APushedBackCallerHoldsThenDropsOnceTheStoreFails) {
  store_.reset();
  auto store = PatientStore(db_);
  ASSERT_NE(store, nullptr);
  WriteLock lock(db_);
  RecorderOptions o;
  o.overflow = OverflowPolicy::kHold;
  o.max_held = 20;
  o.full_evidence_held = 5;
  o.shed_evidence_keep = 3;
  o.retry_interval = std::chrono::milliseconds(50);
  IncidentRecorder rec(std::move(store), SystemClock::Instance(), nullptr, o);
  std::atomic<int> handed{0};
  std::thread producer([&] {
    for (int i = 0; i < 40; ++i) {
      rec.OnIncident(MakeIncident(i));
      ++handed;
    }
  });
  ASSERT_TRUE(Eventually([&] { return rec.stats().pushed_back.load() > 0; }));
  EXPECT_EQ(handed.load(), 5);
  ASSERT_GT(fs_.Fill(), 0);
  lock.Release();  // the writer's attempt now fails: disk full
  producer.join();
  EXPECT_GT(rec.stats().write_errors.load(), 0u);
  EXPECT_EQ(rec.stats().held.load(), 20u);
  EXPECT_EQ(rec.stats().dropped.load(), 20u);
  EXPECT_EQ(rec.stats().evidence_shed.load(), 15u * 7);  // incidents 5..19 kept 3 of 10 lines
  EXPECT_GT(rec.stats().last_dropped_at.load(), 0);
  ASSERT_TRUE(fs_.Free());
  ASSERT_TRUE(Eventually([&] { return rec.stats().recorded.load() == 20; }));
  EXPECT_EQ(rec.Stop(), 0u);
  EXPECT_EQ(AllIncidents(db_).size(), 20u);
}

TEST_F(DiskFullTest, BlockPolicyLosesNothing) {
  RecorderOptions o;  // kBlock: mxward replay
  o.max_held = 3;
  o.full_evidence_held = 1;  // ignored by kBlock
  o.retry_interval = std::chrono::milliseconds(50);
  IncidentRecorder rec(std::move(store_), SystemClock::Instance(), nullptr, o);
  ASSERT_GT(fs_.Fill(), 0);
  std::atomic<int> handed{0};
  std::thread producer([&] {
    for (int i = 0; i < 6; ++i) {
      rec.OnIncident(MakeIncident(i));
      ++handed;
    }
  });
  ASSERT_TRUE(Eventually([&] { return rec.stats().write_errors.load() > 0; }));
  ASSERT_TRUE(Eventually([&] { return handed.load() >= 3; }));
  EXPECT_EQ(rec.stats().held.load(), 3u);
  EXPECT_EQ(handed.load(), 3);  // the fourth waits for room
  ASSERT_TRUE(fs_.Free());
  producer.join();
  rec.Flush();
  EXPECT_EQ(rec.Stop(), 0u);
  EXPECT_EQ(rec.stats().dropped.load(), 0u);
  EXPECT_EQ(rec.stats().evidence_shed.load(), 0u);
  auto all = AllIncidents(db_);
  ASSERT_EQ(all.size(), 6u);
  for (const auto& inc : all) EXPECT_EQ(inc.evidence.size(), 10u);
}

}  // namespace
}  // namespace mxward
