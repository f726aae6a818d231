// The store's WAL is checkpointed by the WalCheckpointer's thread, never by a commit: a commit
// that crosses SQLite's 1,000-page mark used to run the checkpoint (and its two fdatasyncs) itself,
// the ~10 ms tail of the line -> kernel latency.
#include "engine/store/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>
#include <string>
#include <thread>

#include "mxward/incident_store.h"
#include "support/eventually.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::Eventually;
using testing::TempDir;

// One transaction writing ~`pages` pages to the WAL (a 4 KiB event count row per page).
void WritePages(IncidentStore* store, int pages, int* hour) {
  ASSERT_OK(store->InTransaction([&]() -> Status {
    for (int i = 0; i < pages; ++i) {
      const std::string type(3000, static_cast<char>('a' + (*hour % 26)));
      MXWARD_RETURN_IF_ERROR(
          store->AddEventCounts(static_cast<UnixMicros>(++*hour) * 3600 * kMicrosPerSecond,
                                {{type + std::to_string(*hour), 1}}));
    }
    return Status::Ok();
  }));
}

TEST(WalCheckpointerTest, StoresOfOnePathShareOneCheckpointer) {
  TempDir dir;
  auto a = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(a.status());
  auto b = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(b.status());
  ASSERT_NE((*a)->wal_checkpointer(), nullptr);
  EXPECT_EQ((*a)->wal_checkpointer(), (*b)->wal_checkpointer());
  EXPECT_TRUE((*a)->wal_checkpointer()->ok());

  TempDir other;
  auto c = IncidentStore::Open(other.file("state.db"));
  ASSERT_OK(c.status());
  EXPECT_NE((*c)->wal_checkpointer(), (*a)->wal_checkpointer());

  StoreOptions read_only;
  read_only.read_only = true;
  auto r = IncidentStore::Open(dir.file("state.db"), read_only);
  ASSERT_OK(r.status());
  EXPECT_EQ((*r)->wal_checkpointer(), nullptr);  // it never commits
}

TEST(WalCheckpointerTest, CommitsNeverCheckpointTheCheckpointerDoes) {
  TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store.status());
  WalCheckpointer* checkpointer = (*store)->wal_checkpointer();
  ASSERT_NE(checkpointer, nullptr);
  checkpointer->Pause(true);
  const std::uint64_t before = checkpointer->checkpoints();

  // Well past SQLite's automatic mark, in many commits: had any commit checkpointed, the WAL
  // would have started over and the last commit would see far fewer pages.
  int hour = 0;
  for (int i = 0; i < 30; ++i) WritePages(store->get(), 100, &hour);
  EXPECT_GT(checkpointer->last_wal_pages(), 2 * WalCheckpointer::kPages);
  EXPECT_EQ(checkpointer->checkpoints(), before);

  // Once it may, the checkpointer's thread copies the WAL back, and the next commit starts the
  // WAL over.
  checkpointer->Pause(false);
  ASSERT_TRUE(
      Eventually([&] { return checkpointer->checkpoints() > before; }, std::chrono::seconds(30)));
  WritePages(store->get(), 1, &hour);
  EXPECT_LT(checkpointer->last_wal_pages(), 100);

  // Everything written is there, read through another connection.
  auto reader = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(reader.status());
  auto counts = (*reader)->EventCountsSince(0);
  ASSERT_OK(counts.status());
  EXPECT_EQ(counts->size(), static_cast<std::size_t>(hour));
}

// A store deleted and created again while a connection to the old file is still open is another
// database: its own checkpointer, which checkpoints the new WAL.
TEST(WalCheckpointerTest, AStoreCreatedAgainGetsACheckpointerOfItsOwn) {
  TempDir dir;
  auto old = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(old.status());
  ASSERT_EQ(std::remove(dir.file("state.db").c_str()), 0);
  std::remove(dir.file("state.db-wal").c_str());
  std::remove(dir.file("state.db-shm").c_str());
  auto fresh = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(fresh.status());
  ASSERT_NE((*fresh)->wal_checkpointer(), nullptr);
  EXPECT_NE((*fresh)->wal_checkpointer(), (*old)->wal_checkpointer());
  int hour = 0;
  WritePages(fresh->get(), 1200, &hour);
  WalCheckpointer* c = (*fresh)->wal_checkpointer();
  ASSERT_TRUE(Eventually([&] { return c->checkpoints() >= 1; }, std::chrono::seconds(30)));
}

TEST(WalCheckpointerTest, TheLastStoreToCloseStopsIt) {
  TempDir dir;
  {
    auto store = IncidentStore::Open(dir.file("state.db"));
    ASSERT_OK(store.status());
    int hour = 0;
    WritePages(store->get(), 1200, &hour);  // one commit past the mark: a checkpoint is asked
    WalCheckpointer* c = (*store)->wal_checkpointer();
    ASSERT_TRUE(Eventually([&] { return c->checkpoints() >= 1; }, std::chrono::seconds(30)));
  }
  // A new store of the path gets a fresh checkpointer (the old one's thread was joined).
  auto again = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(again.status());
  ASSERT_NE((*again)->wal_checkpointer(), nullptr);
  EXPECT_EQ((*again)->wal_checkpointer()->checkpoints(), 0u);
  auto counts = (*again)->EventCountsSince(0);
  ASSERT_OK(counts.status());
  EXPECT_EQ(counts->size(), 1200u);
}

}  // namespace
}  // namespace mxward
