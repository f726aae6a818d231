// A real rsyslogd (Debian's, with rsyslog-gnutls and rsyslog-openssl) forwards a log file with
// the shipped TLS snippets (packaging/rsyslog/61-mxward-tls-{gtls,ossl}.conf) to a `tls` input
// of a SyslogListener in this process. Certificates come from a private CA the test makes
// (support/test_ca.h). For each driver:
//   - a client whose certificate is on allowed_peers: every line arrives, carrying the
//     certificate's name as its node;
//   - a certificate from the CA but not on the list, a self-signed one with an allowed name, an
//     expired one from the CA with an allowed name, and rsyslog speaking plain TCP: nothing
//     arrives and the refusal is counted (tls_handshake_failed; tls_peer_not_allowed for the
//     first).
// rsyslogd runs with its own config, pid file and work directory in a temp dir (no systemd).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "mxward/syslog_listener.h"
#include "support/eventually.h"
#include "support/recording_line_sink.h"
#include "support/rsyslogd.h"
#include "support/status_matchers.h"
#include "support/test_ca.h"

using mxward::testing::Eventually;

namespace mxward {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using testing::FindRsyslogd;
using testing::HaveRsyslogDriver;
using testing::ReadTextFile;
using testing::RecordingLineSink;
using testing::Rsyslogd;

class RsyslogTlsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_NE(FindRsyslogd(), nullptr) << "rsyslogd is not installed (apt-get install rsyslog)";
    ASSERT_TRUE(HaveRsyslogDriver(GetParam()))
        << "rsyslog's " << GetParam() << " driver is missing: apt-get install rsyslog-"
        << (GetParam() == "gtls" ? "gnutls" : "openssl") << " (packaging/install-deps.sh test)";
    char tmpl[] = "/tmp/mxward-rsyslog-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ca_ = std::make_unique<testing::TestCa>(dir_);
    ca_->Issue("server", {"mxward.example.net"});
    ca_->Issue("mx1", {"mx1.example.net"});
    ca_->Issue("stranger", {"mx9.other.example"});
    ca_->Issue("expired", {"mx1.example.net"}, -10, -1);
    ca_->SelfSigned("rogue", {"mx1.example.net"});
    std::ofstream(dir_ + "/mail.log").close();

    InputSpec s;
    s.type = InputType::kTls;
    s.host = "127.0.0.1";
    s.port = 0;
    s.name = "tls";
    s.tls.cert_file = ca_->path("server", "crt");
    s.tls.key_file = ca_->path("server", "key");
    s.tls.ca_file = ca_->path("ca", "crt");
    s.tls.allowed_peers = {"*.example.net"};
    s.tls.handshake_timeout_seconds = 5;
    listener_ = std::make_unique<SyslogListener>(io_, std::vector<InputSpec>{s}, &sink_);
    ASSERT_OK(listener_->Start());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (thread_.joinable()) {
      boost::asio::post(io_, [this] {
        listener_->Stop();
        io_.stop();
      });
      thread_.join();
    }
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
    if (HasFailure()) std::fprintf(stderr, "kept %s for inspection\n", dir_.c_str());
  }

  // The shipped snippet for this driver, pointed at the test's port and certificates.
  std::string Snippet(const std::string& client) {
    return testing::ShippedTlsSnippet(GetParam(), listener_->bound_port(0), ca_->path("ca", "crt"),
                                      ca_->path(client, "crt"), ca_->path(client, "key"));
  }

  void AppendLines(int n) {
    std::ofstream out(dir_ + "/mail.log", std::ios::app);
    for (int i = 0; i < n; ++i) {
      out << "<22>Feb 27 07:14:47 postfix/smtpd[" << 1000 + i << "]: seq=" << i
          << " warning: unknown[192.0.2.7]: SASL LOGIN authentication failed\n";
    }
  }

  const InputCounters& counters() { return listener_->counters(0); }

  // Each refused client: its handshake failure is counted, and no line of it arrives.
  void ExpectRefused(const std::string& config, bool not_allowed) {
    AppendLines(5);
    Rsyslogd rsyslogd(dir_, config);
    EXPECT_TRUE(Eventually([&] {
      return InputCounters::Get(counters().tls_handshake_failed) >= 1;
    })) << rsyslogd.output();
    EXPECT_EQ(InputCounters::Get(counters().tls_peer_not_allowed) >= 1, not_allowed);
    EXPECT_EQ(InputCounters::Get(counters().tls_authorised), 0u);
    EXPECT_EQ(InputCounters::Get(counters().messages), 0u);
    EXPECT_TRUE(sink_.lines().empty());
  }

  std::string dir_;
  std::unique_ptr<testing::TestCa> ca_;
  boost::asio::io_context io_;
  RecordingLineSink sink_;
  std::unique_ptr<SyslogListener> listener_;
  std::thread thread_;
};

TEST_P(RsyslogTlsTest, PermittedClientsLinesArriveWithItsIdentity) {
  AppendLines(50);
  Rsyslogd rsyslogd(dir_, Snippet("mx1"));
  ASSERT_TRUE(sink_.WaitForCount(50, 60s)) << rsyslogd.output();
  const auto got = sink_.lines();
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].node, "mx1.example.net") << got[i].line;
    EXPECT_NE(got[i].line.find("seq=" + std::to_string(i) + " "), std::string::npos) << got[i].line;
  }
  EXPECT_EQ(InputCounters::Get(counters().tls_authorised), 1u);
  EXPECT_EQ(InputCounters::Get(counters().tls_handshake_failed), 0u);
}

TEST_P(RsyslogTlsTest, ValidCertificateNotOnTheAllowListIsRefused) {
  ExpectRefused(Snippet("stranger"), /*not_allowed=*/true);
}

TEST_P(RsyslogTlsTest, SelfSignedCertificateIsRefused) {
  ExpectRefused(Snippet("rogue"), /*not_allowed=*/false);
}

TEST_P(RsyslogTlsTest, ExpiredCertificateIsRefused) {
  ExpectRefused(Snippet("expired"), /*not_allowed=*/false);
}

TEST_P(RsyslogTlsTest, PlainTcpClientIsRefused) {
  // The forwarding action of the plain snippet (60-mxward.conf), aimed at the tls port.
  const std::string plain = "action(type=\"omfwd\" target=\"127.0.0.1\" port=\"" +
                            std::to_string(listener_->bound_port(0)) +
                            "\" protocol=\"tcp\" TCP_Framing=\"octet-counted\" "
                            "template=\"RSYSLOG_SyslogProtocol23Format\")";
  ExpectRefused(plain, /*not_allowed=*/false);
}

INSTANTIATE_TEST_SUITE_P(Drivers, RsyslogTlsTest, ::testing::Values("gtls", "ossl"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace mxward
