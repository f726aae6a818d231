#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <list>
#include <utility>  // before Boost.Asio 1.74: its awaitable.hpp uses std::exchange
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mxward/control_protocol.h"

#include "engine/base/settings_reader.h"

namespace mxward {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

Result<ControlServerOptions> ControlServerOptions::FromConfig(
    const Config& config, std::vector<Diagnostic>* diagnostics) {
  ControlServerOptions o;
  o.socket_path = config.control_socket;
  if (const toml::table* control = config.document["control"].as_table()) {
    SettingsReader r(*control, "[control]", config.source, diagnostics);
    r.CheckKnownKeys({"socket", "group", "max_connections", "request_timeout"});
    r.String("group", &o.group);
    r.Int("max_connections", 1, 4096, &o.max_connections);
    r.DurationBetween("request_timeout", 1, 3600, &o.request_timeout_seconds);
    if (!r.ok()) return Status::InvalidArgument("errors in [control]");
  }
  return o;
}

namespace {

Result<gid_t> LookupGroup(const std::string& name) {
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  const int rc = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
  if (rc != 0 || !found) {
    return Status::InvalidArgument(fmt::format("[control] group '{}' does not exist", name));
  }
  return gr.gr_gid;
}

// Is uid a member of gid, as primary or supplementary group?
bool InGroup(uid_t uid, gid_t primary, gid_t gid) {
  if (primary == gid) return true;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<std::size_t>(i)] == gid) return true;
  }
  return false;
}

}  // namespace

nlohmann::json PeerIdentity(std::int64_t uid) {
  if (uid < 0) return {{"uid", uid}, {"user", "unknown"}};
  std::string name = std::to_string(uid);
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(static_cast<uid_t>(uid), &pw, buf.data(), buf.size(), &found) == 0 && found) {
    name = pw.pw_name;
  }
  return {{"uid", uid}, {"user", name}};
}

struct ControlServer::Impl : std::enable_shared_from_this<ControlServer::Impl> {
  struct Session {
    explicit Session(local::socket s)
        : socket(std::move(s)), timer(socket.get_executor()), buffer(kMaxControlMessageBytes) {}
    local::socket socket;
    asio::steady_timer timer;  // request_timeout of the line being read
    asio::streambuf buffer;
    std::int64_t peer_uid = -1;  // from SO_PEERCRED: who `created_by` names
    std::string response;
  };

  Impl(asio::io_context& io, ControlServerOptions o, Handler h)
      : io(io), options(std::move(o)), handler(std::move(h)), acceptor(io) {}

  asio::io_context& io;
  ControlServerOptions options;
  Handler handler;
  local::acceptor acceptor;
  gid_t allowed_gid = getegid();
  std::list<std::shared_ptr<Session>> sessions;
  bool stopped = false;
  ControlServerCounters counters;

  void Accept() {
    acceptor.async_accept(
        [self = shared_from_this()](boost::system::error_code ec, local::socket socket) {
          if (self->stopped) return;
          if (!ec) {
            auto session = std::make_shared<Session>(std::move(socket));
            const bool over_cap =
                self->sessions.size() >= static_cast<std::size_t>(self->options.max_connections);
            self->sessions.push_back(session);
            if (over_cap) {
              // Checked before the peer's credentials (no user database lookups for a flood).
              // The refusal is one short line: the socket buffer takes it without waiting.
              self->counters.refused_over_cap.fetch_add(1, std::memory_order_relaxed);
              self->Reply(session,
                          ControlError(Status::Unavailable(fmt::format(
                              "too many connections to the control socket ({} open); try again",
                              self->options.max_connections))),
                          /*then_close=*/true);
            } else if (self->Allowed(session.get())) {
              self->Read(session);
            } else {
              self->Reply(session,
                          ControlError(Status::PermissionDenied(
                              "not allowed: only root, the daemon's user and members of "
                              "its control group may use this socket")),
                          /*then_close=*/true);
            }
          } else if (ec == asio::error::operation_aborted) {
            return;
          } else {
            spdlog::warn("control socket {}: accept failed: {}", self->options.socket_path,
                         ec.message());
          }
          self->Accept();
        });
  }

