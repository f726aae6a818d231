// The policy servers over real sockets: the Postfix policy service on a unix socket and loopback
// TCP, the Dovecot policy endpoint over HTTP, each on an io_context thread of its own as in the
// daemon, driven by blocking clients. Hostile clients (floods, garbage, huge bodies, idle
// connections, too many connections) are refused without affecting the others.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "engine/policy/dovecot_policy_server.h"
#include "engine/policy/postfix_policy_server.h"
#include "support/eventually.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using ::testing::HasSubstr;

// A blocking client socket whose reads give up after 20 s, so a server that never answers fails
// the test instead of hanging it.
class Client {
 public:
  static Client Unix(const std::string& path) {
    Client c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) c.Close();
    return c;
  }
  static Client Tcp(std::uint16_t port) {
    Client c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) c.Close();
    return c;
  }
  Client(Client&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ~Client() { Close(); }

  bool connected() const { return fd_ >= 0; }
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads until `end` has arrived (returns everything up to and including it) or the peer
  // closes (returns what came, and closed() is then true).
  std::string ReadUntil(std::string_view end) {
    while (true) {
      if (auto at = buffer_.find(end); at != std::string::npos) {
        std::string out = buffer_.substr(0, at + end.size());
        buffer_.erase(0, at + end.size());
        return out;
      }
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        return std::exchange(buffer_, {});
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }
  bool closed() const { return closed_; }
  // Sends `bytes` one at a time, each after waiting up to `pace` for the server to close the
  // connection; true when it did (the wait is on the close, the pace is the attacker's).
  bool TrickleUntilClosed(std::string_view bytes, std::chrono::milliseconds pace) {
    for (char c : bytes) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(pace.count())) > 0) {
        char buf[64];
        if (::recv(fd_, buf, sizeof buf, 0) <= 0) return closed_ = true;
      }
      if (!Send(std::string_view(&c, 1))) return closed_ = true;
    }
    return false;
  }

 private:
  explicit Client(int fd) : fd_(fd) {
    timeval tv{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  std::string buffer_;
  bool closed_ = false;
};

std::string Request(const std::string& state, const std::string& client,
                    const std::string& user = "") {
  return "request=smtpd_access_policy\nprotocol_state=" + state + "\nclient_address=" + client +
         "\nsasl_username=" + user + "\ninstance=1.2.3\n\n";
}

constexpr const char* kReject = "action=REJECT 5.7.1 Access denied by policy\n\n";
constexpr const char* kDunno = "action=DUNNO\n\n";

class PolicyServersTest : public ::testing::Test {
 protected:
  PolicyServersTest() {
    dir_ = std::filesystem::temp_directory_path() /
           ("mxward-policy-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    IpPrefix banned;
    EXPECT_TRUE(IpPrefix::Parse("203.0.113.0/24", &banned));
    decisions_.Ban(banned, 0, "test");
  }
  ~PolicyServersTest() override {
    if (thread_.joinable()) StopIo();
    std::filesystem::remove_all(dir_);
  }

  void StartPostfix(int max_connections = 8, int idle_timeout_seconds = 600,
                    int request_timeout_seconds = 100) {
    PostfixPolicyServerOptions o;
    o.enabled = true;
    o.socket_path = (dir_ / "private" / "mxward-policy").string();
    o.address = "127.0.0.1";
    o.port = 0;
    o.max_connections = max_connections;
    o.idle_timeout_seconds = idle_timeout_seconds;
    o.request_timeout_seconds = request_timeout_seconds;
    postfix_server_ = std::make_unique<PostfixPolicyServer>(io_, o, &postfix_);
    ASSERT_OK(postfix_server_->Start());
    socket_path_ = o.socket_path;
    thread_ = std::thread([this] { io_.run(); });
  }

  void StartDovecot(const std::string& secret) {
    DovecotPolicyServerOptions o;
    o.enabled = true;
    o.port = 0;
    o.secret = secret;
    o.max_body_bytes = 4096;
    dovecot_server_ = std::make_unique<DovecotPolicyServer>(io_, o, &dovecot_);
    ASSERT_OK(dovecot_server_->Start());
    thread_ = std::thread([this] { io_.run(); });
  }

  // Stops the servers on their thread and joins it; the counters are then safe to read here.
  void StopIo() {
    asio::post(io_, [this] {
      if (postfix_server_) postfix_server_->Stop();
      if (dovecot_server_) dovecot_server_->Stop();
    });
    work_.reset();
    thread_.join();
  }

  http::response<http::string_body> Post(const std::string& target, const std::string& body,
                                         const std::string& header = "",
                                         const std::string& value = "") {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), dovecot_server_->port()));
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    if (!header.empty()) req.set(header, value);
    req.body() = body;
    req.prepare_payload();
    beast::error_code ec;
    http::write(stream, req, ec);  // a refused body may be cut short: read what came back
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res, ec);
    if (ec) res.result(http::status::unknown);  // no answer at all
    return res;
  }

  // Runs f on the servers' thread (where Reconfigure belongs) and returns what it returned.
  template <typename F>
  auto OnIo(F f) {
    std::promise<decltype(f())> done;
    asio::post(io_, [&] { done.set_value(f()); });
    return done.get_future().get();
  }

  std::filesystem::path dir_;
  std::string socket_path_;
  ManualClock clock_{1'795'000'000 * kMicrosPerSecond};
  DecisionTable decisions_;
  PostfixPolicy postfix_{&decisions_, nullptr, &clock_};
  DovecotPolicy dovecot_{&decisions_, nullptr, &clock_};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::unique_ptr<PostfixPolicyServer> postfix_server_;
  std::unique_ptr<DovecotPolicyServer> dovecot_server_;
  std::thread thread_;
};

