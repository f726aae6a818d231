#include "engine/cli/store_readiness.h"

#include <grp.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace mxward::cli
