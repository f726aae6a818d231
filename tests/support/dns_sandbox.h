// DnsSandbox: a private world for the real sender-authentication programs a test starts
// (policyd-spf, OpenDKIM, OpenDMARC, Postfix): the whole test process enters a network and mount
// namespace of its own (lo up), where
//  - dnsmasq (Debian's dnsmasq-base) on 127.0.0.1:53 answers the test's zones, and a resolv.conf
//    bind-mounted over /etc/resolv.conf points every resolver at it;
//  - /dev is a private tmpfs (null, zero, random, urandom bound from the real one) whose /dev/log
//    is the sandbox's own datagram socket: every syslog() line the programs write comes to the
//    test and nowhere else. A thread reads it as it comes (net.unix.max_dgram_qlen is often 10:
//    a socket read only at the end would block the programs' syslog() calls).
//
// Owns dnsmasq, the log socket and its reader thread, and the mounts it made; the destructor
// stops and undoes them (the namespaces end with the test process). One at a time (a test case's),
// used from the test's thread; LogLines() may be called while the programs run. Needs root: callers
// check WhyNotRunnable() first and GTEST_SKIP() with it. Header-only, test-side.
#pragma once

#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/daemon.h"
#include "support/server_process.h"
#include "support/subprocess.h"

namespace mxward::testing {

// What the sandbox's DNS answers. Names under a local domain that are not given are NXDOMAIN.
struct DnsZones {
  std::vector<std::string> local_domains;
  // (name, text): one TXT record each; text longer than a DNS character-string (255 bytes) is
  // split into several strings, which SPF, DKIM and DMARC readers join.
  std::vector<std::pair<std::string, std::string>> txt;
  std::vector<std::string> extra_args;  // more dnsmasq options, e.g. --server=/zone/127.0.0.9
};

class DnsSandbox {
 public:
  static constexpr char kDnsmasq[] = "/usr/sbin/dnsmasq";

  DnsSandbox() = default;
  DnsSandbox(const DnsSandbox&) = delete;
  DnsSandbox& operator=(const DnsSandbox&) = delete;
  ~DnsSandbox() {
    dns_.Stop();
    stop_ = true;
    if (reader_.joinable()) reader_.join();
    if (log_fd_ >= 0) close(log_fd_);
    // Back to the real /dev and resolv.conf: a second sandbox in the same process (the next test
    // case) unshares again, from these mounts.
    if (dev_private_) umount2("/dev", MNT_DETACH);
    if (resolv_bound_) umount2("/etc/resolv.conf", MNT_DETACH);
    if (dev_bound_) umount2(saved_dev_.c_str(), MNT_DETACH);
    if (!saved_dev_.empty()) rmdir(saved_dev_.c_str());  // empty once unmounted; else kept
  }

  // "" when the sandbox can be made here, else why not (for GTEST_SKIP).
  static std::string WhyNotRunnable() {
    if (geteuid() != 0) return "needs root: network and mount namespaces";
    if (access(kDnsmasq, X_OK) != 0) {
      return "needs dnsmasq-base (packaging/install-deps.sh test)";
    }
    return "";
  }

