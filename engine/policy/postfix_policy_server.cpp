#include "engine/policy/postfix_policy_server.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "engine/base/tcp_listen.h"
#include "engine/base/unix_socket_path.h"
#include "engine/policy/policy_section.h"
#include "mxward/ip_address.h"

namespace mxward {

namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;
using unix_stream = boost::asio::local::stream_protocol;

Result<PostfixPolicyServerOptions> PostfixPolicyServerOptions::FromConfig(
    const Config& config, std::vector<Diagnostic>* diagnostics) {
  PostfixPolicyServerOptions o;
  const std::size_t before = diagnostics->size();
  const toml::table* t = PolicySection(config, "postfix", diagnostics);
  if (t != nullptr) {
    SettingsReader r(*t, "[policy.postfix]", config.source, diagnostics);
    r.CheckKnownKeys({"enabled", "socket", "socket_mode", "socket_group", "listen",
                      "max_connections", "idle_timeout", "request_timeout"});
    r.Bool("enabled", &o.enabled);
    r.String("socket", &o.socket_path);
    std::string mode;
    if (r.String("socket_mode", &mode)) {
      char* end = nullptr;
      const long m = std::strtol(mode.c_str(), &end, 8);
      if (mode.empty() || *end != '\0' || m < 0 || m > 0777) {
        r.Error(*t->get("socket_mode"), "'socket_mode': expected an octal mode like \"0660\"");
      } else {
        o.socket_mode = static_cast<int>(m);
      }
    }
    r.String("socket_group", &o.socket_group);
    std::string listen;
    if (r.String("listen", &listen) && !listen.empty()) {
      IpAddress bound;
      if (Status st = ParseListenAddress(listen, &o.address, &o.port); !st.ok()) {
        r.Error(*t->get("listen"), st.message());
      } else if (IpAddress::Parse(o.address, &bound) && !bound.IsLoopback()) {
        // Postfix's policy protocol has no authentication, and requests count towards the
        // per-account playbooks: off loopback anyone could push an account towards HOLD.
        r.Error(*t->get("listen"),
                fmt::format("[policy.postfix] listen must be a loopback address, not {}: the "
                            "policy protocol has no authentication (use the unix socket)",
                            o.address));
      }
    }
    r.Int("max_connections", 1, 100'000, &o.max_connections);
    std::int64_t seconds = 0;
    if (r.Duration("idle_timeout", &seconds)) {
      o.idle_timeout_seconds = static_cast<int>(std::clamp<std::int64_t>(seconds, 1, 86400));
    }
    r.DurationBetween("request_timeout", 1, 3600, &o.request_timeout_seconds);
    if (o.enabled && o.socket_path.empty() && o.address.empty()) {
      r.Error(t->source(), "[policy.postfix] is enabled but has neither 'socket' nor 'listen'");
    }
  }
  if (diagnostics->size() > before) {
    SortByPosition(diagnostics, before);
    return Status::InvalidArgument(
        fmt::format("{} error(s) in [policy.postfix]", diagnostics->size() - before));
  }
  return o;
}

struct PostfixPolicyServer::Impl : std::enable_shared_from_this<PostfixPolicyServer::Impl> {
  Impl(asio::io_context& io, PostfixPolicyServerOptions options, PostfixPolicy* policy)
      : io(io), options(std::move(options)), policy(policy), tcp_acceptor(io), unix_acceptor(io) {}

  template <typename Acceptor>
  void Accept(Acceptor& acceptor);

  asio::io_context& io;
  PostfixPolicyServerOptions options;
  PostfixPolicy* policy;
  tcp::acceptor tcp_acceptor;
  unix_stream::acceptor unix_acceptor;
  bool socket_created = false;
  // All on the io thread: plain members.
  bool stopped = true;
  int open_connections = 0;
  std::vector<std::function<void()>> closers;  // close each live session on Stop
  std::vector<std::weak_ptr<void>> live;
  std::uint16_t bound_port = 0;
  PostfixPolicyServerCounters counters;
};

namespace {

template <typename Socket>
class PostfixSession : public std::enable_shared_from_this<PostfixSession<Socket>> {
 public:
  PostfixSession(Socket socket, std::shared_ptr<PostfixPolicyServer::Impl> server)
      : socket_(std::move(socket)), timer_(server->io), server_(std::move(server)) {
    ++server_->open_connections;
  }
  ~PostfixSession() { --server_->open_connections; }

  // Requests through the unix socket are Postfix's (the socket's mode, group and directory
  // admit nobody else); over TCP anyone local could have sent them.
  static constexpr bool kThroughUnixSocket = std::is_same_v<Socket, unix_stream::socket>;

  void Start() { Read(); }
  void Close() {
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  void Read() {
    // Inside a request the deadline counts from its first byte and is not moved by later
    // reads, so a client trickling a byte at a time cannot hold its slot; between requests the
    // connection may sit idle for idle_timeout, as Postfix keeps it for the next message.
    const bool in_request = reader_.in_request();
    if (in_request) {
      timer_.expires_at(request_started_ +
                        std::chrono::seconds(server_->options.request_timeout_seconds));
    } else {
      timer_.expires_after(std::chrono::seconds(server_->options.idle_timeout_seconds));
    }
    timer_.async_wait(
        [weak = this->weak_from_this(), in_request](const boost::system::error_code& ec) {
          if (ec) return;
          if (auto self = weak.lock()) {
            if (in_request) {
              ++self->server_->counters.request_timeouts;
            } else {
              ++self->server_->counters.idle_closed;
            }
            self->Close();
          }
        });
    socket_.async_read_some(asio::buffer(buffer_), [self = this->shared_from_this()](
                                                       const boost::system::error_code& ec,
                                                       std::size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(const boost::system::error_code& ec, std::size_t n) {
    timer_.cancel();
    if (ec || server_->stopped) {
      Close();
      return;
    }
    requests_.clear();
    const bool was_in_request = reader_.in_request();
    const Status st = reader_.Feed(std::string_view(buffer_.data(), n), &requests_);
    // A request begun by these bytes (after an idle wait or after one they completed) starts
    // its deadline now; one still arriving keeps the deadline it had.
    if (reader_.in_request() && (!was_in_request || !requests_.empty())) {
      request_started_ = std::chrono::steady_clock::now();
    }
    out_.clear();
    for (auto& r : requests_) {
      r.verified = kThroughUnixSocket;
      out_ += "action=";
      out_ += server_->policy->Answer(r);
      out_ += "\n\n";
    }
    if (!st.ok()) {
      ++server_->counters.protocol_errors;
      spdlog::debug("postfix policy: closing a connection: {}", st.message());
    }
    if (out_.empty()) {
      if (st.ok()) {
        Read();
      } else {
        Close();
      }
      return;
    }
    // The answers have the request deadline too: a client that sends requests and never reads
    // the answers would otherwise hold its slot once the socket's buffers are full.
    timer_.expires_after(std::chrono::seconds(server_->options.request_timeout_seconds));
    timer_.async_wait([weak = this->weak_from_this()](const boost::system::error_code& tec) {
      if (tec) return;
      if (auto self = weak.lock()) {
        ++self->server_->counters.request_timeouts;
        self->Close();
      }
    });
    asio::async_write(socket_, asio::buffer(out_),
                      [self = this->shared_from_this(), keep = st.ok()](
                          const boost::system::error_code& wec, std::size_t) {
                        self->timer_.cancel();
                        if (wec || !keep || self->server_->stopped) {
                          self->Close();
                          return;
                        }
                        self->Read();
                      });
  }

  Socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<PostfixPolicyServer::Impl> server_;
  std::array<char, 4096> buffer_{};
  PostfixPolicyReader reader_;
  std::chrono::steady_clock::time_point request_started_;
  std::vector<PostfixPolicyRequest> requests_;
  std::string out_;
};

}  // namespace

template <typename Acceptor>
void PostfixPolicyServer::Impl::Accept(Acceptor& acceptor) {
  using Socket = typename Acceptor::protocol_type::socket;
  acceptor.async_accept(
      [self = shared_from_this(), &acceptor](const boost::system::error_code& ec, Socket socket) {
        if (self->stopped || ec == asio::error::operation_aborted) return;
        if (!ec) {
          ++self->counters.connections;
          if (self->open_connections >= self->options.max_connections) {
            ++self->counters.refused_connections;
            boost::system::error_code ignored;
            socket.close(ignored);
          } else {
            auto session = std::make_shared<PostfixSession<Socket>>(std::move(socket), self);
            // Drop the closers of sessions that ended, so the list stays as small as the cap.
            for (std::size_t i = 0; i < self->live.size();) {
              if (self->live[i].expired()) {
                self->live[i] = std::move(self->live.back());
                self->live.pop_back();
                self->closers[i] = std::move(self->closers.back());
                self->closers.pop_back();
              } else {
                ++i;
              }
            }
            self->live.push_back(session);
            self->closers.push_back([weak = std::weak_ptr(session)] {
              if (auto s = weak.lock()) s->Close();
            });
            session->Start();
          }
        } else {
          spdlog::warn("postfix policy: accept failed: {}", ec.message());
        }
        self->Accept(acceptor);
      });
}

PostfixPolicyServer::PostfixPolicyServer(asio::io_context& io, PostfixPolicyServerOptions options,
                                         PostfixPolicy* policy)
    : impl_(std::make_shared<Impl>(io, std::move(options), policy)) {}

PostfixPolicyServer::~PostfixPolicyServer() { Stop(); }

Status PostfixPolicyServer::Start() {
  Impl& s = *impl_;
  if (!s.options.enabled) return Status::Ok();
  boost::system::error_code ec;
  if (!s.options.socket_path.empty()) {
    const std::string& path = s.options.socket_path;
    MXWARD_RETURN_IF_ERROR(PrepareUnixSocketPath(path, SOCK_STREAM));
    const unix_stream::endpoint ep(path);
    s.unix_acceptor.open(ep.protocol(), ec);
    if (!ec) s.unix_acceptor.bind(ep, ec);
    if (!ec) s.socket_created = true;
    if (!ec) s.unix_acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      Stop();
      return Status::Unavailable(
          fmt::format("postfix policy: cannot listen on unix:{}: {}", path, ec.message()));
    }
    if (::chmod(path.c_str(), static_cast<mode_t>(s.options.socket_mode)) != 0) {
      const std::string why = std::strerror(errno);
      Stop();
      return Status::PermissionDenied(fmt::format("postfix policy: chmod {}: {}", path, why));
    }
    if (!s.options.socket_group.empty()) {
      group gr{};
      group* found = nullptr;
      char buf[16384];
      if (getgrnam_r(s.options.socket_group.c_str(), &gr, buf, sizeof buf, &found) != 0 ||
          found == nullptr || ::chown(path.c_str(), static_cast<uid_t>(-1), gr.gr_gid) != 0) {
        Stop();
        return Status::PermissionDenied(fmt::format("postfix policy: cannot give {} to group '{}'",
                                                    path, s.options.socket_group));
      }
    }
  }
  if (!s.options.address.empty()) {
    if (Status st = ListenTcp(s.tcp_acceptor, s.options.address, s.options.port, "postfix policy");
        !st.ok()) {
      Stop();
      return st;
    }
    s.bound_port = s.tcp_acceptor.local_endpoint().port();
  }
  s.stopped = false;
  if (s.unix_acceptor.is_open()) s.Accept(s.unix_acceptor);
  if (s.tcp_acceptor.is_open()) s.Accept(s.tcp_acceptor);
  return Status::Ok();
}

void PostfixPolicyServer::Stop() {
  if (!impl_) return;
  Impl& s = *impl_;
  s.stopped = true;
  boost::system::error_code ignored;
  s.tcp_acceptor.close(ignored);
  s.unix_acceptor.close(ignored);
  if (s.socket_created) {
    ::unlink(s.options.socket_path.c_str());
    s.socket_created = false;
  }
  auto closers = std::move(s.closers);
  s.closers.clear();
  s.live.clear();
  for (auto& close : closers) close();
}

Status PostfixPolicyServer::Reconfigure(PostfixPolicyServerOptions next) {
  PostfixPolicyServerOptions& now = impl_->options;
  if (next == now) return Status::Ok();
  PostfixPolicyServerOptions limits = now;
  limits.max_connections = next.max_connections;
  limits.idle_timeout_seconds = next.idle_timeout_seconds;
  if (limits == next) {  // only limits changed: no rebind
    now = std::move(next);
    return Status::Ok();
  }
  PostfixPolicyServerOptions previous = now;
  Stop();
  now = std::move(next);
  Status st = Start();
  if (!st.ok()) {
    now = std::move(previous);
    if (Status again = Start(); !again.ok()) {
      return Status::Unavailable(fmt::format("{}; and the previous listeners failed too: {}",
                                             st.message(), again.message()));
    }
  }
  return st;
}

const PostfixPolicyServerOptions& PostfixPolicyServer::options() const { return impl_->options; }

std::uint16_t PostfixPolicyServer::port() const { return impl_->bound_port; }

const PostfixPolicyServerCounters& PostfixPolicyServer::counters() const { return impl_->counters; }

std::string PostfixPolicyServer::Describe() const {
  std::string out;
  if (!impl_->options.socket_path.empty()) out = "unix:" + impl_->options.socket_path;
  if (!impl_->options.address.empty()) {
    if (!out.empty()) out += ", ";
    out += fmt::format("inet:{}:{}", impl_->options.address, impl_->bound_port);
  }
  return out;
}

}  // namespace mxward
