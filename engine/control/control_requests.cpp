// The control protocol's messages and the one place its requests are carried out, shared by the
// daemon (through ControlServer) and the CLI acting without a daemon.
#include <algorithm>
#include <array>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "mxward/action_types.h"
#include "mxward/control_protocol.h"
#include "mxward/ip_address.h"
#include "mxward/version.h"

namespace mxward {
namespace {

constexpr std::array<std::pair<Status::Code, std::string_view>, 9> kCodes = {{
    {Status::Code::kInvalidArgument, "invalid_argument"},
    {Status::Code::kNotFound, "not_found"},
    {Status::Code::kAlreadyExists, "already_exists"},
    {Status::Code::kPermissionDenied, "permission_denied"},
    {Status::Code::kUnavailable, "unavailable"},
    {Status::Code::kResourceExhausted, "resource_exhausted"},
    {Status::Code::kCorruption, "corruption"},
    {Status::Code::kIoError, "io_error"},
    {Status::Code::kInternal, "internal"},
}};

Status MakeStatus(std::string_view code, std::string msg) {
  if (code == "invalid_argument") return Status::InvalidArgument(std::move(msg));
  if (code == "not_found") return Status::NotFound(std::move(msg));
  if (code == "already_exists") return Status::AlreadyExists(std::move(msg));
  if (code == "permission_denied") return Status::PermissionDenied(std::move(msg));
  if (code == "unavailable") return Status::Unavailable(std::move(msg));
  if (code == "resource_exhausted") return Status::ResourceExhausted(std::move(msg));
  if (code == "corruption") return Status::Corruption(std::move(msg));
  if (code == "io_error") return Status::IoError(std::move(msg));
  return Status::Internal(std::move(msg));
}

// Typed argument access: a missing or mistyped argument is the caller's error.
Result<std::string> StringArg(const nlohmann::json& req, const char* name, bool required) {
  auto it = req.find(name);
  if (it == req.end() || it->is_null()) {
    if (required) return Status::InvalidArgument(fmt::format("'{}' is required", name));
    return std::string();
  }
  if (!it->is_string()) return Status::InvalidArgument(fmt::format("'{}' must be a string", name));
  return it->get<std::string>();
}

Result<std::int64_t> IntArg(const nlohmann::json& req, const char* name) {
  auto it = req.find(name);
  if (it == req.end()) return Status::InvalidArgument(fmt::format("'{}' is required", name));
  if (!it->is_number_integer()) {
    return Status::InvalidArgument(fmt::format("'{}' must be an integer", name));
  }
  return it->get<std::int64_t>();
}

// Text that is a plausible mailbox or login: printable, no spaces or quotes, bounded. It is
// passed to executors as data (bound SQL parameters), but a person reads it back too.
Status CheckUser(const std::string& user) {
  if (user.empty() || user.size() > 254) {
    return Status::InvalidArgument("a user name must be 1 to 254 characters");
  }
  for (unsigned char c : user) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '+' || c == '@' || c == '=' ||
                    c >= 0x80;
    if (!ok) {
      return Status::InvalidArgument(
          fmt::format("'{}' is not a user name (letters, digits, . _ - + = @ only)", user));
    }
  }
  return Status::Ok();
}

Result<std::string> ParseAddress(const std::string& text) {
  IpPrefix prefix;
  if (!IpPrefix::Parse(text, &prefix, /*strict=*/true)) {
    IpPrefix loose;
    if (IpPrefix::Parse(text, &loose, /*strict=*/false)) {
      return Status::InvalidArgument(fmt::format(
          "'{}' has bits set after the prefix length; did you mean {}?", text, loose.ToString()));
    }
    return Status::InvalidArgument(
        fmt::format("'{}' is not an IP address or prefix (192.0.2.7, 2001:db8::/64)", text));
  }
  return prefix.ToString();
}

#define MXWARD_ASSIGN_OR_RESPOND(var, expr)                           \
  auto var##_result = (expr);                                         \
  if (!var##_result.ok()) return ControlError(var##_result.status()); \
  auto var = std::move(*var##_result)

nlohmann::json Enqueued(IncidentStore* store, std::int64_t incident_id,
                        const std::vector<std::pair<ActionRequest, bool>>& actions, UnixMicros now,
                        nlohmann::json result) {
  nlohmann::json ids = nlohmann::json::array();
  Status s = store->InTransaction([&]() -> Status {
    for (const auto& [request, revert] : actions) {
      auto id = store->EnqueueAction(incident_id, request, revert, now);
      if (!id.ok()) return id.status();
      ids.push_back(*id);
    }
    return Status::Ok();
  });
  if (!s.ok()) return ControlError(s);
  result["action_ids"] = std::move(ids);
  return ControlOk(std::move(result));
}

nlohmann::json Resolve(IncidentStore* store, const nlohmann::json& req, UnixMicros now) {
  MXWARD_ASSIGN_OR_RESPOND(id, IntArg(req, "id"));
  MXWARD_ASSIGN_OR_RESPOND(note, StringArg(req, "note", false));
  bool revert = false;
  if (auto it = req.find("revert"); it != req.end()) {
    if (!it->is_boolean())
      return ControlError(Status::InvalidArgument("'revert' must be true or false"));
    revert = it->get<bool>();
  }
  nlohmann::json ids = nlohmann::json::array();
  // Status and undo actions in one transaction: a resolved incident never keeps a half-queued
  // undo, and a failed undo queueing leaves the incident as it was.
  Status s = store->InTransaction([&]() -> Status {
    MXWARD_RETURN_IF_ERROR(store->ResolveIncident(id, note));
    if (!revert) return Status::Ok();
    auto actions = store->ActionsForIncident(id);
    if (!actions.ok()) return actions.status();
    std::set<std::string> already_reverting;
    for (const ActionRecord& a : *actions) {
      if (a.revert) already_reverting.insert(a.type + a.params.dump());
    }
    for (const ActionRecord& a : *actions) {
      // Only effects that were applied (or may still be applied: pending) are undone.
      if (a.revert || !IsRevertibleActionType(a.type)) continue;
      if (a.status != ActionStatus::kDone && a.status != ActionStatus::kPending) continue;
      if (already_reverting.count(a.type + a.params.dump())) continue;
      auto rid = store->EnqueueAction(id, ActionRequest{a.type, a.params, false}, true, now);
      if (!rid.ok()) return rid.status();
      ids.push_back(*rid);
    }
    return Status::Ok();
  });
  if (!s.ok()) return ControlError(s);
  return ControlOk({{"id", id}, {"status", "resolved"}, {"action_ids", std::move(ids)}});
}

// The store this connection serves: {"path": canonical, "id": StoreId or ""}.
nlohmann::json StoreIdentity(IncidentStore* store) {
  auto id = store->StoreId();
  return {{"path", CanonicalStorePath(store->path())}, {"id", id.ok() ? *id : std::string()}};
}

// OK when the request names no store or names this one (see "Which store" in the header).
Status CheckStoreMatches(IncidentStore* store, const nlohmann::json& req) {
  auto wanted_path = StringArg(req, "store_path", false);
  auto wanted_id = StringArg(req, "store_id", false);
  if (!wanted_path.ok()) return wanted_path.status();
  if (!wanted_id.ok()) return wanted_id.status();
  if (wanted_path->empty() && wanted_id->empty()) return Status::Ok();
  const nlohmann::json served = StoreIdentity(store);
  const std::string served_path = served["path"];
  const std::string served_id = served["id"];
  if (!wanted_path->empty() && *wanted_path == served_path) return Status::Ok();
  if (!wanted_id->empty() && *wanted_id == served_id) return Status::Ok();
  auto named = [](const std::string& path, const std::string& id) {
    return id.empty() ? path : fmt::format("{} (store id {})", path, id);
  };
  return Status::InvalidArgument(fmt::format(
      "this daemon serves the store {}, not {}: nothing was changed. Give the --db (or config) "
      "of the daemon's store, or --socket of the daemon that serves {} (none: stop the daemon "
      "and the CLI acts on the file directly)",
      named(served_path, served_id),
      named(wanted_path->empty() ? std::string("another store") : *wanted_path, *wanted_id),
      wanted_path->empty() ? std::string("it") : *wanted_path));
}

// The user the server (or the CLI acting directly) put in "peer"; never text the client chose.
std::string PeerUser(const nlohmann::json& req) {
  auto it = req.find("peer");
  if (it == req.end() || !it->is_object()) return "unknown";
  auto user = it->find("user");
  return user != it->end() && user->is_string() ? user->get<std::string>() : "unknown";
}

bool BoolArg(const nlohmann::json& req, const char* name, bool* out, Status* error) {
  auto it = req.find(name);
  if (it == req.end() || it->is_null()) return true;
  if (!it->is_boolean()) {
    *error = Status::InvalidArgument(fmt::format("'{}' must be true or false", name));
    return false;
  }
  *out = it->get<bool>();
  return true;
}

// An allowlist prefix an admin may add: canonical, never everything, and no wider than /8 (v4)
// or /32 (v6) unless forced (a typo there would exempt a large part of the internet).
Result<IpPrefix> AllowPrefix(const std::string& text, bool force) {
  auto canonical = ParseAddress(text);
  if (!canonical.ok()) return canonical.status();
  IpPrefix p;
  IpPrefix::Parse(*canonical, &p, true);
  if (p.length() == 0) {
    return Status::InvalidArgument(
        fmt::format("{} would allowlist every address: refused", p.ToString()));
  }
  const int widest = p.address().is_v4() ? 8 : 32;
  if (p.length() < widest && !force) {
    return Status::InvalidArgument(
        fmt::format("{} is wider than /{}: give --force if you mean it", p.ToString(), widest));
  }
  return p;
}

// A note is for people: printable, one line, bounded.
Status CheckNote(const std::string& note) {
  if (note.size() > 500) return Status::InvalidArgument("a note is at most 500 bytes");
  for (unsigned char c : note) {
    if (c < 0x20 || c == 0x7f) {
      return Status::InvalidArgument("a note is one line of printable text");
    }
  }
  return Status::Ok();
}

nlohmann::json AllowAdd(IncidentStore* store, const nlohmann::json& req, UnixMicros now) {
  MXWARD_ASSIGN_OR_RESPOND(text, StringArg(req, "address", true));
  bool force = false;
  bool lift = false;
  Status bad;
  if (!BoolArg(req, "force", &force, &bad) || !BoolArg(req, "lift", &lift, &bad)) {
    return ControlError(bad);
  }
  MXWARD_ASSIGN_OR_RESPOND(prefix, AllowPrefix(text, force));
  std::int64_t for_s = 0;
  if (req.contains("for_s") && !req["for_s"].is_null()) {
    MXWARD_ASSIGN_OR_RESPOND(seconds, IntArg(req, "for_s"));
    if (seconds <= 0) return ControlError(Status::InvalidArgument("'for_s' must be positive"));
    for_s = seconds;
  }
  MXWARD_ASSIGN_OR_RESPOND(note, StringArg(req, "note", false));
  if (Status s = CheckNote(note); !s.ok()) return ControlError(s);
  AllowRecord entry;
  entry.prefix = prefix.ToString();
  entry.created_at = now;
  entry.expires_at = for_s > 0 ? now + for_s * kMicrosPerSecond : 0;
  entry.note = note;
  entry.created_by = PeerUser(req);
  nlohmann::json ids = nlohmann::json::array();
  nlohmann::json wider = nlohmann::json::array();
  // The entry and the unban of every ban it covers in one transaction: an allowlisted address
  // is never left with a lift half queued.
  Status s = store->InTransaction([&]() -> Status {
    auto id = store->AddAllow(entry);
    if (!id.ok()) return id.status();
    auto bans = store->ActiveBans(now);
    if (!bans.ok()) return bans.status();
    for (const BanRecord& b : *bans) {
      IpPrefix banned;
      if (!IpPrefix::Parse(b.prefix, &banned)) continue;
      if (banned.address().family() != prefix.address().family()) continue;
      if (banned.length() >= prefix.length() && prefix.Contains(banned.address())) {
        if (!lift) continue;
        nlohmann::json params = {{"address", b.prefix}, {"ports", b.ports}};
        auto rid = store->EnqueueAction(0, ActionRequest{"ban", params, false}, true, now);
        if (!rid.ok()) return rid.status();
        ids.push_back(*rid);
      } else if (banned.Contains(prefix.address())) {
        wider.push_back(b.prefix);  // a wider ban still covers it: the admin decides
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return ControlError(s);
  return ControlOk({{"address", entry.prefix},
                    {"expires_at", entry.expires_at},
                    {"for_s", for_s},
                    {"note", note},
                    {"created_by", entry.created_by},
                    {"action_ids", std::move(ids)},
                    {"wider_bans", std::move(wider)},
                    {"audit", AllowAuditLine(true, entry.prefix, for_s, entry.created_by, note)}});
}

}  // namespace

std::string AllowAuditLine(bool added, const std::string& prefix, std::int64_t for_s,
                           const std::string& by, const std::string& note) {
  if (!added) return fmt::format("allowlist: removed {} by {}", prefix, by);
  return fmt::format("allowlist: added {} {} by {}{}{}", prefix,
                     for_s > 0 ? "for " + FormatDurationSeconds(for_s) : std::string("permanently"),
                     by, note.empty() ? "" : ": ", note);
}

std::string CanonicalStorePath(const std::string& path) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) return path;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(absolute, ec);
  return ec ? absolute.lexically_normal().string() : canonical.string();
}

nlohmann::json ControlOk(nlohmann::json result) {
  return {{"ok", true}, {"result", std::move(result)}};
}

nlohmann::json ControlError(const Status& status) {
  std::string_view code = "internal";
  for (const auto& [c, name] : kCodes) {
    if (c == status.code()) code = name;
  }
  return {{"ok", false}, {"code", code}, {"error", status.message()}};
}

Result<nlohmann::json> ControlResult(const nlohmann::json& response) {
  if (!response.is_object() || !response.contains("ok") || !response["ok"].is_boolean()) {
    return Status::Internal("malformed control response: " + response.dump());
  }
  if (response["ok"].get<bool>()) {
    return response.contains("result") ? response["result"] : nlohmann::json::object();
  }
  const auto code = response.value("code", std::string("internal"));
  return MakeStatus(code, response.value("error", std::string("(no message)")));
}

nlohmann::json ExecuteControlRequest(IncidentStore* store, const nlohmann::json& req,
                                     UnixMicros now) {
  if (!req.is_object()) return ControlError(Status::InvalidArgument("a request is a JSON object"));
  MXWARD_ASSIGN_OR_RESPOND(op, StringArg(req, "op", true));

  if (op == "ping") return ControlOk({{"version", kVersion}, {"store", StoreIdentity(store)}});
  if (Status s = CheckStoreMatches(store, req); !s.ok()) return ControlError(s);

  if (op == "incidents.ack") {
    MXWARD_ASSIGN_OR_RESPOND(id, IntArg(req, "id"));
    MXWARD_ASSIGN_OR_RESPOND(note, StringArg(req, "note", false));
    Status s = store->AcknowledgeIncident(id, note);
    if (!s.ok()) return ControlError(s);
    return ControlOk({{"id", id}, {"status", "acknowledged"}});
  }
  if (op == "incidents.resolve") return Resolve(store, req, now);

  if (op == "bans.add" || op == "bans.remove") {
    MXWARD_ASSIGN_OR_RESPOND(text, StringArg(req, "address", true));
    MXWARD_ASSIGN_OR_RESPOND(address, ParseAddress(text));
    nlohmann::json params = {{"address", address}};
    const bool add = op == "bans.add";
    // The port scope: a group name, "all", port numbers (the executor resolves and checks them
    // against [nftables]); for a removal "*" (every scope) unless one is named.
    MXWARD_ASSIGN_OR_RESPOND(ports, StringArg(req, "ports", false));
    if (ports.empty()) ports = add ? "mail" : "*";
    const bool clean_ports =
        ports == "*" || std::all_of(ports.begin(), ports.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ',' || c == ' ';
        });
    if (!clean_ports || ports.size() > 200) {
      return ControlError(Status::InvalidArgument(
          "'ports' is a port group (mail, web, all, ...) or port numbers, comma-separated"));
    }
    params["ports"] = ports;
    if (add) {
      MXWARD_ASSIGN_OR_RESPOND(duration, IntArg(req, "duration_s"));
      if (duration <= 0) {
        return ControlError(Status::InvalidArgument("'duration_s' must be positive"));
      }
      MXWARD_ASSIGN_OR_RESPOND(reason, StringArg(req, "reason", false));
      params["duration_s"] = duration;
      params["reason"] = reason.empty() ? "added by hand" : reason;
    }
    return Enqueued(store, 0, {{ActionRequest{"ban", params, false}, !add}}, now,
                    {{"address", address}, {"ports", ports}});
  }

  if (op == "allow.add") return AllowAdd(store, req, now);
  if (op == "allow.remove") {
    MXWARD_ASSIGN_OR_RESPOND(text, StringArg(req, "address", true));
    MXWARD_ASSIGN_OR_RESPOND(address, ParseAddress(text));
    const std::string by = PeerUser(req);
    if (Status s = store->RemoveAllow(address, now, by); !s.ok()) return ControlError(s);
    return ControlOk({{"address", address},
                      {"created_by", by},
                      {"audit", AllowAuditLine(false, address, 0, by, "")}});
  }

  if (op == "accounts.suspend" || op == "accounts.restore") {
    MXWARD_ASSIGN_OR_RESPOND(user, StringArg(req, "user", true));
    if (Status s = CheckUser(user); !s.ok()) return ControlError(s);
    MXWARD_ASSIGN_OR_RESPOND(kind, StringArg(req, "kind", false));
    if (!kind.empty() && !IsAccountActionType(kind)) {
      return ControlError(Status::InvalidArgument(
          fmt::format("unknown kind '{}' (known: {})", kind, AccountActionTypes())));
    }
    if (op == "accounts.suspend") {
      if (kind.empty()) kind = "suspend";
      return Enqueued(store, 0, {{ActionRequest{kind, {{"user", user}}, false}, false}}, now,
                      {{"user", user}, {"kind", kind}});
    }
    std::vector<std::pair<ActionRequest, bool>> undo;
    if (!kind.empty()) {
      undo.push_back({ActionRequest{kind, {{"user", user}}, false}, true});
    } else {
      auto active = store->ActiveSuspensions();
      if (!active.ok()) return ControlError(active.status());
      for (const SuspensionRecord& s : *active) {
        if (s.user == user) undo.push_back({ActionRequest{s.kind, {{"user", user}}, false}, true});
      }
      if (undo.empty()) {
        return ControlError(Status::NotFound(fmt::format(
            "mxward has no suspension of {} on record; give --kind to restore anyway", user)));
      }
    }
    return Enqueued(store, 0, undo, now, {{"user", user}});
  }
  return ControlError(Status::InvalidArgument(fmt::format("unknown op '{}'", op)));
}

}  // namespace mxward
