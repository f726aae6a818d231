// ingest_bench: how many syslog lines per second the listener accepts into the parse stage, from
// a sender in another process, over loopback. Not a test: it prints figures.
//
//   ingest_bench tcp [LINES] [CONNS]    octet-counted TCP, as fast as the sender can write, over
//                                       CONNS connections (default 1) sharing LINES
//   ingest_bench tls [LINES] [CONNS]    the same over TLS (RFC 5425) with client certificates from
//                                       a private CA made for the run (tests/support/test_ca.h)
//   ingest_bench udp [RATE] [SECONDS]   UDP paced at RATE datagrams/s (0 = unpaced)
//
// The receiving side is a SyslogListener on one io_context thread whose LineSink parses every
// line with SyslogParser (what Pipeline does first); the sender is this binary re-executed with
// --send, so sender and receiver compete for the two cores as rsyslog and mxward would.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mxward/syslog_listener.h"
#include "mxward/syslog_parser.h"
#include "support/test_ca.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string Message(long i) {
  // A realistic Postfix line as RSYSLOG_SyslogProtocol23Format forwards it (~170 bytes).
  return "<22>1 2026-11-23T12:00:00.123456+00:00 mx1 postfix/submission/smtpd " +
         std::to_string(10000 + i % 50000) + " - - warning: unknown[198.51.100." +
         std::to_string(i % 250) +
         "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6 seq=" + std::to_string(i) + "\n";
}

// One connection sending lines [from, to) octet-counted; over TLS when ctx is set (the client
// certificate is the CA's "client"). 0 on success.
int SendStream(std::uint16_t port, long from, long to, SSL_CTX* ctx) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 1;
  SSL* ssl = nullptr;
  if (ctx != nullptr) {
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
      ERR_print_errors_fp(stderr);
      return 4;
    }
  }
  std::string batch;
  for (long i = from; i < to; ++i) {
    const std::string m = Message(i);
    batch += std::to_string(m.size());
    batch += ' ';
    batch += m;
    if (batch.size() > 256 * 1024 || i + 1 == to) {
      std::string_view rest = batch;
      while (!rest.empty()) {
        const long n = ssl != nullptr ? SSL_write(ssl, rest.data(), static_cast<int>(rest.size()))
                                      : ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n <= 0) return 2;
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
      batch.clear();
    }
  }
  if (ssl != nullptr) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
  ::close(fd);
  return 0;
}

// CONNS connections in parallel threads, sharing LINES. dir: the CA's files for TLS, or empty.
int SendStreams(std::uint16_t port, long lines, int conns, const std::string& dir) {
  SSL_CTX* ctx = nullptr;
  if (!dir.empty()) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_use_certificate_chain_file(ctx, (dir + "/client.crt").c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, (dir + "/client.key").c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, (dir + "/ca.crt").c_str(), nullptr) != 1) {
      ERR_print_errors_fp(stderr);
      return 5;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  std::vector<std::thread> threads;
  std::vector<int> results(static_cast<std::size_t>(conns), 0);
  for (int c = 0; c < conns; ++c) {
    threads.emplace_back([&, c] {
      results[static_cast<std::size_t>(c)] =
          SendStream(port, lines * c / conns, lines * (c + 1) / conns, ctx);
    });
  }
  for (auto& t : threads) t.join();
  if (ctx != nullptr) SSL_CTX_free(ctx);
  for (int r : results) {
    if (r != 0) return r;
  }
  return 0;
}

int SendUdp(std::uint16_t port, long rate, long seconds) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  const long total = rate > 0 ? rate * seconds : 2'000'000;
  constexpr int kBatch = 16;
  std::vector<std::string> msgs;
  const auto start = Clock::now();
  long sent = 0;
  while (sent < total) {
    if (rate > 0) {  // pace: never ahead of rate * elapsed
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      if (sent >= static_cast<long>(elapsed * rate)) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
    }
    mmsghdr h[kBatch];
    iovec iov[kBatch];
    msgs.clear();
    const int n = static_cast<int>(std::min<long>(kBatch, total - sent));
    for (int i = 0; i < n; ++i) msgs.push_back(Message(sent + i));
    for (int i = 0; i < n; ++i) {
      iov[i] = {msgs[i].data(), msgs[i].size()};
      h[i] = {};
      h[i].msg_hdr.msg_iov = &iov[i];
      h[i].msg_hdr.msg_iovlen = 1;
    }
    const int k = ::sendmmsg(fd, h, static_cast<unsigned>(n), 0);
    if (k > 0) sent += k;
  }
  std::printf("sender: %ld datagrams in %.2fs\n", sent,
              std::chrono::duration<double>(Clock::now() - start).count());
  return 0;
}

