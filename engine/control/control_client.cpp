// The CLI's side of the control socket: one blocking request/response with a deadline. Plain
// POSIX calls: the CLI has no event loop, and poll() gives the deadline directly.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "mxward/control_protocol.h"

namespace mxward {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for events on fd until deadline; false on timeout or error.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

}  // namespace

Result<nlohmann::json> CallControl(const std::string& socket_path, const nlohmann::json& request,
                                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    return Status::InvalidArgument(fmt::format("control socket path {} is too long", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Status::Internal(fmt::format("socket(): {}", std::strerror(errno)));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
      return Status::NotFound(fmt::format("no daemon listening on {}", socket_path));
    }
    if (err == EACCES || err == EPERM) {
      return Status::PermissionDenied(
          fmt::format("cannot connect to {}: {} (run as root or as a member of the control group)",
                      socket_path, std::strerror(err)));
    }
    if (err == EAGAIN) {
      return Status::Unavailable(fmt::format("the daemon on {} is not accepting", socket_path));
    }
    return Status::Unavailable(
        fmt::format("cannot connect to {}: {}", socket_path, std::strerror(err)));
  }

  std::string out = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (out.size() > kMaxControlMessageBytes) {
    return Status::InvalidArgument("request too large for the control socket");
  }
  std::size_t sent = 0;
  while (sent < out.size()) {
    const ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!WaitFor(fd.get(), POLLOUT, deadline)) {
        return Status::Unavailable("timed out sending to the daemon");
      }
    } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      // The daemon may have answered (a refusal: not in the control group) and closed before
      // reading the request; that answer is still queued for us and says more than EPIPE.
      break;
    } else {
      return Status::Unavailable(fmt::format("sending to the daemon: {}", std::strerror(errno)));
    }
  }

  std::string in;
  char buf[4096];
  for (;;) {
    const auto nl = in.find('\n');
    if (nl != std::string::npos) {
      in.resize(nl);
      break;
    }
    if (in.size() > kMaxControlMessageBytes) {
      return Status::Internal("the daemon's response is too long");
    }
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return Status::Unavailable("the daemon closed the connection without answering");
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!WaitFor(fd.get(), POLLIN, deadline)) {
        return Status::Unavailable(
            fmt::format("the daemon did not answer within {}s", timeout.count() / 1000));
      }
    } else {
      return Status::Unavailable(fmt::format("reading from the daemon: {}", std::strerror(errno)));
    }
  }
  auto response = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (response.is_discarded()) return Status::Internal("the daemon's response is not JSON");
  return response;
}

}  // namespace mxward
