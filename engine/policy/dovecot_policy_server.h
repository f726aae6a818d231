// DovecotPolicyServer: the HTTP endpoint (Boost.Beast) Dovecot's auth_policy_server_url points
// at, answering with a DovecotPolicy (dovecot_policy.h).
//
//   POST /?command=allow|report, Content-Type application/json -> 200 {"status":..,"msg":..}
//   a request without the configured secret                    -> 401 (Dovecot logs it and,
//                                                                  with auth_policy_reject_on_fail
//                                                                  = no, lets the login go on)
//   a bad target or JSON body                                  -> 400 with the reason
//   another method                                             -> 405
//   a body over max_body_bytes or headers over 8 KiB           -> 413 / connection closed
//
// The secret is either header Dovecot can send: auth_policy_server_api_header ("X-API-Key:
// SECRET", or just "SECRET", which Dovecot sends as X-API-Key) or HTTP Basic auth from the URL
// (http://USER:PASSWORD@127.0.0.1:9581/, compared as "USER:PASSWORD"). Without a secret file
// every loopback client is trusted, which is why it binds to loopback by default.
//
// Runs on the daemon's io_context, on its one thread (the pipeline's), so handlers read the
// decision table and windows without locks. Bounded: at most max_connections at once (more are
// closed at accept), idle connections time out, keep-alive is honoured.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/policy/dovecot_policy.h"
#include "mxward/config.h"
#include "mxward/status.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace mxward {

struct DovecotPolicyServerOptions {
  bool enabled = false;
  std::string address = "127.0.0.1";
  std::uint16_t port = 9581;  // 0 picks a free port (tests)
  std::string secret;         // read from secret_file; empty: no check
  std::string api_header = "X-API-Key";
  int max_connections = 256;
  int idle_timeout_seconds = 60;
  std::size_t max_body_bytes = 16 * 1024;

  // [policy.dovecot] enabled, listen = "127.0.0.1:9581", secret_file, api_header,
  // max_connections, idle_timeout, max_body_bytes. Diagnostics with file:line:col.
  static Result<DovecotPolicyServerOptions> FromConfig(const Config& config,
                                                       std::vector<Diagnostic>* diagnostics);
  bool operator==(const DovecotPolicyServerOptions&) const = default;
};

struct DovecotPolicyServerCounters {
  std::uint64_t connections = 0;
  std::uint64_t refused_connections = 0;  // over max_connections
  std::uint64_t unauthorized = 0;
  std::uint64_t bad_requests = 0;
};

class DovecotPolicyServer {
 public:
  // policy must outlive the server.
  DovecotPolicyServer(boost::asio::io_context& io, DovecotPolicyServerOptions options,
                      DovecotPolicy* policy);
  ~DovecotPolicyServer();
  DovecotPolicyServer(const DovecotPolicyServer&) = delete;
  DovecotPolicyServer& operator=(const DovecotPolicyServer&) = delete;

  // Binds and accepts. Unavailable naming the address when it cannot. Nothing when disabled.
  Status Start();
  // Closes the listener and every connection; on the io thread. The destructor calls it.
  void Stop();
  // New settings (SIGHUP). A new secret, header or limit applies to the next request; a new
  // address or port closes the listener and its connections (Dovecot reconnects) and binds the
  // new one. When that fails, the previous settings are bound again and the error returned.
  Status Reconfigure(DovecotPolicyServerOptions next);
  const DovecotPolicyServerOptions& options() const;
  std::uint16_t port() const;
  const DovecotPolicyServerCounters& counters() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mxward