TEST_F(PolicyServersTest, PostfixManyRequestsPerConnectionOnUnixAndTcp) {
  StartPostfix();
  Client unix_client = Client::Unix(socket_path_);
  ASSERT_TRUE(unix_client.connected());
  for (int i = 0; i < 1000; ++i) {
    const bool banned = i % 2 == 0;
    ASSERT_TRUE(unix_client.Send(Request("RCPT", banned ? "203.0.113.8" : "192.0.2.8")));
    ASSERT_EQ(unix_client.ReadUntil("\n\n"), banned ? kReject : kDunno) << i;
  }
  Client tcp_client = Client::Tcp(postfix_server_->port());
  ASSERT_TRUE(tcp_client.connected());
  // Two requests in one write, answered in order.
  ASSERT_TRUE(tcp_client.Send(Request("CONNECT", "203.0.113.9") + Request("MAIL", "192.0.2.9")));
  EXPECT_EQ(tcp_client.ReadUntil("\n\n"), kReject);
  EXPECT_EQ(tcp_client.ReadUntil("\n\n"), kDunno);
  StopIo();
  EXPECT_EQ(postfix_.counters().requests, 1002u);
  EXPECT_FALSE(std::filesystem::exists(socket_path_)) << "Stop removes the socket file";
}

TEST_F(PolicyServersTest, PostfixRequestSplitAcrossWritesIsAnsweredOnce) {
  StartPostfix();
  Client c = Client::Unix(socket_path_);
  const std::string req = Request("RCPT", "203.0.113.10");
  // Byte by byte: each send is its own segment; the answer comes only after the empty line.
  for (char ch : req) ASSERT_TRUE(c.Send(std::string_view(&ch, 1)));
  EXPECT_EQ(c.ReadUntil("\n\n"), kReject);
  ASSERT_TRUE(c.Send(Request("RCPT", "192.0.2.10")));
  EXPECT_EQ(c.ReadUntil("\n\n"), kDunno) << "no second answer to the split request";
}

