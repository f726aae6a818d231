// MetricsServer over real loopback HTTP: a Beast client talks to the server on an ephemeral port.
#include "mxward/metrics_server.h"

#include <atomic>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "mxward/metrics_registry.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A server on 127.0.0.1:0 with its io_context on its own thread.
class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.DeclareStandardFamilies();
    auto h = registry_.AddAtomic(metric::kLines, {}, &lines_);
    ASSERT_OK(h);
    handle_ = std::move(h).value();
    MetricsServerOptions o;
    o.port = 0;
    o.max_connections = 4;
    server_ = std::make_unique<MetricsServer>(
        io_, &registry_,
        [this] {
          return healthy_.load() ? HealthReport{} : HealthReport{false, "outbox not draining"};
        },
        o);
    ASSERT_OK(server_->Start());
    ASSERT_NE(server_->port(), 0);
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    asio::post(io_, [this] { server_->Stop(); });
    work_.reset();
    thread_.join();
    server_.reset();
  }

  tcp::socket Connect() {
    tcp::socket s(client_io_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    return s;
  }

  http::response<http::string_body> Request(tcp::socket& s, http::verb verb, std::string target,
                                            bool keep_alive = true) {
    http::request<http::empty_body> req(verb, target, 11);
    req.set(http::field::host, "localhost");
    req.keep_alive(keep_alive);
    http::write(s, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.skip(verb == http::verb::head);  // HEAD: headers only, whatever Content-Length says
    http::read(s, buf, parser);
    return parser.release();
  }

  http::response<http::string_body> Get(std::string target) {
    tcp::socket s = Connect();
    return Request(s, http::verb::get, std::move(target), false);
  }

  MetricsRegistry registry_;
  std::atomic<std::uint64_t> lines_{0};
  MetricsRegistry::Handle handle_;
  std::atomic<bool> healthy_{true};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::unique_ptr<MetricsServer> server_;
  std::thread thread_;
  asio::io_context client_io_;
};

TEST_F(MetricsServerTest, MetricsServesPrometheusTextWithCurrentValues) {
  lines_.store(1234);
  auto res = Get("/metrics");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(res.body(),
              HasSubstr("# TYPE mxward_lines_total counter\nmxward_lines_total 1234\n"));
  lines_.store(1235);
  EXPECT_THAT(Get("/metrics?x=1").body(), HasSubstr("\nmxward_lines_total 1235\n"));
}

TEST_F(MetricsServerTest, HealthzFollowsTheCallback) {
  auto ok = Get("/healthz");
  EXPECT_EQ(ok.result(), http::status::ok);
  EXPECT_EQ(ok.body(), "ok\n");
  healthy_.store(false);
  auto bad = Get("/healthz");
  EXPECT_EQ(bad.result(), http::status::service_unavailable);
  EXPECT_EQ(bad.body(), "unhealthy: outbox not draining\n");
}

TEST_F(MetricsServerTest, UnknownPathIs404AndOtherMethodsAre405) {
  EXPECT_EQ(Get("/").result(), http::status::not_found);
  EXPECT_EQ(Get("/metrics/../etc/passwd").result(), http::status::not_found);
  tcp::socket s = Connect();
  auto res = Request(s, http::verb::post, "/metrics", false);
  EXPECT_EQ(res.result(), http::status::method_not_allowed);
  EXPECT_EQ(res[http::field::allow], "GET, HEAD");
}

TEST_F(MetricsServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  tcp::socket s = Connect();
  for (int i = 0; i < 3; ++i) {
    lines_.store(i);
    auto res = Request(s, http::verb::get, "/metrics");
    ASSERT_EQ(res.result(), http::status::ok);
    EXPECT_TRUE(res.keep_alive());
    EXPECT_THAT(res.body(), HasSubstr("\nmxward_lines_total " + std::to_string(i) + "\n"));
  }
  auto head = Request(s, http::verb::head, "/healthz");
  EXPECT_EQ(head.result(), http::status::ok);
  EXPECT_EQ(head[http::field::content_length], "3");
  EXPECT_TRUE(head.body().empty());
  // The connection still works after HEAD.
  EXPECT_EQ(Request(s, http::verb::get, "/healthz").body(), "ok\n");
}

// Reads until the server closes; returns what arrived.
std::string ReadToEof(tcp::socket& s) {
  std::string out;
  beast::error_code ec;
  char buf[4096];
  for (;;) {
    std::size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

TEST_F(MetricsServerTest, OversizedOrBodyCarryingRequestsAreClosedWithoutAnAnswer) {
  {
    tcp::socket s = Connect();
    std::string req =
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(16 * 1024, 'a') + "\r\n\r\n";
    beast::error_code ec;
    asio::write(s, asio::buffer(req), ec);  // the server may close before all of it is sent
    EXPECT_EQ(ReadToEof(s), "");
  }
  {
    tcp::socket s = Connect();
    std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    asio::write(s, asio::buffer(req));
    EXPECT_EQ(ReadToEof(s), "");
  }
  {
    tcp::socket s = Connect();
    asio::write(s, asio::buffer(std::string("\x16\x03\x01 not http at all\r\n\r\n")));
    EXPECT_EQ(ReadToEof(s), "");
  }
  // The server still answers.
  EXPECT_EQ(Get("/healthz").result(), http::status::ok);
}

TEST_F(MetricsServerTest, ConnectionsOverTheCapAreRefusedAndOthersStillServed) {
  std::vector<tcp::socket> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(Connect());
    // A full request/response proves the server counted this connection before the next one.
    ASSERT_EQ(Request(idle.back(), http::verb::get, "/healthz").result(), http::status::ok);
  }
  tcp::socket over = Connect();
  EXPECT_EQ(ReadToEof(over), "");  // closed at once
  idle.pop_back();                 // closing one makes room (the server sees EOF and closes)
  // Poll until the server has seen that close: a new connection gets an answer.
  bool served = false;
  for (int attempt = 0; attempt < 200 && !served; ++attempt) {
    tcp::socket s = Connect();
    http::request<http::empty_body> req(http::verb::get, "/healthz", 11);
    req.set(http::field::host, "localhost");
    req.keep_alive(false);
    beast::error_code ec;
    http::write(s, req, ec);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    if (!ec) http::read(s, buf, res, ec);
    served = !ec && res.result() == http::status::ok;
  }
  EXPECT_TRUE(served);
}

// One source address cannot take every slot: all of loopback counts as one peer, whichever
// 127/8 address a connection comes from, and the global cap is not what refuses it.
TEST(MetricsServerPeerTest, OnePeerIsHeldToItsShareOfTheConnections) {
  asio::io_context io;
  MetricsServerOptions o;
  o.port = 0;
  o.max_connections = 8;
  o.max_connections_per_peer = 2;
  MetricsServer server(io, nullptr, nullptr, o);
  ASSERT_OK(server.Start());
  auto work = asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  asio::io_context client_io;
  auto connect_from = [&](const char* source) {
    tcp::socket s(client_io);
    s.open(tcp::v4());
    s.bind(tcp::endpoint(asio::ip::make_address(source), 0));
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
    return s;
  };
  auto healthz = [](tcp::socket& s) {
    http::request<http::empty_body> req(http::verb::get, "/healthz", 11);
    req.set(http::field::host, "localhost");
    beast::error_code ec;
    http::write(s, req, ec);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    if (!ec) http::read(s, buf, res, ec);
    return ec ? http::status::unknown : res.result();
  };
  tcp::socket a = connect_from("127.0.0.1");
  tcp::socket b = connect_from("127.0.0.2");
  // An answer on each proves the server counted both before the next connection.
  ASSERT_EQ(healthz(a), http::status::ok);
  ASSERT_EQ(healthz(b), http::status::ok);
  tcp::socket c = connect_from("127.0.0.3");
  EXPECT_EQ(ReadToEof(c), "") << "a third loopback connection is over the per-peer cap";
  EXPECT_EQ(server.refused_peer_limit(), 1u);
  EXPECT_EQ(server.refused_over_cap(), 0u) << "2 of 8 were open: the global cap was not it";
  a.close();  // its slot comes back once the server has seen the close
  bool served = false;
  for (int attempt = 0; attempt < 200 && !served; ++attempt) {
    tcp::socket d = connect_from("127.0.0.1");
    served = healthz(d) == http::status::ok;
  }
  EXPECT_TRUE(served);
  asio::post(io, [&] { server.Stop(); });
  work.reset();
  thread.join();
}

TEST(MetricsServerStartTest, BusyPortIsAnErrorNamingTheAddress) {
  asio::io_context io;
  MetricsRegistry registry;
  MetricsServerOptions o;
  o.port = 0;
  MetricsServer first(io, &registry, nullptr, o);
  ASSERT_OK(first.Start());
  o.port = first.port();
  MetricsServer second(io, &registry, nullptr, o);
  Status s = second.Start();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("127.0.0.1:" + std::to_string(o.port)));
}

TEST(MetricsServerStartTest, DisabledServerDoesNotListen) {
  asio::io_context io;
  MetricsServerOptions o;
  o.enabled = false;
  MetricsServer server(io, nullptr, nullptr, o);
  EXPECT_OK(server.Start());
  EXPECT_EQ(server.port(), 0);
}

Config ConfigFrom(std::string_view toml_text) {
  Config c = Config::Defaults();
  c.source = "mxward.toml";
  c.document = toml::parse(toml_text, std::string_view("mxward.toml"));
  return c;
}

TEST(MetricsServerOptionsTest, DefaultsWithoutASection) {
  std::vector<Diagnostic> d;
  auto o = MetricsServerOptions::FromConfig(ConfigFrom(""), &d);
  ASSERT_OK(o);
  EXPECT_TRUE(o->enabled);
  EXPECT_EQ(o->address, "127.0.0.1");
  EXPECT_EQ(o->port, 9580);
}

TEST(MetricsServerOptionsTest, ReadsListenAndEnabled) {
  std::vector<Diagnostic> d;
  auto o = MetricsServerOptions::FromConfig(
      ConfigFrom("[metrics]\nenabled = false\nlisten = \"[::1]:9100\"\n"), &d);
  ASSERT_OK(o);
  EXPECT_FALSE(o->enabled);
  EXPECT_EQ(o->address, "::1");
  EXPECT_EQ(o->port, 9100);
}

TEST(MetricsServerOptionsTest, BadValuesAreLocatedDiagnostics) {
  std::vector<Diagnostic> d;
  auto o = MetricsServerOptions::FromConfig(
      ConfigFrom("[metrics]\nlisten = \"localhost:9580\"\nenabled = \"yes\"\nport = 1\n"), &d);
  EXPECT_FALSE(o.ok());
  ASSERT_EQ(d.size(), 3u);
  EXPECT_THAT(d[0].ToString(), StartsWith("mxward.toml:2:10: error: listen address"));
  EXPECT_THAT(d[1].ToString(), StartsWith("mxward.toml:3:11: error: 'enabled'"));
  EXPECT_THAT(d[2].ToString(), HasSubstr("unknown key 'port' in [metrics]"));
}

TEST(MetricsServerOptionsTest, ReadsTheLimits) {
  std::vector<Diagnostic> d;
  auto o = MetricsServerOptions::FromConfig(ConfigFrom(""), &d);
  ASSERT_OK(o);
  EXPECT_EQ(o->max_connections, 32);
  EXPECT_EQ(o->max_connections_per_peer, 8);
  EXPECT_EQ(o->request_timeout_seconds, 30);
  o = MetricsServerOptions::FromConfig(
      ConfigFrom("[metrics]\nmax_connections = 64\nmax_connections_per_peer = 16\n"
                 "request_timeout = \"10s\"\n"),
      &d);
  ASSERT_OK(o);
  EXPECT_EQ(o->max_connections, 64);
  EXPECT_EQ(o->max_connections_per_peer, 16);
  EXPECT_EQ(o->request_timeout_seconds, 10);
  d.clear();
  o = MetricsServerOptions::FromConfig(
      ConfigFrom("[metrics]\nmax_connections = 4\nmax_connections_per_peer = 5\n"
                 "request_timeout = \"0s\"\n"),
      &d);
  EXPECT_FALSE(o.ok());
  ASSERT_EQ(d.size(), 2u);
  EXPECT_THAT(d[0].ToString(), StartsWith("mxward.toml:3:28: error: 'max_connections_per_peer'"));
  EXPECT_THAT(d[1].ToString(), StartsWith("mxward.toml:4:"));
}

TEST(ParseListenAddressTest, AcceptsV4AndBracketedV6AndRejectsTheRest) {
  std::string a;
  std::uint16_t p = 0;
  ASSERT_TRUE(ParseListenAddress("0.0.0.0:80", &a, &p).ok());
  EXPECT_EQ(a, "0.0.0.0");
  EXPECT_EQ(p, 80);
  ASSERT_TRUE(ParseListenAddress("[2001:db8::1]:9580", &a, &p).ok());
  EXPECT_EQ(a, "2001:db8::1");
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "::1:9580", "[::1]9580",
                          "host:9580", "127.0.0.1:95a0", ""}) {
    EXPECT_FALSE(ParseListenAddress(bad, &a, &p).ok()) << bad;
  }
}

}  // namespace
}  // namespace mxward
