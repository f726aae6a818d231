#include "mxward/metrics_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "engine/base/settings_reader.h"
#include "engine/base/tcp_listen.h"
#include "mxward/ip_address.h"
#include "mxward/metrics_registry.h"
#include "mxward/version.h"

namespace mxward {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 8 * 1024;
constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

Result<MetricsServerOptions> MetricsServerOptions::FromConfig(
    const Config& config, std::vector<Diagnostic>* diagnostics) {
  MetricsServerOptions o;
  const toml::table* t = SectionTable(config, "metrics", diagnostics);
  if (t == nullptr) {
    if (config.document.contains("metrics")) {
      return Status::InvalidArgument(diagnostics->back().ToString());
    }
    return o;
  }
  const std::size_t before = diagnostics->size();
  SettingsReader r(*t, "[metrics]", config.source, diagnostics);
  r.CheckKnownKeys(
      {"enabled", "listen", "max_connections", "max_connections_per_peer", "request_timeout"});
  r.Bool("enabled", &o.enabled);
  r.Int("max_connections", 1, 4096, &o.max_connections);
  if (r.Int("max_connections_per_peer", 1, 4096, &o.max_connections_per_peer) &&
      o.max_connections_per_peer > o.max_connections) {
    r.Error(*t->get("max_connections_per_peer"),
            fmt::format("'max_connections_per_peer' ({}) is more than max_connections ({})",
                        o.max_connections_per_peer, o.max_connections));
  }
  r.DurationBetween("request_timeout", 1, 3600, &o.request_timeout_seconds);
  std::string listen;
  if (r.String("listen", &listen)) {
    if (Status st = ParseListenAddress(listen, &o.address, &o.port); !st.ok()) {
      r.Error(*t->get("listen"), st.message());
    }
  }
  if (!r.ok()) {
    SortByPosition(diagnostics, before);
    return Status::InvalidArgument(
        fmt::format("{} error(s) in [metrics]", diagnostics->size() - before));
  }
  return o;
}

namespace {

class Session;

}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<MetricsServer::Impl> {
  Impl(asio::io_context& io, const MetricsRegistry* registry, HealthFn health,
       MetricsServerOptions options)
      : io(io),
        registry(registry),
        health(std::move(health)),
        options(std::move(options)),
        acceptor(io) {}

  void Accept();
  http::response<http::string_body> Respond(const http::request<http::empty_body>& req);

  asio::io_context& io;
  const MetricsRegistry* registry;
  HealthFn health;
  MetricsServerOptions options;
  tcp::acceptor acceptor;
  // Sessions run on their own strands, so what they share with the acceptor is atomic or locked.
  std::atomic<bool> stopped{false};
  std::atomic<int> open_connections{0};
  std::mutex sessions_mu;
  std::vector<std::weak_ptr<Session>> sessions;  // to close them on Stop
  std::map<std::string, int> per_peer;           // open sessions per PeerKey; under sessions_mu
  std::atomic<std::uint64_t> refused_over_cap{0};
  std::atomic<std::uint64_t> refused_peer_limit{0};
  std::uint16_t bound_port = 0;
};

namespace {

// One connection: read a request, answer, repeat while keep-alive; closed on error, idle timeout
// or Stop.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // The acceptor has counted this connection in server->per_peer under `peer`.
  Session(tcp::socket socket, std::shared_ptr<MetricsServer::Impl> server, std::string peer)
      : stream_(std::move(socket)), server_(std::move(server)), peer_(std::move(peer)) {
    ++server_->open_connections;
  }
  ~Session() {
    {
      std::lock_guard lock(server_->sessions_mu);
      if (auto it = server_->per_peer.find(peer_);
          it != server_->per_peer.end() && --it->second <= 0) {
        server_->per_peer.erase(it);
      }
    }
    --server_->open_connections;
  }

  void Start() { Read(); }
  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(0);  // GET and HEAD only: any body is refused
    stream_.expires_after(std::chrono::seconds(server_->options.request_timeout_seconds));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec || server_->stopped) {
      // End of stream, timeout, oversized request or a malformed one: just close. A client that
      // sent garbage gets no answer, which is what it deserves and costs us nothing.
      Close();
      return;
    }
    auto res =
        std::make_shared<http::response<http::string_body>>(server_->Respond(parser_->get()));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code wec, std::size_t) {
                        if (wec || !res->keep_alive() || self->server_->stopped) {
                          self->Close();
                          return;
                        }
                        self->Read();
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{kHeaderLimit};
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::shared_ptr<MetricsServer::Impl> server_;
  std::string peer_;
};

