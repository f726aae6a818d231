// A real rsyslogd (the Debian package) reads a log file with imfile and forwards it with the
// action of packaging/rsyslog/60-mxward.conf to a SyslogListener in this process. Every line
// must arrive, in order, with the right program and time; and when the listener goes away in the
// middle, rsyslog's queue must deliver the rest once it is back.
//
// rsyslogd runs with its own config, pid file and work directory in a temp dir (no systemd).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "mxward/syslog_listener.h"
#include "mxward/syslog_parser.h"
#include "support/rsyslogd.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::FindRsyslogd;
using testing::ReadTextFile;
using testing::Rsyslogd;

struct Arrived {
  std::string program;
  std::string message;
  UnixMicros time = 0;
  int facility = -1;
};

// Parses what arrives, as the pipeline would.
class ParsingSink final : public LineSink {
 public:
  void OnLine(std::string_view line, UnixMicros received_at, int) override {
    SyslogMessage m;
    std::lock_guard lock(mu_);
    if (!parser_.Parse(line, received_at, &m).ok()) {
      malformed_.emplace_back(line);
    } else {
      got_.push_back(
          {std::string(m.program), std::string(m.message), m.has_time ? m.time : -1, m.facility});
    }
    cv_.notify_all();
  }
  // Waits until `pred(arrived)` holds, with a generous deadline (rsyslog retries every 2 s).
  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::seconds timeout = 90s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(got_); });
  }
  std::vector<Arrived> got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  std::vector<std::string> malformed() {
    std::lock_guard lock(mu_);
    return malformed_;
  }

 private:
  SyslogParser parser_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Arrived> got_;
  std::vector<std::string> malformed_;
};

class ListenerThread {
 public:
  ListenerThread(std::uint16_t port, LineSink* sink) {
    InputSpec s;
    s.type = InputType::kTcp;
    s.host = "127.0.0.1";
    s.port = port;
    s.name = "rsyslog";
    listener_ = std::make_unique<SyslogListener>(io_, std::vector<InputSpec>{s}, sink);
  }
  ~ListenerThread() { Stop(); }
  Status Start() {
    Status st = listener_->Start();
    if (st.ok()) thread_ = std::thread([this] { io_.run(); });
    return st;
  }
  void Stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] {
      listener_->Stop();
      io_.stop();
    });
    thread_.join();
  }
  std::uint16_t port() const { return listener_->bound_port(0); }

 private:
  boost::asio::io_context io_;
  std::unique_ptr<SyslogListener> listener_;
  std::thread thread_;
};

// The shipped snippet, pointed at the test's port.
std::string Snippet(std::uint16_t port) {
  std::string s =
      ReadTextFile(std::string(MXWARD_SOURCE_DIR) + "/packaging/rsyslog/60-mxward.conf");
  const std::string from = "port=\"5514\"";
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << "the snippet must forward to port 5514";
  if (at != std::string::npos) s.replace(at, from.size(), "port=\"" + std::to_string(port) + "\"");
  return s;
}

class RsyslogForwardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(FindRsyslogd(), nullptr)
        << "rsyslogd is not installed (apt-get install rsyslog): this test needs the real one";
    char tmpl[] = "/tmp/mxward-rsyslog-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ + "/mail.log").close();
  }
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
    if (HasFailure()) std::fprintf(stderr, "kept %s for inspection\n", dir_.c_str());
  }

  // Lines as Postfix/Dovecot write them through syslog(3), with <PRI> (so rsyslog knows the
  // facility) and no hostname (imfile input has none). Times are "now" so rsyslog's own year
  // guess agrees.
  struct Expected {
    std::string line, program, message;
    UnixMicros time;
  };
  std::vector<Expected> MakeLines(int from, int to) {
    std::vector<Expected> out;
    const std::time_t base = std::time(nullptr) - 3600;
    for (int i = from; i < to; ++i) {
      const std::time_t t = base + i;
      std::tm tm{};
      localtime_r(&t, &tm);
      char stamp[32];
      std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
      Expected e;
      switch (i % 4) {
        case 0:
          e.program = "postfix/submission/smtpd";
          break;
        case 1:
          e.program = "postfix-out/smtp";
          break;
        case 2:
          e.program = "dovecot";
          break;
        default:
          e.program = "roundcube";
          break;
      }
      const int pri = i % 4 == 3 ? 8 + 3 : 16 + 6;  // roundcube: user.err; others mail.info
      e.message =
          "seq=" + std::to_string(i) + " from unknown[192.0.2." + std::to_string(i % 250) + "]";
      e.line = "<" + std::to_string(pri) + ">" + stamp + " " + e.program + "[" +
               std::to_string(1000 + i) + "]: " + e.message;
      e.time = static_cast<UnixMicros>(t) * kMicrosPerSecond;
      out.push_back(std::move(e));
    }
    return out;
  }
  void AppendLines(const std::vector<Expected>& lines) {
    std::ofstream out(dir_ + "/mail.log", std::ios::app);
    for (const auto& e : lines) out << e.line << "\n";
  }
  // A line that must not be forwarded (wrong facility and program).
  void AppendNoise() {
    std::ofstream out(dir_ + "/mail.log", std::ios::app);
    out << "<30>Jan  1 00:00:00 cron[1]: not mail\n";
  }

  std::string dir_;
};

// Index of every expected message in arrival order; duplicates (an rsyslog batch resent after a
// reconnect) are allowed, loss and reordering are not.
void ExpectAllInOrder(const std::vector<Arrived>& got, const std::vector<std::string>& expected) {
  std::size_t next = 0;
  for (const auto& a : got) {
    if (next < expected.size() && a.message == expected[next]) {
      ++next;
    } else {
      bool seen_before = false;
      for (std::size_t k = 0; k < next; ++k) seen_before = seen_before || expected[k] == a.message;
      EXPECT_TRUE(seen_before) << "out of order or unexpected: " << a.message;
    }
  }
  EXPECT_EQ(next, expected.size())
      << "missing from " << (next < expected.size() ? expected[next] : "");
}

TEST_F(RsyslogForwardTest, EveryLineArrivesInOrderWithProgramAndTime) {
  ParsingSink sink;
  ListenerThread listener(0, &sink);
  ASSERT_OK(listener.Start());
  Rsyslogd rsyslog(dir_, Snippet(listener.port()));
  const auto lines = MakeLines(0, 400);
  AppendNoise();
  AppendLines(lines);
  ASSERT_TRUE(sink.WaitFor([&](const auto& got) { return got.size() >= lines.size(); }))
      << "arrived " << sink.got().size() << " of " << lines.size() << "; rsyslogd says:\n"
      << rsyslog.output();
  const auto got = sink.got();
  EXPECT_TRUE(sink.malformed().empty());
  ASSERT_EQ(got.size(), lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(got[i].program, lines[i].program) << i;
    EXPECT_EQ(got[i].message, lines[i].message) << i;
    EXPECT_EQ(got[i].time, lines[i].time) << i << ": " << lines[i].line;
    EXPECT_EQ(got[i].facility, i % 4 == 3 ? 1 : 2) << i;
  }
  EXPECT_TRUE(rsyslog.running());
}