  bool Allowed(Session* s) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(s->socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      return false;
    }
    s->peer_uid = cred.uid;
    if (cred.uid == 0 || cred.uid == geteuid()) return true;
    return InGroup(cred.uid, cred.gid, allowed_gid);
  }

  void Close(const std::shared_ptr<Session>& s) {
    boost::system::error_code ignored;
    s->timer.cancel();
    s->socket.close(ignored);
    sessions.remove(s);
  }

  // Closes s unless the read or write it guards completes within request_timeout.
  void ArmDeadline(const std::shared_ptr<Session>& s) {
    s->timer.expires_after(std::chrono::seconds(options.request_timeout_seconds));
    s->timer.async_wait([self = shared_from_this(),
                         weak = std::weak_ptr<Session>(s)](boost::system::error_code ec) {
      if (ec || self->stopped) return;
      if (auto s = weak.lock()) {
        self->counters.timed_out.fetch_add(1, std::memory_order_relaxed);
        self->Close(s);
      }
    });
  }

  void Read(const std::shared_ptr<Session>& s) {
    // One deadline for the whole line, not restarted by each piece: a peer trickling a byte at
    // a time is closed as surely as one that says nothing.
    ArmDeadline(s);
    asio::async_read_until(
        s->socket, s->buffer, '\n',
        [self = shared_from_this(), s](boost::system::error_code ec, std::size_t n) {
          if (self->stopped) return;
          s->timer.cancel();
          if (ec == asio::error::not_found) {  // the buffer's limit: a line too long
            self->Reply(s,
                        ControlError(Status::InvalidArgument(
                            fmt::format("request longer than {} bytes", kMaxControlMessageBytes))),
                        true);
            return;
          }
          if (ec) {
            self->Close(s);
            return;
          }
          std::string line(asio::buffers_begin(s->buffer.data()),
                           asio::buffers_begin(s->buffer.data()) + static_cast<std::ptrdiff_t>(n));
          s->buffer.consume(n);
          self->Reply(s, self->Handle(line, s->peer_uid), false);
        });
  }

  nlohmann::json Handle(const std::string& line, std::int64_t peer_uid) {
    auto request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object()) {
      return ControlError(Status::InvalidArgument("a request is one JSON object per line"));
    }
    // Who sent it, from the kernel, never from the request: a "peer" the client wrote is replaced.
    request["peer"] = PeerIdentity(peer_uid);
    try {
      return handler(request);
    } catch (const std::exception& e) {
      return ControlError(Status::Internal(e.what()));
    }
  }

  void Reply(const std::shared_ptr<Session>& s, const nlohmann::json& response, bool then_close) {
    s->response = response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    s->response += '\n';
    ArmDeadline(s);  // a peer that asks and never reads its answer does not keep the slot
    asio::async_write(
        s->socket, asio::buffer(s->response),
        [self = shared_from_this(), s, then_close](boost::system::error_code ec, std::size_t) {
          if (self->stopped) return;
          s->timer.cancel();
          if (ec || then_close) {
            self->Close(s);
            return;
          }
          self->Read(s);
        });
  }
};

ControlServer::ControlServer(asio::io_context& io, ControlServerOptions options, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(options), std::move(handler))) {}

ControlServer::~ControlServer() { Stop(); }

Status ControlServer::Start() {
  const std::string& path = impl_->options.socket_path;
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument(fmt::format("control socket path {} is too long", path));
  }
  if (!impl_->options.group.empty()) {
    auto gid = LookupGroup(impl_->options.group);
    if (!gid.ok()) return gid.status();
    impl_->allowed_gid = *gid;
  }
  std::error_code fec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);

  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::AlreadyExists(
          fmt::format("{} exists and is not a socket; remove it or set [control] socket", path));
    }
    // A socket file: another daemon's (it answers) or a stale one from a crash (it refuses).
    boost::system::error_code ec;
    local::socket probe(impl_->io);
    probe.connect(local::endpoint(path), ec);
    if (!ec) {
      return Status::AlreadyExists(
          fmt::format("another mxward is serving on {}; stop it first", path));
    }
    ::unlink(path.c_str());
  }

  boost::system::error_code ec;
  impl_->acceptor.open(local(), ec);
  if (!ec) impl_->acceptor.bind(local::endpoint(path), ec);
  if (ec) {
    return Status::PermissionDenied(
        fmt::format("cannot create control socket {}: {}", path, ec.message()));
  }
  // Between bind and chmod the file has the umask's mode, which never grants others write
  // permission (needed to connect); the peer check backs this up.
  //
  // The group is what gives administrators the socket. Root can always set it, so failing there
  // is an error. Without root (the packaged unit: user mxward, no CAP_CHOWN) only a group the
  // daemon is in can be set; any other leaves the socket with the daemon's group. That is
  // narrower than configured, never wider (root and the daemon's user can still use it), so
  // serve starts anyway, since refusing would stop the bans for the CLI's sake, and says so:
  // the members of the group would otherwise only see "permission denied" from the CLI.
  if (::chown(path.c_str(), static_cast<uid_t>(-1), impl_->allowed_gid) != 0) {
    const int err = errno;
    const std::string group =
        impl_->options.group.empty() ? std::to_string(impl_->allowed_gid) : impl_->options.group;
    if (geteuid() == 0) {
      return Status::PermissionDenied(fmt::format("cannot give control socket {} to group {}: {}",
                                                  path, group, std::strerror(err)));
    }
    spdlog::warn(
        "control socket {}: cannot give it to group {}: {}; only root and the daemon's user can "
        "use it (add the daemon's user to group {}, or grant CAP_CHOWN)",
        path, group, std::strerror(err), group);
  }
  if (::chmod(path.c_str(), 0660) != 0) {
    return Status::PermissionDenied(
        fmt::format("cannot set mode of {}: {}", path, std::strerror(errno)));
  }
  impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable(fmt::format("cannot listen on {}: {}", path, ec.message()));
  }
  impl_->Accept();
  return Status::Ok();
}

void ControlServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  const bool was_open = impl_->acceptor.is_open();
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  for (auto& s : impl_->sessions) {
    s->timer.cancel();  // a pending deadline would keep the io_context running
    s->socket.close(ec);
  }
  impl_->sessions.clear();
  if (was_open) ::unlink(impl_->options.socket_path.c_str());
}

const ControlServerCounters& ControlServer::counters() const { return impl_->counters; }

}  // namespace mxward
