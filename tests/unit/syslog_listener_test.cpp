#include "mxward/syslog_listener.h"
#include "support/eventually.h"
#include "support/recording_line_sink.h"
#include "support/status_matchers.h"

#include "mxward/metrics_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

using mxward::testing::Eventually;

namespace mxward {
namespace {

using namespace std::chrono_literals;

using testing::RecordingLineSink;

// A listener running on its own io thread.
class Harness {
 public:
  explicit Harness(std::vector<InputSpec> specs) : listener_(io_, std::move(specs), &sink_) {}
  ~Harness() { Shutdown(); }

  Status Start() {
    Status st = listener_.Start();
    if (st.ok()) thread_ = std::thread([this] { io_.run(); });
    return st;
  }
  void Shutdown() {
    if (!thread_.joinable()) {
      listener_.Stop();
      return;
    }
    sink_.SetBlocked(false);
    boost::asio::post(io_, [this] {
      listener_.Stop();
      io_.stop();
    });
    thread_.join();
  }
  SyslogListener& listener() { return listener_; }
  RecordingLineSink& sink() { return sink_; }

 private:
  boost::asio::io_context io_;
  RecordingLineSink sink_;
  SyslogListener listener_;
  std::thread thread_;
};

InputSpec Net(InputType type, const std::string& host = "127.0.0.1") {
  InputSpec s;
  s.type = type;
  s.host = host;
  s.port = 0;
  s.name = "test";
  return s;
}

std::string TempDir() {
  char tmpl[] = "/tmp/mxward-listener-XXXXXX";
  const char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "/tmp";
}

int Connect(int family, std::uint16_t port) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// True when the peer closed the connection (read returns 0 or an error).
bool PeerClosed(int fd) {
  char b;
  const ssize_t n = ::recv(fd, &b, 1, 0);  // blocks until data or close
  return n <= 0;
}

void SendUdp(int family, std::uint16_t port, std::string_view payload) {
  const int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  ::close(fd);
}

std::string OctetFrame(std::string_view msg) {
  return std::to_string(msg.size()) + " " + std::string(msg);
}

bool HaveIpv6Loopback() {
  const int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

TEST(SyslogListenerTest, UdpV4OneMessagePerDatagram) {
  Harness h({Net(InputType::kUdp)});
  ASSERT_OK(h.Start());
  const std::uint16_t port = h.listener().bound_port(0);
  ASSERT_NE(port, 0);
  SendUdp(AF_INET, port, "<13>Feb  7 07:14:47 h app: one\n");
  SendUdp(AF_INET, port, "<13>Feb  7 07:14:47 h app: two");
  std::string big = "<13>Feb  7 07:14:47 h app: ";
  big.append(60000 - big.size(), 'x');
  SendUdp(AF_INET, port, big);
  ASSERT_TRUE(h.sink().WaitForCount(3));
  auto lines = h.sink().lines();
  EXPECT_EQ(lines[0].line, "<13>Feb  7 07:14:47 h app: one");
  EXPECT_EQ(lines[1].line, "<13>Feb  7 07:14:47 h app: two");
  EXPECT_EQ(lines[2].line, big);
  EXPECT_EQ(lines[0].input, 0);
  const InputCounters& c = h.listener().counters(0);
  EXPECT_EQ(InputCounters::Get(c.messages), 3u);
  EXPECT_EQ(InputCounters::Get(c.dropped), 0u);
}

TEST(SyslogListenerTest, UdpEmptyDatagramIsCountedMalformed) {
  Harness h({Net(InputType::kUdp)});
  ASSERT_OK(h.Start());
  const std::uint16_t port = h.listener().bound_port(0);
  SendUdp(AF_INET, port, "");
  SendUdp(AF_INET, port, "\n");
  SendUdp(AF_INET, port, "after");
  ASSERT_TRUE(h.sink().WaitForCount(1));
  EXPECT_EQ(h.sink().lines()[0].line, "after");
  EXPECT_EQ(InputCounters::Get(h.listener().counters(0).malformed), 2u);
}

TEST(SyslogListenerTest, UdpAndTcpOnIpv6) {
  ASSERT_TRUE(HaveIpv6Loopback()) << "this test needs ::1";
  Harness h({Net(InputType::kUdp, "::1"), Net(InputType::kTcp, "::1")});
  ASSERT_OK(h.Start());
  SendUdp(AF_INET6, h.listener().bound_port(0), "v6 datagram");
  ASSERT_TRUE(h.sink().WaitForCount(1));
  const int fd = Connect(AF_INET6, h.listener().bound_port(1));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "v6 stream\n"));
  ASSERT_TRUE(h.sink().WaitForCount(2));
  ::close(fd);
  auto lines = h.sink().lines();
  EXPECT_EQ(lines[0].line, "v6 datagram");
  EXPECT_EQ(lines[0].input, 0);
  EXPECT_EQ(lines[1].line, "v6 stream");
  EXPECT_EQ(lines[1].input, 1);
  EXPECT_NE(h.listener().Describe().find("[::1]"), std::string::npos);
}

TEST(SyslogListenerTest, TcpOctetCountedSplitAnywhere) {
  Harness h({Net(InputType::kTcp)});
  ASSERT_OK(h.Start());
  const int fd = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_GE(fd, 0);
  std::string stream;
  std::vector<std::string> sent;
  for (int i = 0; i < 50; ++i) {
    // Protocol23Format ends messages with LF inside the frame; a message may contain LF too.
    std::string m = "<22>1 2025-02-27T07:14:47Z mail postfix/smtpd " + std::to_string(i) +
                    " - - line " + std::to_string(i) + (i % 7 == 0 ? " multi\nline" : "") + "\n";
    stream += OctetFrame(m);
    m.pop_back();
    sent.push_back(m);
  }
  // Byte by byte for the first part (every split point of header and body), then in bulk.
  for (std::size_t i = 0; i < 300; ++i) ASSERT_TRUE(SendAll(fd, stream.substr(i, 1)));
  ASSERT_TRUE(SendAll(fd, stream.substr(300)));
  ASSERT_TRUE(h.sink().WaitForCount(sent.size()));
  auto lines = h.sink().lines();
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(lines[i].line, sent[i]) << i;
  ::close(fd);
  const InputCounters& c = h.listener().counters(0);
  EXPECT_TRUE(Eventually([&] { return InputCounters::Get(c.open_connections) == 0; }));
  EXPECT_EQ(InputCounters::Get(c.connections), 1u);
  EXPECT_EQ(InputCounters::Get(c.closed_bad_framing), 0u);
}

TEST(SyslogListenerTest, TcpLineFramingLfNulCrlfAndLastLineWithoutTerminator) {
  Harness h({Net(InputType::kTcp)});
  ASSERT_OK(h.Start());
  const int fd = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, std::string("<13>a\n<13>b\r\n<13>c\0<13>d\n\n<13>e", 31)));
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(h.sink().WaitForCount(5));
  auto lines = h.sink().lines();
  EXPECT_EQ(lines[0].line, "<13>a");
  EXPECT_EQ(lines[1].line, "<13>b");
  EXPECT_EQ(lines[2].line, "<13>c");
  EXPECT_EQ(lines[3].line, "<13>d");
  EXPECT_EQ(lines[4].line, "<13>e");
  ::close(fd);
}