TEST_F(RsyslogForwardTest, QueueDeliversTheRestAfterTheListenerRestarts) {
  ParsingSink sink;
  auto listener = std::make_unique<ListenerThread>(0, &sink);
  ASSERT_OK(listener->Start());
  const std::uint16_t port = listener->port();
  Rsyslogd rsyslog(dir_, Snippet(port));

  const auto first = MakeLines(0, 100);
  AppendLines(first);
  ASSERT_TRUE(sink.WaitFor([&](const auto& got) { return got.size() >= first.size(); }))
      << rsyslog.output();

  // mxward goes away (restart, upgrade); logging goes on meanwhile.
  listener->Stop();
  listener.reset();
  const auto during = MakeLines(100, 300);
  AppendLines(during);

  // Come back only once rsyslog has found mxward gone (a refused reconnect): from here on
  // the lines wait in its queue.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (rsyslog.output().find("Connection refused") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);  // polling interval, not synchronisation
  }
  ASSERT_NE(rsyslog.output().find("Connection refused"), std::string::npos)
      << "rsyslog never noticed the listener was gone:\n"
      << rsyslog.output();
  EXPECT_LT(sink.got().size(), first.size() + during.size());

  listener = std::make_unique<ListenerThread>(port, &sink);
  Status st = listener->Start();
  ASSERT_OK(st);
  const auto after = MakeLines(300, 350);
  AppendLines(after);

  std::vector<std::string> expected;
  for (const auto* part : {&first, &during, &after}) {
    for (const auto& e : *part) expected.push_back(e.message);
  }
  ASSERT_TRUE(sink.WaitFor([&](const std::vector<Arrived>& got) {
    return !got.empty() && got.back().message == expected.back() && got.size() >= expected.size();
  })) << "arrived "
      << sink.got().size() << " of " << expected.size() << "; rsyslogd says:\n"
      << rsyslog.output();
  ExpectAllInOrder(sink.got(), expected);
}

// Issue 16, point 11: rsyslog stopped (restart, upgrade) while mxward is down printed one
// "cannot connect" line per queued message (1,805 to 2,692 for 2,000 lines, measured by hand with
// the old snippet); the shipped snippet saves its queue to disk at once instead, and the next
// start delivers every line.
TEST_F(RsyslogForwardTest, AStopWhileMxwardIsDownIsQuietAndKeepsTheQueue) {
  std::uint16_t port = 0;
  {
    ParsingSink unused;
    ListenerThread probe(0, &unused);  // a free port, closed again: nobody listens there
    ASSERT_OK(probe.Start());
    port = probe.port();
  }
  const auto lines = MakeLines(0, 2000);
  {
    Rsyslogd rsyslog(dir_, Snippet(port));
    AppendLines(lines);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (rsyslog.output().find("Connection refused") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);  // polling interval, not synchronisation
    }
    ASSERT_NE(rsyslog.output().find("Connection refused"), std::string::npos) << rsyslog.output();
  }  // SIGTERM, and rsyslogd has exited
  const std::string stopped_output = ReadTextFile(dir_ + "/rsyslogd.out");
  std::size_t refused = 0;
  for (std::size_t at = stopped_output.find("cannot connect"); at != std::string::npos;
       at = stopped_output.find("cannot connect", at + 1)) {
    ++refused;
  }
  // The old snippet printed one line per queued message (at least 1,805 of 2,000); the lines
  // counted here also include the retries rsyslog makes while it runs, before the stop, and
  // those grow with how slowly the machine lets the test reach SIGTERM (309 once under ASan on
  // two cores). Fewer than half the queue separates the two behaviours without timing.
  EXPECT_LT(refused, lines.size() / 2) << "rsyslog tried each queued line at its stop";

  ParsingSink sink;
  ListenerThread listener(port, &sink);
  ASSERT_OK(listener.Start());
  Rsyslogd again(dir_, Snippet(port));
  // Every line arrives; across an rsyslog restart the saved queue and the lines imfile had not
  // yet read may interleave, so this asks for all of them, not their order.
  ASSERT_TRUE(sink.WaitFor([&](const std::vector<Arrived>& got) {
    return got.size() >= lines.size();
  })) << "arrived "
      << sink.got().size() << " of " << lines.size() << "; rsyslogd says:\n"
      << again.output();
  std::set<std::string> arrived;
  for (const auto& a : sink.got()) arrived.insert(a.message);
  for (const auto& e : lines) EXPECT_EQ(arrived.count(e.message), 1u) << "lost: " << e.message;
  std::printf(
      "rsyslog stopped while mxward was down: %zu 'cannot connect' lines, %zu of %zu "
      "lines delivered after the restart\n",
      refused, arrived.size(), lines.size());
}

}  // namespace
}  // namespace mxward
