// PostfixPolicyServer: the socket Postfix's check_policy_service connects to, answering with a
// PostfixPolicy (postfix_policy.h): a unix socket (for unix:private/NAME inside Postfix's chroot,
// or any path) and/or a loopback TCP port (inet:127.0.0.1:PORT).
//
// Each connection carries many requests; each is answered in order as soon as its empty line
// arrives, whatever pieces the bytes came in. A protocol error (see PostfixPolicyReader), a
// connection idle between requests past idle_timeout, a request not complete within
// request_timeout of its first byte and a connection over max_connections are closed; the others
// are unaffected. Postfix keeps policy connections open between messages (its
// smtpd_policy_service_max_idle is 300s), which is why the default idle timeout is longer; it
// writes a request at once and gives up on it after smtpd_policy_service_timeout (100s), so a
// request still arriving after 100s is not Postfix's and request_timeout defaults to that.
//
// Runs on the daemon's io_context, on its one thread (the pipeline's): answers read the decision
// table and feed the playbook windows without locks, and nothing waits on the store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/policy/postfix_policy.h"
#include "mxward/config.h"
#include "mxward/status.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace mxward {

struct PostfixPolicyServerOptions {
  bool enabled = false;
  std::string socket_path;  // empty: no unix socket
  int socket_mode = 0660;
  std::string socket_group;  // empty: the daemon's group
  std::string address;       // empty: no TCP port
  std::uint16_t port = 0;    // 0 with an address picks a free port (tests)
  int max_connections = 512;
  int idle_timeout_seconds = 600;     // between requests; restarted by each answer
  int request_timeout_seconds = 100;  // first byte of a request to its empty line; not restarted

  // [policy.postfix] enabled, socket, socket_mode ("0660"), socket_group, listen
  // ("127.0.0.1:9582"), max_connections, idle_timeout, request_timeout. Enabled needs socket or
  // listen.
  static Result<PostfixPolicyServerOptions> FromConfig(const Config& config,
                                                       std::vector<Diagnostic>* diagnostics);
  bool operator==(const PostfixPolicyServerOptions&) const = default;
};

struct PostfixPolicyServerCounters {
  std::uint64_t connections = 0;
  std::uint64_t refused_connections = 0;  // over max_connections
  std::uint64_t protocol_errors = 0;      // closed for a malformed or oversized request
  std::uint64_t idle_closed = 0;
  std::uint64_t request_timeouts = 0;  // a request begun and not finished within request_timeout
};

class PostfixPolicyServer {
 public:
  PostfixPolicyServer(boost::asio::io_context& io, PostfixPolicyServerOptions options,
                      PostfixPolicy* policy);
  ~PostfixPolicyServer();
  PostfixPolicyServer(const PostfixPolicyServer&) = delete;
  PostfixPolicyServer& operator=(const PostfixPolicyServer&) = delete;

  // Binds the socket and/or port. On failure nothing stays open and the message names what.
  Status Start();
  // Closes listeners and connections, removes the socket file; on the io thread. The destructor
  // calls it.
  void Stop();
  // New settings (SIGHUP). New limits apply to the next connection; a new socket, mode, group,
  // address or port closes the listeners and their connections (Postfix reconnects) and binds
  // the new ones. When that fails, the previous settings are bound again and the error returned.
  Status Reconfigure(PostfixPolicyServerOptions next);
  const PostfixPolicyServerOptions& options() const;
  std::uint16_t port() const;
  const PostfixPolicyServerCounters& counters() const;
  // "unix:/path, inet:127.0.0.1:9582"
  std::string Describe() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mxward