TEST(SyslogListenerTest, TcpLinesWithoutPriAreLineFramed) {
  Harness h({Net(InputType::kTcp)});
  ASSERT_OK(h.Start());
  const int fd = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_TRUE(SendAll(fd, "2025-02-27T07:14:47+00:00 h x: y\nFeb 27 07:14:47 h x: z\n"));
  ASSERT_TRUE(h.sink().WaitForCount(2));
  EXPECT_EQ(h.sink().lines()[0].line, "2025-02-27T07:14:47+00:00 h x: y");
  EXPECT_EQ(h.sink().lines()[1].line, "Feb 27 07:14:47 h x: z");
  ::close(fd);
  // A line that starts with a long number is not an octet count.
  const int fd2 = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_TRUE(SendAll(fd2, "12345678901 x\n"));
  ASSERT_TRUE(h.sink().WaitForCount(3));
  EXPECT_EQ(h.sink().lines()[2].line, "12345678901 x");
  ::close(fd2);
}

TEST(SyslogListenerTest, GarbageAndOversizeCloseOnlyThatConnection) {
  InputSpec spec = Net(InputType::kTcp);
  spec.max_message_size = 1024;
  Harness h({spec});
  ASSERT_OK(h.Start());
  const std::uint16_t port = h.listener().bound_port(0);
  const int good = Connect(AF_INET, port);
  ASSERT_TRUE(SendAll(good, OctetFrame("<13>before")));
  ASSERT_TRUE(h.sink().WaitForCount(1));

  const int tls = Connect(AF_INET, port);  // a TLS ClientHello on the plain port
  ASSERT_TRUE(SendAll(tls, std::string("\x16\x03\x01\x02\x00\x01", 6)));
  EXPECT_TRUE(PeerClosed(tls));
  ::close(tls);

  const int huge = Connect(AF_INET, port);
  ASSERT_TRUE(SendAll(huge, "999999 <13>x"));
  EXPECT_TRUE(PeerClosed(huge));
  ::close(huge);

  const int badcount = Connect(AF_INET, port);
  ASSERT_TRUE(SendAll(badcount, OctetFrame("<13>ok") + "12x <13>y"));
  EXPECT_TRUE(PeerClosed(badcount));
  ::close(badcount);

  const int longline = Connect(AF_INET, port);
  ASSERT_TRUE(SendAll(longline, "<13>" + std::string(4000, 'a')));
  EXPECT_TRUE(PeerClosed(longline));
  ::close(longline);

  ASSERT_TRUE(SendAll(good, OctetFrame("<13>after")));
  ASSERT_TRUE(h.sink().WaitForCount(3));
  auto lines = h.sink().lines();
  EXPECT_EQ(lines[0].line, "<13>before");
  EXPECT_EQ(lines[1].line, "<13>ok");
  EXPECT_EQ(lines[2].line, "<13>after");
  const InputCounters& c = h.listener().counters(0);
  EXPECT_EQ(InputCounters::Get(c.closed_bad_framing), 4u);
  EXPECT_EQ(InputCounters::Get(c.connections), 5u);
  ::close(good);
}

