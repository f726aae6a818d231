// Issue 21, point 5: /healthz and /metrics must not read the store on the thread that ingests.
// Before, each /healthz ran a SQLite count there: 8 unprivileged request loops cut ingest from
// ~1M to 6,000 lines/s with 200,000 pending actions. The real `mxward serve` (own network
// namespace); the test takes every WAL read lock of the store (exclusive fcntl locks on the
// read-mark bytes of its -shm file, which every SQLite reader needs one of), so anything that
// reads the store waits SQLite's busy handler out (seconds per read). Meanwhile 8 loops scrape
// /healthz and /metrics and 2,000 lines arrive: every scrape is answered and every line is an
// event while the store cannot be read. A scrape or a line that read the store on the io thread
// would stall it for minutes and miss the deadline.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::HttpGet;
using testing::MetricSample;
using testing::NetworkNamespace;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
constexpr int kPort = 5514;
constexpr int kLoops = 8;
constexpr int kScrapesPerLoop = 25;
constexpr int kLines = 2000;

// SQLite's WAL-index lock bytes in the -shm file (wal.c: WALINDEX_LOCK_OFFSET 120; WRITE, CKPT,
// RECOVER, then the five READ marks at 123..127). A reader must hold one READ mark shared.
constexpr off_t kFirstReadMark = 123;
constexpr off_t kReadMarks = 5;

class ScrapeFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = dir_.file("rules.d");
    std::filesystem::copy(std::string(MXWARD_SOURCE_DIR) + "/rules.d", rules_,
                          std::filesystem::copy_options::recursive);
    db_ = dir_.file("state.db");
    const std::string config = dir_.file("mxward.toml");
    // The test's own scrapes and the loops together: more than the default 8 per peer.
    std::ofstream(config) << "dry_run = true\n[metrics]\nmax_connections_per_peer = 16\n"
                          << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort << "\"\n";
    ASSERT_TRUE(daemon_.Start(
        kBinary,
        {"--db", db_, "--config", config, "--rules", rules_, "--socket", dir_.file("control.sock")},
        dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << "serve did not get ready: " << daemon_.Log();
  }

  void TearDown() override {
    Unlock();
    EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
  }

  // One SASL failure from a different address per line: events, never an incident.
  static std::string Failures(int first, int n) {
    const std::string stamp = SyslogStampNow();
    std::string data;
    for (int i = first; i < first + n; ++i) {
      data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[198.18." +
              std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
              "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
    return data;
  }

  static double AuthFailures() {
    return MetricSample(HttpGet(9580, "/metrics"), "mxward_events_total{type=\"auth_failure\"}");
  }

  // Takes every READ mark exclusively; false until no reader of the daemon holds one (a read in
  // progress), which the caller waits out.
  bool TryLock() {
    if (shm_ < 0) shm_ = ::open((db_ + "-shm").c_str(), O_RDWR | O_CLOEXEC);
    if (shm_ < 0) return false;
    struct flock l {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    l.l_start = kFirstReadMark;
    l.l_len = kReadMarks;
    return ::fcntl(shm_, F_SETLK, &l) == 0;
  }
  void Unlock() {
    if (shm_ >= 0) ::close(shm_);  // closing the file drops this process's locks on it
    shm_ = -1;
  }

  TempDir dir_;
  std::string rules_, db_;
  ServeProcess daemon_;
  int shm_ = -1;
};

TEST_F(ScrapeFloodTest, ScrapesAndLinesNeverWaitForTheStore) {
  ASSERT_TRUE(SendTcp(kPort, Failures(0, 1)));
  ASSERT_TRUE(daemon_.WaitFor([&] { return AuthFailures() == 1; })) << daemon_.Log();
  ASSERT_TRUE(std::filesystem::exists(db_ + "-shm")) << "the store is not in WAL mode";
  ASSERT_TRUE(daemon_.WaitFor([&] { return TryLock(); })) << "could not take the read locks";

  // Proof that the lock bites, alongside the flood: a reader of the store is held back until
  // SQLite gives up ("locking protocol" after its WAL retries, ~10 s).
  testing::CommandResult probe;
  std::thread prober([&] {
    probe =
        testing::RunCommand({"sqlite3", "-cmd", ".timeout 200", db_, "SELECT count(*) FROM bans"});
  });

  std::atomic<int> answered{0};
  std::vector<std::thread> loops;
  for (int l = 0; l < kLoops; ++l) {
    loops.emplace_back([&answered, l] {
      for (int i = 0; i < kScrapesPerLoop; ++i) {
        const std::string body = HttpGet(9580, (i + l) % 2 ? "/healthz" : "/metrics");
        if (body.rfind("HTTP/1.1 ", 0) == 0) ++answered;
      }
    });
  }
  ASSERT_TRUE(SendTcp(kPort, Failures(1, kLines)));
  const bool all_events = daemon_.WaitFor([&] { return AuthFailures() == 1 + kLines; });
  const bool all_answers =
      daemon_.WaitFor([&] { return answered.load() == kLoops * kScrapesPerLoop; });
  const int answered_while_locked = answered.load();
  prober.join();
  const bool still_locked = shm_ >= 0;
  // Released before the loops are joined: a daemon that does wait for the store then finishes
  // and the test ends instead of hanging.
  Unlock();
  for (auto& t : loops) t.join();
  EXPECT_TRUE(still_locked);
  EXPECT_NE(probe.exit_code, 0) << "a reader of the store was not held back: " << probe.out;
  EXPECT_TRUE(all_events) << "lines stopped while the store could not be read: " << AuthFailures()
                          << " of " << 1 + kLines << "\n"
                          << daemon_.Log();
  EXPECT_TRUE(all_answers) << answered_while_locked << " of " << kLoops * kScrapesPerLoop
                           << " scrapes answered while the store could not be read";
}

}  // namespace
}  // namespace mxward
