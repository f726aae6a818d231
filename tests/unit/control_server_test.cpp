// ControlServer, CallControl and ExecuteControlRequest: the daemon's control socket.
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>

#include "mxward/control_protocol.h"
#include "support/eventually.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::Eventually;
using testing::TempDir;

constexpr UnixMicros kNow = 1'800'000'000LL * kMicrosPerSecond;

// A server on its own io_context thread, answering with ExecuteControlRequest over a store.
class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
    options_.socket_path = dir_.file("control.sock");
  }
  void TearDown() override { StopServer(); }

  void StartServer() {
    server_ = std::make_unique<ControlServer>(io_, options_, [this](const nlohmann::json& req) {
      std::lock_guard lock(mu_);
      ++handled_;
      return ExecuteControlRequest(store_.get(), req, kNow);
    });
    ASSERT_OK(server_->Start());
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  void StopServer() {
    if (!server_) return;
    boost::asio::post(io_, [this] { server_->Stop(); });
    work_.reset();
    thread_.join();
    server_.reset();
  }
  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
  ControlServerOptions options_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<ControlServer> server_;
  std::thread thread_;
  std::mutex mu_;
  int handled_ = 0;
};

// Sends raw bytes on one connection and reads n response lines.
std::vector<std::string> RawExchange(const std::string& path, const std::string& bytes, int n) {
  std::vector<std::string> lines;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return lines;
  }
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t w = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (w <= 0) break;
    sent += static_cast<std::size_t>(w);
  }
  std::string in;
  char buf[4096];
  while (static_cast<int>(lines.size()) < n) {
    auto nl = in.find('\n');
    if (nl != std::string::npos) {
      lines.push_back(in.substr(0, nl));
      in.erase(0, nl + 1);
      continue;
    }
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    in.append(buf, static_cast<std::size_t>(r));
  }
  close(fd);
  return lines;
}

TEST_F(ControlServerTest, PingRoundTripAndSocketIsGroupOnly) {
  StartServer();
  auto r = CallControl(options_.socket_path, {{"op", "ping"}});
  ASSERT_OK(r);
  auto result = ControlResult(*r);
  ASSERT_TRUE(result.ok()) << r->dump();
  EXPECT_TRUE(result->contains("version"));

  struct stat st {};
  ASSERT_EQ(stat(options_.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, getegid());
}

TEST_F(ControlServerTest, SeveralRequestsOnOneConnectionAreAnsweredInOrder) {
  StartServer();
  auto lines =
      RawExchange(options_.socket_path,
                  "{\"op\":\"ping\"}\nnot json\n{\"op\":\"nope\"}\n{\"op\":\"ping\"}\n", 4);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("ok"), true);
  EXPECT_EQ(nlohmann::json::parse(lines[1]).at("code"), "invalid_argument");
  auto unknown = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(unknown.at("ok"), false);
  EXPECT_NE(unknown.at("error").get<std::string>().find("unknown op 'nope'"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(lines[3]).at("ok"), true);
}

TEST_F(ControlServerTest, OverlongRequestIsRefusedNotBuffered) {
  StartServer();
  std::string big(kMaxControlMessageBytes + 100, 'x');
  auto lines = RawExchange(options_.socket_path, big + "\n", 1);
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j.at("code"), "invalid_argument");
  EXPECT_NE(j.at("error").get<std::string>().find("longer than"), std::string::npos);
}

TEST_F(ControlServerTest, BanThroughTheSocketLandsInTheOutbox) {
  StartServer();
  auto r = CallControl(options_.socket_path, {{"op", "bans.add"},
                                              {"address", "2001:DB8:0:0::/64"},
                                              {"duration_s", 3600},
                                              {"reason", "by hand"}});
  ASSERT_OK(r);
  auto result = ControlResult(*r);
  ASSERT_OK(result);
  EXPECT_EQ(result->at("address"), "2001:db8::/64");  // re-printed from binary
  ASSERT_EQ(result->at("action_ids").size(), 1u);
  StopServer();
  auto a = store_->GetAction(result->at("action_ids")[0].get<std::int64_t>());
  ASSERT_OK(a);
  EXPECT_EQ(a->type, "ban");
  EXPECT_EQ(a->status, ActionStatus::kPending);
  EXPECT_FALSE(a->revert);
  EXPECT_EQ(a->incident_id, 0);
  EXPECT_EQ(a->params, (nlohmann::json{{"address", "2001:db8::/64"},
                                       {"duration_s", 3600},
                                       {"ports", "mail"},
                                       {"reason", "by hand"}}));
}

