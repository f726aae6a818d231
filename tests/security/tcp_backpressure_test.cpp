// TCP ingest of 10,000,000 lines while the engine is artificially slowed (issue 9, faults): the
// real SyslogListener in-process, two loopback TCP connections (one octet-counted, one
// LF-terminated) each carrying half the lines, and a LineSink that is deliberately slow (it spins
// for a while every few thousand lines) and, once, stops for as long as it takes the senders to
// find their sockets full. Checks: zero lost (received == sent), order kept per connection, no
// framing error, the senders were pushed back (their writes would block), and memory stayed
// bounded meanwhile (the listener's framing buffers and the process RSS growth).
//
// MXWARD_BACKPRESSURE_LINES overrides the line count (default 10,000,000); under ASan+UBSan run
// it with a smaller count (docs/reliability.md has the timings).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "mxward/syslog_listener.h"
#include "support/daemon.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

using testing::ConnectLoopbackTcp;
using testing::Eventually;

// Every line is kPrefix + connection digit + " n=" + 10 digits + kSuffix.
constexpr std::string_view kPrefix = "<22>Nov 23 15:04:05 mx1 postfix/smtpd[4101]: bp c=";
constexpr std::string_view kSuffix = " connect from unknown[192.0.2.1]";
constexpr std::size_t kLineSize = kPrefix.size() + 1 + 3 + 10 + kSuffix.size();

std::uint64_t LineCount() {
  const char* env = std::getenv("MXWARD_BACKPRESSURE_LINES");
  if (env && *env) return std::strtoull(env, nullptr, 10);
  return 10'000'000;
}

std::uint64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

// Checks every line as it arrives: the right size, from the right connection, the next number.
class SlowCheckingSink final : public LineSink {
 public:
  SlowCheckingSink(std::uint64_t stall_at, int spin_every, std::chrono::microseconds spin)
      : stall_at_(stall_at), spin_every_(spin_every), spin_(spin) {}

  void OnLine(std::string_view line, UnixMicros, int input_index) override {
    const std::uint64_t total = received_.load(std::memory_order_relaxed) + 1;
    if (line.size() != kLineSize || line.substr(0, kPrefix.size()) != kPrefix ||
        line.substr(kLineSize - kSuffix.size()) != kSuffix || input_index < 0 || input_index > 1 ||
        line[kPrefix.size()] != static_cast<char>('0' + input_index)) {
      Fail(line);
    } else {
      std::uint64_t n = 0;
      const char* digits = line.data() + kPrefix.size() + 4;
      auto [end, ec] = std::from_chars(digits, digits + 10, n);
      if (ec != std::errc() || end != digits + 10 || n != next_[input_index]) Fail(line);
      next_[input_index] = n + 1;
    }
    received_.store(total, std::memory_order_release);
    // The artificial slowness: a busy engine, not a synchronisation.
    if (total % spin_every_ == 0) {
      const auto until = std::chrono::steady_clock::now() + spin_;
      while (std::chrono::steady_clock::now() < until) {
      }
    }
    // Once: stop until the test has seen the senders blocked and measured memory.
    if (total == stall_at_) {
      std::unique_lock lock(mu_);
      stalled_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    }
  }

  bool WaitStalled(std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return stalled_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

  std::uint64_t received() const { return received_.load(std::memory_order_acquire); }
  std::uint64_t errors() const { return errors_.load(); }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }

 private:
  void Fail(std::string_view line) {
    if (errors_.fetch_add(1) == 0) {
      std::lock_guard lock(mu_);
      first_error_ = std::string(line.substr(0, 200));
    }
  }

  const std::uint64_t stall_at_;
  const int spin_every_;
  const std::chrono::microseconds spin_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::uint64_t next_[2] = {0, 0};  // io thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool stalled_ = false;
  bool released_ = false;
  std::string first_error_;
};