TEST_F(PolicyServersTest, PostfixFloodsAndGarbageCloseOnlyTheirOwnConnection) {
  StartPostfix();
  Client good = Client::Unix(socket_path_);
  ASSERT_TRUE(good.Send(Request("RCPT", "192.0.2.11")));
  ASSERT_EQ(good.ReadUntil("\n\n"), kDunno);

  std::string flood = "request=smtpd_access_policy\n";
  for (int i = 0; i < 10'000; ++i) flood += "attr" + std::to_string(i) + "=x\n";
  Client flooder = Client::Unix(socket_path_);
  (void)flooder.Send(flood);  // the server may close before it has read everything
  EXPECT_EQ(flooder.ReadUntil("\n\n"), "");
  EXPECT_TRUE(flooder.closed());

  Client nul = Client::Tcp(postfix_server_->port());
  static constexpr char kNul[] = "request=smtpd_access_policy\nsender=a\0b\n\n";
  ASSERT_TRUE(nul.Send(std::string_view(kNul, sizeof kNul - 1)));
  EXPECT_EQ(nul.ReadUntil("\n\n"), "");
  EXPECT_TRUE(nul.closed());

  ASSERT_TRUE(good.Send(Request("RCPT", "203.0.113.11")));
  EXPECT_EQ(good.ReadUntil("\n\n"), kReject) << "the well-behaved connection is unaffected";
  StopIo();
  EXPECT_EQ(postfix_server_->counters().protocol_errors, 2u);
}

TEST_F(PolicyServersTest, PostfixIdleConnectionsAreClosedAndTheCapHolds) {
  StartPostfix(/*max_connections=*/2, /*idle_timeout_seconds=*/1);
  Client idle = Client::Unix(socket_path_);
  ASSERT_TRUE(idle.connected());
  // Nothing sent: the server closes it once idle_timeout has passed (the read sees EOF).
  EXPECT_EQ(idle.ReadUntil("\n\n"), "");
  EXPECT_TRUE(idle.closed());

  Client a = Client::Unix(socket_path_);
  Client b = Client::Unix(socket_path_);
  ASSERT_TRUE(a.Send(Request("RCPT", "192.0.2.12")));
  ASSERT_EQ(a.ReadUntil("\n\n"), kDunno);
  ASSERT_TRUE(b.Send(Request("RCPT", "192.0.2.12")));
  ASSERT_EQ(b.ReadUntil("\n\n"), kDunno);
  Client third = Client::Unix(socket_path_);
  (void)third.Send(Request("RCPT", "192.0.2.12"));
  EXPECT_EQ(third.ReadUntil("\n\n"), "") << "over max_connections: closed at accept";
  EXPECT_TRUE(third.closed());
  StopIo();
  EXPECT_GE(postfix_server_->counters().idle_closed, 1u);
  EXPECT_EQ(postfix_server_->counters().refused_connections, 1u);
}

TEST_F(PolicyServersTest, PostfixTricklingClientIsClosedAtTheRequestDeadline) {
  // Each byte comes well within idle_timeout, which used to restart on every read: a client
  // trickling a request held its slot for ever. The request deadline runs from its first byte.
  StartPostfix(/*max_connections=*/8, /*idle_timeout_seconds=*/5, /*request_timeout_seconds=*/1);
  Client slow = Client::Unix(socket_path_);
  ASSERT_TRUE(slow.connected());
  std::string endless;
  for (int i = 0; i < 100; ++i) endless += "x_attribute=" + std::to_string(i) + "\n";
  EXPECT_TRUE(slow.TrickleUntilClosed(endless, std::chrono::milliseconds(100)))
      << "still open after " << endless.size() << " bytes at 100 ms each";

  // Between requests the idle timeout still applies, not the request deadline: a Postfix that
  // sends a request and then waits longer than request_timeout keeps its connection.
  Client steady = Client::Unix(socket_path_);
  ASSERT_TRUE(steady.Send(Request("RCPT", "203.0.113.20")));
  ASSERT_EQ(steady.ReadUntil("\n\n"), kReject);
  EXPECT_FALSE(steady.TrickleUntilClosed("\n", std::chrono::milliseconds(2000)))
      << "closed while idle for less than idle_timeout";
  ASSERT_TRUE(steady.Send(Request("RCPT", "203.0.113.21")));
  EXPECT_EQ(steady.ReadUntil("\n\n"), kReject);
  StopIo();
  EXPECT_EQ(postfix_server_->counters().request_timeouts, 1u);
}

TEST_F(PolicyServersTest, PostfixClientThatNeverReadsItsAnswersIsClosedAtTheDeadline) {
  // Requests sent back to back and no answer ever read: once the socket's buffers are full the
  // server's write waits; the request deadline covers it, so the slot is freed.
  StartPostfix(/*max_connections=*/8, /*idle_timeout_seconds=*/600, /*request_timeout_seconds=*/1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path_.c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  const std::string request = Request("RCPT", "192.0.2.12");
  // Write until the socket takes no more (the server's answers are stuck, so it stops reading),
  // then again at each poll: once the server closes at the deadline a write fails with EPIPE or
  // ECONNRESET instead of EAGAIN.
  std::size_t sent = 0;
  auto write_until_refused = [&]() -> int {
    while (true) {
      const ssize_t n = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      if (n < 0) return errno;
      sent += static_cast<std::size_t>(n);
    }
  };
  EXPECT_TRUE(testing::Eventually([&] {
    const int err = write_until_refused();
    return err == EPIPE || err == ECONNRESET;
  })) << "still open after "
      << sent << " bytes of requests whose answers were never read";
  ::close(fd);
  StopIo();
  EXPECT_GE(postfix_server_->counters().request_timeouts, 1u);
}

TEST(PostfixPolicyServerOptionsTest, RequestTimeoutIsReadAndBounded) {
  auto config = [](std::string_view text) {
    Config c = Config::Defaults();
    c.source = "mxward.toml";
    c.document = toml::parse(text, std::string_view("mxward.toml"));
    return c;
  };
  std::vector<Diagnostic> d;
  auto o = PostfixPolicyServerOptions::FromConfig(config(""), &d);
  ASSERT_OK(o);
  EXPECT_EQ(o->request_timeout_seconds, 100);
  EXPECT_EQ(o->idle_timeout_seconds, 600);
  o = PostfixPolicyServerOptions::FromConfig(
      config("[policy.postfix]\nenabled = true\nsocket = \"/tmp/p\"\nrequest_timeout = \"20s\"\n"),
      &d);
  ASSERT_OK(o);
  EXPECT_EQ(o->request_timeout_seconds, 20);
  o = PostfixPolicyServerOptions::FromConfig(
      config("[policy.postfix]\nenabled = true\nsocket = \"/tmp/p\"\nrequest_timeout = \"2h\"\n"),
      &d);
  EXPECT_FALSE(o.ok());
  ASSERT_FALSE(d.empty());
  EXPECT_NE(d.back().ToString().find("mxward.toml:4:"), std::string::npos) << d.back().ToString();
}

TEST_F(PolicyServersTest, PostfixRefusesALiveSocketOfAnotherServer) {
  StartPostfix();
  PostfixPolicyServerOptions o;
  o.enabled = true;
  o.socket_path = socket_path_;
  PostfixPolicyServer second(io_, o, &postfix_);
  const Status st = second.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("in use"));
}

TEST_F(PolicyServersTest, DovecotAllowReportAndTheSecret) {
  StartDovecot("s3cret");
  const std::string banned = R"({"login":"a@example.org","remote":"203.0.113.20","pwhash":"x"})";
  const std::string fine = R"({"login":"a@example.org","remote":"192.0.2.20","pwhash":"x"})";

  auto res = Post("/?command=allow", banned);
  EXPECT_EQ(res.result(), http::status::unauthorized);
  res = Post("/?command=allow", banned, "X-API-Key", "wrong");
  EXPECT_EQ(res.result(), http::status::unauthorized);

  res = Post("/?command=allow", banned, "X-API-Key", "s3cret");
  ASSERT_EQ(res.result(), http::status::ok);
  auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["status"], -1);
  // HTTP Basic, as Dovecot sends it for http://user:password@host/: "user:password" is the
  // secret, base64 "dXNlcjpwdw==" is "user:pw".
  res = Post("/?command=allow", fine, "Authorization", "Basic dXNlcjpwdw==");
  EXPECT_EQ(res.result(), http::status::unauthorized);

  res = Post("/?command=allow", fine, "X-API-Key", "s3cret");
  ASSERT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(nlohmann::json::parse(res.body())["status"], 0);
  res =
      Post("/?command=report", R"({"remote":"192.0.2.20","success":true})", "X-API-Key", "s3cret");
  EXPECT_EQ(res.result(), http::status::ok);

  res = Post("/?command=allow", "{not json", "X-API-Key", "s3cret");
  EXPECT_EQ(res.result(), http::status::bad_request);
  EXPECT_THAT(res.body(), HasSubstr("not JSON"));
  res = Post("/?command=drop", fine, "X-API-Key", "s3cret");
  EXPECT_EQ(res.result(), http::status::bad_request);
  // Over max_body_bytes: 413, or, when the client's unread bytes made the close a reset, no
  // answer; never an answer from the policy.
  res = Post("/?command=allow", std::string(100'000, '{'), "X-API-Key", "s3cret");
  EXPECT_TRUE(res.result() == http::status::payload_too_large ||
              res.result() == http::status::unknown)
      << res.result_int();
  res = Post("/?command=allow", fine, "X-API-Key", "s3cret");
  EXPECT_EQ(res.result(), http::status::ok) << "the server still answers after a huge body";
  StopIo();
  EXPECT_EQ(dovecot_.counters().allow, 3u);
  EXPECT_EQ(dovecot_.counters().refused, 1u);
  EXPECT_EQ(dovecot_.counters().reports, 1u);
  EXPECT_EQ(dovecot_server_->counters().unauthorized, 3u);
}

TEST_F(PolicyServersTest, DovecotBasicAuthAndKeepAlive) {
  StartDovecot("user:pw");
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), dovecot_server_->port()));
  beast::flat_buffer buffer;
  for (int i = 0; i < 100; ++i) {
    http::request<http::string_body> req{http::verb::post, "/?command=allow", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Basic dXNlcjpwdw==");
    req.keep_alive(true);
    req.body() = i % 2 ? R"({"remote":"203.0.113.1"})" : R"({"remote":"192.0.2.1"})";
    req.prepare_payload();
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    ASSERT_EQ(res.result(), http::status::ok) << i;
    EXPECT_EQ(nlohmann::json::parse(res.body())["status"], i % 2 ? -1 : 0) << i;
  }
  StopIo();
  EXPECT_EQ(dovecot_server_->counters().connections, 1u) << "one connection kept alive";
}

TEST_F(PolicyServersTest, PostfixRefusesASocketPathTooLongForTheKernel) {
  PostfixPolicyServerOptions o;
  o.enabled = true;
  o.socket_path = (dir_ / std::string(120, 'p')).string();
  PostfixPolicyServer server(io_, o, &postfix_);
  const Status st = server.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("a socket path holds 1 to 107"));
}