TEST_F(ControlServerTest, MissingSocketIsNotFoundSoTheCliActsDirectly) {
  auto r = CallControl(dir_.file("nobody.sock"), {{"op", "ping"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
}

TEST_F(ControlServerTest, StaleSocketIsReplacedAndALiveOneIsNot) {
  // A socket file nobody listens on (a crashed daemon's).
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, options_.socket_path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    close(fd);
  }
  EXPECT_EQ(CallControl(options_.socket_path, {{"op", "ping"}}).status().code(),
            Status::Code::kNotFound);
  StartServer();
  EXPECT_TRUE(CallControl(options_.socket_path, {{"op", "ping"}}).ok());

  boost::asio::io_context other_io;
  ControlServer second(other_io, options_, [](const nlohmann::json&) { return ControlOk({}); });
  Status s = second.Start();
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  // The refused second server must not remove the live socket.
  EXPECT_TRUE(CallControl(options_.socket_path, {{"op", "ping"}}).ok());

  StopServer();
  struct stat st {};
  EXPECT_NE(stat(options_.socket_path.c_str(), &st), 0) << "Stop() removes the socket";
}

// Runs body in a child process as nobody (uid and gid 65534, no supplementary groups) and returns
// what body returned: the tests of who may use the socket need a peer, or a server, that is not
// root. nullopt when the child could not drop its privileges or hand its output back.
std::optional<std::string> OutputAsNobody(const std::function<std::string()>& body) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return std::nullopt;
  const pid_t pid = fork();
  if (pid < 0) return std::nullopt;
  if (pid == 0) {
    close(pipefd[0]);
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    const std::string out = body();
    if (write(pipefd[1], out.data(), out.size()) < 0) _exit(11);
    _exit(0);
  }
  close(pipefd[1]);
  std::string got;
  char buf[1024];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return got;
}

TEST_F(ControlServerTest, PeerWithoutTheGroupIsRefusedEvenIfTheFileWereOpen) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root (it connects as nobody)";
  StartServer();
  // Open the file up, so only the SO_PEERCRED check stands between nobody and the daemon.
  ASSERT_EQ(chmod(options_.socket_path.c_str(), 0666), 0);
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  const std::string path = options_.socket_path;
  const auto got = OutputAsNobody([&path] {
    auto r = CallControl(path, {{"op", "ping"}});
    return r.ok() ? r->dump() : "error: " + r.status().ToString();
  });
  ASSERT_TRUE(got.has_value()) << "the child could not run as nobody";
  auto j = nlohmann::json::parse(*got, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << *got;
  EXPECT_EQ(j.at("ok"), false);
  EXPECT_EQ(j.at("code"), "permission_denied");
  std::lock_guard lock(mu_);
  EXPECT_EQ(handled_, 0) << "the handler must not run for a refused peer";
}

// A connected unix socket that has sent `bytes` and is kept open; -1 when it cannot connect.
int ConnectAndSend(const std::string& path, const std::string& bytes) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      (!bytes.empty() &&
       send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))) {
    close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends until it closes the connection (blocks until then).
std::string ReadUntilClosed(int fd) {
  std::string in;
  char buf[4096];
  ssize_t r;
  while ((r = recv(fd, buf, sizeof buf, 0)) > 0) in.append(buf, static_cast<std::size_t>(r));
  return in;
}

TEST_F(ControlServerTest, ConnectionsOverTheCapAreRefusedWithOneLineAndCounted) {
  options_.max_connections = 2;
  StartServer();
  // Two peers that connect and say nothing hold both slots...
  const int a = ConnectAndSend(options_.socket_path, "");
  const int b = ConnectAndSend(options_.socket_path, "");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  // ...so the third is answered and closed, before any request of its own is read.
  const int c = ConnectAndSend(options_.socket_path, "{\"op\":\"ping\"}\n");
  ASSERT_GE(c, 0);
  const std::string refusal = ReadUntilClosed(c);
  close(c);
  ASSERT_EQ(std::count(refusal.begin(), refusal.end(), '\n'), 1) << refusal;
  auto j = nlohmann::json::parse(refusal, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << refusal;
  EXPECT_EQ(j.at("code"), "unavailable");
  EXPECT_NE(j.at("error").get<std::string>().find("too many connections"), std::string::npos);
  EXPECT_EQ(server_->counters().refused_over_cap.load(), 1u);
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(handled_, 0);
  }
  // A slot freed is a slot again.
  close(a);
  EXPECT_TRUE(Eventually([&] { return CallControl(options_.socket_path, {{"op", "ping"}}).ok(); }));
  close(b);
}

TEST_F(ControlServerTest, SilentAndTricklingPeersAreClosedAtTheRequestDeadline) {
  options_.request_timeout_seconds = 1;
  StartServer();
  // Says nothing: closed without an answer once the deadline passes (recv sees the close).
  const int silent = ConnectAndSend(options_.socket_path, "");
  ASSERT_GE(silent, 0);
  EXPECT_EQ(ReadUntilClosed(silent), "");
  close(silent);
  // Half a line and then nothing: the deadline covers the whole line, not each piece.
  const int partial = ConnectAndSend(options_.socket_path, "{\"op\":");
  ASSERT_GE(partial, 0);
  EXPECT_EQ(ReadUntilClosed(partial), "");
  close(partial);
  EXPECT_EQ(server_->counters().timed_out.load(), 2u);
  // A peer that asks in time is answered as before.
  EXPECT_TRUE(CallControl(options_.socket_path, {{"op", "ping"}}).ok());
}

TEST(ControlServerOptionsTest, ReadsTheLimitsAndLocatesBadValues) {
  TempDir dir;
  auto load = [&](const std::string& toml, std::vector<Diagnostic>* d) {
    std::ofstream(dir.file("mxward.toml")) << toml;
    auto config = Config::Load(dir.file("mxward.toml"), d);
    if (!config.ok()) return Result<ControlServerOptions>(config.status());
    return ControlServerOptions::FromConfig(*config, d);
  };
  std::vector<Diagnostic> d;
  auto o = load("[control]\nmax_connections = 8\nrequest_timeout = \"5s\"\n", &d);
  ASSERT_OK(o);
  EXPECT_EQ(o->max_connections, 8);
  EXPECT_EQ(o->request_timeout_seconds, 5);
  d.clear();
  o = load("[control]\nmax_connections = 0\nrequest_timeout = \"2h\"\n", &d);
  EXPECT_FALSE(o.ok());
  std::string all;
  for (const auto& x : d) all += x.ToString() + "\n";
  EXPECT_NE(all.find("mxward.toml:2:"), std::string::npos) << all;
  EXPECT_NE(all.find("mxward.toml:3:"), std::string::npos) << all;
  d.clear();
  o = load("[store]\npath = \"/tmp/x.db\"\n", &d);
  ASSERT_OK(o);
  EXPECT_EQ(o->max_connections, 32);
  EXPECT_EQ(o->request_timeout_seconds, 30);
}

// Not root and not in [control] group: the chown fails. The server still starts (narrower than
// configured, never wider) and says which socket, which group and why.
TEST(ControlServerGroupTest, AGroupThatCannotBeAppliedIsAWarningNamingSocketGroupAndErrno) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the server as nobody";
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0777), 0);
  const std::string path = dir.file("control.sock");
  const auto got = OutputAsNobody([&path] {
    std::ostringstream log;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(log);
    sink->set_pattern("%l %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    boost::asio::io_context io;
    ControlServerOptions o;
    o.socket_path = path;
    o.group = "root";  // exists; nobody is not in it
    ControlServer server(io, o, [](const nlohmann::json&) { return ControlOk({}); });
    const Status st = server.Start();
    struct stat sst {};
    const bool own_group = stat(path.c_str(), &sst) == 0 && sst.st_gid == 65534;
    return (st.ok() ? "started\n" : "failed: " + st.ToString() + "\n") +
           (own_group ? "own group\n" : "other group\n") + log.str();
  });
  ASSERT_TRUE(got.has_value()) << "the child could not run as nobody";
  EXPECT_NE(got->find("started\n"), std::string::npos) << *got;
  EXPECT_NE(got->find("own group\n"), std::string::npos) << *got;
  EXPECT_NE(got->find("warning control socket " + path +
                      ": cannot give it to group root: " + std::strerror(EPERM)),
            std::string::npos)
      << *got;
}

