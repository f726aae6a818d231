// Webhooks against a real HTTP receiver on loopback (tests/support/webhook_receiver.py,
// started by the test): receiver down, then 500, 429 with Retry-After, a response slower than the
// timeout, then up. Every notification must arrive exactly once (by idempotency key), in order,
// with a valid HMAC signature. A receiver that accepts the connection and never answers: the
// webhook times out and is retried while the other webhooks and an exec action go through. Also a
// mail against a minimal SMTP receiver.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actions/mail/mail_notifier.h"
#include "actions/webhook/webhook_notifier.h"
#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/incident_store.h"
#include "support/eventually.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

using mxward::testing::Eventually;

namespace mxward {
namespace {

using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A python3 script from tests/support, started and killed by the test.
class ScriptProcess {
 public:
  ScriptProcess(const std::string& script, std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     std::string(MXWARD_SOURCE_DIR) + "/tests/support/" + script};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
  }
  ~ScriptProcess() { Kill(); }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  bool Running() {
    if (pid_ <= 0) return false;
    int st;
    return ::waitpid(pid_, &st, WNOHANG) == 0;
  }

 private:
  pid_t pid_ = -1;
};

std::vector<nlohmann::json> LogLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

Incident MakeIncident(int i, nlohmann::json action_params, const std::string& type = "webhook") {
  Incident inc;
  inc.playbook = "postfix-sasl-bruteforce";
  inc.description = "SASL brute force";
  inc.severity = Severity::kHigh;
  inc.key_kind = "client_ip";
  inc.key = fmt::format("203.0.113.{}", i);
  inc.trigger = "20 auth_failure in 10m (count >= 20)";
  inc.first_seen = kT0;
  inc.last_seen = kT0 + 60 * kMicrosPerSecond;
  inc.count = 20;
  inc.window_seconds = 600;
  inc.evidence.push_back({kT0,
                          "postfix/smtpd[1]: warning: unknown[203.0.113.1]: SASL LOGIN "
                          "authentication failed: <script>&\xff"});
  inc.actions.push_back({type, std::move(action_params), false});
  return inc;
}

class WebhookReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access("/usr/bin/python3", X_OK), 0) << "python3 is required for this test";
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
    std::ofstream(dir_.file("secret")) << "s3cret-hmac-key\n";
    ::chmod(dir_.file("secret").c_str(), 0600);
  }

  // Starts the receiver (on `port`, 0 for any) and waits for it to listen; returns the port.
  int StartReceiver(int port, const std::string& plan) {
    ::unlink(dir_.file("port").c_str());
    receiver_ = std::make_unique<ScriptProcess>(
        "webhook_receiver.py",
        std::vector<std::string>{"--port", std::to_string(port), "--port-file", dir_.file("port"),
                                 "--log", dir_.file("requests.jsonl"), "--secret-file",
                                 dir_.file("secret"), "--plan", plan});
    EXPECT_TRUE(Eventually(
        [&] { return ::access(dir_.file("port").c_str(), R_OK) == 0 || !receiver_->Running(); }));
    EXPECT_TRUE(receiver_->Running()) << "the receiver did not start";
    return std::stoi(ReadFile(dir_.file("port")));
  }

  Config WriteConfig(int port) {
    std::ofstream(dir_.file("mxward.toml")) << fmt::format(
        "[webhook.ops]\nurl = \"http://127.0.0.1:{}/hook\"\nformat = \"json\"\n"
        "hmac_secret_file = \"{}\"\ntimeout = 1\nheaders = {{ X-Test = \"yes\" }}\n"
        "incident_url = \"https://mx.example/incidents/{{id}}\"\n"
        "[dispatcher]\nmax_attempts = 50\n",
        port, dir_.file("secret"));
    std::vector<Diagnostic> diags;
    auto config = Config::Load(dir_.file("mxward.toml"), &diags);
    EXPECT_OK(config);
    return *config;
  }

  ActionRecord Get(std::int64_t id) { return *store_->GetAction(id); }

  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
  std::unique_ptr<ScriptProcess> receiver_;
  ManualClock clock_{kT0};
};

