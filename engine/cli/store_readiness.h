// Can the daemon write its store? `serve` asks before it reports ready (and sd_notify READY=1):
// a store it can only read (created by root before the first start, a mode that lost its write
// bit) would otherwise let it detect attacks it can neither record nor act on. The answer names
// what to fix: the file or directory, its owner and mode, and the user the daemon runs as.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "mxward/incident_store.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward::cli {

// OK when a write commits on this connection (a no-op UPDATE of the store's identity row in its
// own transaction). Otherwise PermissionDenied (or the SQLite error) with a message that says,
// for the store file, its -wal/-shm and its directory, which one this process cannot write and
// the chown/chmod that fixes it. ResourceExhausted when the disk is full: that heals by itself,
// and the daemon runs on (incidents held in memory), so the caller warns and goes on.
Status CheckStoreWritable(IncidentStore* store);

// The identity of the store file the daemon opened, to notice it deleted or replaced under the
// running daemon (`rm /var/lib/mxward/mxward.db` by a cleanup script): every connection then
// writes to an unlinked inode and what is recorded vanishes. Holds a read-only descriptor of the
// file it was opened on. Check() is a fstat and a stat: cheap, but it belongs in the once-a-second
// housekeeping, never on the ingest path. Owned by the daemon's io thread.
class StoreFileWatch {
 public:
  enum class State { kSame, kDeleted, kReplaced };
  explicit StoreFileWatch(std::string path);
  ~StoreFileWatch();
  StoreFileWatch(const StoreFileWatch&) = delete;
  StoreFileWatch& operator=(const StoreFileWatch&) = delete;
  // kDeleted: the file it was opened on has no name left and nothing is at the path (or the link
  // count is 0 and the path is free); kReplaced: another file is at the path now.
  State Check() const;
  // The opened file's owner and mode now (a chown after start counts), to give a recreated
  // store the same.
  uid_t uid() const { return Now().st_uid; }
  gid_t gid() const { return Now().st_gid; }
  mode_t mode() const { return Now().st_mode & 07777; }

 private:
  struct stat Now() const;  // fstat of the opened file (as at start when that fails)

  std::string path_;
  int fd_ = -1;
  struct stat opened_ {};
};

// PRAGMA quick_check at start: Corruption naming the first problem when SQLite finds the file
// damaged (a truncated or overwritten store may still open). Reads every page once (about a
// second per few hundred MB), so only at start.
Status CheckStoreIntact(IncidentStore* store);

// Writes a consistent copy of what `from` holds (its WAL included) to `path` through SQLite's
// online backup: first to path.recreating, then renamed over path, so nobody opens half a file.
// The -wal and -shm beside path are removed first (they belong to the lost file and would be
// replayed into the new one). The copy gets uid, gid and mode. For a store deleted under the
// daemon: its incidents, outbox, bans and input cursors come back at the path.
Status RecreateStoreFrom(IncidentStore* from, const std::string& path, uid_t uid, gid_t gid,
                         mode_t mode);

// For a store SQLite reports corrupt (Status::Corruption) at start: renames path (and its -wal
// and -shm) to path.corrupt-<UTC time>, so the daemon can start on a fresh store and keep
// protecting. Returns the new name of the corrupt file.
Result<std::string> MoveCorruptStoreAside(const std::string& path, UnixMicros now);

// The log line that says what to repair after MoveCorruptStoreAside: the files, the recovery
// command, and what the fresh store lacks until then.
std::string CorruptStoreRepairAdvice(const std::string& path, const std::string& moved_to,
                                     const std::string& error);

// The PermissionDenied CheckStoreWritable returns, for a store at path that failed with error
// (also when IncidentStore::Open refused it).
Status UnwritableStore(const std::string& path, const std::string& error);

}  // namespace mxward::cli
