// Test support: run a program (argv, no shell) and capture its exit status, stdout and stderr.
// Header-only so every integration test can include it ("support/subprocess.h").
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

namespace mxward::testing {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or could not start
  std::string out;
  std::string err;
};

// Runs argv[0] (searched in PATH) with the given stdin; extra_env entries are "NAME=value".
inline CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "",
                                const std::vector<std::string>& extra_env = {}) {
  std::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test
  CommandResult r;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return r;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (const auto& e : extra_env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  std::size_t written = 0;
  if (input.empty()) {
    close(in[1]);
    in[1] = -1;
  }
  char buf[65536];
  int* outputs[2] = {&out[0], &err[0]};
  std::string* sinks[2] = {&r.out, &r.err};
  while (out[0] >= 0 || err[0] >= 0 || in[1] >= 0) {
    pollfd fds[3];
    int which[3];
    int n = 0;
    for (int i = 0; i < 2; ++i) {
      if (*outputs[i] >= 0) {
        which[n] = i;
        fds[n++] = {*outputs[i], POLLIN, 0};
      }
    }
    if (in[1] >= 0) {
      which[n] = 2;
      fds[n++] = {in[1], POLLOUT, 0};
    }
    if (poll(fds, static_cast<nfds_t>(n), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int k = 0; k < n; ++k) {
      if (!fds[k].revents) continue;
      if (which[k] < 2) {
        ssize_t got = read(fds[k].fd, buf, sizeof buf);
        if (got > 0) {
          sinks[which[k]]->append(buf, static_cast<std::size_t>(got));
        } else {
          close(fds[k].fd);
          *outputs[which[k]] = -1;
        }
      } else {
        ssize_t w = write(in[1], input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if (w < 0 || written == input.size()) {
          close(in[1]);
          in[1] = -1;
        }
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A fresh directory under $TMPDIR, removed with its contents when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    tmpl += "/mxward-test-XXXXXX";
    std::vector<char> b(tmpl.begin(), tmpl.end());
    b.push_back('\0');
    path_ = mkdtemp(b.data());
  }
  ~TempDir() {
    if (!path_.empty()) RunCommand({"rm", "-rf", path_});
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace mxward::testing