  // Enters the namespaces and makes the private /dev and resolv.conf; files go under work_dir.
  // "" on success, else what failed.
  std::string Enter(const std::string& work_dir) {
    work_dir_ = work_dir;
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return Errno("unshare");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return Errno("private /");
    if (RunCommand({"ip", "link", "set", "lo", "up"}).exit_code != 0) return "ip link set lo up";
    const std::string resolv = work_dir + "/resolv.conf";
    std::ofstream(resolv) << "nameserver 127.0.0.1\n";
    if (mount(resolv.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0) {
      return Errno("bind resolv.conf");
    }
    resolv_bound_ = true;
    // The real /dev stays reachable under saved_dev_, outside work_dir (whose removal must never
    // walk into it), until the destructor unmounts it.
    char saved_template[] = "/tmp/mxward-dev-XXXXXX";
    if (mkdtemp(saved_template) == nullptr) return Errno("mkdtemp");
    saved_dev_ = saved_template;
    if (mount("/dev", saved_dev_.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return Errno("bind /dev");
    }
    dev_bound_ = true;
    if (mount("tmpfs", "/dev", "tmpfs", 0, "mode=755") != 0) return Errno("tmpfs /dev");
    dev_private_ = true;
    for (const char* node : {"null", "zero", "random", "urandom"}) {
      const std::string target = std::string("/dev/") + node;
      std::ofstream(target).flush();
      if (mount((saved_dev_ + "/" + node).c_str(), target.c_str(), nullptr, MS_BIND, nullptr) !=
          0) {
        return Errno(target);
      }
    }
    log_fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (log_fd_ < 0) return Errno("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, "/dev/log");
    if (bind(log_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return Errno("bind /dev/log");
    }
    chmod("/dev/log", 0666);
    reader_ = std::thread([this] {
      while (!stop_) {
        pollfd p{log_fd_, POLLIN, 0};
        if (poll(&p, 1, 100) > 0) Drain();
      }
    });
    return "";
  }

  // Starts dnsmasq for `zones` and waits until it answers on port 53. "" on success.
  std::string StartDns(const DnsZones& zones) {
    std::vector<std::string> argv = {kDnsmasq,
                                     "--keep-in-foreground",
                                     "--conf-file=/dev/null",
                                     "--user=root",
                                     "--pid-file=",
                                     "--listen-address=127.0.0.1",
                                     "--bind-interfaces",
                                     "--no-resolv",
                                     "--no-hosts",
                                     "--log-facility=" + work_dir_ + "/dnsmasq.log"};
    for (const std::string& zone : zones.local_domains) argv.push_back("--local=/" + zone + "/");
    for (const auto& [name, text] : zones.txt) {
      // dnsmasq takes a comma as the start of the next string (and quotes literally).
      if (text.find(',') != std::string::npos) return "a comma in the TXT text of " + name;
      std::string arg = "--txt-record=" + name;
      for (std::size_t at = 0; at < text.size(); at += 250) arg += "," + text.substr(at, 250);
      argv.push_back(arg);
    }
    argv.insert(argv.end(), zones.extra_args.begin(), zones.extra_args.end());
    if (!dns_.Start(argv, work_dir_ + "/dnsmasq.out")) return "fork dnsmasq";
    if (!WaitUntil(
            std::chrono::seconds(20),
            [] {
              const int fd = ConnectLoopbackTcp(53);
              if (fd >= 0) close(fd);
              return fd >= 0;
            },
            [this] { return !dns_.running(); })) {
      return "dnsmasq did not start: " + dns_.log();
    }
    return "";
  }

  // Every datagram written to /dev/log so far, in arrival order, without trailing newline or NUL
  // (including any still queued in the socket at the call: a program that has returned from
  // syslog() is always in it).
  std::vector<std::string> LogLines() {
    Drain();
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  static std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

  void Drain() {
    std::lock_guard<std::mutex> lock(mu_);
    char buf[8192];
    for (;;) {
      const ssize_t n = recv(log_fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      // Trimmed as mxward's syslog listener trims a datagram: Perl's Sys::Syslog ends its
      // messages with "\n\0".
      std::size_t size = static_cast<std::size_t>(n);
      while (size > 0 &&
             (buf[size - 1] == '\n' || buf[size - 1] == '\r' || buf[size - 1] == '\0')) {
        --size;
      }
      lines_.emplace_back(buf, size);
    }
  }

  std::string work_dir_;
  std::string saved_dev_;
  bool dev_bound_ = false;
  bool dev_private_ = false;
  bool resolv_bound_ = false;
  ServerProcess dns_;
  int log_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread reader_;
  std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace mxward::testing
