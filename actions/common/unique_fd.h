// UniqueFd: owns one file descriptor and closes it when it goes away. Move-only by deletion of
// copies; used by the argv runners (actions/exec, actions/postfixadmin) for pipes and /dev/null.
#pragma once

#include <unistd.h>

namespace mxward {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // For APIs that fill in a descriptor (pipe2 results).
  int* out() { return &fd_; }

 private:
  int fd_ = -1;
};

}  // namespace mxward