TEST_F(WebhookReceiverTest, EveryNotificationArrivesOnceAndInOrderThroughFailures) {
  // Learn a free port, then take the receiver down: the first attempts find nobody listening.
  const int port = StartReceiver(0, "");
  receiver_->Kill();
  const Config config = WriteConfig(port);

  std::vector<Incident> incidents;
  for (int i = 1; i <= 5; ++i) incidents.push_back(MakeIncident(i, {{"target", "ops"}}));
  ASSERT_TRUE(store_->RecordIncidents(&incidents, kT0).ok());
  std::vector<std::int64_t> ids;
  for (const Incident& inc : incidents) {
    auto actions = store_->ActionsForIncident(inc.id);
    ASSERT_OK(actions);
    ASSERT_EQ(actions->size(), 1u);
    ids.push_back((*actions)[0].id);
  }

  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  auto executors = BuildExecutors(config, dir_.file("state.db"), &diags, &notes);
  ASSERT_OK(executors);
  auto options = DispatcherOptions::FromConfig(config, &diags);
  ASSERT_OK(options);
  options->poll_interval_ms = 20;
  ActionDispatcher dispatcher(dir_.file("state.db"), std::move(*executors), *options, &clock_);
  ASSERT_OK(dispatcher.Start());

  // Down: the first notification fails and waits for its retry; the others wait behind it.
  ASSERT_TRUE(Eventually([&] { return Get(ids[0]).attempts == 1; }));
  EXPECT_EQ(Get(ids[0]).status, ActionStatus::kPending);
  EXPECT_NE(Get(ids[0]).last_error.find("webhook ops"), std::string::npos)
      << Get(ids[0]).last_error;
  EXPECT_EQ(Get(ids[1]).attempts, 0);

  ASSERT_EQ(StartReceiver(port, "500,429:120,slow:3"), port);
  auto step = [&](int attempts) {
    clock_.Advance(3600 * kMicrosPerSecond);  // past any backoff or Retry-After
    dispatcher.Notify();
    return Eventually([&] { return Get(ids[0]).attempts >= attempts; });
  };
  ASSERT_TRUE(step(2));  // 500
  EXPECT_NE(Get(ids[0]).last_error.find("HTTP 500"), std::string::npos);
  ASSERT_TRUE(step(3));  // 429, Retry-After: 120
  ActionRecord a = Get(ids[0]);
  EXPECT_NE(a.last_error.find("HTTP 429"), std::string::npos);
  EXPECT_GE(a.next_attempt_at - a.updated_at, 120 * kMicrosPerSecond);  // honoured
  ASSERT_TRUE(step(4));  // slower than the 1 s timeout
  EXPECT_EQ(Get(ids[0]).status, ActionStatus::kPending);
  // Up: everything goes out.
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(3600 * kMicrosPerSecond);
    dispatcher.Notify();
    for (auto id : ids) {
      if (Get(id).status != ActionStatus::kDone) return false;
    }
    return true;
  }));
  dispatcher.Stop(std::chrono::seconds(5));
  // The receiver finished the slow request after we gave up on it: wait for its log line.
  ASSERT_TRUE(Eventually([&] {
    for (const auto& r : LogLines(dir_.file("requests.jsonl"))) {
      if (r["step"] == "slow:3") return true;
    }
    return false;
  }));
  receiver_->Kill();

  std::vector<std::string> accepted;
  int duplicates = 0;
  for (const auto& r : LogLines(dir_.file("requests.jsonl"))) {
    EXPECT_EQ(r["sig_ok"], true) << r.dump();
    EXPECT_EQ(r["custom"], "yes");
    if (r["code"] != 200) continue;
    if (r["duplicate"] == true) {
      ++duplicates;
      continue;
    }
    accepted.push_back(r["key"]);
    const auto& body = r["body"];
    EXPECT_EQ(body["playbook"], "postfix-sasl-bruteforce");
    EXPECT_EQ(body["count"], 20);
    EXPECT_EQ(body["window_seconds"], 600);
    EXPECT_EQ(body["evidence"].size(), 1u);
    EXPECT_EQ(body["actions"].size(), 1u);
    EXPECT_EQ(body["links"]["incident"],
              fmt::format("https://mx.example/incidents/{}", body["incident_id"].get<int>()));
  }
  std::vector<std::string> expected;
  for (auto id : ids) expected.push_back(Get(id).idempotency_key);
  EXPECT_EQ(accepted, expected);  // each exactly once, in incident order
  // The slow request was processed by the receiver and retried by us with the same key: the
  // receiver saw a duplicate it could drop.
  EXPECT_EQ(duplicates, 1);
  for (auto id : ids) EXPECT_EQ(Get(id).status, ActionStatus::kDone);
}