class ParsingCounter final : public mxward::LineSink {
 public:
  void OnLineFrom(std::string_view line, mxward::UnixMicros received_at, int input,
                  std::string_view) override {
    OnLine(line, received_at, input);
  }
  void OnLine(std::string_view line, mxward::UnixMicros received_at, int) override {
    if (count == 0) first = Clock::now();
    ++count;
    last = Clock::now();
    mxward::SyslogMessage m;
    if (!parser_.Parse(line, received_at, &m).ok()) ++malformed;
  }
  long count = 0, malformed = 0;
  Clock::time_point first, last;

 private:
  mxward::SyslogParser parser_;
};

pid_t Spawn(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::strcmp(argv[1], "--send") == 0) {
    const std::uint16_t port = static_cast<std::uint16_t>(std::atoi(argv[3]));
    if (std::strcmp(argv[2], "tcp") == 0 || std::strcmp(argv[2], "tls") == 0) {
      return SendStreams(port, std::atol(argv[4]), std::atoi(argv[5]), argc > 6 ? argv[6] : "");
    }
    return SendUdp(port, std::atol(argv[4]), std::atol(argv[5]));
  }
  const std::string mode = argc > 1 ? argv[1] : "tcp";
  mxward::InputSpec spec;
  spec.type = mode == "udp"   ? mxward::InputType::kUdp
              : mode == "tls" ? mxward::InputType::kTls
                              : mxward::InputType::kTcp;
  spec.host = "127.0.0.1";
  spec.port = 0;
  spec.name = "bench";
  std::string ca_dir;
  std::unique_ptr<mxward::testing::TestCa> ca;
  if (mode == "tls") {
    char tmpl[] = "/tmp/mxward-ingest-bench-XXXXXX";
    ca_dir = mkdtemp(tmpl);
    ca = std::make_unique<mxward::testing::TestCa>(ca_dir);
    ca->Issue("server", {"mxward.example.net"});
    ca->Issue("client", {"mx1.example.net"});
    spec.tls.cert_file = ca_dir + "/server.crt";
    spec.tls.key_file = ca_dir + "/server.key";
    spec.tls.ca_file = ca_dir + "/ca.crt";
    spec.tls.allowed_peers = {"mx1.example.net"};
  }
  const int conns = mode != "udp" && argc > 3 ? std::max(1, std::atoi(argv[3])) : 1;
  boost::asio::io_context io;
  ParsingCounter sink;
  mxward::SyslogListener listener(io, {spec}, &sink);
  if (auto st = listener.Start(); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  const std::string port = std::to_string(listener.bound_port(0));
  long expected = 0;
  pid_t child;
  if (mode == "udp") {
    const long rate = argc > 2 ? std::atol(argv[2]) : 50000;
    const long seconds = argc > 3 ? std::atol(argv[3]) : 5;
    expected = rate > 0 ? rate * seconds : 2'000'000;
    child = Spawn(
        {"ingest_bench", "--send", "udp", port, std::to_string(rate), std::to_string(seconds)});
  } else {
    expected = argc > 2 ? std::atol(argv[2]) : 3'000'000;
    child = Spawn({"ingest_bench", "--send", mode, port, std::to_string(expected),
                   std::to_string(conns), ca_dir});
  }
  // Stop when everything arrived, or (UDP) once the sender is gone and nothing came for 500 ms.
  boost::asio::steady_timer check(io);
  bool child_done = false;
  std::function<void()> arm = [&] {
    check.expires_after(std::chrono::milliseconds(100));
    check.async_wait([&](const boost::system::error_code&) {
      if (!child_done && waitpid(child, nullptr, WNOHANG) == child) child_done = true;
      const bool idle = sink.count > 0 && Clock::now() - sink.last > std::chrono::milliseconds(500);
      if (sink.count >= expected || (child_done && idle)) {
        listener.Stop();
        io.stop();
        return;
      }
      arm();
    });
  };
  arm();
  io.run();
  if (!child_done) waitpid(child, nullptr, 0);
  const auto& c = listener.counters(0);
  const double secs = std::chrono::duration<double>(sink.last - sink.first).count();
  if (!ca_dir.empty()) std::filesystem::remove_all(ca_dir);
  std::printf(
      "%s x%d: %ld of %ld lines received and parsed in %.2fs = %.0f lines/s; malformed %ld; "
      "dropped %llu (kernel %llu); bytes %llu\n",
      mode.c_str(), conns, sink.count, expected, secs, secs > 0 ? sink.count / secs : 0.0,
      sink.malformed, static_cast<unsigned long long>(c.dropped.load()),
      static_cast<unsigned long long>(c.dropped_kernel.load()),
      static_cast<unsigned long long>(c.bytes.load()));
  return sink.count == expected ? 0 : 3;
}
