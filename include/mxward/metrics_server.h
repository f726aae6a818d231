// MetricsServer: the small HTTP endpoint (Boost.Beast) Prometheus scrapes and a load balancer or
// systemd-side check probes.
//
//   GET /metrics   200, the MetricsRegistry rendered (text/plain; version=0.0.4)
//   GET /healthz   200 "ok\n" when the HealthFn says so, else 503 with its reason
//   HEAD of both   the same status and headers, no body
//   anything else  404 (unknown path) or 405 (other methods)
//
// It runs on an io_context the caller owns and runs (the daemon's); every handler is async, so it
// never blocks that thread beyond rendering. It binds to loopback by default
// ([metrics] listen = "127.0.0.1:9580"): metrics say how busy the server is and how many bans are
// in place, which is no business of the internet. Requests are bounded (8 KiB of headers, no
// body accepted), idle connections time out, and at most max_connections are open at once, so a
// client cannot make it hold unbounded memory. Keep-alive is honoured.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/config.h"
#include "mxward/status.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace mxward {

class MetricsRegistry;

struct MetricsServerOptions {
  bool enabled = true;
  std::string address = "127.0.0.1";  // IPv4 or IPv6 literal
  std::uint16_t port = 9580;          // 0 picks a free port (tests)
  // Open at once; more are accepted and closed at once rather than queued without bound.
  int max_connections = 32;
  // Of those, from one source address (all of loopback is one: a local user may connect from
  // any 127/8 address), so one scanner cannot take the slots Prometheus needs.
  int max_connections_per_peer = 8;
  // To send a whole request's headers, from when the server starts waiting for them (also the
  // keep-alive idle time between requests).
  int request_timeout_seconds = 30;

  // Reads [metrics] enabled = true|false, listen = "ADDR:PORT" ("[::1]:9580" for IPv6),
  // max_connections, max_connections_per_peer (at most max_connections) and request_timeout
  // (1s to 1h). Unknown keys and bad values become Diagnostics with file:line:col.
  static Result<MetricsServerOptions> FromConfig(const Config& config,
                                                 std::vector<Diagnostic>* diagnostics);
};

struct HealthReport {
  bool ok = true;
  std::string reason;  // why not ok, one line ("engine stuck: no line processed for 120s")
};

class MetricsServer {
 public:
  using HealthFn = std::function<HealthReport()>;

  // registry must outlive the server. health runs on the io_context thread for each /healthz;
  // a null health means always ok.
  MetricsServer(boost::asio::io_context& io, const MetricsRegistry* registry, HealthFn health,
                MetricsServerOptions options);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and starts accepting. Unavailable when the address is in use or cannot be bound (the
  // message names it). Does nothing when options.enabled is false.
  Status Start();
  // Closes the listener and every open connection. Call it on the io_context's thread or while
  // the io_context is not running; more than once is fine. The destructor calls it.
  void Stop();
  // The bound port (useful with port 0); 0 before Start.
  std::uint16_t port() const;
  // Connections closed at accept: over max_connections, over max_connections_per_peer.
  std::uint64_t refused_over_cap() const;
  std::uint64_t refused_peer_limit() const;

  struct Impl;  // defined in metrics_server.cpp; public so its connection class can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mxward
