// Malformed syslog against the live listeners of the real `mxward serve` (own network namespace):
// oversized frames, broken octet counts, binary garbage, invalid UTF-8 and NULs over TCP (LF and
// octet-counted), UDP, and the Unix stream and datagram sockets. Each case checks that the input
// is counted in /metrics (mxward_input_malformed_total or mxward_lines_malformed_total), that a
// TCP or Unix stream connection whose framing is lost is closed by the daemon, and that a good
// line sent afterwards on a new connection still becomes an event. The daemon never dies.
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward::testing {
namespace {

using namespace std::string_literals;

constexpr int kPort = 5514;
constexpr int kMetricsPort = 9580;
constexpr std::size_t kMaxMessage = 4096;
const std::string kTcp = "tcp:127.0.0.1:5514";
const std::string kUdp = "udp:127.0.0.1:5514";

int ConnectUnix(const std::string& path, int type) {
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool WriteAll(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // the daemon may close while we write: that is allowed
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Waits until the peer closed fd (EOF or reset), reading and discarding anything it sends.
bool PeerClosed(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0) {
      char buf[4096];
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
    }
  }
  return false;
}

class MalformedFramesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    stream_sock_ = dir_.file("log.sock");
    dgram_sock_ = dir_.file("logd.sock");
    const std::string config = dir_.file("mxward.toml");
    std::ofstream(config) << "dry_run = true\n"
                          << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort
                          << "\"\nmax_message_size = " << kMaxMessage << "\n"
                          << "[[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:" << kPort << "\"\n"
                          << "[[input]]\ntype = \"unix-stream\"\nname = \"stream\"\npath = \""
                          << stream_sock_ << "\"\nmax_message_size = " << kMaxMessage << "\n"
                          << "[[input]]\ntype = \"unix-dgram\"\nname = \"dgram\"\npath = \""
                          << dgram_sock_ << "\"\n";
    ASSERT_TRUE(daemon_.Start(MXWARD_BINARY,
                              {"--db", dir_.file("state.db"), "--config", config, "--rules",
                               MXWARD_SOURCE_DIR "/rules.d", "--socket", dir_.file("c.sock")},
                              dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << daemon_.Log();
  }

  void TearDown() override {
    EXPECT_TRUE(daemon_.running()) << "the daemon died: " << daemon_.Log();
    EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
  }

  static std::string Metrics() { return HttpGet(kMetricsPort, "/metrics"); }
  static double Malformed(const std::string& input) {
    return MetricSample(Metrics(), "mxward_input_malformed_total{input=\"" + input + "\"}");
  }
  static double AuthFailures() {
    return MetricSample(Metrics(), "mxward_events_total{type=\"auth_failure\"}");
  }

  static std::string GoodLine(int n) {
    return "<22>" + SyslogStampNow() + " mx1 postfix/smtpd[4101]: warning: unknown[203.0.113." +
           std::to_string(n) + "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6";
  }

  // A good line on a fresh TCP connection is counted as an event: the listener still works.
  void ExpectGoodLineStillBecomesAnEvent() {
    const double before = AuthFailures();
    ASSERT_GE(before, 0) << Metrics();
    ASSERT_TRUE(SendTcp(kPort, GoodLine(++good_) + "\n"));
    EXPECT_TRUE(daemon_.WaitFor([&] { return AuthFailures() >= before + 1; }))
        << Metrics() << daemon_.Log();
  }

  // Sends payload on a new TCP connection and expects the daemon to close it and count it.
  void ExpectTcpClosedAndCounted(const std::string& payload) {
    const double before = Malformed(kTcp);
    ASSERT_GE(before, 0);
    int fd = ConnectLoopbackTcp(kPort);
    ASSERT_GE(fd, 0);
    WriteAll(fd, payload);
    EXPECT_TRUE(PeerClosed(fd)) << "connection left open after lost framing";
    close(fd);
    EXPECT_TRUE(daemon_.WaitFor([&] { return Malformed(kTcp) >= before + 1; })) << Metrics();
    ExpectGoodLineStillBecomesAnEvent();
  }

  TempDir dir_;
  ServeProcess daemon_;
  std::string stream_sock_, dgram_sock_;
  int good_ = 0;
};

TEST_F(MalformedFramesTest, TcpBinaryGarbageClosesTheConnection) {
  // A TLS ClientHello where syslog was expected.
  ExpectTcpClosedAndCounted("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"s);
  ExpectTcpClosedAndCounted("\x80\x81\xfe\xff\x00\x00"s);
}

TEST_F(MalformedFramesTest, TcpBrokenOctetCountsCloseTheConnection) {
  // Ten digits, the longest count: 9.9 GB, far over max_message_size. (Eleven digits are not a
  // count at all but the start of a line, docs/ingest.md; TcpInvalidUtf8AndNulsInsideLines.)
  ExpectTcpClosedAndCounted("9999999999 <13>x");
  // A count larger than max_message_size.
  ExpectTcpClosedAndCounted(std::to_string(kMaxMessage + 1) + " " +
                            std::string(kMaxMessage + 1, 'a'));
  // A good frame, then a frame whose count is not a number.
  const std::string good = GoodLine(200);
  ExpectTcpClosedAndCounted(std::to_string(good.size()) + " " + good + "12x4 <13>x");
  // A count of zero.
  ExpectTcpClosedAndCounted(std::to_string(good.size()) + " " + good + "0 ");
}

TEST_F(MalformedFramesTest, TcpOversizedLineClosesTheConnection) {
  ExpectTcpClosedAndCounted("<13>" + std::string(kMaxMessage * 4, 'A'));
  ExpectTcpClosedAndCounted("<13>" + std::string(1 << 20, 'B') + "\n");
}

// Invalid UTF-8, control bytes and NULs inside LF-framed lines: framing is intact, so the
// connection stays usable; the lines that are not syslog are counted as malformed lines, and the
// good line after them on the same connection is an event.
TEST_F(MalformedFramesTest, TcpInvalidUtf8AndNulsInsideLines) {
  const double before_lines = MetricSample(Metrics(), "mxward_lines_malformed_total");
  const double before_events = AuthFailures();
  ASSERT_GE(before_lines, 0);
  std::string data;
  data += "<22>" + SyslogStampNow() + " mx1 postfix/smtpd[1]: \xff\xfe\xc0\xaf\x1b[2J\n";
  data += "\x01\x02\x03 not syslog\n"s;
  data += "<999>garbage priority\n";
  data += "<22>\0\0\0\n"s;  // NUL terminates a line: three empty ones
  data += "99999999999 <13>eleven digits are a line, not an octet count\n";
  data += GoodLine(201) + "\n";
  ASSERT_TRUE(SendTcp(kPort, data));
  EXPECT_TRUE(daemon_.WaitFor([&] { return AuthFailures() >= before_events + 1; }))
      << Metrics() << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitFor([&] {
    return MetricSample(Metrics(), "mxward_lines_malformed_total") + Malformed(kTcp) >=
           before_lines + 2;
  })) << Metrics();
  ExpectGoodLineStillBecomesAnEvent();
}

TEST_F(MalformedFramesTest, UdpGarbageEmptyAndMaximalDatagrams) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(kPort);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  auto send_dgram = [&](const std::string& d) {
    return sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) ==
           static_cast<ssize_t>(d.size());
  };
  const double before = Malformed(kUdp);
  const double before_lines = MetricSample(Metrics(), "mxward_lines_malformed_total");
  ASSERT_GE(before, 0);
  EXPECT_TRUE(send_dgram(""));       // empty: counted malformed by the input
  EXPECT_TRUE(send_dgram("\n\0"s));  // framing only: empty after stripping
  EXPECT_TRUE(send_dgram("\x16\x03\x01\x00\xff\xfe\x00\x00 binary"s));
  EXPECT_TRUE(send_dgram("<13>" + std::string(65000, '\xff')));  // large, invalid UTF-8
  EXPECT_TRUE(send_dgram("99999999999 <13>octet count in a datagram"));
  EXPECT_TRUE(daemon_.WaitFor([&] { return Malformed(kUdp) >= before + 2; })) << Metrics();
  const double events = AuthFailures();
  EXPECT_TRUE(send_dgram(GoodLine(202)));
  EXPECT_TRUE(daemon_.WaitFor([&] { return AuthFailures() >= events + 1; })) << Metrics();
  EXPECT_GE(MetricSample(Metrics(), "mxward_lines_malformed_total"), before_lines);
  close(fd);
  ExpectGoodLineStillBecomesAnEvent();
}