// --- ExecuteControlRequest without a socket
// -------------------------------------------------------

class ExecuteControlRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
  }
  nlohmann::json Run(const nlohmann::json& req) {
    return ExecuteControlRequest(store_.get(), req, kNow);
  }
  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
};

TEST_F(ExecuteControlRequestTest, BadAddressesAreRefusedWithAHint) {
  auto r = Run({{"op", "bans.add"}, {"address", "192.0.2.7/24"}, {"duration_s", 60}});
  EXPECT_EQ(r.at("code"), "invalid_argument");
  EXPECT_NE(r.at("error").get<std::string>().find("did you mean 192.0.2.0/24"), std::string::npos)
      << r.dump();
  r = Run({{"op", "bans.add"}, {"address", "192.0.2.7; nft flush ruleset"}, {"duration_s", 60}});
  EXPECT_EQ(r.at("code"), "invalid_argument");
  r = Run({{"op", "bans.add"}, {"address", "192.0.2.7"}});
  EXPECT_EQ(r.at("code"), "invalid_argument") << "duration is required";
  r = Run({{"op", "bans.add"}, {"address", "192.0.2.7"}, {"duration_s", "1h"}});
  EXPECT_EQ(r.at("code"), "invalid_argument");
  // A port scope is names and numbers only: it reaches nft as nothing but resolved integers.
  r = Run({{"op", "bans.add"},
           {"address", "192.0.2.7"},
           {"duration_s", 60},
           {"ports", "web; flush ruleset"}});
  EXPECT_EQ(r.at("code"), "invalid_argument") << r.dump();
  EXPECT_TRUE(store_->DueActions(kNow, 10)->empty());
}

