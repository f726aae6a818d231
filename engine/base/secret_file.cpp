#include "engine/base/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mxward {

Result<std::string> ReadSecretFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return Status::InvalidArgument(
        fmt::format("cannot open secret file {}: {}", path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(fmt::format("secret file {} is not a regular file", path));
  }
  if ((st.st_mode & (S_IRWXO | S_IWGRP)) != 0) {
    ::close(fd);
    return Status::PermissionDenied(
        fmt::format("secret file {} has mode {:04o}: others may read or the group may write it; "
                    "chmod 0600 (or 0640 with a dedicated group)",
                    path, st.st_mode & 07777));
  }
  std::string secret;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && secret.size() < 64 * 1024) {
    secret.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (n < 0) return Status::IoError(fmt::format("cannot read secret file {}", path));
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return Status::InvalidArgument(fmt::format("secret file {} is empty", path));
  return secret;
}

void ReadSecretSetting(SettingsReader& r, std::string_view key, std::string* out) {
  std::string path;
  if (!r.String(key, &path) || path.empty()) return;
  auto secret = ReadSecretFile(path);
  if (secret.ok()) {
    *out = std::move(*secret);
  } else {
    r.Error(*r.table().get(key), secret.status().message());
  }
}

}  // namespace mxward
