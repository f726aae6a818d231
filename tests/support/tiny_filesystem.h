// TinyFilesystem: a small tmpfs a test mounts to make "disk full" real. The mount lives in a
// private mount namespace of the test process (unshare(CLONE_NEWNS), then "/" made rprivate so
// nothing propagates to the host), so it is invisible to other tests and vanishes with the
// process; children (a forked `mxward serve`) inherit it. Needs root, as the tests run in CI.
//
// Fill() writes a filler file until the file system says ENOSPC; Free() deletes it, which is the
// "space returns" of the test.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace mxward::testing {

class TinyFilesystem {
 public:
  TinyFilesystem() = default;
  TinyFilesystem(const TinyFilesystem&) = delete;
  TinyFilesystem& operator=(const TinyFilesystem&) = delete;
  ~TinyFilesystem() {
    if (!dir_.empty()) umount2(dir_.c_str(), MNT_DETACH);
  }

  // Mounts a tmpfs of `bytes` on dir (created if needed). False with error() on failure.
  bool Mount(const std::string& dir, std::size_t bytes) {
    if (!EnterPrivateMountNamespace()) return false;
    mkdir(dir.c_str(), 0755);
    const std::string opts = "size=" + std::to_string(bytes) + ",mode=0755";
    if (mount("mxward-test", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      error_ = "mount tmpfs on " + dir + ": " + std::strerror(errno);
      return false;
    }
    dir_ = dir;
    return true;
  }

  // Writes dir/filler until ENOSPC. Returns the bytes written, -1 on another error.
  long long Fill() {
    const std::string path = dir_ + "/filler";
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    std::vector<char> block(4096, 'x');
    long long total = 0;
    for (;;) {
      ssize_t n = write(fd, block.data(), block.size());
      if (n > 0) {
        total += n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      const bool full = n < 0 && errno == ENOSPC;
      close(fd);
      return full ? total : -1;
    }
  }

  // Deletes the filler: the space is back.
  bool Free() { return unlink((dir_ + "/filler").c_str()) == 0; }

  const std::string& error() const { return error_; }

 private:
  bool EnterPrivateMountNamespace() {
    static std::string failure = [] {
      if (unshare(CLONE_NEWNS) != 0)
        return std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        return std::string("make / rprivate: ") + std::strerror(errno);
      }
      return std::string();
    }();
    error_ = failure;
    return failure.empty();
  }

  std::string dir_;
  std::string error_;
};

}  // namespace mxward::testing
