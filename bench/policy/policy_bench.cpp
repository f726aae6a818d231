// Latency of mxward's policy servers under a paced load: p50/p99/max of the answer time at a fixed
// request rate, for the Dovecot endpoint (HTTP, keep-alive, allow and report alternating as
// Dovecot sends them) and the Postfix service (unix socket, one request per line block).
//
//   policy_bench dovecot PORT RATE SECONDS [CONNECTIONS]
//   policy_bench postfix SOCKET_PATH RATE SECONDS [CONNECTIONS]
//
// Open loop: request i is due at start + i/RATE, and its latency is counted from when it was due,
// not from when a connection got free to send it, so a stall shows up in the tail instead of
// silently lowering the rate. Connections take due requests in turn, as Dovecot's and Postfix's
// connection pools do. Remote addresses cycle through 10,000 values, so the engine sees many keys.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int ConnectTcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  return fd;
}

bool SendAll(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads one answer: a Postfix block ends with "\n\n"; an HTTP response after its headers carries
// Content-Length bytes.
bool ReadAnswer(int fd, bool http, std::string* buf) {
  while (true) {
    if (!http) {
      if (auto at = buf->find("\n\n"); at != std::string::npos) {
        buf->erase(0, at + 2);
        return true;
      }
    } else if (auto end = buf->find("\r\n\r\n"); end != std::string::npos) {
      std::size_t length = 0;
      if (auto cl = buf->find("Content-Length: "); cl != std::string::npos && cl < end) {
        length = std::strtoul(buf->c_str() + cl + 16, nullptr, 10);
      }
      if (buf->size() >= end + 4 + length) {
        buf->erase(0, end + 4 + length);
        return true;
      }
    }
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf->append(chunk, static_cast<std::size_t>(n));
  }
}

std::string Remote(std::uint64_t i) {
  return "10." + std::to_string((i / 10000) % 200) + "." + std::to_string((i % 10000) / 100) + "." +
         std::to_string(i % 100 + 1);
}

std::string DovecotRequest(std::uint64_t i) {
  const bool report = i % 2 == 1;
  const std::string body =
      std::string(R"({"login":"user)") + std::to_string(i % 5000) + R"(@example.org","pwhash":")" +
      std::to_string(i % 7) + R"(","remote":")" + Remote(i / 2) +
      R"(","device_id":"","protocol":"imap","session_id":"s)" + std::to_string(i) +
      (report ? R"(","success":false,"policy_reject":false,"tls":true})" : R"(","tls":true})");
  return std::string("POST /?command=") + (report ? "report" : "allow") +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
         "X-API-Key: bench-secret\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string PostfixRequest(std::uint64_t i) {
  static const char* kStates[] = {"CONNECT", "MAIL", "RCPT", "DATA"};
  return std::string("request=smtpd_access_policy\nprotocol_state=") + kStates[i % 4] +
         "\nprotocol_name=ESMTP\nclient_address=" + Remote(i) +
         "\nclient_name=unknown\nhelo_name=bench\nsender=a@example.org\n"
         "recipient=b@example.net\nrecipient_count=1\nqueue_id=Q" +
         std::to_string(i) + "\nsasl_username=user" + std::to_string(i % 5000) +
         "@example.org\ninstance=" + std::to_string(i) + "\nsize=1000\n\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s dovecot PORT|postfix SOCKET RATE SECONDS [CONNECTIONS]\n",
                 argv[0]);
    return 2;
  }
  const std::string kind = argv[1];
  const std::string where = argv[2];
  const double rate = std::atof(argv[3]);
  const double seconds = std::atof(argv[4]);
  const int connections = argc > 5 ? std::atoi(argv[5]) : 8;
  const bool http = kind == "dovecot";
  const auto total = static_cast<std::uint64_t>(rate * seconds);

  std::atomic<std::uint64_t> next{0};
  std::atomic<std::uint64_t> failures{0};
  std::mutex mu;
  std::vector<double> latencies_us;
  latencies_us.reserve(total);
  const auto start = Clock::now() + std::chrono::milliseconds(200);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&] {
      const int fd = http ? ConnectTcp(std::atoi(where.c_str())) : ConnectUnix(where);
      if (fd < 0) {
        std::fprintf(stderr, "cannot connect to %s\n", where.c_str());
        std::exit(1);
      }
      std::vector<double> mine;
      std::string buf;
      while (true) {
        const std::uint64_t i = next.fetch_add(1);
        if (i >= total) break;
        const auto due =
            start + std::chrono::nanoseconds(static_cast<std::int64_t>(i * 1e9 / rate));
        std::this_thread::sleep_until(due);  // pacing of the load, not synchronisation
        const std::string req = http ? DovecotRequest(i) : PostfixRequest(i);
        if (!SendAll(fd, req) || !ReadAnswer(fd, http, &buf)) {
          ++failures;
          break;
        }
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - due).count());
      }
      ::close(fd);
      std::lock_guard lock(mu);
      latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) {
    if (latencies_us.empty()) return 0.0;
    return latencies_us[std::min(latencies_us.size() - 1,
                                 static_cast<std::size_t>(p * latencies_us.size()))];
  };
  std::printf(
      "%s: %zu answers in %.1f s (%.0f/s asked, %d connections), %llu failed; latency p50 %.3f "
      "ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
      kind.c_str(), latencies_us.size(), elapsed, rate, connections,
      static_cast<unsigned long long>(failures.load()), pct(0.50) / 1000, pct(0.99) / 1000,
      pct(0.999) / 1000, latencies_us.empty() ? 0.0 : latencies_us.back() / 1000);
  return failures.load() == 0 ? 0 : 1;
}