TEST_F(MalformedFramesTest, UnixStreamGarbageClosesTheConnection) {
  for (const std::string& payload :
       {"\x16\x03\x01\x02\x00garbage"s, "9999999999 <13>x"s, std::string(kMaxMessage * 2, 'C')}) {
    const double before = Malformed("stream");
    ASSERT_GE(before, 0) << Metrics();
    int fd = ConnectUnix(stream_sock_, SOCK_STREAM);
    ASSERT_GE(fd, 0);
    WriteAll(fd, payload);
    EXPECT_TRUE(PeerClosed(fd));
    close(fd);
    EXPECT_TRUE(daemon_.WaitFor([&] { return Malformed("stream") >= before + 1; })) << Metrics();
  }
  const double events = AuthFailures();
  int fd = ConnectUnix(stream_sock_, SOCK_STREAM);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, GoodLine(203) + "\n"));
  close(fd);
  EXPECT_TRUE(daemon_.WaitFor([&] { return AuthFailures() >= events + 1; })) << Metrics();
}

TEST_F(MalformedFramesTest, UnixDatagramGarbage) {
  int fd = ConnectUnix(dgram_sock_, SOCK_DGRAM);
  ASSERT_GE(fd, 0);
  const double before = Malformed("dgram");
  ASSERT_GE(before, 0) << Metrics();
  EXPECT_EQ(send(fd, "", 0, 0), 0);
  const std::string junk = "\xff\xfe\x00\x01\x02"s;
  EXPECT_EQ(send(fd, junk.data(), junk.size(), 0), static_cast<ssize_t>(junk.size()));
  EXPECT_TRUE(daemon_.WaitFor([&] { return Malformed("dgram") >= before + 1; })) << Metrics();
  const double events = AuthFailures();
  const std::string good = GoodLine(204);
  EXPECT_EQ(send(fd, good.data(), good.size(), 0), static_cast<ssize_t>(good.size()));
  EXPECT_TRUE(daemon_.WaitFor([&] { return AuthFailures() >= events + 1; })) << Metrics();
  close(fd);
}

