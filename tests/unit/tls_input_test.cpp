// The tls input with an in-process OpenSSL client (rsyslog as the client is in
// tests/integration/rsyslog_tls_test.cpp): a pinned fingerprint admits a certificate whose name
// is not listed, SIGHUP's ReloadCredentials makes new connections use new files (and keeps the
// old ones when the new files are broken), and a slow engine pushes back on a TLS sender exactly
// as on plain TCP.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "mxward/syslog_listener.h"
#include "support/eventually.h"
#include "support/recording_line_sink.h"
#include "support/status_matchers.h"
#include "support/test_ca.h"

using mxward::testing::Eventually;

namespace mxward {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using testing::RecordingLineSink;

// A TLS client connection (blocking unless made non-blocking), verifying the server by the CA.
class Client {
 public:
  Client(std::uint16_t port, const testing::TestCa& ca, const std::string& cert) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, ca.path("ca", "crt").c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_use_certificate_file(ctx_, ca.path(cert, "crt").c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx_, ca.path(cert, "key").c_str(), SSL_FILETYPE_PEM);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    connected_ = SSL_connect(ssl_) == 1;
    // TLS 1.3: the server's verdict on our certificate arrives after SSL_connect returns; a
    // read makes it visible (a refused client gets an alert or EOF, a good one no data).
  }
  ~Client() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool connected() const { return connected_; }
  std::string ServerName() {
    X509* c = SSL_get1_peer_certificate(ssl_);
    if (c == nullptr) return {};
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn);
    X509_free(c);
    return cn;
  }
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  SSL* ssl() { return ssl_; }
  int fd() const { return fd_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
};

std::string Octet(std::string_view m) { return std::to_string(m.size()) + " " + std::string(m); }

class TlsInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxward-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ca_ = std::make_unique<testing::TestCa>(dir_);
    ca_->Issue("server", {"mxward.example.net"});
    ca_->Issue("server2", {"mxward2.example.net"});
    ca_->Issue("mx1", {"mx1.example.net"});
    ca_->Issue("pinned", {"unlisted.example.org"});
    ca_->Issue("stranger", {"stranger.example.org"});
    fs::copy_file(ca_->path("server", "crt"), dir_ + "/live.crt");
    fs::copy_file(ca_->path("server", "key"), dir_ + "/live.key");
  }
  void TearDown() override {
    if (thread_.joinable()) {
      sink_.SetBlocked(false);
      boost::asio::post(io_, [this] {
        listener_->Stop();
        io_.stop();
      });
      thread_.join();
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }
  void Start() {
    InputSpec s;
    s.type = InputType::kTls;
    s.host = "127.0.0.1";
    s.port = 0;
    s.name = "tls";
    s.tls.cert_file = dir_ + "/live.crt";
    s.tls.key_file = dir_ + "/live.key";
    s.tls.ca_file = ca_->path("ca", "crt");
    s.tls.allowed_peers = {"mx1.example.net"};
    s.tls.allowed_fingerprints = {ca_->Fingerprint("pinned")};
    listener_ = std::make_unique<SyslogListener>(io_, std::vector<InputSpec>{s}, &sink_);
    ASSERT_OK(listener_->Start());
    thread_ = std::thread([this] { io_.run(); });
  }
  Status Reload() {
    std::promise<Status> done;
    boost::asio::post(io_, [&] { done.set_value(listener_->ReloadCredentials()); });
    return done.get_future().get();
  }
  std::uint16_t port() { return listener_->bound_port(0); }
  const InputCounters& counters() { return listener_->counters(0); }

  std::string dir_;
  std::unique_ptr<testing::TestCa> ca_;
  boost::asio::io_context io_;
  RecordingLineSink sink_;
  std::unique_ptr<SyslogListener> listener_;
  std::thread thread_;
};

