#include "engine/cli/store_readiness.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <filesystem>
#include <string>

#include <fmt/format.h>

namespace mxward::cli {
namespace {

std::string UserName(uid_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw ? fmt::format("{} ({})", uid, pw->pw_name) : std::to_string(uid);
}

std::string GroupName(gid_t gid) {
  const group* gr = ::getgrgid(gid);
  return gr ? fmt::format("{} ({})", gid, gr->gr_name) : std::to_string(gid);
}

// "owned by uid 0 (root), group 0 (root), mode 0644"; empty when it does not exist.
std::string Describe(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return fmt::format("owned by uid {}, group {}, mode {:04o}", UserName(st.st_uid),
                     GroupName(st.st_gid), st.st_mode & 07777);
}

// The first of the store's files (and its directory, where SQLite creates -wal and -shm) that
// this process cannot write, described; empty when access(2) allows them all.
std::string FirstUnwritable(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  for (const std::string& f : {path, path + "-wal", path + "-shm"}) {
    if (::access(f.c_str(), F_OK) == 0 && ::access(f.c_str(), W_OK) != 0) {
      return fmt::format("{} is {}", f, Describe(f));
    }
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return fmt::format("its directory {} is {} (SQLite creates {}-wal and -shm there)", dir,
                       Describe(dir), std::filesystem::path(path).filename().string());
  }
  return "";
}

}  // namespace

Status CheckStoreWritable(IncidentStore* store) {
  sqlite3* db = store->db();
  std::string error;
  if (sqlite3_db_readonly(db, "main") == 1) {
    error = "SQLite opened it read-only";
  } else {
    char* message = nullptr;
    const int rc = sqlite3_exec(db, "BEGIN IMMEDIATE; UPDATE store_identity SET id = id; COMMIT;",
                                nullptr, nullptr, &message);
    if (rc == SQLITE_OK) return Status::Ok();
    error = message ? message : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_FULL) {
      // Space comes back by itself (logs rotate); until then the recorder holds incidents in
      // memory (incident_recorder.h). Not a reason to leave the server unprotected.
      sqlite3_free(message);
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return Status::ResourceExhausted(
          fmt::format("the store {} cannot be written now ({}): incidents are held in memory "
                      "until there is space",
                      store->path(), error));
    }
    sqlite3_free(message);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  return UnwritableStore(store->path(), error);
}

Status UnwritableStore(const std::string& path, const std::string& error) {
  const uid_t uid = ::geteuid();
  const std::string who = UserName(uid);
  const std::string what = FirstUnwritable(path);
  const passwd* pw = ::getpwuid(uid);
  const std::string owner = pw ? pw->pw_name : std::to_string(uid);
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  std::string fix =
      fmt::format("chown {}: {} {}-wal {}-shm (those that exist)", owner, path, path, path);
  if (what.rfind("its directory", 0) == 0) {
    fix = fmt::format("chown {}: {} (or give it write access for uid {})", owner, dir, uid);
  }
  return Status::PermissionDenied(fmt::format(
      "cannot write the store {} ({}){}; mxward runs as uid {}. It would detect attacks it could "
      "neither record nor act on, so it does not start. Fix: {}, or run mxward as the store's "
      "owner",
      path, error, what.empty() ? "" : ": " + what, who, fix));
}

Status CheckStoreIntact(IncidentStore* store) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(store->db(), "PRAGMA quick_check(1)", -1, &stmt, nullptr);
  std::string verdict;
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      verdict = text ? reinterpret_cast<const char*>(text) : "";
    }
  }
  const std::string error = sqlite3_errmsg(store->db());
  sqlite3_finalize(stmt);
  if (rc == SQLITE_ROW && verdict == "ok") return Status::Ok();
  if (rc == SQLITE_ROW) return Status::Corruption(verdict);
  if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) {
    return Status::Corruption(error);
  }
  return Status::Ok();  // not a verdict on the file (busy, out of memory): the writes will tell
}

