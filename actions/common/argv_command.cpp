#include "actions/common/argv_command.h"
#include "actions/common/unique_fd.h"

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

constexpr char kDefaultPath[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

bool MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  *read_end->out() = fds[0];
  *write_end->out() = fds[1];
  return true;
}

// SIGPIPE is blocked on this thread while we write to a child that may have exited; a pending
// one is consumed before the old mask comes back, so it can never end the daemon.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SigpipeBlock() {
    if (!sigismember(&old_, SIGPIPE)) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      const timespec zero{0, 0};
      while (sigtimedwait(&set, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t old_;
};

// Reads what is available from fd into sink (bounded by max; the rest is read and dropped);
// closes fd at end of file or on an error. Returns what read() returned.
ssize_t ReadSome(UniqueFd* fd, std::string* sink, std::size_t max) {
  char buf[16384];
  const ssize_t got = read(fd->get(), buf, sizeof buf);
  if (got > 0) {
    const std::size_t room = max - std::min(max, sink->size());
    sink->append(buf, std::min(room, static_cast<std::size_t>(got)));
  } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
    fd->Reset();
  }
  return got;
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

  UniqueFd in_read, in_write, out_read, out_write, err_read, err_write;
  const bool has_input = !command.input.empty();
  if ((has_input && !MakePipe(&in_read, &in_write)) || !MakePipe(&out_read, &out_write) ||
      (!command.merge_stderr && !MakePipe(&err_read, &err_write))) {
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
  posix_spawn_file_actions_adddup2(&actions,
                                   command.merge_stderr ? out_write.get() : err_write.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // nothing else of the daemon leaks

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
  std::vector<char*> envp;
  bool has_path = false;
  for (const std::string& e : command.env) {
    has_path = has_path || e.rfind("PATH=", 0) == 0;
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  if (!has_path) envp.insert(envp.begin(), const_cast<char*>(kDefaultPath));
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
  // Non-blocking everywhere: a blocking write of more than a pipe's worth would wait for the
  // child to read while the child waits for us to read its output.
  for (const UniqueFd* fd : {&in_write, &out_read, &err_read}) {
    if (fd->get() >= 0) fcntl(fd->get(), F_SETFL, O_NONBLOCK);
  }
  // A pidfd turns "the child exited" into one more descriptor to poll: no sleeping, no SIGCHLD,
  // and a grandchild holding the output pipe open cannot keep us waiting.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));

  SigpipeBlock no_sigpipe;
  ArgvOutcome outcome;
  std::size_t written = 0;
  auto deadline = SteadyClock::now() + command.timeout;
  bool terminated = false, exited = false;
  int status = 0;
  while (!exited) {
    const auto now = SteadyClock::now();
    if (now >= deadline) {
      if (terminated) break;  // SIGKILL below; it cannot be ignored
      outcome.timed_out = true;
      kill(-pid, SIGTERM);
      terminated = true;
      deadline = now + command.kill_grace;
      continue;
    }
    pollfd fds[4];
    nfds_t n = 0;
    const auto add = [&](const UniqueFd& fd, short events) -> int {
      if (fd.get() < 0) return -1;
      fds[n] = {fd.get(), events, 0};
      return static_cast<int>(n++);
    };
    add(pidfd, POLLIN);
    const int out_at = add(out_read, POLLIN);
    const int err_at = add(err_read, POLLIN);
    const int in_at = add(in_write, POLLOUT);
    auto wait_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    // Without a pidfd (kernel < 5.3) the exit is noticed by waitpid(WNOHANG) every 20 ms.
    if (pidfd.get() < 0) wait_ms = std::min<std::int64_t>(wait_ms, 20);
    if (poll(fds, n, static_cast<int>(wait_ms)) < 0 && errno != EINTR) break;
    if (out_at >= 0 && fds[out_at].revents) ReadSome(&out_read, &outcome.out, command.max_output);
    if (err_at >= 0 && fds[err_at].revents) ReadSome(&err_read, &outcome.err, command.max_output);
    if (in_at >= 0 && fds[in_at].revents) {
      const ssize_t w =
          write(in_write.get(), command.input.data() + written, command.input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == command.input.size()) {
        in_write.Reset();  // done, or the child closed its stdin: EOF for it either way
      }
    }
    exited = waitpid(pid, &status, WNOHANG) == pid;
  }
  if (!exited) {
    kill(-pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (outcome.timed_out) kill(-pid, SIGKILL);  // stragglers of the group
  // What the program wrote before it exited is in the pipes; a bounded number of reads, so a
  // grandchild still writing cannot keep us here.
  for (UniqueFd* fd : {&out_read, &err_read}) {
    std::string* sink = fd == &out_read ? &outcome.out : &outcome.err;
    for (int i = 0; i < 64 && fd->get() >= 0; ++i) {
      if (ReadSome(fd, sink, command.max_output) <= 0) break;
    }
  }
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return outcome;
}

Status CheckArgvOutcome(const ArgvCommand& command, const ArgvOutcome& outcome) {
  const std::string program = command.argv.empty() ? "" : command.argv[0];
  if (outcome.timed_out) {
    return Status::Unavailable(fmt::format("{} did not finish within {} ms and was stopped",
                                           program, command.timeout.count()));
  }
  if (outcome.exit_code == 0) return Status::Ok();
  std::string err = command.merge_stderr ? outcome.out : outcome.err;
  if (auto nl = err.find('\n'); nl != std::string::npos) err.resize(nl);
  if (outcome.signal != 0) {
    return Status::Internal(fmt::format("{} was killed by signal {}", program, outcome.signal));
  }
  return Status::Internal(fmt::format("{} exited with status {}{}{}", program, outcome.exit_code,
                                      err.empty() ? "" : ": ", err));
}

}  // namespace mxward
