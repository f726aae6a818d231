// WalCheckpointer: runs the store's WAL checkpoints on a thread of its own, so that no commit on
// a ban's path (the recorder's, the dispatcher's claim, the nftables lane's) ever waits for one.
//
// Why: in WAL mode every commit appends its pages to <store>-wal, and SQLite copies them back into
// the database (a checkpoint) once the WAL holds wal_autocheckpoint (1,000) pages, on the thread
// of the commit that crossed the mark. A checkpoint syncs the WAL and then the database file
// (fdatasync twice): 4-12 ms on this project's test machine, about once a second while bans
// arrive, in the middle of whichever ban's commit crossed the mark. That was the ~10 ms p99 tail
// of the line -> kernel latency (docs/benchmarks.md, "A flood of new attackers").
//
// How: every read-write IncidentStore of one path in this process shares one WalCheckpointer
// (For()). IncidentStore::Open installs Hook() as the connection's WAL hook (sqlite3_wal_hook,
// which replaces SQLite's automatic checkpoint on that connection); after each commit the hook
// only looks at the WAL's size and, past kPages, wakes the checkpointer's thread. That thread
// runs a PASSIVE checkpoint on a connection of its own: it never waits for a reader or a writer,
// commits keep appending to the WAL while it copies, and SQLite starts the WAL over at the next
// commit once everything in it is copied. Durability is unchanged (synchronous=NORMAL in WAL
// mode: a commit is durable once a later checkpoint or sync has run; a crash loses at most the
// last commits, never consistency), and so is crash recovery: a WAL left behind is replayed by
// the next open, whoever checkpoints.
//
// The WAL must also start over now and then, or it grows by every commit (appending costs the
// file system block allocation, and a flood wrote ~40 MB/s to it): SQLite starts it over at the
// first transaction after a checkpoint that copied every frame. A commit that ran the checkpoint
// itself paused its own thread, the busiest writer, long enough for that; on a thread of its own
// the checkpoint races the writers. So past kGatePages, a new transaction waits for the
// checkpoint in progress (WaitWhileBehind, from IncidentStore's BEGIN, at most kGateWait): under a
// sustained stream of commits the writers pause about as often and as long as they did when they
// checkpointed themselves, while a quiet server (a ban now and then) never waits at all.
//
// Lifetime: For() keeps one instance per database file (path, device and inode) alive while a store
// holds it (a shared_ptr each); the last store to close stops and joins the thread. If the
// checkpointer's connection cannot be opened, Hook() is not installed (IncidentStore::Open checks
// ok()) and SQLite checkpoints on the committing thread as before.
//
// Threads: Hook() on any committing thread; the rest on the owner's or the checkpointer's.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "mxward/thread_annotations.h"

struct sqlite3;

namespace mxward {

class WalCheckpointer {
 public:
  // WAL pages at which a checkpoint is asked for: SQLite's own default mark.
  static constexpr int kPages = 1000;
  // WAL pages past which a new transaction waits for the checkpoint in progress, and how long.
  static constexpr int kGatePages = 2 * kPages;
  static constexpr std::chrono::milliseconds kGateWait{100};

  // The checkpointer of the database at `path` (one per path in this process), created and
  // started when none is alive.
  static std::shared_ptr<WalCheckpointer> For(const std::string& path);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Whether its thread and connection are running (else the stores keep SQLite's checkpoints).
  bool ok() const { return db_ != nullptr; }

  // The sqlite3_wal_hook callback; `self` is the WalCheckpointer. Cheap: an atomic store, and a
  // notify when the WAL is past kPages and no checkpoint is asked for yet.
  static int Hook(void* self, sqlite3* db, const char* schema, int wal_pages);

  // Before a write transaction (IncidentStore::Begin): returns at once unless the WAL is past
  // kGatePages; then waits (at most kGateWait) for the checkpoint asked for or running to end.
  void WaitWhileBehind() EXCLUDES(mu_);

  // For tests and the benchmarks: checkpoints run, transactions that waited at the gate, and the
  // WAL size the last hook saw.
  std::uint64_t gate_waits() const { return gate_waits_.load(std::memory_order_relaxed); }
  std::uint64_t checkpoints() const { return checkpoints_.load(std::memory_order_relaxed); }
  int last_wal_pages() const { return last_wal_pages_.load(std::memory_order_relaxed); }
  // Tests: while paused, the thread runs no checkpoint (so a test can show that commits never
  // checkpoint by themselves); Pause(false) runs the one asked for meanwhile.
  void Pause(bool paused) EXCLUDES(mu_);

 private:
  explicit WalCheckpointer(std::string path);
  void Run() EXCLUDES(mu_);

  std::string path_;
  std::string key_;  // in the registry: the path and the file's device and inode
  // The checkpointer's own connection: opened by For(), then used only by its thread.
  sqlite3* db_ = nullptr;
  Mutex mu_;
  std::condition_variable_any cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool paused_ GUARDED_BY(mu_) = false;
  bool running_ GUARDED_BY(mu_) = false;  // a checkpoint is in progress
  std::condition_variable_any done_cv_;   // a checkpoint ended
  std::atomic<std::uint64_t> gate_waits_{0};
  std::atomic<bool> wanted_{false};
  std::atomic<int> last_wal_pages_{0};
  std::atomic<std::uint64_t> checkpoints_{0};
  std::thread thread_;
};

}  // namespace mxward
