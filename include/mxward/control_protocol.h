// Control protocol: how `mxward incidents|bans|accounts` talk to a running `mxward serve`, so
// that the daemon's view, the store and the kernel stay consistent while it runs.
//
// Transport: a Unix stream socket ([control] socket, default /run/mxward/control.sock), owned by
// the daemon's user with group [control] group (default: the daemon's group) and mode 0660. The
// server also checks the peer's credentials (SO_PEERCRED): root, the daemon's own user, and
// members of that group are served; anybody else gets a permission_denied response.
//
// Framing: one JSON object per line (UTF-8, '\n'-terminated, at most 64 KiB) in each direction,
// one response per request, in order; a connection may carry several requests.
//
// Requests, {"op": NAME, ...arguments}:
//   {"op":"ping"}   ->
//   {"version":"0.1.0","store":{"path":"/var/lib/mxward/mxward.db","id":"9f..."}}
//   {"op":"incidents.ack","id":7,"note":"known scanner"}   -> {"id":7,"status":"acknowledged"}
//   {"op":"incidents.resolve","id":7,"note":"","revert":true}
//                                  -> {"id":7,"status":"resolved","action_ids":[12,13]}
//   {"op":"bans.add","address":"192.0.2.0/24","duration_s":3600,"reason":"by hand"}
//                                  -> {"address":"192.0.2.0/24","action_ids":[14]}
//   {"op":"bans.remove","address":"192.0.2.0/24"}          -> {"address":...,"action_ids":[15]}
//   {"op":"accounts.suspend","user":"alice@example.org","kind":"suspend"}
//                                  -> {"user":...,"kind":"suspend","action_ids":[16]}
//   {"op":"accounts.restore","user":"alice@example.org","kind":"suspend"}   (kind optional: all)
//                                  -> {"user":...,"action_ids":[17]}
//   {"op":"allow.add","address":"203.0.113.0/24","for_s":604800,"note":"office NAT","lift":true,
//    "force":false}      -> {"address":"203.0.113.0/24","expires_at":..., "action_ids":[18],
//                            "wider_bans":["203.0.0.0/16"]}   (lift: an unban per covered ban)
//   {"op":"allow.remove","address":"203.0.113.0/24"}       -> {"address":...}
// The server adds "peer":{"uid":0,"user":"root"} to every request from the socket's peer
// credentials (SO_PEERCRED), replacing any the client sent: allow.add records that user as
// created_by. The CLI acting directly adds its own uid the same way (PeerIdentity).
// action_ids are rows of the store's outbox (IncidentStore::EnqueueAction); their outcome is
// read back from the store (`mxward actions show N`; the CLI waits for it, admin_request.h).
//
// Which store: any request may carry "store_path" (the canonical path of the store the sender
// means, CanonicalStorePath) and "store_id" (that store's IncidentStore::StoreId, when it exists).
// A request meant for another store than the one the daemon serves is refused with
// invalid_argument naming both, before anything changes: the paths differ and the ids (when both
// are known) differ too. Equal ids with different paths are the same store reached another way
// (a bind mount, a symlinked directory) and are served.
//
// Responses: {"ok":true,"result":{...}} or
//            {"ok":false,"code":"not_found","error":"no incident 7"}
// where code is the snake_case of Status::Code (invalid_argument, not_found, permission_denied,
// unavailable, internal, ...).
//
// ControlServer owns the socket; the daemon (`mxward serve`) owns the ControlServer and the
// io_context that runs it, and passes a handler, normally one that calls ExecuteControlRequest
// on its own IncidentStore connection and then wakes the ActionDispatcher. The CLI, when nobody
// answers, calls ExecuteControlRequest itself and runs the outbox: both paths do the same thing.
//
// In the daemon, on the io_context's thread (the store connection is the handler's own):
//   ControlServer control(io, *ControlServerOptions::FromConfig(config),
//                         [&](const nlohmann::json& request) {
//                           nlohmann::json response =
//                               ExecuteControlRequest(control_store.get(), request, clock->Now());
//                           dispatcher.Notify();  // new rows in the outbox, if any
//                           return response;
//                         });
//   MXWARD_RETURN_IF_ERROR(control.Start());
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "mxward/config.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace boost::asio {
class io_context;
}

