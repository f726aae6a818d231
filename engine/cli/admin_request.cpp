#include "engine/cli/admin_request.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "engine/cli/table_printer.h"
#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/control_protocol.h"

namespace mxward::cli {

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case Status::Code::kNotFound:
      return kExitFailure;
    case Status::Code::kInvalidArgument:
      return kExitUsage;
    default:
      return kExitRuntime;
  }
}

void ExitWith(const Status& status) { throw CliExit(ExitCodeFor(status), status.message()); }

namespace {

// A store root just created: hand it (and SQLite's -wal/-shm beside it) to its directory's owner,
// who is the user the daemon runs as in the package layout. Nothing when not root or when the
// directory is root's own.
void GiveToDirectoryOwner(const std::string& path) {
  if (::geteuid() != 0) return;
  const std::string dir = std::filesystem::path(path).parent_path().empty()
                              ? std::string(".")
                              : std::filesystem::path(path).parent_path().string();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || (st.st_uid == 0 && st.st_gid == 0)) return;
  for (const std::string& f : {path, path + "-wal", path + "-shm"}) {
    if (::chown(f.c_str(), st.st_uid, st.st_gid) != 0 && errno != ENOENT) {
      throw CliExit(kExitRuntime,
                    fmt::format("created {} but cannot give it to uid {} (the owner of {}): {}", f,
                                st.st_uid, dir, std::strerror(errno)));
    }
  }
}

}  // namespace

std::unique_ptr<IncidentStore> OpenStoreOrExit(const Config& config, StoreUse use) {
  const std::string& path = config.store_path;
  std::error_code ec;
  const bool existed = std::filesystem::exists(path, ec);
  if (use == StoreUse::kRead) {
    if (!existed) {
      throw CliExit(kExitRuntime,
                    fmt::format("no store at {}: nothing recorded yet (the daemon creates it when "
                                "it first starts; --db names another)",
                                path));
    }
    StoreOptions read_only;
    read_only.read_only = true;
    auto store = IncidentStore::Open(path, read_only);
    if (!store.ok()) throw CliExit(kExitRuntime, store.status().message());
    return std::move(*store);
  }
  auto store = IncidentStore::Open(path);
  if (!store.ok()) throw CliExit(kExitRuntime, store.status().message());
  if (!existed) GiveToDirectoryOwner(path);
  return std::move(*store);
}

namespace {

// Runs what is due in the outbox once, with the executors mxward.toml enables.
void RunOutbox(const Config& config) {
  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  auto executors = BuildExecutors(config, config.store_path, &diags, &notes);
  if (!executors.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    throw CliExit(kExitFailure, executors.status().message());
  }
  for (const auto& n : notes) std::fprintf(stderr, "mxward: %s\n", n.c_str());
  auto options = DispatcherOptions::FromConfig(config, &diags);
  if (!options.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    throw CliExit(kExitFailure, options.status().message());
  }
  ActionDispatcher dispatcher(config.store_path, std::move(*executors), *options,
                              SystemClock::Instance());
  Status s = dispatcher.RunDueOnce();
  if (!s.ok()) throw CliExit(kExitRuntime, "running actions: " + s.message());
}

}  // namespace

AdminOutcome SendOrAct(const Config& config, const nlohmann::json& request) {
  AdminOutcome outcome;
  auto response = CallControl(config.control_socket, request);
  if (response.ok()) {
    auto result = ControlResult(*response);
    if (!result.ok()) ExitWith(result.status());
    outcome.result = std::move(*result);
    return outcome;
  }
  if (response.status().code() != Status::Code::kNotFound) {
    throw CliExit(kExitRuntime, "daemon: " + response.status().message());
  }

  std::fprintf(stderr, "daemon not running: acting directly\n");
  outcome.direct = true;
  auto store = OpenStoreOrExit(config);
  auto result = ControlResult(ExecuteControlRequest(store.get(), request, CliNow()));
  if (!result.ok()) ExitWith(result.status());
  outcome.result = std::move(*result);
  const auto ids = outcome.result.value("action_ids", nlohmann::json::array());
  if (ids.empty()) return outcome;
  RunOutbox(config);
  for (const auto& id : ids) {
    auto a = store->GetAction(id.get<std::int64_t>());
    if (!a.ok()) ExitWith(a.status());
    outcome.actions.push_back(std::move(*a));
  }
  return outcome;
}

std::string DescribeAction(const ActionRecord& a) {
  std::string target;
  for (const char* k : {"address", "user", "target", "to"}) {
    if (a.params.contains(k) && a.params[k].is_string()) {
      target = a.params[k].get<std::string>();
      break;
    }
  }
  std::string s = fmt::format("#{} {}{}{}: {}", a.id, a.revert ? "undo " : "", a.type,
                              target.empty() ? "" : " " + target, ActionStatusName(a.status));
  if (!a.last_error.empty()) s += ": " + a.last_error;
  return s;
}

void ReportOutcome(const AdminOutcome& outcome, const std::string& what) {
  if (!outcome.direct) {
    std::printf("%s: queued in the daemon as action %s\n", what.c_str(),
                outcome.result.value("action_ids", nlohmann::json::array()).dump().c_str());
    return;
  }
  bool ok = true;
  for (const auto& a : outcome.actions) {
    std::printf("%s\n", DescribeAction(a).c_str());
    ok = ok && (a.status == ActionStatus::kDone || a.status == ActionStatus::kDryRun);
  }
  if (!ok) throw CliExit(kExitRuntime, what + ": not applied (see above)");
}

}  // namespace mxward::cli