TEST(SyslogListenerTest, ManyConcurrentConnections) {
  Harness h({Net(InputType::kTcp)});
  ASSERT_OK(h.Start());
  const std::uint16_t port = h.listener().bound_port(0);
  constexpr int kConns = 20, kLines = 200;
  std::vector<std::thread> senders;
  for (int c = 0; c < kConns; ++c) {
    senders.emplace_back([port, c] {
      const int fd = Connect(AF_INET, port);
      std::string data;
      for (int i = 0; i < kLines; ++i) {
        const std::string m = "<13>conn" + std::to_string(c) + " " + std::to_string(i) + "\n";
        data += c % 2 ? OctetFrame(m) : m;
      }
      SendAll(fd, data);
      ::close(fd);
    });
  }
  for (auto& t : senders) t.join();
  ASSERT_TRUE(h.sink().WaitForCount(kConns * kLines));
  // Per connection, order is kept.
  std::vector<int> next(kConns, 0);
  for (const auto& r : h.sink().lines()) {
    const int c = std::atoi(r.line.c_str() + 8);
    const int i = std::atoi(r.line.c_str() + r.line.find(' ') + 1);
    EXPECT_EQ(i, next[c]++) << r.line;
  }
}

TEST(SyslogListenerTest, BackpressureStopsReadingInsteadOfBuffering) {
  Harness h({Net(InputType::kTcp)});
  ASSERT_OK(h.Start());
  h.sink().SetBlocked(true);  // the engine is stuck on the first line
  const int fd = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_GE(fd, 0);
  const std::string line = "<13>" + std::string(995, 'p') + "\n";  // 1000 bytes
  ASSERT_TRUE(SendAll(fd, line));
  ASSERT_TRUE(h.sink().WaitForCount(1));
  // Now write without blocking until the kernel refuses: we must not be reading meanwhile.
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  std::size_t written_lines = 1;
  std::size_t partial = 0;
  while (true) {
    const ssize_t n = ::send(fd, line.data() + partial, line.size() - partial, MSG_NOSIGNAL);
    if (n < 0) {
      ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
      break;
    }
    partial += static_cast<std::size_t>(n);
    if (partial == line.size()) {
      partial = 0;
      ++written_lines;
    }
    ASSERT_LT(written_lines, 1'000'000u) << "the listener buffers without bound";
  }
  EXPECT_EQ(h.sink().count(), 1u);  // nothing else was processed while blocked
  // Finish the partial line so every written line is complete, then release the engine.
  ::fcntl(fd, F_SETFL, 0);
  h.sink().SetBlocked(false);
  ASSERT_TRUE(SendAll(fd, std::string_view(line).substr(partial)));
  if (partial > 0) ++written_lines;
  ASSERT_TRUE(h.sink().WaitForCount(written_lines));
  EXPECT_EQ(h.sink().count(), written_lines);
  ::close(fd);
}

