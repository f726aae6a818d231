#include "engine/policy/dovecot_policy_server.h"

#include <chrono>
#include <optional>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "engine/base/secret_file.h"
#include "engine/base/tcp_listen.h"
#include "engine/policy/policy_section.h"
#include "mxward/ip_address.h"

namespace mxward {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 8 * 1024;

// Compares without stopping at the first difference, so the time taken does not tell a client
// how much of a guess was right.
bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string Base64(std::string_view s) {
  std::string out(beast::detail::base64::encoded_size(s.size()), '\0');
  out.resize(beast::detail::base64::encode(out.data(), s.data(), s.size()));
  return out;
}

}  // namespace

Result<DovecotPolicyServerOptions> DovecotPolicyServerOptions::FromConfig(
    const Config& config, std::vector<Diagnostic>* diagnostics) {
  DovecotPolicyServerOptions o;
  const std::size_t before = diagnostics->size();
  const toml::table* t = PolicySection(config, "dovecot", diagnostics);
  if (t != nullptr) {
    SettingsReader r(*t, "[policy.dovecot]", config.source, diagnostics);
    r.CheckKnownKeys({"enabled", "listen", "secret_file", "api_header", "max_connections",
                      "idle_timeout", "max_body_bytes"});
    r.Bool("enabled", &o.enabled);
    std::string listen;
    if (r.String("listen", &listen)) {
      if (Status st = ParseListenAddress(listen, &o.address, &o.port); !st.ok()) {
        r.Error(*t->get("listen"), st.message());
      }
    }
    ReadSecretSetting(r, "secret_file", &o.secret);
    // Reports feed the windows: off loopback, a client without the secret could get any address
    // banned. Loopback without a secret trusts the host's users (docs/policy.md says so).
    IpAddress bound;
    if (t->contains("listen") && o.secret.empty() && r.ok() &&
        IpAddress::Parse(o.address, &bound) && !bound.IsLoopback()) {
      r.Error(*t->get("listen"),
              fmt::format("[policy.dovecot] listens on {} without secret_file: anyone who can "
                          "reach it could report failed logins and get addresses banned; set "
                          "secret_file (and Dovecot's auth_policy_server_api_header) or listen "
                          "on loopback",
                          o.address));
    }
    r.String("api_header", &o.api_header);
    r.Int("max_connections", 1, 100'000, &o.max_connections);
    std::int64_t seconds = 0;
    if (r.Duration("idle_timeout", &seconds)) {
      o.idle_timeout_seconds = static_cast<int>(std::clamp<std::int64_t>(seconds, 1, 3600));
    }
    std::int64_t body = 0;
    if (r.Int("max_body_bytes", 256, 1 << 20, &body)) o.max_body_bytes = body;
  }
  if (diagnostics->size() > before) {
    SortByPosition(diagnostics, before);
    return Status::InvalidArgument(
        fmt::format("{} error(s) in [policy.dovecot]", diagnostics->size() - before));
  }
  return o;
}

namespace {
class DovecotSession;
}  // namespace

struct DovecotPolicyServer::Impl : std::enable_shared_from_this<DovecotPolicyServer::Impl> {
  Impl(asio::io_context& io, DovecotPolicyServerOptions options, DovecotPolicy* policy)
      : io(io), policy(policy), acceptor(io) {
    SetOptions(std::move(options));
  }
  // The options and what is derived from them (the Basic credentials compared with).
  void SetOptions(DovecotPolicyServerOptions next) {
    options = std::move(next);
    basic = options.secret.empty() ? std::string() : "Basic " + Base64(options.secret);
  }

  void Accept();
  bool Authorized(const http::request<http::string_body>& req) const;
  http::response<http::string_body> Respond(const http::request<http::string_body>& req);

  asio::io_context& io;
  DovecotPolicyServerOptions options;
  DovecotPolicy* policy;
  tcp::acceptor acceptor;
  std::string basic;  // "Basic <base64(secret)>"
  // Everything runs on the io thread: plain members.
  bool stopped = true;
  int open_connections = 0;
  std::vector<std::weak_ptr<DovecotSession>> sessions;
  std::uint16_t bound_port = 0;
  DovecotPolicyServerCounters counters;
};

namespace {

class DovecotSession : public std::enable_shared_from_this<DovecotSession> {
 public:
  DovecotSession(tcp::socket socket, std::shared_ptr<DovecotPolicyServer::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {
    ++server_->open_connections;
  }
  ~DovecotSession() { --server_->open_connections; }

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
    parser_->body_limit(server_->options.max_body_bytes);
    stream_.expires_after(std::chrono::seconds(server_->options.idle_timeout_seconds));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (server_->stopped || ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      Close();
      return;
    }
    if (ec) {
      // Oversized or malformed: say so once, then close (the stream is not in a known state).
      ++server_->counters.bad_requests;
      auto res = std::make_shared<http::response<http::string_body>>();
      const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
      res->result(too_big ? http::status::payload_too_large : http::status::bad_request);
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      res->body() = too_big ? "request too large\n" : "malformed HTTP request\n";
      res->keep_alive(false);
      res->prepare_payload();
      http::async_write(
          stream_, *res,
          [self = shared_from_this(), res](beast::error_code, std::size_t) { self->Close(); });
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
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<DovecotPolicyServer::Impl> server_;
};

}  // namespace

bool DovecotPolicyServer::Impl::Authorized(const http::request<http::string_body>& req) const {
  if (options.secret.empty()) return true;
  if (auto it = req.find(options.api_header); it != req.end()) {
    std::string_view v(it->value().data(), it->value().size());
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    if (SameSecret(v, options.secret)) return true;
  }
  if (auto it = req.find(http::field::authorization); it != req.end()) {
    std::string_view v(it->value().data(), it->value().size());
    if (SameSecret(v, basic)) return true;
  }
  return false;
}

http::response<http::string_body> DovecotPolicyServer::Impl::Respond(
    const http::request<http::string_body>& req) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  auto error = [&res](http::status status, std::string_view why) {
    res.result(status);
    res.body() = nlohmann::json{{"error", why}}.dump();
  };
  if (req.method() != http::verb::post) {
    res.set(http::field::allow, "POST");
    error(http::status::method_not_allowed, "POST ?command=allow or ?command=report");
  } else if (!Authorized(req)) {
    ++counters.unauthorized;
    error(http::status::unauthorized, "missing or wrong secret");
  } else {
    auto command =
        ParseDovecotPolicyTarget(std::string_view(req.target().data(), req.target().size()));
    auto request = command.ok() ? ParseDovecotPolicyBody(*command, req.body())
                                : Result<DovecotPolicyRequest>(command.status());
    if (!request.ok()) {
      ++counters.bad_requests;
      error(http::status::bad_request, request.status().message());
    } else {
      res.result(http::status::ok);
      res.body() = policy->Answer(*request).ToJson();
    }
  }
  res.prepare_payload();
  return res;
}

void DovecotPolicyServer::Impl::Accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (!ec) {
      ++self->counters.connections;
      if (self->open_connections >= self->options.max_connections) {
        ++self->counters.refused_connections;
        beast::error_code ignored;
        socket.close(ignored);  // over the cap: refuse rather than queue without bound
      } else {
        auto session = std::make_shared<DovecotSession>(std::move(socket), self);
        std::erase_if(self->sessions, [](const auto& w) { return w.expired(); });
        self->sessions.push_back(session);
        session->Start();
      }
    } else {
      spdlog::warn("dovecot policy: accept failed: {}", ec.message());
    }
    self->Accept();
  });
}