StoreFileWatch::StoreFileWatch(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  opened_.st_mode = 0600;
  opened_.st_uid = ::geteuid();
  opened_.st_gid = ::getegid();
  if (fd_ >= 0 && ::fstat(fd_, &opened_) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

struct stat StoreFileWatch::Now() const {
  struct stat st {};
  if (fd_ >= 0 && ::fstat(fd_, &st) == 0) return st;
  return opened_;
}

StoreFileWatch::~StoreFileWatch() {
  if (fd_ >= 0) ::close(fd_);
}

StoreFileWatch::State StoreFileWatch::Check() const {
  if (fd_ < 0) return State::kSame;  // nothing to compare with (not a file we could open)
  struct stat at_path {};
  if (::stat(path_.c_str(), &at_path) != 0) {
    return errno == ENOENT ? State::kDeleted : State::kSame;
  }
  if (at_path.st_dev == opened_.st_dev && at_path.st_ino == opened_.st_ino) return State::kSame;
  return State::kReplaced;
}

Status RecreateStoreFrom(IncidentStore* from, const std::string& path, uid_t uid, gid_t gid,
                         mode_t mode) {
  const std::string tmp = path + ".recreating";
  for (const std::string& f : {tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"}) {
    ::unlink(f.c_str());
  }
  sqlite3* to = nullptr;
  if (sqlite3_open_v2(tmp.c_str(), &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    const std::string error = to ? sqlite3_errmsg(to) : "out of memory";
    sqlite3_close(to);
    return Status::IoError(fmt::format("cannot create {}: {}", tmp, error));
  }
  sqlite3_backup* backup = sqlite3_backup_init(to, "main", from->db(), "main");
  int rc = backup ? sqlite3_backup_step(backup, -1) : sqlite3_errcode(to);
  if (backup) sqlite3_backup_finish(backup);
  std::string error = rc == SQLITE_DONE ? "" : sqlite3_errmsg(to);
  sqlite3_close(to);
  if (rc != SQLITE_DONE) {
    ::unlink(tmp.c_str());
    return Status::IoError(fmt::format("cannot copy the store into {}: {}", tmp, error));
  }
  // As root, the daemon gives the file back to the store's owner; as that owner, this is a no-op.
  if (::chown(tmp.c_str(), uid, gid) != 0 && ::geteuid() == 0) {
    return Status::IoError(fmt::format("chown {}: {}", tmp, std::strerror(errno)));
  }
  (void)::chmod(tmp.c_str(), mode);
  for (const std::string& f : {path + "-wal", path + "-shm"}) ::unlink(f.c_str());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IoError(fmt::format("rename {} to {}: {}", tmp, path, std::strerror(errno)));
  }
  return Status::Ok();
}

Result<std::string> MoveCorruptStoreAside(const std::string& path, UnixMicros now) {
  const std::time_t t = static_cast<std::time_t>(now / kMicrosPerSecond);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  const std::string to = fmt::format("{}.corrupt-{}", path, stamp);
  if (::rename(path.c_str(), to.c_str()) != 0) {
    return Status::IoError(
        fmt::format("cannot move {} aside to {}: {}", path, to, std::strerror(errno)));
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    const std::string f = path + suffix;
    if (::access(f.c_str(), F_OK) == 0) (void)::rename(f.c_str(), (to + suffix).c_str());
  }
  return to;
}

std::string CorruptStoreRepairAdvice(const std::string& path, const std::string& moved_to,
                                     const std::string& error) {
  return fmt::format(
      "the store {} is corrupt ({}). mxward moved it aside to {} and started on a fresh store, so "
      "detection and new bans go on; the bans already in the kernel stay until their own "
      "timeouts. The fresh store does not know the old incidents, bans (`mxward bans list`, "
      "unban) or pending actions (timed suspensions waiting to be reverted). To get them back: "
      "`sqlite3 {} .recover | sqlite3 {}.recovered`, then `systemctl stop mxward`, "
      "`mv {}.recovered {}`, `systemctl start mxward` (the incidents recorded since are lost "
      "then: export them first with `mxward incidents list --json`). /healthz stays unhealthy "
      "while {} exists: remove it (or move it elsewhere) once done",
      path, error, moved_to, moved_to, path, path, path, moved_to);
}

}  // namespace mxward::cli