TEST(SyslogListenerTest, PortInUseIsAClearError) {
  Harness first({Net(InputType::kTcp)});
  ASSERT_OK(first.Start());
  InputSpec spec = Net(InputType::kTcp);
  spec.port = first.listener().bound_port(0);
  Harness second({spec});
  const Status st = second.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("tcp 127.0.0.1:" + std::to_string(spec.port)), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("in use"), std::string::npos) << st.message();
}

TEST(SyslogListenerTest, UnixDatagramAndStreamSockets) {
  const std::string dir = TempDir();
  InputSpec dgram;
  dgram.type = InputType::kUnixDgram;
  dgram.path = dir + "/log.sock";
  dgram.mode = 0660;
  InputSpec stream;
  stream.type = InputType::kUnixStream;
  stream.path = dir + "/stream.sock";
  stream.mode = 0600;
  // A stale socket file from a crashed run is replaced.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, stream.path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  Harness h({dgram, stream});
  ASSERT_TRUE(h.Start().ok()) << h.listener().Describe();
  struct stat st {};
  ASSERT_EQ(::stat(dgram.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(::stat(stream.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  // What glibc's syslog(3) sends to /dev/log.
  const int d = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, dgram.path.c_str());
  const std::string msg = "<38>Mar  1 10:00:00 sshd[99]: Accepted publickey";
  ASSERT_EQ(::sendto(d, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
            static_cast<ssize_t>(msg.size()));
  ::close(d);
  ASSERT_TRUE(h.sink().WaitForCount(1));

  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  std::strcpy(a.sun_path, stream.path.c_str());
  ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_TRUE(SendAll(s, OctetFrame("<13>over unix stream")));
  ASSERT_TRUE(h.sink().WaitForCount(2));
  ::close(s);
  auto lines = h.sink().lines();
  EXPECT_EQ(lines[0].line, msg);
  EXPECT_EQ(lines[0].input, 0);
  EXPECT_EQ(lines[1].line, "<13>over unix stream");
  EXPECT_EQ(lines[1].input, 1);

  // A second listener on a live socket path refuses to start.
  Harness second({dgram});
  const Status busy = second.Start();
  EXPECT_FALSE(busy.ok());
  EXPECT_NE(busy.message().find("in use"), std::string::npos) << busy.message();

  h.Shutdown();
  EXPECT_FALSE(std::filesystem::exists(dgram.path));
  EXPECT_FALSE(std::filesystem::exists(stream.path));
  std::filesystem::remove_all(dir);
}

TEST(SyslogListenerTest, NonSocketFileAtPathIsAnError) {
  const std::string dir = TempDir();
  InputSpec s;
  s.type = InputType::kUnixStream;
  s.path = dir + "/plain";
  {
    std::FILE* f = std::fopen(s.path.c_str(), "w");
    std::fclose(f);
  }
  Harness h({s});
  const Status st = h.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not a socket"), std::string::npos) << st.message();
  EXPECT_TRUE(std::filesystem::exists(s.path));  // never deleted
  std::filesystem::remove_all(dir);
}

TEST(SyslogListenerTest, FileInputFollowsThroughTheListener) {
  const std::string dir = TempDir();
  InputSpec f;
  f.type = InputType::kFile;
  f.path = dir + "/mail.log";
  f.state_file = dir + "/pos";
  f.start_at_end = false;
  {
    std::FILE* out = std::fopen(f.path.c_str(), "w");
    std::fputs("first\n", out);
    std::fclose(out);
  }
  Harness h({Net(InputType::kUdp), f});
  ASSERT_OK(h.Start());
  ASSERT_TRUE(h.sink().WaitForCount(1));
  EXPECT_EQ(h.sink().lines()[0].line, "first");
  EXPECT_EQ(h.sink().lines()[0].input, 1);
  h.Shutdown();
  std::filesystem::remove_all(dir);
}

// A socket bound to a given loopback source address (127.0.0.2 is as local as 127.0.0.1).
int BoundSocket(int type, const char* source) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

sockaddr_in Loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

TEST(SyslogListenerTest, AllowedSendersRefuseOthersDatagramsAndCountThem) {
  InputSpec spec = Net(InputType::kUdp);
  IpPrefix allowed;
  ASSERT_TRUE(IpPrefix::Parse("127.0.0.1", &allowed));
  spec.allowed_senders = {allowed};
  Harness h({spec});
  ASSERT_OK(h.Start());
  const sockaddr_in to = Loopback(h.listener().bound_port(0));
  const int stranger = BoundSocket(SOCK_DGRAM, "127.0.0.2");
  const int friendly = BoundSocket(SOCK_DGRAM, "127.0.0.1");
  ASSERT_GE(stranger, 0);
  ASSERT_GE(friendly, 0);
  const std::string forged = "<13>Feb  7 07:14:47 h app: forged";
  const std::string real = "<13>Feb  7 07:14:47 h app: real";
  ASSERT_GT(::sendto(stranger, forged.data(), forged.size(), 0,
                     reinterpret_cast<const sockaddr*>(&to), sizeof to),
            0);
  ASSERT_GT(::sendto(friendly, real.data(), real.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                     sizeof to),
            0);
  // The refused datagram was sent first and is counted before the listed one is delivered.
  ASSERT_TRUE(h.sink().WaitForCount(1));
  const InputCounters& c = h.listener().counters(0);
  EXPECT_TRUE(Eventually([&] { return InputCounters::Get(c.refused_sender) == 1; }));
  EXPECT_EQ(h.sink().lines().size(), 1u);
  EXPECT_EQ(h.sink().lines()[0].line, real);
  EXPECT_EQ(InputCounters::Get(c.messages), 1u);
  MetricsRegistry registry;
  registry.DeclareStandardFamilies();
  std::vector<MetricsRegistry::Handle> handles;
  h.listener().RegisterMetrics(&registry, &handles);
  EXPECT_NE(
      registry.Render().find("mxward_input_refused_total{input=\"test\",reason=\"sender\"} 1"),
      std::string::npos)
      << registry.Render();
  ::close(stranger);
  ::close(friendly);
}

TEST(SyslogListenerTest, AllowedSendersRefuseOthersConnectionsAndCountThem) {
  InputSpec spec = Net(InputType::kTcp);
  IpPrefix allowed;
  ASSERT_TRUE(IpPrefix::Parse("127.0.0.0/31", &allowed));  // 127.0.0.0 and 127.0.0.1
  spec.allowed_senders = {allowed};
  Harness h({spec});
  ASSERT_OK(h.Start());
  const sockaddr_in to = Loopback(h.listener().bound_port(0));
  const int stranger = BoundSocket(SOCK_STREAM, "127.0.0.2");
  ASSERT_GE(stranger, 0);
  ASSERT_EQ(::connect(stranger, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  SendAll(stranger, "<13>forged\n");  // may fail once the listener closed it
  EXPECT_TRUE(PeerClosed(stranger));
  ::close(stranger);
  const int friendly = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(::connect(friendly, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  ASSERT_TRUE(SendAll(friendly, "<13>real\n"));
  ASSERT_TRUE(h.sink().WaitForCount(1));
  ::close(friendly);
  const InputCounters& c = h.listener().counters(0);
  EXPECT_EQ(InputCounters::Get(c.refused_sender), 1u);
  EXPECT_EQ(InputCounters::Get(c.connections), 1u);  // the refused one never became a session
  ASSERT_EQ(h.sink().lines().size(), 1u);
  EXPECT_EQ(h.sink().lines()[0].line, "<13>real");
}

}  // namespace
}  // namespace mxward

namespace mxward {
namespace {

int ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// At max_connections the listener stops accepting instead of accepting and closing: the next
// sender's connection waits in the backlog and its line arrives once a slot frees. (Accepting
// and closing, as before, lost that line.)
TEST(SyslogListenerTest, AtMaxConnectionsNewConnectionsWaitAndLoseNothing) {
  InputSpec spec = Net(InputType::kTcp);
  spec.max_connections = 1;
  Harness h({spec});
  ASSERT_OK(h.Start());
  const std::uint16_t port = h.listener().bound_port(0);
  const int first = Connect(AF_INET, port);
  ASSERT_GE(first, 0);
  ASSERT_TRUE(SendAll(first, "<13>first\n"));
  ASSERT_TRUE(h.sink().WaitForCount(1));
  const InputCounters& c = h.listener().counters(0);
  ASSERT_TRUE(Eventually([&] { return InputCounters::Get(c.accept_paused) == 1; }));
  const int second = Connect(AF_INET, port);  // completes in the kernel's backlog
  ASSERT_GE(second, 0);
  ASSERT_TRUE(SendAll(second, "<13>second\n"));
  EXPECT_EQ(InputCounters::Get(c.connections), 1u);
  ::close(first);
  ASSERT_TRUE(h.sink().WaitForCount(2));
  EXPECT_EQ(h.sink().lines()[1].line, "<13>second");
  EXPECT_EQ(InputCounters::Get(c.connections), 2u);
  ::close(second);
}

// A message half-received when the listener stops is counted as dropped, not silently forgotten.
TEST(SyslogListenerTest, StopCountsAPartlyReceivedMessageAsDropped) {
  Harness h({Net(InputType::kTcp)});
  ASSERT_OK(h.Start());
  const int fd = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_GE(fd, 0);
  // One small send is one loopback segment, read at once: when "whole" is delivered, "half" is in
  // the connection's buffer.
  ASSERT_TRUE(SendAll(fd, "<13>whole\n<13>half"));
  ASSERT_TRUE(h.sink().WaitForCount(1));
  const InputCounters& c = h.listener().counters(0);
  h.Shutdown();
  EXPECT_EQ(InputCounters::Get(c.dropped), 1u);
  EXPECT_EQ(h.sink().lines().size(), 1u);
  ::close(fd);
}

// A slowloris: bytes that never complete a message keep no slot past idle_timeout. The partial
// line is delivered at the close, as when the peer closes.
TEST(SyslogListenerTest, IdleConnectionIsClosedAfterIdleTimeoutAndCounted) {
  InputSpec spec = Net(InputType::kTcp);
  spec.idle_timeout_seconds = 1;
  Harness h({spec});
  ASSERT_OK(h.Start());
  const int fd = Connect(AF_INET, h.listener().bound_port(0));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "<13>whole\n<13>never fini"));
  ASSERT_TRUE(h.sink().WaitForCount(1));
  EXPECT_TRUE(PeerClosed(fd));  // blocks until the listener closes it
  ::close(fd);
  const InputCounters& c = h.listener().counters(0);
  EXPECT_EQ(InputCounters::Get(c.closed_idle), 1u);
  ASSERT_TRUE(h.sink().WaitForCount(2));
  EXPECT_EQ(h.sink().lines()[1].line, "<13>never fini");
  EXPECT_TRUE(Eventually([&] { return InputCounters::Get(c.open_connections) == 0; }));
}

// Loopback is one peer for max_connections_per_peer, whichever 127/8 address a local user
// connects from: three connections from three loopback addresses, the third is closed and
// counted, and a slot freed is a slot again (rsyslog's one connection fits well under 32).
TEST(SyslogListenerTest, LoopbackIsOnePeerUnderThePerPeerCap) {
  InputSpec spec = Net(InputType::kTcp);
  spec.max_connections_per_peer = 2;
  Harness h({spec});
  ASSERT_OK(h.Start());
  const sockaddr_in to = Loopback(h.listener().bound_port(0));
  auto connect_from = [&](const char* source) {
    const int fd = BoundSocket(SOCK_STREAM, source);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  };
  const int a = connect_from("127.0.0.1");
  const int b = connect_from("127.0.0.2");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(SendAll(a, "<13>first\n"));
  ASSERT_TRUE(SendAll(b, "<13>second\n"));
  ASSERT_TRUE(h.sink().WaitForCount(2));  // both are sessions now
  const int c = connect_from("127.0.0.3");
  ASSERT_GE(c, 0);
  EXPECT_TRUE(PeerClosed(c)) << "a third loopback connection is over the cap";
  ::close(c);
  const InputCounters& counters = h.listener().counters(0);
  EXPECT_EQ(InputCounters::Get(counters.refused_peer_limit), 1u);
  ::close(a);
  EXPECT_TRUE(Eventually([&] { return InputCounters::Get(counters.open_connections) == 1; }));
  const int d = connect_from("127.0.0.1");
  ASSERT_GE(d, 0);
  ASSERT_TRUE(SendAll(d, "<13>third\n"));
  ASSERT_TRUE(h.sink().WaitForCount(3));
  EXPECT_EQ(InputCounters::Get(counters.refused_peer_limit), 1u);
  ::close(b);
  ::close(d);
  h.Shutdown();
}

// One uid cannot take every slot of a unix-stream input: its connection over
// max_connections_per_peer is closed at once and counted, and another uid still gets in.
TEST(SyslogListenerTest, UnixStreamCapsConnectionsPerUid) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  const std::string dir = TempDir();
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  InputSpec spec;
  spec.type = InputType::kUnixStream;
  spec.path = dir + "/log.sock";
  spec.mode = 0666;
  spec.name = "test";
  spec.max_connections_per_peer = 2;
  Harness h({spec});
  ASSERT_OK(h.Start());
  int report[2], done[2];  // child -> parent, parent -> child
  ASSERT_EQ(::pipe(report), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // As nobody: three connections, a line on each; report which the listener closed.
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    int fds[3];
    for (int i = 0; i < 3; ++i) {
      fds[i] = ConnectUnix(spec.path);
      if (fds[i] < 0) ::_exit(3);
    }
    for (int i = 0; i < 2; ++i) SendAll(fds[i], "<13>nobody " + std::to_string(i) + "\n");
    const char closed = PeerClosed(fds[2]) ? 'c' : 'o';
    (void)!::write(report[1], &closed, 1);
    char wait;
    (void)!::read(done[0], &wait, 1);  // until the parent has checked, keep the two open
    ::_exit(0);
  }
  char closed = 0;
  ASSERT_EQ(::read(report[0], &closed, 1), 1);
  EXPECT_EQ(closed, 'c');
  ASSERT_TRUE(h.sink().WaitForCount(2));
  const InputCounters& c = h.listener().counters(0);
  EXPECT_EQ(InputCounters::Get(c.refused_peer_limit), 1u);
  // Root (the exempt uid here) still gets in while nobody holds its two.
  const int root = ConnectUnix(spec.path);
  ASSERT_GE(root, 0);
  ASSERT_TRUE(SendAll(root, "<13>root\n"));
  ASSERT_TRUE(h.sink().WaitForCount(3));
  ::close(root);
  ASSERT_EQ(::write(done[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  for (int fd : {report[0], report[1], done[0], done[1]}) ::close(fd);
  h.Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mxward

namespace mxward {
namespace {

// Provenance on unix sockets: the kernel's word on who wrote. A child that setuid()s to nobody
// sends one datagram (SCM_CREDENTIALS, asked for with SO_PASSCRED) and one stream line
// (SO_PEERCRED at accept); both arrive with uid 65534 and the child's pid, and root's with 0.
// What the line itself says (an SD element naming another uid) is not the transport's word.
TEST(SyslogListenerTest, UnixSocketsReportTheWritersUidPerLine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to write as another uid (setuid)";
  const std::string dir = TempDir();
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  InputSpec dgram;
  dgram.type = InputType::kUnixDgram;
  dgram.path = dir + "/log.sock";
  dgram.mode = 0666;
  InputSpec stream;
  stream.type = InputType::kUnixStream;
  stream.path = dir + "/stream.sock";
  stream.mode = 0666;
  Harness h({dgram, stream});
  ASSERT_OK(h.Start());

  auto send_both = [&](const std::string& text) -> bool {
    const int d = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, dgram.path.c_str());
    const bool sent = ::sendto(d, text.data(), text.size(), 0, reinterpret_cast<sockaddr*>(&a),
                               sizeof a) == static_cast<ssize_t>(text.size());
    ::close(d);
    const int s = ConnectUnix(stream.path);
    if (s < 0) return false;
    const bool streamed = SendAll(s, text + "\n");
    ::close(s);
    return sent && streamed;
  };
  const std::string forged =
      "<22>1 2026-11-23T10:00:00Z mx1 postfix/smtpd 1 - [mxward@32473 uid=\"0\"] forged";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    ::_exit(send_both(forged) ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(h.sink().WaitForCount(2));
  ASSERT_TRUE(send_both("<22>root's line"));
  ASSERT_TRUE(h.sink().WaitForCount(4));

  auto lines = h.sink().lines();
  int from_nobody = 0, from_root = 0;
  for (const auto& l : lines) {
    EXPECT_EQ(l.transport, LineOrigin::Transport::kPeer) << l.line;
    if (l.line == forged) {
      ++from_nobody;
      EXPECT_EQ(l.uid, 65534u);
      EXPECT_EQ(l.pid, child);
    } else {
      ++from_root;
      EXPECT_EQ(l.uid, 0u);
      EXPECT_EQ(l.pid, ::getpid());
    }
  }
  EXPECT_EQ(from_nobody, 2);
  EXPECT_EQ(from_root, 2);
  h.Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mxward