// Many connections that each lose framing, interleaved with good lines: nothing accumulates, the
// daemon stays up, and every good line is an event.
TEST_F(MalformedFramesTest, ManyBadConnectionsDoNotHurtGoodOnes) {
  const double events = AuthFailures();
  const double before = Malformed(kTcp);
  constexpr int kRounds = 200;
  for (int i = 0; i < kRounds; ++i) {
    int fd = ConnectLoopbackTcp(kPort);
    ASSERT_GE(fd, 0);
    WriteAll(fd, i % 2 ? "\x16\x03\x01garbage"s : "1234567890 x"s);
    close(fd);
    ASSERT_TRUE(SendTcp(kPort, GoodLine(i % 250) + "\n"));
  }
  EXPECT_TRUE(daemon_.WaitFor([&] { return AuthFailures() >= events + kRounds; })) << Metrics();
  EXPECT_TRUE(daemon_.WaitFor([&] { return Malformed(kTcp) >= before + kRounds; })) << Metrics();
  EXPECT_TRUE(daemon_.WaitFor([&] {
    return MetricSample(Metrics(), "mxward_input_connections{input=\"tcp:127.0.0.1:5514\"}") == 0;
  })) << "connections left open: "
      << Metrics();
}

}  // namespace
}  // namespace mxward::testing