TEST_F(WebhookReceiverTest, AReceiverThatNeverAnswersIsRetriedWithoutHoldingUpOtherActions) {
  // A listener nobody accepts from: the kernel completes the handshake and takes the request,
  // and no answer ever comes.
  const int blackhole = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(blackhole, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(blackhole, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(blackhole, 64), 0);
  ASSERT_EQ(::getsockname(blackhole, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = StartReceiver(0, "");

  std::ofstream(dir_.file("mxward.toml")) << fmt::format(
      "[webhook.stuck]\nurl = \"http://127.0.0.1:{}/hook\"\ntimeout = 1\n"
      "[webhook.ops]\nurl = \"http://127.0.0.1:{}/hook\"\nhmac_secret_file = \"{}\"\n"
      "timeout = 5\nheaders = {{ X-Test = \"yes\" }}\n"
      "[exec.note]\nargv = [\"/usr/bin/touch\", \"{}\"]\n"
      "[dispatcher]\nmax_attempts = 50\n",
      ntohs(addr.sin_port), port, dir_.file("secret"), dir_.file("exec-ran"));
  std::vector<Diagnostic> diags;
  auto config = Config::Load(dir_.file("mxward.toml"), &diags);
  ASSERT_OK(config);

  // The stuck webhook comes first; ops webhooks of three incidents and an exec follow it.
  std::vector<Incident> incidents;
  for (int i = 1; i <= 3; ++i) incidents.push_back(MakeIncident(i, {{"target", "ops"}}));
  incidents[0].actions.insert(incidents[0].actions.begin(),
                              {"webhook", {{"target", "stuck"}}, false});
  incidents[0].actions.push_back({"exec", {{"target", "note"}}, false});
  ASSERT_TRUE(store_->RecordIncidents(&incidents, kT0).ok());
  std::int64_t stuck = 0, exec = 0;
  std::vector<std::int64_t> ops;
  for (const Incident& inc : incidents) {
    auto actions = store_->ActionsForIncident(inc.id);
    ASSERT_OK(actions);
    for (const ActionRecord& a : *actions) {
      if (a.type == "exec") {
        exec = a.id;
      } else if (a.params.value("target", "") == "stuck") {
        stuck = a.id;
      } else {
        ops.push_back(a.id);
      }
    }
  }
  ASSERT_TRUE(stuck != 0 && exec != 0 && ops.size() == 3u);
  ASSERT_LT(stuck, ops[0]);

  std::vector<std::string> notes;
  auto executors = BuildExecutors(*config, dir_.file("state.db"), &diags, &notes);
  ASSERT_OK(executors);
  auto options = DispatcherOptions::FromConfig(*config, &diags);
  ASSERT_OK(options);
  options->poll_interval_ms = 20;
  ActionDispatcher dispatcher(dir_.file("state.db"), std::move(*executors), *options, &clock_);
  ASSERT_OK(dispatcher.Start());

  // Everything else is done while the stuck one waits for its retry (the clock stands still, so
  // its backoff never ends on its own).
  ASSERT_TRUE(Eventually([&] {
    if (Get(exec).status != ActionStatus::kDone) return false;
    for (auto id : ops) {
      if (Get(id).status != ActionStatus::kDone) return false;
    }
    return true;
  })) << Get(ops[0]).last_error;
  ASSERT_TRUE(Eventually([&] { return Get(stuck).attempts >= 1; }));
  ActionRecord a = Get(stuck);
  EXPECT_EQ(a.status, ActionStatus::kPending);
  EXPECT_NE(a.last_error.find("webhook stuck"), std::string::npos) << a.last_error;
  EXPECT_NE(a.last_error.find("timed out"), std::string::npos) << a.last_error;
  EXPECT_EQ(::access(dir_.file("exec-ran").c_str(), F_OK), 0);

  // Retried, and timing out again, as long as the receiver stays silent.
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(3600 * kMicrosPerSecond);
    dispatcher.Notify();
    return Get(stuck).attempts >= 2;
  }));
  EXPECT_EQ(Get(stuck).status, ActionStatus::kPending);
  dispatcher.Stop(std::chrono::seconds(5));
  ::close(blackhole);
  receiver_->Kill();

  std::vector<std::string> accepted;
  for (const auto& r : LogLines(dir_.file("requests.jsonl"))) {
    if (r["code"] == 200 && r["duplicate"] == false) accepted.push_back(r["key"]);
  }
  std::vector<std::string> expected;
  for (auto id : ops) expected.push_back(Get(id).idempotency_key);
  EXPECT_EQ(accepted, expected);  // each once, in order, none lost behind the stuck one
}

