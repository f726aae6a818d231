// ServeProcess: the real `mxward serve` started by a test, and what tests do with it: wait for a
// line in its log, poll a condition while checking it is still alive, read /metrics, send syslog
// over TCP, stop it with SIGTERM (clean exit expected) or SIGKILL (crash).
//
// NetworkNamespace: puts the whole test process into a network namespace of its own with `lo` up,
// so fixed ports (5514, 9580) cannot clash with anything else on the machine or other tests.
//
// Header-only, test-side. Polling is always "until a condition holds or a deadline passes", never
// a sleep standing in for synchronisation.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "support/eventually.h"
#include "support/subprocess.h"

namespace mxward::testing {

// Call once per test suite (SetUpTestSuite). ok() false with error() when the namespace could not
// be made (not root): tests must then fail loudly, not skip.
class NetworkNamespace {
 public:
  static NetworkNamespace& Enter() {
    static NetworkNamespace ns;
    return ns;
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  NetworkNamespace() {
    if (unshare(CLONE_NEWNET) != 0) {
      error_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    ok_ = RunCommand({"ip", "link", "set", "lo", "up"}).exit_code == 0;
    if (!ok_) error_ = "ip link set lo up failed";
  }
  bool ok_ = false;
  std::string error_;
};

// For a test of real nftables: enters the namespace (NetworkNamespace), checks that nft is
// installed and empties the namespace's ruleset. "" when ready, else what is missing.
inline std::string EnterNamespaceWithNft() {
  auto& ns = NetworkNamespace::Enter();
  if (!ns.ok())
    return "cannot make a network namespace (integration tests run as root): " + ns.error();
  if (RunCommand({"nft", "--version"}).exit_code != 0) return "nft is not installed";
  RunCommand({"nft", "flush", "ruleset"});
  return "";
}

// The value of one sample of a Prometheus text body: `series` is "name" or
// "name{label=\"value\"}", exactly as /metrics writes it. -1 when the body has no such sample.
inline double MetricSample(const std::string& body, const std::string& series) {
  const std::size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(body.c_str() + at + series.size() + 2, nullptr);
}

// Connects to 127.0.0.1:port over TCP; -1 on failure.
inline int ConnectLoopbackTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Writes all of data to 127.0.0.1:port over one TCP connection; false on any failure.
inline bool SendTcp(int port, const std::string& data) {
  int fd = ConnectLoopbackTcp(port);
  if (fd < 0) return false;
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  close(fd);
  return off == data.size();
}

// GET path from 127.0.0.1:port; the whole response (headers and body), "" when unreachable.
inline std::string HttpGet(int port, const std::string& path) {
  int fd = ConnectLoopbackTcp(port);
  if (fd < 0) return "";
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string out;
  if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

// One Postfix policy delegation request (its attribute lines, without the closing empty line)
// over the Unix socket at socket_path; the answer's first line ("action=DUNNO"), or
// "(no connection)".
inline std::string AskPostfixPolicy(const std::string& socket_path, const std::string& attrs) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket_path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "(no connection)";
  }
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string req = attrs + "\n";
  std::string out;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    char buf[512];
    ssize_t n;
    while (out.find("\n\n") == std::string::npos && (n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out.substr(0, out.find('\n'));
}

// A syslog timestamp for now in local time ("Nov 23 15:04:05"), as rsyslog forwards it.
inline std::string SyslogStampNow() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
  return stamp;
}

// A rules directory for `serve` with the shipped parser pack and one playbook: postfix-sasl's
// trigger (20 SASL failures from one address in 10 minutes) with a one-hour ban, followed by
// `extra_actions` (more [[action]] tables, TOML text). Returns the directory.
inline std::string WriteSaslBanRules(const std::string& dir,
                                     const std::string& extra_actions = "") {
  const std::string rules = dir + "/rules.d";
  std::filesystem::create_directories(rules);
  std::filesystem::copy(std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers", rules + "/parsers",
                        std::filesystem::copy_options::recursive);
  std::ofstream(rules + "/postfix-sasl.toml")
      << "description = \"SASL brute force\"\nseverity = \"high\"\nmode = \"enforce\"\n"
         "key = \"client_ip\"\n[match]\nevents = [\"auth_failure\"]\n"
         "service = [\"smtpd\", \"submission\", \"smtps\"]\n"
         "[trigger]\ntype = \"count\"\nthreshold = 20\nwindow = \"10m\"\n"
         "[[action]]\ntype = \"ban\"\naddress = \"{client_ip}\"\nduration = \"1h\"\n"
      << extra_actions;
  return rules;
}

class ServeProcess {
 public:
  ServeProcess() = default;
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Starts `binary serve <args...>` with stdout and stderr appended to log_path. Returns false if
  // fork failed. Does not wait for readiness: use WaitForLog("ready:").
  bool Start(const std::string& binary, const std::vector<std::string>& args,
             const std::string& log_path) {
    log_path_ = log_path;
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      if (!freopen(log_path.c_str(), "a", stderr) || !freopen(log_path.c_str(), "a", stdout)) {
        _exit(126);
      }
      std::vector<std::string> argv = {binary, "serve"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(binary.c_str(), cargv.data());
      _exit(127);
    }
    return true;
  }

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != 0) {
      pid_ = -1;
      last_status_ = status;
      return false;
    }
    return true;
  }

  std::string Log() const {
    std::ifstream in(log_path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Polls cond until it holds; false when the deadline passed or the daemon died.
  template <typename Cond>
  bool WaitFor(Cond cond, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    // Every 20 ms: a condition here reads the daemon's log or its store.
    return Eventually([&] { return !running() || cond(); }, timeout,
                      std::chrono::milliseconds(20)) &&
           running() && cond();
  }
  bool WaitForLog(const std::string& needle,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    return WaitFor([&] { return Log().find(needle) != std::string::npos; }, timeout);
  }

  bool Signal(int sig) { return pid_ > 0 && kill(pid_, sig) == 0; }

  // SIGTERM and wait; true when it exited with status 0 (or was never started).
  bool Stop() {
    if (pid_ <= 0) {  // never started (-1), killed (-1) or already reaped
      return last_status_ == -1 || (WIFEXITED(last_status_) && WEXITSTATUS(last_status_) == 0);
    }
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    last_status_ = status;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

  // SIGKILL and reap: a crash, as far as the daemon can tell.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int last_status_ = -1;
  std::string log_path_;
};

}  // namespace mxward::testing
