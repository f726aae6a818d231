#include "mxward/argv_command.h"
#include "mxward/unique_fd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mxward {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kKillGrace{2000};

using Fd = UniqueFd;

bool MakePipe(Fd* read_end, Fd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  *read_end->out() = fds[0];
  *write_end->out() = fds[1];
  return true;
}

// Writes to the child's stdin without letting SIGPIPE (child closed its stdin) end mxward.
ssize_t WriteNoSigpipe(int fd, const char* data, std::size_t size) {
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  ssize_t n = write(fd, data, size);
  if (n < 0 && errno == EPIPE) {
    const timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
    }
    errno = EPIPE;
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  return n;
}

}  // namespace

Result<ArgvOutcome> RunArgvCommand(const ArgvCommand& command) {
  if (command.argv.empty() || command.argv[0].empty() || command.argv[0][0] != '/') {
    return Status::InvalidArgument(fmt::format("'{}' is not an absolute program path",
                                               command.argv.empty() ? "" : command.argv[0]));
  }
  const std::string& program = command.argv[0];
  if (access(program.c_str(), X_OK) != 0) {
    return Status::IoError(fmt::format("cannot run {}: {}", program, std::strerror(errno)));
  }

  Fd in_read, in_write, out_read, out_write, err_read, err_write;
  const bool has_input = !command.input.empty();
  if ((has_input && !MakePipe(&in_read, &in_write)) || !MakePipe(&out_read, &out_write) ||
      !MakePipe(&err_read, &err_write)) {
    return Status::IoError(
        fmt::format("cannot create pipes for {}: {}", program, std::strerror(errno)));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (has_input) {
    posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);

  // Its own process group (so a timeout ends its children too), default signal handling and an
  // empty signal mask whatever mxward's threads have.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> argv;
  for (const std::string& a : command.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const std::string& e : command.env) env_strings.push_back(e);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Status::IoError(fmt::format("cannot start {}: {}", program, std::strerror(rc)));
  }
  in_read.Reset();
  out_write.Reset();
  err_write.Reset();
  // Non-blocking stdin: a blocking write of more than a pipe's worth would wait for the child to
  // read while the child waits for us to read its output.
  if (in_write.get() >= 0) fcntl(in_write.get(), F_SETFL, O_NONBLOCK);

  // A pidfd turns "the child exited" into one more descriptor to poll: no sleeping, no SIGCHLD.
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));

  ArgvOutcome outcome;
  std::size_t written = 0;
  auto deadline = SteadyClock::now() + command.timeout;
  bool terminated = false, killed = false, exited = false;
  char buf[16384];
  while (!exited || out_read.get() >= 0 || err_read.get() >= 0) {
    pollfd fds[4];
    int kinds[4];
    nfds_t n = 0;
    if (out_read.get() >= 0) fds[n] = {out_read.get(), POLLIN, 0}, kinds[n++] = 1;
    if (err_read.get() >= 0) fds[n] = {err_read.get(), POLLIN, 0}, kinds[n++] = 2;
    if (in_write.get() >= 0) fds[n] = {in_write.get(), POLLOUT, 0}, kinds[n++] = 3;
    if (!exited && pidfd.get() >= 0) fds[n] = {pidfd.get(), POLLIN, 0}, kinds[n++] = 4;
    const auto now = SteadyClock::now();
    if (now >= deadline) {
      if (!terminated) {
        outcome.timed_out = true;
        kill(-pid, SIGTERM);
        terminated = true;
        deadline = now + kKillGrace;
      } else if (!killed) {
        kill(-pid, SIGKILL);
        killed = true;
        deadline = now + kKillGrace;
      } else {
        break;  // output held open by something we cannot kill: stop reading
      }
      continue;
    }
    const int wait_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
    // Without a pidfd (kernel < 5.3) the exit is noticed by waitpid(WNOHANG) every 50 ms.
    const int ready = poll(fds, n, pidfd.get() >= 0 || exited ? wait_ms : std::min(wait_ms, 50));
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pidfd.get() < 0 && !exited) {
      // No pidfd (old kernel): check for exit without blocking.
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      }
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (kinds[i] == 1 || kinds[i] == 2) {
        Fd& fd = kinds[i] == 1 ? out_read : err_read;
        std::string& sink = kinds[i] == 1 ? outcome.out : outcome.err;
        const ssize_t got = read(fd.get(), buf, sizeof buf);
        if (got > 0) {
          const std::size_t room = command.max_output - std::min(command.max_output, sink.size());
          sink.append(buf, std::min(room, static_cast<std::size_t>(got)));
        } else if (got == 0 || errno != EINTR) {
          fd.Reset();
        }
      } else if (kinds[i] == 3) {
        const ssize_t w = WriteNoSigpipe(in_write.get(), command.input.data() + written,
                                         command.input.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == command.input.size()) {
          in_write.Reset();
        }
      } else if (kinds[i] == 4) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
          outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
          in_write.Reset();
        }
      }
    }
  }
  if (!exited) {
    if (!killed) kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  return outcome;
}

Status CheckArgvOutcome(const ArgvCommand& command, const ArgvOutcome& outcome) {
  const std::string program = command.argv.empty() ? "" : command.argv[0];
  if (outcome.timed_out) {
    return Status::Unavailable(fmt::format("{} did not finish within {} ms and was stopped",
                                           program, command.timeout.count()));
  }
  if (outcome.exit_code == 0) return Status::Ok();
  std::string err = outcome.err;
  if (auto nl = err.find('\n'); nl != std::string::npos) err.resize(nl);
  if (outcome.signal != 0) {
    return Status::Internal(fmt::format("{} was killed by signal {}", program, outcome.signal));
  }
  return Status::Internal(fmt::format("{} exited with status {}{}{}", program, outcome.exit_code,
                                      err.empty() ? "" : ": ", err));
}

}  // namespace mxward