TEST_F(WebhookReceiverTest, ClientErrorsFailAtOnceAndSlackAndTeamsBodiesAreAccepted) {
  const int port = StartReceiver(0, "");
  WebhookOptions options;
  WebhookTarget t;
  t.name = "chat";
  t.url = fmt::format("http://127.0.0.1:{}/hook", port);
  t.timeout_ms = 5000;
  t.hmac_secret = "s3cret-hmac-key";
  options.targets.emplace("chat", t);
  WebhookTarget missing = t;
  missing.name = "closed";
  missing.url = "http://127.0.0.1:1/hook";  // nothing listens on port 1
  options.targets.emplace("closed", missing);

  std::vector<Incident> incidents = {MakeIncident(1, {{"target", "chat"}, {"format", "slack"}}),
                                     MakeIncident(2, {{"target", "chat"}, {"format", "teams"}}),
                                     MakeIncident(3, {{"target", "closed"}})};
  ASSERT_TRUE(store_->RecordIncidents(&incidents, kT0).ok());
  WebhookNotifier notifier(options, dir_.file("state.db"));
  ASSERT_OK(notifier.Start());
  for (int i = 0; i < 2; ++i) {
    auto actions = store_->ActionsForIncident(incidents[i].id);
    ASSERT_OK(actions);
    Status s = notifier.Apply((*actions)[0]);
    EXPECT_OK(s);
  }
  auto closed = store_->ActionsForIncident(incidents[2].id);
  Status down = notifier.Apply((*closed)[0]);
  EXPECT_TRUE(down.transient()) << down.ToString();
  EXPECT_EQ(WebhookStatusFor(404, "x").transient(), false);
  EXPECT_EQ(WebhookStatusFor(503, "x").transient(), true);
  notifier.Stop();
  receiver_->Kill();
  auto lines = LogLines(dir_.file("requests.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  const auto& slack = lines[0]["body"];
  ASSERT_TRUE(slack["blocks"].is_array());
  EXPECT_EQ(slack["blocks"][0]["type"], "header");
  // Log text cannot inject Slack markup: < > & are escaped.
  EXPECT_EQ(slack.dump().find("<script>"), std::string::npos);
  EXPECT_NE(slack.dump().find("&lt;script&gt;&amp;"), std::string::npos);
  const auto& teams = lines[1]["body"];
  EXPECT_EQ(teams["type"], "message");
  EXPECT_EQ(teams["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
  EXPECT_EQ(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
  for (const auto& l : lines) EXPECT_EQ(l["sig_ok"], true);
}

TEST(WebhookPureTest, HmacRetryAfterAndSecretFiles) {
  // RFC 4231 test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(ParseRetryAfter("120", 0)->count(), 120'000);
  EXPECT_EQ(ParseRetryAfter(" 5 ", 0)->count(), 5'000);
  // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 30)->count(), 30'000);
  EXPECT_FALSE(ParseRetryAfter("soon", 0).has_value());
  TempDir dir;
  std::ofstream(dir.file("open")) << "k\n";
  ::chmod(dir.file("open").c_str(), 0644);
  auto r = ReadSecretFile(dir.file("open"));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("0644"), std::string::npos);
  ::chmod(dir.file("open").c_str(), 0600);
  r = ReadSecretFile(dir.file("open"));
  ASSERT_OK(r);
  EXPECT_EQ(*r, "k");
}

TEST_F(WebhookReceiverTest, MailReachesAnSmtpReceiver) {
  ::unlink(dir_.file("port").c_str());
  ScriptProcess smtp("smtp_receiver.py",
                     {"--port-file", dir_.file("port"), "--out", dir_.file("mail.txt")});
  ASSERT_TRUE(Eventually([&] { return ::access(dir_.file("port").c_str(), R_OK) == 0; }));
  const int port = std::stoi(ReadFile(dir_.file("port")));
  MailOptions options;
  options.url = fmt::format("smtp://127.0.0.1:{}", port);
  options.from = "mxward@mx.example";
  options.to = {"admin@example.org"};
  options.timeout_ms = 10'000;
  std::vector<Incident> incidents = {MakeIncident(9, {}, "mail")};
  incidents[0].key = "evil\r\nBcc: victim@example.net";
  ASSERT_TRUE(store_->RecordIncidents(&incidents, kT0).ok());
  auto actions = store_->ActionsForIncident(incidents[0].id);
  ASSERT_OK(actions);
  MailNotifier mail(options, dir_.file("state.db"), &clock_);
  Status s = mail.Apply((*actions)[0]);
  ASSERT_OK(s);
  ASSERT_TRUE(Eventually(
      [&] { return ReadFile(dir_.file("mail.txt")).find("QUIT") != std::string::npos; }));
  const std::string session = ReadFile(dir_.file("mail.txt"));
  EXPECT_NE(session.find("MAIL FROM:<mxward@mx.example>"), std::string::npos) << session;
  EXPECT_NE(session.find("RCPT TO:<admin@example.org>"), std::string::npos);
  EXPECT_EQ(session.find("RCPT TO:<victim@example.net>"), std::string::npos);
  EXPECT_NE(session.find("Subject: [mxward] high postfix-sasl-bruteforce"), std::string::npos);
  EXPECT_NE(session.find("Message-ID: <" + (*actions)[0].idempotency_key + "@mx.example>"),
            std::string::npos);
  EXPECT_EQ(session.find("\r\nBcc:"), std::string::npos);  // no header injection
  EXPECT_NE(session.find("Incident #"), std::string::npos);
}

}  // namespace
}  // namespace mxward