namespace mxward {

inline constexpr std::size_t kMaxControlMessageBytes = 64 * 1024;

// {"ok":true,"result":result}
nlohmann::json ControlOk(nlohmann::json result);
// {"ok":false,"code":...,"error":...}
nlohmann::json ControlError(const Status& status);
// The result of a response, or the Status its error describes.
Result<nlohmann::json> ControlResult(const nlohmann::json& response);

// The absolute path of a store file with symlinks resolved as far as it exists: what "the same
// store" means when the CLI and the daemon name it.
std::string CanonicalStorePath(const std::string& path);

// {"uid":N,"user":NAME}: the user a uid names (its number as text when it has no name).
nlohmann::json PeerIdentity(std::int64_t uid);

// The audit line of an allowlist change, logged by the daemon (and printed by the CLI acting
// directly): "allowlist: added 203.0.113.0/24 for 7d by root: office NAT",
// "allowlist: removed 203.0.113.0/24 by root".
std::string AllowAuditLine(bool added, const std::string& prefix, std::int64_t for_s,
                           const std::string& by, const std::string& note);

// Validates one request and carries it out against the store: status changes directly, effects
// (bans, suspensions and their undoing) as rows in the outbox. Never throws; errors are responses.
// Addresses are parsed with IpPrefix and re-printed; user names must look like one.
nlohmann::json ExecuteControlRequest(IncidentStore* store, const nlohmann::json& request,
                                     UnixMicros now);

struct ControlServerOptions {
  std::string socket_path = "/run/mxward/control.sock";
  std::string group;  // group allowed to connect; empty: the daemon's own group
  // Connections open at once, admitted or being refused; one more is answered `unavailable`
  // and closed. The CLI opens one per command, so 32 leaves room for scripts in parallel.
  int max_connections = 32;
  // From the moment the server waits for a request line until its newline, and again for the
  // answer to be written: a peer that connects and says nothing, trickles a line or does not
  // read its answer is closed when it passes.
  int request_timeout_seconds = 30;
  // [control] socket, group, max_connections and request_timeout from mxward.toml (socket
  // already in Config::control_socket). Unknown keys and bad values become Diagnostics with
  // file:line:col.
  static Result<ControlServerOptions> FromConfig(const Config& config,
                                                 std::vector<Diagnostic>* diagnostics);
};

// What the control server turned away; relaxed atomics of the io thread, read by /metrics.
struct ControlServerCounters {
  std::atomic<std::uint64_t> refused_over_cap{0};  // answered `unavailable` at max_connections
  std::atomic<std::uint64_t> timed_out{0};         // closed at request_timeout
};

class ControlServer {
 public:
  // Runs on the io_context's thread, one request at a time; returns the response object
  // (ControlOk / ControlError). An exception it throws becomes an internal error response.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  ControlServer(boost::asio::io_context& io, ControlServerOptions options, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Creates the socket (replacing a stale one; refusing when another daemon answers on it), sets
  // group and mode 0660, and starts accepting on the io_context.
  Status Start();
  // Closes the socket and every connection and removes the socket file. Call it on the
  // io_context's thread, or while the io_context is not running.
  void Stop();
  const ControlServerCounters& counters() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Sends one request and waits up to timeout for the whole response object (see ControlResult).
// NotFound when no daemon listens on the socket (no file, connection refused): the caller then
// acts directly. Unavailable when a daemon was reached but did not answer in time.
Result<nlohmann::json> CallControl(const std::string& socket_path, const nlohmann::json& request,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace mxward