TEST_F(TlsInputTest, ListedNameAndPinnedFingerprintAreAdmittedWithTheirIdentity) {
  Start();
  Client named(port(), *ca_, "mx1");
  ASSERT_TRUE(named.connected());
  ASSERT_TRUE(named.Send(Octet("<13>Feb  7 07:14:47 forged-host app: one")));
  ASSERT_TRUE(sink_.WaitForCount(1));
  Client pinned(port(), *ca_, "pinned");
  ASSERT_TRUE(pinned.connected());
  ASSERT_TRUE(pinned.Send(Octet("<13>Feb  7 07:14:47 h app: two\n")));
  ASSERT_TRUE(sink_.WaitForCount(2));
  const auto lines = sink_.lines();
  EXPECT_EQ(lines[0].line, "<13>Feb  7 07:14:47 forged-host app: one");
  EXPECT_EQ(lines[0].node, "mx1.example.net");  // the certificate's name, not the line's
  EXPECT_EQ(lines[1].line, "<13>Feb  7 07:14:47 h app: two");
  EXPECT_EQ(lines[1].node, "sha256:" + ca_->Fingerprint("pinned").substr(0, 16));
  EXPECT_EQ(InputCounters::Get(counters().tls_authorised), 2u);

  // A valid certificate neither named nor pinned: the handshake fails, nothing is read.
  Client stranger(port(), *ca_, "stranger");
  char b;
  if (stranger.connected()) {
    EXPECT_LE(SSL_read(stranger.ssl(), &b, 1), 0);
  }
  // The alert reaches the client before the server's handler has counted: wait for the count.
  EXPECT_TRUE(Eventually([&] { return InputCounters::Get(counters().tls_handshake_failed) == 1; }));
  EXPECT_EQ(InputCounters::Get(counters().tls_peer_not_allowed), 1u);
  EXPECT_EQ(sink_.lines().size(), 2u);
}

TEST_F(TlsInputTest, ReloadUsesNewFilesForNewConnectionsAndKeepsOldOnesWhenBroken) {
  Start();
  {
    Client before(port(), *ca_, "mx1");
    ASSERT_TRUE(before.connected());
    EXPECT_EQ(before.ServerName(), "mxward.example.net");
  }
  fs::copy_file(ca_->path("server2", "crt"), dir_ + "/live.crt",
                fs::copy_options::overwrite_existing);
  fs::copy_file(ca_->path("server2", "key"), dir_ + "/live.key",
                fs::copy_options::overwrite_existing);
  ASSERT_TRUE(Reload().ok());
  {
    Client after(port(), *ca_, "mx1");
    ASSERT_TRUE(after.connected());
    EXPECT_EQ(after.ServerName(), "mxward2.example.net");
  }
  // A key that does not belong to the certificate: refused, the running credentials stay.
  fs::copy_file(ca_->path("server", "key"), dir_ + "/live.key",
                fs::copy_options::overwrite_existing);
  const Status st = Reload();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("key_file"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("mismatch"), std::string::npos) << st.message();
  Client still(port(), *ca_, "mx1");
  ASSERT_TRUE(still.connected());
  EXPECT_EQ(still.ServerName(), "mxward2.example.net");
}

TEST_F(TlsInputTest, SlowEngineStopsReadingInsteadOfBuffering) {
  Start();
  sink_.SetBlocked(true);  // the engine is stuck on the first line
  Client c(port(), *ca_, "mx1");
  ASSERT_TRUE(c.connected());
  const std::string frame = Octet("<13>" + std::string(995, 'p'));
  ASSERT_TRUE(c.Send(frame));
  ASSERT_TRUE(sink_.WaitForCount(1));
  // Write without blocking until TLS and the kernel refuse: mxward must not be reading.
  ::fcntl(c.fd(), F_SETFL, O_NONBLOCK);
  std::size_t written = 1;
  std::size_t partial = 0;
  while (true) {
    const int n =
        SSL_write(c.ssl(), frame.data() + partial, static_cast<int>(frame.size() - partial));
    if (n <= 0) {
      ASSERT_EQ(SSL_get_error(c.ssl(), n), SSL_ERROR_WANT_WRITE);
      break;
    }
    partial += static_cast<std::size_t>(n);
    if (partial == frame.size()) {
      partial = 0;
      ++written;
    }
    ASSERT_LT(written, 1'000'000u) << "the tls input buffers without bound";
  }
  EXPECT_EQ(sink_.lines().size(), 1u);  // nothing else was processed while blocked
  EXPECT_LE(InputCounters::Get(counters().buffer_bytes), 64u * 1024 + 32);
  // Release the engine and finish the frame SSL_write was retrying (same buffer, same length).
  sink_.SetBlocked(false);
  ::fcntl(c.fd(), F_SETFL, 0);
  // Without SSL_MODE_ENABLE_PARTIAL_WRITE a frame is written whole or retried whole.
  ASSERT_EQ(partial, 0u);
  ASSERT_EQ(SSL_write(c.ssl(), frame.data(), static_cast<int>(frame.size())),
            static_cast<int>(frame.size()));
  ++written;
  ASSERT_TRUE(sink_.WaitForCount(written));
  EXPECT_EQ(sink_.lines().size(), written);
}

}  // namespace
}  // namespace mxward