// A TCP port nobody listens on now (bound by the kernel, then released).
std::uint16_t FreePort() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

TEST_F(PolicyServersTest, DovecotReconfigureRotatesTheSecretAndMovesThePort) {
  StartDovecot("old-secret");
  const std::string fine = R"({"login":"a@example.org","remote":"192.0.2.20"})";
  ASSERT_EQ(Post("/?command=allow", fine, "X-API-Key", "old-secret").result(), http::status::ok);
  const std::uint16_t first_port = dovecot_server_->port();

  // A rotated secret: the next request needs the new one; the port stays.
  DovecotPolicyServerOptions next = OnIo([&] { return dovecot_server_->options(); });
  next.secret = "new-secret";
  EXPECT_OK(OnIo([&] { return dovecot_server_->Reconfigure(next); }));
  EXPECT_EQ(Post("/?command=allow", fine, "X-API-Key", "old-secret").result(),
            http::status::unauthorized);
  EXPECT_EQ(Post("/?command=allow", fine, "X-API-Key", "new-secret").result(), http::status::ok);
  // Basic auth follows the secret too.
  EXPECT_EQ(Post("/?command=allow", fine, "Authorization", "Basic bmV3LXNlY3JldA==").result(),
            http::status::ok);
  EXPECT_EQ(dovecot_server_->port(), first_port);

  // A free port: the server moves there.
  next.port = FreePort();
  EXPECT_OK(OnIo([&] { return dovecot_server_->Reconfigure(next); }));
  EXPECT_EQ(dovecot_server_->port(), next.port);
  EXPECT_EQ(Post("/?command=allow", fine, "X-API-Key", "new-secret").result(), http::status::ok);
  EXPECT_FALSE(Client::Tcp(first_port).connected()) << "the old port still listens";

  // A port in use: refused, and the server is back where it was.
  const std::uint16_t moved_port = next.port;
  asio::io_context other;
  tcp::acceptor taken(other, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  next.port = taken.local_endpoint().port();
  const Status refused = OnIo([&] { return dovecot_server_->Reconfigure(next); });
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.message(), HasSubstr("cannot listen"));
  EXPECT_EQ(dovecot_server_->port(), moved_port);
  EXPECT_EQ(Post("/?command=allow", fine, "X-API-Key", "new-secret").result(), http::status::ok);
}

