#include "engine/store/wal_checkpointer.h"

#include <pthread.h>
#include <sys/stat.h>

#include <map>
#include <mutex>

#include <spdlog/spdlog.h>
#include <sqlite3.h>

namespace mxward {

namespace {

// path -> the live checkpointer of that database. A weak_ptr, so the last store to close ends it.
// Both never destroyed: a store may close during static destruction.
std::mutex& RegistryMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::map<std::string, std::weak_ptr<WalCheckpointer>>& Registry() {
  static auto* registry = new std::map<std::string, std::weak_ptr<WalCheckpointer>>();
  return *registry;
}

}  // namespace

std::shared_ptr<WalCheckpointer> WalCheckpointer::For(const std::string& path) {
  // Keyed by the file, not only its name: a store deleted and created again under a running
  // daemon (docs/reliability.md) is another database, with a WAL of its own to checkpoint.
  struct stat st {};
  std::string key = path;
  if (::stat(path.c_str(), &st) == 0) {
    key += '\0' + std::to_string(st.st_dev) + ':' + std::to_string(st.st_ino);
  }
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto& registry = Registry();
  if (auto it = registry.find(key); it != registry.end()) {
    if (auto live = it->second.lock()) return live;
  }
  std::shared_ptr<WalCheckpointer> c(new WalCheckpointer(path));
  c->key_ = key;
  registry[key] = c;
  return c;
}

WalCheckpointer::WalCheckpointer(std::string path) : path_(std::move(path)) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    spdlog::debug("wal checkpointer for {}: {}; commits checkpoint as SQLite does", path_,
                  db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    return;
  }
  // It only checkpoints; the short timeout is for the moment another connection opens the WAL.
  sqlite3_busy_timeout(db, 100);
  // A first read opens the WAL (a connection that never read reports no WAL to checkpoint).
  if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    spdlog::debug("wal checkpointer for {}: {}; commits checkpoint as SQLite does", path_,
                  sqlite3_errmsg(db));
    sqlite3_close_v2(db);
    return;
  }
  db_ = db;
  thread_ = std::thread([this] { Run(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  done_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (db_) sqlite3_close_v2(db_);
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto& registry = Registry();
  // Only this instance's entry: a new one may have been made for the path since it expired.
  if (auto it = registry.find(key_); it != registry.end() && it->second.expired()) {
    registry.erase(it);
  }
}

int WalCheckpointer::Hook(void* self, sqlite3* /*db*/, const char* /*schema*/, int wal_pages) {
  auto* c = static_cast<WalCheckpointer*>(self);
  c->last_wal_pages_.store(wal_pages, std::memory_order_relaxed);
  if (wal_pages >= kPages && !c->wanted_.exchange(true, std::memory_order_acq_rel)) {
    // Taking the mutex orders the notify after the thread's check of wanted_: no lost wake-up.
    { MutexLock lock(c->mu_); }
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

void WalCheckpointer::WaitWhileBehind() {
  if (last_wal_pages_.load(std::memory_order_relaxed) < kGatePages) return;
  MutexLock lock(mu_);
  if (!running_ && !wanted_.load(std::memory_order_acquire)) return;
  gate_waits_.fetch_add(1, std::memory_order_relaxed);
  done_cv_.wait_for(lock, kGateWait, [&]() REQUIRES(mu_) {
    return stop_ || (!running_ && !wanted_.load(std::memory_order_acquire));
  });
}

void WalCheckpointer::Pause(bool paused) {
  {
    MutexLock lock(mu_);
    paused_ = paused;
  }
  cv_.notify_one();
}

void WalCheckpointer::Run() {
  // Named for top -H, perf and the latency bench's CPU per thread.
  pthread_setname_np(pthread_self(), "mxw-checkpoint");
  for (;;) {
    {
      MutexLock lock(mu_);
      cv_.wait(lock, [&]() REQUIRES(mu_) {
        return stop_ || (!paused_ && wanted_.load(std::memory_order_acquire));
      });
      if (stop_) return;
      running_ = true;
      wanted_.store(false, std::memory_order_release);
    }
    int log = 0, copied = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    if (rc == SQLITE_OK) {
      checkpoints_.fetch_add(1, std::memory_order_relaxed);
    } else if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
      // Nothing is lost: the WAL keeps the commits, the next commit past the mark asks again, and
      // the last connection to close checkpoints.
      spdlog::warn("checkpointing {}: {}", path_, sqlite3_errmsg(db_));
    }
    {
      MutexLock lock(mu_);
      running_ = false;
    }
    done_cv_.notify_all();
  }
}

}  // namespace mxward
