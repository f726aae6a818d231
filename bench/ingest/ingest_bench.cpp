// ingest_bench: how many syslog lines per second the listener accepts into the parse stage, from
// a sender in another process, over loopback. Not a test: it prints figures.
//
//   ingest_bench tcp [LINES]            octet-counted TCP, as fast as the sender can write
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

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mxward/syslog_listener.h"
#include "mxward/syslog_parser.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string Message(long i) {
  // A realistic Postfix line as RSYSLOG_SyslogProtocol23Format forwards it (~170 bytes).
  return "<22>1 2026-11-23T12:00:00.123456+00:00 mx1 postfix/submission/smtpd " +
         std::to_string(10000 + i % 50000) + " - - warning: unknown[198.51.100." +
         std::to_string(i % 250) +
         "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6 seq=" + std::to_string(i) + "\n";
}

int SendTcp(std::uint16_t port, long lines) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 1;
  std::string batch;
  for (long i = 0; i < lines; ++i) {
    const std::string m = Message(i);
    batch += std::to_string(m.size());
    batch += ' ';
    batch += m;
    if (batch.size() > 256 * 1024 || i + 1 == lines) {
      std::string_view rest = batch;
      while (!rest.empty()) {
        const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n <= 0) return 2;
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
      batch.clear();
    }
  }
  ::close(fd);
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
    if (std::strcmp(argv[2], "tcp") == 0) return SendTcp(port, std::atol(argv[4]));
    return SendUdp(port, std::atol(argv[4]), std::atol(argv[5]));
  }
  const std::string mode = argc > 1 ? argv[1] : "tcp";
  mxward::InputSpec spec;
  spec.type = mode == "udp" ? mxward::InputType::kUdp : mxward::InputType::kTcp;
  spec.host = "127.0.0.1";
  spec.port = 0;
  spec.name = "bench";
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
    child = Spawn({"ingest_bench", "--send", "tcp", port, std::to_string(expected)});
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
  std::printf(
      "%s: %ld of %ld lines received and parsed in %.2fs = %.0f lines/s; malformed %ld; "
      "dropped %llu (kernel %llu); bytes %llu\n",
      mode.c_str(), sink.count, expected, secs, secs > 0 ? sink.count / secs : 0.0, sink.malformed,
      static_cast<unsigned long long>(c.dropped.load()),
      static_cast<unsigned long long>(c.dropped_kernel.load()),
      static_cast<unsigned long long>(c.bytes.load()));
  return sink.count == expected ? 0 : 3;
}