TEST_F(ExecuteControlRequestTest, RemoveQueuesARevert) {
  auto r = Run({{"op", "bans.remove"}, {"address", "::ffff:192.0.2.7"}});
  ASSERT_EQ(r.at("ok"), true) << r.dump();
  EXPECT_EQ(r.at("result").at("address"), "192.0.2.7");
  auto due = store_->DueActions(kNow, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_TRUE((*due)[0].revert);
  EXPECT_EQ((*due)[0].params.at("address"), "192.0.2.7");
  EXPECT_EQ((*due)[0].params.at("ports"), "*");  // every scope
}

TEST_F(ExecuteControlRequestTest, ResolveWithRevertUndoesOnlyAppliedLastingEffects) {
  Incident inc;
  inc.playbook = "postfix-sasl";
  inc.key_kind = "sasl_user";
  inc.key = "alice@example.org";
  inc.actions = {{"ban", {{"address", "192.0.2.7"}, {"duration_s", 60}}, false},
                 {"suspend_sending", {{"user", "alice@example.org"}}, false},
                 {"webhook", {{"target", "ops"}}, false}};
  std::vector<Incident> batch{inc};
  ASSERT_TRUE(store_->RecordIncidents(&batch, kNow).ok());
  const std::int64_t id = batch[0].id;
  auto actions = store_->ActionsForIncident(id);
  ASSERT_OK(actions);
  for (const auto& a : *actions) {
    if (a.type != "suspend_sending")
      ASSERT_TRUE(store_->MarkActionDone(a.id, kNow).ok());
    else
      ASSERT_TRUE(store_->MarkActionFinal(a.id, ActionStatus::kFailed, "db down", kNow).ok());
  }
  auto r = Run({{"op", "incidents.resolve"}, {"id", id}, {"revert", true}, {"note", "fp"}});
  ASSERT_EQ(r.at("ok"), true) << r.dump();
  ASSERT_EQ(r.at("result").at("action_ids").size(), 1u);
  auto undo = store_->GetAction(r.at("result").at("action_ids")[0].get<std::int64_t>());
  EXPECT_EQ(undo->type, "ban");
  EXPECT_TRUE(undo->revert);
  EXPECT_EQ(undo->incident_id, id);
  EXPECT_EQ(store_->GetIncident(id)->status, IncidentStatus::kResolved);

  r = Run({{"op", "incidents.resolve"}, {"id", id + 100}});
  EXPECT_EQ(r.at("code"), "not_found");
}

TEST_F(ExecuteControlRequestTest, AccountsValidateUsersAndKinds) {
  auto r = Run({{"op", "accounts.suspend"}, {"user", "alice@example.org"}});
  ASSERT_EQ(r.at("ok"), true) << r.dump();
  EXPECT_EQ(r.at("result").at("kind"), "suspend");
  r = Run({{"op", "accounts.suspend"}, {"user", "alice' OR 1=1 --"}});
  EXPECT_EQ(r.at("code"), "invalid_argument");
  r = Run({{"op", "accounts.suspend"}, {"user", "bob"}, {"kind", "delete"}});
  EXPECT_EQ(r.at("code"), "invalid_argument");
  // Nothing on record and no kind given: there is nothing to restore to.
  r = Run({{"op", "accounts.restore"}, {"user", "bob@example.org"}});
  EXPECT_EQ(r.at("code"), "not_found");
  ASSERT_TRUE(
      store_->UpsertSuspension({"bob@example.org", "suspend_sending", {}, kNow, 0, 0}).ok());
  r = Run({{"op", "accounts.restore"}, {"user", "bob@example.org"}});
  ASSERT_EQ(r.at("ok"), true) << r.dump();
  auto a = store_->GetAction(r.at("result").at("action_ids")[0].get<std::int64_t>());
  EXPECT_EQ(a->type, "suspend_sending");
  EXPECT_TRUE(a->revert);
}

TEST(ControlResultTest, ErrorsRoundTripAsStatus) {
  auto r = ControlResult(ControlError(Status::NotFound("no incident 9")));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
  EXPECT_EQ(r.status().message(), "no incident 9");
  EXPECT_FALSE(ControlResult(nlohmann::json::array()).ok());
  EXPECT_EQ(*ControlResult(ControlOk({{"a", 1}})), (nlohmann::json{{"a", 1}}));
}

}  // namespace
}  // namespace mxward
