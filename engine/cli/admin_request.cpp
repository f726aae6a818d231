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
void GiveToDirectoryOwner(const std::string& path,
                          const std::vector<std::string>& suffixes = {"", "-wal", "-shm"}) {
  if (::geteuid() != 0) return;
  const std::string dir = std::filesystem::path(path).parent_path().empty()
                              ? std::string(".")
                              : std::filesystem::path(path).parent_path().string();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || (st.st_uid == 0 && st.st_gid == 0)) return;
  for (const std::string& suffix : suffixes) {
    const std::string f = path + suffix;
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

Result<AllowSet> CompileAllowlist(const std::vector<IpPrefix>& static_prefixes,
                                  IncidentStore* store, UnixMicros now) {
  auto rows = store->ListAllow(now);
  if (!rows.ok()) return rows.status();
  std::vector<AllowEntry> runtime;
  runtime.reserve(rows->size());
  for (const AllowRecord& r : *rows) {
    IpPrefix p;
    if (IpPrefix::Parse(r.prefix, &p)) runtime.push_back({p, r.expires_at, true});
  }
  return AllowSet::Compile(static_prefixes, std::move(runtime));
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
  // The runtime allowlist too, as the daemon would refuse by it.
  {
    auto store = OpenStoreOrExit(config, StoreUse::kRead);
    auto allow = CompileAllowlist(config.allow_addresses, store.get(), CliNow());
    if (!allow.ok()) {
      throw CliExit(kExitRuntime, "reading the allowlist: " + allow.status().message());
    }
    auto handle = std::make_shared<AllowSetHandle>();
    handle->Set(std::move(*allow));
    options->allow_set = std::move(handle);
  }
  ActionDispatcher dispatcher(config.store_path, std::move(*executors), *options,
                              SystemClock::Instance());
  Status s = dispatcher.RunDueOnce();
  if (!s.ok()) throw CliExit(kExitRuntime, "running actions: " + s.message());
}

}  // namespace

namespace {

// The store this command means, for the daemon to check against its own (control_protocol.h).
void NameTheStore(const Config& config, nlohmann::json* request) {
  (*request)["store_path"] = CanonicalStorePath(config.store_path);
  std::error_code ec;
  if (!std::filesystem::exists(config.store_path, ec)) return;
  StoreOptions read_only;
  read_only.read_only = true;
  auto store = IncidentStore::Open(config.store_path, read_only);
  if (!store.ok()) return;  // unreadable or older: the path alone decides
  auto id = (*store)->StoreId();
  if (id.ok()) (*request)["store_id"] = *id;
}

}  // namespace

std::chrono::milliseconds OutcomeWait(const GlobalOptions& globals) {
  if (globals.no_wait) return std::chrono::milliseconds(0);
  if (globals.wait.empty()) return kDefaultOutcomeWait;
  auto seconds = ParseDurationSeconds(globals.wait);
  if (!seconds.ok() || *seconds < 0) {
    throw CliExit(kExitUsage, fmt::format("--wait {}: a duration (5s, 1m)", globals.wait));
  }
  return std::chrono::seconds(*seconds);
}

AdminOutcome SendOrAct(const Config& config, const nlohmann::json& request) {
  AdminOutcome outcome;
  nlohmann::json named = request;
  NameTheStore(config, &named);
  auto response = CallControl(config.control_socket, named);
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
  // Who acts, as the daemon would have named this process from its socket credentials.
  nlohmann::json local = request;
  local["peer"] = PeerIdentity(static_cast<std::int64_t>(::getuid()));
  auto result = ControlResult(ExecuteControlRequest(store.get(), local, CliNow()));
  if (!result.ok()) ExitWith(result.status());
  outcome.result = std::move(*result);
  if (!outcome.result.value("action_ids", nlohmann::json::array()).empty()) {
    // The dispatcher's claim lock beside the store: created here by root, the daemon's user
    // could not open it (the same rule as the store's own files).
    const std::string lock = config.store_path + "-claims.lock";
    std::error_code ec;
    const bool lock_existed = std::filesystem::exists(lock, ec);
    RunOutbox(config);
    if (!lock_existed) GiveToDirectoryOwner(config.store_path, {"-claims.lock"});
  }
  return outcome;
}

void ReportOutcome(const Config& config, const GlobalOptions& globals, const AdminOutcome& outcome,
                   const std::string& what) {
  std::vector<std::int64_t> ids;
  for (const auto& id : outcome.result.value("action_ids", nlohmann::json::array())) {
    if (id.is_number_integer()) ids.push_back(id.get<std::int64_t>());
  }
  if (ids.empty()) {
    std::printf("%s\n", what.empty() ? "nothing to do" : (what + ": nothing to do").c_str());
    return;
  }
  // Acting directly, the outbox already ran: what is pending now waits for a daemon.
  const auto wait = outcome.direct ? std::chrono::milliseconds(0) : OutcomeWait(globals);
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto actions = WaitForOutcomes(store.get(), ids, wait);
  if (!actions.ok()) ExitWith(actions.status());
  const UnixMicros now = CliNow();
  if (actions->size() == 1 && !what.empty()) {
    const ActionRecord& a = actions->front();
    std::printf("%s: %s (action #%lld)\n", what.c_str(), OutcomeText(a, now).c_str(),
                static_cast<long long>(a.id));
  } else {
    if (!what.empty()) std::printf("%s:\n", what.c_str());
    for (const ActionRecord& a : *actions) {
      std::printf("%s%s: %s\n", what.empty() ? "" : "  ", ActionLabel(a).c_str(),
                  OutcomeText(a, now).c_str());
    }
  }
  if (const int code = ExitCodeForOutcomes(*actions); code != 0) throw CliExit(code);
}

}  // namespace mxward::cli
