#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "engine/cli/commands.h"

namespace mxward::cli {

namespace {

// Why path cannot be read, in one line that says what to do: the package installs mxward.toml
// root:mxward 0640, so an admin's own account reads it only as a member of that group.
std::string CannotRead(const std::string& path, int err) {
  std::string msg = fmt::format("cannot read {}: {}", path, std::strerror(err));
  struct stat st {};
  if (err != EACCES || ::stat(path.c_str(), &st) != 0) return msg;
  // getpwuid and getgrgid return static buffers: copy each name before the next call.
  const group* gr = ::getgrgid(st.st_gid);
  const std::string group_name = gr ? gr->gr_name : std::to_string(st.st_gid);
  const passwd* owner = ::getpwuid(st.st_uid);
  const std::string owner_name = owner ? owner->pw_name : std::to_string(st.st_uid);
  const passwd* me = ::getpwuid(::geteuid());
  const std::string my_name = me ? me->pw_name : "$USER";
  msg +=
      fmt::format(" (owner {}, group {}, mode {:04o})", owner_name, group_name, st.st_mode & 07777);
  if ((st.st_mode & 0040) != 0) {
    msg += fmt::format(
        "; the group may read it: run as root, or join the group: sudo adduser {} {} (then log "
        "in again)",
        my_name, group_name);
  } else {
    msg += "; run as root";
  }
  return msg;
}

}  // namespace

Config LoadEffectiveConfig(const GlobalOptions& g) {
  Config config = Config::Defaults();
  std::error_code ec;
  const bool exists = std::filesystem::exists(g.config_path, ec);
  if (g.config_given && !exists) {
    throw CliExit(kExitUsage, "config file " + g.config_path + " does not exist");
  }
  if (exists) {
    // One message naming the file and the group, not the reader's generic one twice.
    if (::access(g.config_path.c_str(), R_OK) != 0) {
      throw CliExit(kExitRuntime, CannotRead(g.config_path, errno));
    }
    std::vector<Diagnostic> diags;
    auto loaded = Config::Load(g.config_path, &diags);
    if (!loaded.ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      throw CliExit(kExitFailure, loaded.status().message());
    }
    config = std::move(*loaded);
  }
  if (!g.db_path.empty()) config.store_path = g.db_path;
  if (!g.rule_dirs.empty()) config.rule_dirs = g.rule_dirs;
  if (!g.control_socket.empty()) config.control_socket = g.control_socket;
  return config;
}

}  // namespace mxward::cli