// The per-peer key of a connection: its source address, every loopback address as one.
std::string PeerKey(const tcp::socket& socket) {
  beast::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  return PeerAddressKey(ep.address());
}

}  // namespace

http::response<http::string_body> MetricsServer::Impl::Respond(
    const http::request<http::empty_body>& req) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  res.set(http::field::server, std::string("mxward/") + kVersion);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::cache_control, "no-store");

  std::string_view target(req.target().data(), req.target().size());
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  const bool known = target == "/metrics" || target == "/healthz";
  const bool get_or_head = req.method() == http::verb::get || req.method() == http::verb::head;

  if (!known) {
    res.result(http::status::not_found);
    res.body() = "not found: try /metrics or /healthz\n";
  } else if (!get_or_head) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET, HEAD");
    res.body() = "method not allowed\n";
  } else if (target == "/metrics") {
    res.result(http::status::ok);
    res.set(http::field::content_type, kMetricsContentType);
    res.body() = registry != nullptr ? registry->Render() : std::string();
  } else {
    HealthReport h = health ? health() : HealthReport{};
    res.result(h.ok ? http::status::ok : http::status::service_unavailable);
    res.body() = h.ok ? "ok\n" : "unhealthy: " + h.reason + "\n";
  }
  res.prepare_payload();  // Content-Length of the full body, also for HEAD
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

void MetricsServer::Impl::Accept() {
  acceptor.async_accept(
      asio::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (self->stopped || ec == asio::error::operation_aborted) return;
        if (!ec) {
          std::string peer = PeerKey(socket);
          std::unique_lock lock(self->sessions_mu);
          int& from_peer = self->per_peer[peer];
          if (self->open_connections >= self->options.max_connections ||
              from_peer >= self->options.max_connections_per_peer) {
            // Over a cap: refuse rather than queue without bound.
            (self->open_connections >= self->options.max_connections ? self->refused_over_cap
                                                                     : self->refused_peer_limit)
                .fetch_add(1, std::memory_order_relaxed);
            if (from_peer == 0) self->per_peer.erase(peer);
            lock.unlock();
            beast::error_code ignored;
            socket.close(ignored);
          } else {
            ++from_peer;
            auto session = std::make_shared<Session>(std::move(socket), self, std::move(peer));
            // Drop entries of closed sessions so the list stays as small as the cap.
            std::erase_if(self->sessions, [](const auto& w) { return w.expired(); });
            self->sessions.push_back(session);
            lock.unlock();
            session->Start();
          }
        } else {
          spdlog::warn("metrics: accept failed: {}", ec.message());
        }
        self->Accept();
      });
}

MetricsServer::MetricsServer(asio::io_context& io, const MetricsRegistry* registry, HealthFn health,
                             MetricsServerOptions options)
    : impl_(std::make_shared<Impl>(io, registry, std::move(health), std::move(options))) {}

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::Start() {
  if (!impl_->options.enabled) return Status::Ok();
  tcp::acceptor& a = impl_->acceptor;
  MXWARD_RETURN_IF_ERROR(ListenTcp(a, impl_->options.address, impl_->options.port, "metrics",
                                   "set [metrics] listen to a free address, or enabled = false"));
  impl_->bound_port = a.local_endpoint().port();
  impl_->stopped = false;
  impl_->Accept();
  return Status::Ok();
}

void MetricsServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
  std::vector<std::weak_ptr<Session>> sessions;
  {
    std::lock_guard lock(impl_->sessions_mu);
    sessions.swap(impl_->sessions);
  }
  for (auto& w : sessions) {
    if (auto s = w.lock()) s->Close();
  }
}

std::uint16_t MetricsServer::port() const { return impl_->bound_port; }

std::uint64_t MetricsServer::refused_over_cap() const {
  return impl_->refused_over_cap.load(std::memory_order_relaxed);
}

std::uint64_t MetricsServer::refused_peer_limit() const {
  return impl_->refused_peer_limit.load(std::memory_order_relaxed);
}

}  // namespace mxward