// Writes `count` numbered lines over one non-blocking connection, waiting in poll() whenever the
// socket is full; counts those waits (the backpressure the sender feels).
class Sender {
 public:
  Sender(int port, int connection, bool octet_counted, std::uint64_t count)
      : port_(port), connection_(connection), octet_counted_(octet_counted), count_(count) {}
  ~Sender() {
    if (thread_.joinable()) thread_.join();
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  std::atomic<std::uint64_t> lines_written{0};        // lines completely handed to the kernel
  std::atomic<std::uint64_t> would_block{0};          // writes that found the socket full
  std::atomic<bool> blocked_now{false};               // waiting in poll() right now
  std::atomic<std::uint64_t> unsent_when_blocked{0};  // SIOCOUTQ the last time it blocked
  std::atomic<bool> ok{false};

 private:
  void Run() {
    int fd = ConnectLoopbackTcp(port_);
    if (fd < 0) return;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    std::string line(kLineSize, ' ');
    std::memcpy(line.data(), kPrefix.data(), kPrefix.size());
    line[kPrefix.size()] = static_cast<char>('0' + connection_);
    std::memcpy(line.data() + kPrefix.size() + 1, " n=", 3);
    std::memcpy(line.data() + kLineSize - kSuffix.size(), kSuffix.data(), kSuffix.size());
    const std::string header = std::to_string(kLineSize) + " ";
    std::string chunk;
    std::uint64_t n = 0;
    bool failed = false;
    while (n < count_ && !failed) {
      chunk.clear();
      std::uint64_t in_chunk = 0;
      while (n + in_chunk < count_ && chunk.size() < 256 * 1024) {
        char* digits = line.data() + kPrefix.size() + 4;
        const std::uint64_t v = n + in_chunk;
        std::uint64_t x = v;
        for (int i = 9; i >= 0; --i) {
          digits[i] = static_cast<char>('0' + x % 10);
          x /= 10;
        }
        if (octet_counted_) {
          chunk += header;
          chunk += line;
        } else {
          chunk += line;
          chunk += '\n';
        }
        ++in_chunk;
      }
      std::size_t off = 0;
      while (off < chunk.size()) {
        ssize_t w = send(fd, chunk.data() + off, chunk.size() - off, MSG_NOSIGNAL);
        if (w > 0) {
          off += static_cast<std::size_t>(w);
          continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          would_block.fetch_add(1);
          int unsent = 0;
          if (ioctl(fd, SIOCOUTQ, &unsent) == 0) unsent_when_blocked.store(unsent);
          blocked_now.store(true);
          pollfd p{fd, POLLOUT, 0};
          poll(&p, 1, -1);
          blocked_now.store(false);
          continue;
        }
        failed = true;
        break;
      }
      n += in_chunk;
      lines_written.store(n);
    }
    close(fd);
    ok.store(!failed && n == count_);
  }

  int port_;
  int connection_;
  bool octet_counted_;
  std::uint64_t count_;
  std::thread thread_;
};

TEST(TcpBackpressureTest, TenMillionLinesThroughASlowEngineNoneLostMemoryBounded) {
  const std::uint64_t total = LineCount();
  ASSERT_GE(total, 1000u);
  const std::uint64_t per_connection = total / 2;

  std::vector<InputSpec> specs(2);
  specs[0].type = specs[1].type = InputType::kTcp;
  specs[0].name = "octet";
  specs[1].name = "lf";
  specs[0].port = specs[1].port = 0;
  // The engine stops once, a fifth of the way in; and spins 2 ms every 20,000 lines throughout.
  SlowCheckingSink sink(total / 5, 20'000, std::chrono::milliseconds(2));
  boost::asio::io_context io;
  SyslogListener listener(io, specs, &sink);
  ASSERT_OK(listener.Start());
  std::thread io_thread([&] { io.run(); });
  const std::uint64_t rss_before = RssBytes();

  Sender octet(listener.bound_port(0), 0, true, per_connection);
  Sender lf(listener.bound_port(1), 1, false, per_connection);
  // Whatever happens below, the engine is let go and the listener stopped before the threads
  // are joined (a failed assertion returns early).
  bool stopped = false;
  auto stop = [&] {
    if (stopped) return;
    stopped = true;
    sink.Release();
    boost::asio::post(io, [&] {
      listener.Stop();
      io.stop();
    });
    io_thread.join();
  };
  struct Guard {
    std::function<void()> fn;
    ~Guard() { fn(); }
  } guard{stop};
  const auto started = std::chrono::steady_clock::now();
  octet.Start();
  lf.Start();

  // While the engine is stopped, both senders must end up blocked: the kernel buffers are full
  // and nothing else takes their data.
  ASSERT_TRUE(sink.WaitStalled(std::chrono::seconds(120)));
  const bool both_blocked = Eventually(
      [&] { return octet.blocked_now.load() && lf.blocked_now.load(); }, std::chrono::seconds(30));
  const std::uint64_t written_at_stall = octet.lines_written + lf.lines_written;
  const std::uint64_t received_at_stall = sink.received();
  const std::uint64_t buffers_at_stall =
      listener.counters(0).buffer_bytes.load() + listener.counters(1).buffer_bytes.load();
  const std::uint64_t rss_at_stall = RssBytes();
  sink.Release();
  EXPECT_TRUE(both_blocked) << "octet blocked " << octet.blocked_now << ", lf blocked "
                            << lf.blocked_now;

  // The rest, watching memory as it goes.
  std::uint64_t rss_peak = rss_at_stall, buffers_peak = buffers_at_stall;
  const bool all = Eventually(
      [&] {
        rss_peak = std::max(rss_peak, RssBytes());
        buffers_peak =
            std::max<std::uint64_t>(buffers_peak, listener.counters(0).buffer_bytes.load() +
                                                      listener.counters(1).buffer_bytes.load());
        return sink.received() >= total;
      },
      std::chrono::seconds(600));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  octet.Join();
  lf.Join();
  stop();

  ASSERT_TRUE(all) << "received " << sink.received() << " of " << total;
  EXPECT_TRUE(octet.ok && lf.ok);
  EXPECT_EQ(sink.received(), total);  // zero lost, none extra
  EXPECT_EQ(octet.lines_written + lf.lines_written, total);
  EXPECT_EQ(sink.errors(), 0u) << "first bad line: " << sink.first_error();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(listener.counters(i).messages.load(), per_connection);
    EXPECT_EQ(listener.counters(i).malformed.load(), 0u);
    EXPECT_EQ(listener.counters(i).dropped.load(), 0u);
    EXPECT_EQ(listener.counters(i).closed_bad_framing.load(), 0u);
  }
  // Backpressure reached the senders: they waited, and what they had written but the engine had
  // not taken was only what the kernel buffers hold (a few MB), not a growing backlog.
  EXPECT_GT(octet.would_block.load(), 0u);
  EXPECT_GT(lf.would_block.load(), 0u);
  const std::uint64_t in_flight_lines = written_at_stall - received_at_stall;
  EXPECT_LT(in_flight_lines * kLineSize, 64ull << 20) << in_flight_lines << " lines in flight";
  // Memory: the listener holds at most one framing buffer per connection (64 KiB here), and the
  // process did not grow with the backlog (which was ~1 GB of lines).
  EXPECT_LE(buffers_peak, 2u * (64 * 1024 + 32));
  const std::uint64_t growth = rss_peak > rss_before ? rss_peak - rss_before : 0;
  EXPECT_LT(growth, 64ull << 20) << "RSS grew by " << growth;

  RecordProperty("lines", std::to_string(total));
  RecordProperty("seconds", std::to_string(seconds));
  RecordProperty("rss_growth_bytes", std::to_string(growth));
  RecordProperty("lines_in_flight_at_stall", std::to_string(in_flight_lines));
  std::printf(
      "tcp backpressure: %llu lines in %.1f s (%.0f lines/s), RSS growth %.1f MiB, listener "
      "buffers peak %llu bytes, %llu lines (%.1f MiB) in kernel buffers while the engine stood "
      "still, sender waits: octet %llu, lf %llu\n",
      static_cast<unsigned long long>(total), seconds, total / seconds, growth / 1048576.0,
      static_cast<unsigned long long>(buffers_peak),
      static_cast<unsigned long long>(in_flight_lines), in_flight_lines * kLineSize / 1048576.0,
      static_cast<unsigned long long>(octet.would_block.load()),
      static_cast<unsigned long long>(lf.would_block.load()));
}

}  // namespace
}  // namespace mxward
