// Rsyslogd: a real rsyslogd (Debian's package) for a test, with its own config, pid file and work
// directory in the test's temp dir (no systemd): it follows DIR/mail.log with imfile and runs the
// given forwarding config. Killed (SIGTERM) and reaped when destroyed. Also the shipped TLS
// sender snippet pointed at a test's port and certificates. Header-only, for tests.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace mxward::testing {

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const char* FindRsyslogd() {
  for (const char* p : {"/usr/sbin/rsyslogd", "/sbin/rsyslogd"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return nullptr;
}

// True when rsyslog's network stream driver `driver` ("gtls", "ossl") is installed.
inline bool HaveRsyslogDriver(const std::string& driver) {
  for (const char* d : {"/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog",
                        "/usr/lib/rsyslog"}) {
    if (std::filesystem::exists(std::string(d) + "/lmnsd_" + driver + ".so")) return true;
  }
  return false;
}

// packaging/rsyslog/61-mxward-tls-<driver>.conf aimed at 127.0.0.1:port with these files. A
// snippet that no longer contains what is replaced fails the test: the shipped file changed.
inline std::string ShippedTlsSnippet(const std::string& driver, std::uint16_t port,
                                     const std::string& ca, const std::string& cert,
                                     const std::string& key) {
  std::string s = ReadTextFile(std::string(MXWARD_SOURCE_DIR) +
                               "/packaging/rsyslog/61-mxward-tls-" + driver + ".conf");
  auto replace = [&s](const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << "the snippet must contain " << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
  };
  replace("target=\"mxward.example.net\"", "target=\"127.0.0.1\"");
  replace("port=\"6514\"", "port=\"" + std::to_string(port) + "\"");
  replace("/etc/rsyslog.d/mxward-tls/ca.crt", ca);
  replace("/etc/rsyslog.d/mxward-tls/client.crt", cert);
  replace("/etc/rsyslog.d/mxward-tls/client.key", key);
  return s;
}

class Rsyslogd {
 public:
  Rsyslogd(const std::string& dir, const std::string& config) : dir_(dir) {
    std::filesystem::create_directories(dir + "/work");
    const std::string conf = dir + "/rsyslog.conf";
    std::ofstream(conf) << "global(workDirectory=\"" << dir << "/work\")\n"
                        << "module(load=\"imfile\")\n"
                        << "input(type=\"imfile\" File=\"" << dir << "/mail.log\" Tag=\"imfile\" "
                        << "needParse=\"on\")\n"
                        << config << "\n";
    pid_ = fork();
    if (pid_ == 0) {
      const std::string pidfile = dir + "/rsyslogd.pid";
      const std::string log = dir + "/rsyslogd.out";
      if (!freopen(log.c_str(), "w", stdout) || !freopen(log.c_str(), "a", stderr)) _exit(126);
      close_range(3, ~0U, 0);  // nothing of the test (its listening socket!) leaks into rsyslogd
      execl(FindRsyslogd(), "rsyslogd", "-n", "-f", conf.c_str(), "-i", pidfile.c_str(), nullptr);
      _exit(127);
    }
  }
  ~Rsyslogd() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  Rsyslogd(const Rsyslogd&) = delete;
  Rsyslogd& operator=(const Rsyslogd&) = delete;
  bool running() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
  std::string output() const { return ReadTextFile(dir_ + "/rsyslogd.out"); }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace mxward::testing
