// Test support: a server process a test starts and always stops (MariaDB, PostgreSQL, ...).
//
// The child is started with fork/execv (argv, no shell), optionally as another user, with
// PR_SET_PDEATHSIG so it dies with the test even if the test crashes, and its output in a log
// file for failure messages. Stop() sends SIGTERM and waits (with a deadline, through a pidfd),
// then SIGKILL. WaitUntil() polls a readiness condition with a deadline: tests never sleep to
// synchronise. Header-only: include "support/server_process.h".
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support/eventually.h"
#include "support/subprocess.h"

namespace mxward::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it).
inline int FreeLoopbackPort() {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = -1;
  if (bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  close(s);
  return port;
}

// Polls `ready` (every 50 ms: it usually connects to the server) until it returns true or the
// deadline passes; false on timeout or when `give_up` (a crashed server, ...) returns true.
inline bool WaitUntil(std::chrono::milliseconds timeout, const std::function<bool()>& ready,
                      const std::function<bool()>& give_up = nullptr) {
  bool gave_up = false;
  const bool done = Eventually(
      [&] {
        if (ready()) return true;
        gave_up = give_up && give_up();
        return gave_up;
      },
      timeout, std::chrono::milliseconds(50));
  return done && !gave_up;
}

class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess() { Stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts argv[0] (absolute path). uid/gid < 0: keep root. Returns false if fork failed.
  bool Start(const std::vector<std::string>& argv, const std::string& log_path, int uid = -1,
             int gid = -1) {
    log_path_ = log_path;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (log >= 0) {
        dup2(log, 1);
        dup2(log, 2);
      }
      if (null >= 0) dup2(null, 0);
      setpgid(0, 0);
      if (gid >= 0 && (setgroups(0, nullptr) != 0 || setgid(static_cast<gid_t>(gid)) != 0)) {
        _exit(126);
      }
      if (uid >= 0 && setuid(static_cast<uid_t>(uid)) != 0) _exit(126);
      // After setuid (which clears it): die with the test process, whatever happens to it.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(125);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    return true;
  }

  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      Reap();
      return false;
    }
    return true;
  }

  // The signal Stop() sends first (PostgreSQL's fast shutdown is SIGINT).
  void set_stop_signal(int signal) { stop_signal_ = signal; }

  // stop_signal (SIGTERM), wait up to `grace`, then SIGKILL. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(30)) {
    if (pid_ <= 0) return;
    kill(pid_, stop_signal_);
    if (!WaitExit(grace)) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      WaitExit(std::chrono::seconds(30));
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    Reap();
  }

  std::string log() const { return ReadFile(log_path_); }
  pid_t pid() const { return pid_; }

  static std::string ReadFile(const std::string& path) {
    std::string out;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    close(fd);
    if (out.size() > 4000) out = "..." + out.substr(out.size() - 4000);
    return out;
  }

 private:
  bool WaitExit(std::chrono::milliseconds timeout) {
    if (pidfd_ >= 0) {
      pollfd p = {pidfd_, POLLIN, 0};
      return poll(&p, 1, static_cast<int>(timeout.count())) > 0;
    }
    return WaitUntil(timeout, [&] {
      int status = 0;
      return waitpid(pid_, &status, WNOHANG) == pid_;
    });
  }

  void Reap() {
    if (pidfd_ >= 0) close(pidfd_);
    pidfd_ = -1;
    pid_ = -1;
  }

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stop_signal_ = SIGTERM;
  std::string log_path_;
};

}  // namespace mxward::testing