TEST_F(PolicyServersTest, PostfixReconfigureMovesTheSocket) {
  StartPostfix();
  Client kept = Client::Unix(socket_path_);
  ASSERT_TRUE(kept.connected());
  ASSERT_TRUE(kept.Send(Request("RCPT", "192.0.2.1")));
  EXPECT_EQ(kept.ReadUntil("\n\n"), kDunno);

  // New limits only: the open connection goes on.
  PostfixPolicyServerOptions next = OnIo([&] { return postfix_server_->options(); });
  next.max_connections = 16;
  EXPECT_OK(OnIo([&] { return postfix_server_->Reconfigure(next); }));
  ASSERT_TRUE(kept.Send(Request("RCPT", "203.0.113.9")));
  EXPECT_EQ(kept.ReadUntil("\n\n"), kReject);

  // A new socket path: the old file is gone, the new one answers.
  next.socket_path = (dir_ / "private" / "moved-policy").string();
  EXPECT_OK(OnIo([&] { return postfix_server_->Reconfigure(next); }));
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
  Client moved = Client::Unix(next.socket_path);
  ASSERT_TRUE(moved.connected());
  ASSERT_TRUE(moved.Send(Request("CONNECT", "203.0.113.9")));
  EXPECT_EQ(moved.ReadUntil("\n\n"), kReject);
}

}  // namespace
}  // namespace mxward