DovecotPolicyServer::DovecotPolicyServer(asio::io_context& io, DovecotPolicyServerOptions options,
                                         DovecotPolicy* policy)
    : impl_(std::make_shared<Impl>(io, std::move(options), policy)) {}

DovecotPolicyServer::~DovecotPolicyServer() { Stop(); }

Status DovecotPolicyServer::Start() {
  if (!impl_->options.enabled) return Status::Ok();
  tcp::acceptor& a = impl_->acceptor;
  MXWARD_RETURN_IF_ERROR(ListenTcp(a, impl_->options.address, impl_->options.port, "dovecot policy",
                                   "set [policy.dovecot] listen to a free address"));
  impl_->bound_port = a.local_endpoint().port();
  impl_->stopped = false;
  impl_->Accept();
  return Status::Ok();
}

void DovecotPolicyServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
  auto sessions = std::move(impl_->sessions);
  impl_->sessions.clear();
  for (auto& w : sessions) {
    if (auto s = w.lock()) s->Close();
  }
}

Status DovecotPolicyServer::Reconfigure(DovecotPolicyServerOptions next) {
  const DovecotPolicyServerOptions& now = impl_->options;
  if (next == now) return Status::Ok();
  if (next.address == now.address && next.port == now.port) {
    impl_->SetOptions(std::move(next));
    return Status::Ok();
  }
  DovecotPolicyServerOptions previous = now;
  Stop();
  impl_->SetOptions(std::move(next));
  Status st = Start();
  if (!st.ok()) {
    impl_->SetOptions(std::move(previous));
    if (Status again = Start(); !again.ok()) {
      return Status::Unavailable(fmt::format("{}; and the previous address failed too: {}",
                                             st.message(), again.message()));
    }
  }
  return st;
}

const DovecotPolicyServerOptions& DovecotPolicyServer::options() const { return impl_->options; }

std::uint16_t DovecotPolicyServer::port() const { return impl_->bound_port; }

const DovecotPolicyServerCounters& DovecotPolicyServer::counters() const { return impl_->counters; }

}  // namespace mxward
