#include "engine/base/unix_socket_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace mxward {

Status PrepareUnixSocketPath(const std::string& path, int sock_type) {
  // The kernel's sockaddr_un holds 108 bytes with the terminator; a longer path cannot be bound
  // (and Asio would throw building the endpoint).
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument(
        fmt::format("unix socket path '{}' is {} bytes; a socket path holds 1 to {}", path,
                    path.size(), sizeof(sockaddr_un{}.sun_path) - 1));
  }
  std::error_code fec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();
  if (!S_ISSOCK(st.st_mode)) {
    return Status::AlreadyExists(
        fmt::format("{} exists and is not a socket; remove it or choose another path", path));
  }
  const int fd = ::socket(AF_UNIX, sock_type | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    if (rc == 0) {
      return Status::AlreadyExists(
          fmt::format("{} is in use by another process (is mxward already running?)", path));
    }
  }
  ::unlink(path.c_str());
  return Status::Ok();
}

}  // namespace mxward
