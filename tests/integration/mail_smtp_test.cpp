// Admin mail against a real SMTP submission server on loopback (aiosmtpd, from Debian's
// python3-aiosmtpd, tests/support/smtp_tls_receiver.py) that requires STARTTLS before
// anything and AUTH before MAIL, with a certificate from a CA the test makes with openssl. The mail
// actions run through the real ActionDispatcher and executors built from mxward.toml:
//   - the message arrives exactly once, under TLS, authenticated, with the incident summary;
//   - a wrong password fails the action at once with an error that says what to fix;
//   - the server down is transient: the action is retried and delivered once when it is back.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/incident_store.h"
#include "support/server_process.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::RunCommand;
using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;
constexpr char kUser[] = "mxward";
constexpr char kPassword[] = "correct horse battery staple";

std::string ReadWhole(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class MailSmtpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Fail loudly when the real server cannot be had.
    ASSERT_EQ(RunCommand({"/usr/bin/python3", "-c", "import aiosmtpd"}).exit_code, 0)
        << "python3-aiosmtpd is required (packaging/install-deps.sh test)";
    MakeCertificates();
    auto store = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(store);
    store_ = std::move(*store);
  }

  void TearDown() override {
    if (dispatcher_) dispatcher_->Stop(std::chrono::seconds(5));
    receiver_.Stop();
  }

  // A CA and a server certificate for 127.0.0.1 signed by it: mxward verifies the server.
  void MakeCertificates() {
    auto run = [](const std::vector<std::string>& argv) {
      auto r = RunCommand(argv);
      ASSERT_EQ(r.exit_code, 0) << argv[0] << " " << argv[1] << ": " << r.err;
    };
    const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:prime256v1", "-nodes"};
    std::vector<std::string> ca = {"openssl", "req", "-x509"};
    ca.insert(ca.end(), ec.begin(), ec.end());
    ca.insert(ca.end(), {"-keyout", dir_.file("ca.key"), "-out", dir_.file("ca.pem"), "-days", "2",
                         "-subj", "/CN=mxward test CA"});
    ASSERT_NO_FATAL_FAILURE(run(ca));
    std::vector<std::string> csr = {"openssl", "req", "-new"};
    csr.insert(csr.end(), ec.begin(), ec.end());
    csr.insert(csr.end(), {"-keyout", dir_.file("server.key"), "-out", dir_.file("server.csr"),
                           "-subj", "/CN=localhost"});
    ASSERT_NO_FATAL_FAILURE(run(csr));
    std::ofstream(dir_.file("san.cnf")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    ASSERT_NO_FATAL_FAILURE(
        run({"openssl", "x509", "-req", "-in", dir_.file("server.csr"), "-CA", dir_.file("ca.pem"),
             "-CAkey", dir_.file("ca.key"), "-CAcreateserial", "-out", dir_.file("server.pem"),
             "-days", "2", "-extfile", dir_.file("san.cnf")}));
  }

  // Starts the server on `port` (0: any) and waits until it listens; returns its port.
  int StartReceiver(int port) {
    ::unlink(dir_.file("port").c_str());
    EXPECT_TRUE(receiver_.Start(
        {"/usr/bin/python3", std::string(MXWARD_SOURCE_DIR) + "/tests/support/smtp_tls_receiver.py",
         "--port", std::to_string(port), "--port-file", dir_.file("port"), "--log",
         dir_.file("smtp.jsonl"), "--cert", dir_.file("server.pem"), "--key",
         dir_.file("server.key"), "--user", kUser, "--password", kPassword},
        dir_.file("smtp.log")));
    EXPECT_TRUE(testing::WaitUntil(
        std::chrono::seconds(20), [&] { return ::access(dir_.file("port").c_str(), R_OK) == 0; },
        [&] { return !receiver_.running(); }))
        << "the SMTP server did not start: " << receiver_.log();
    return std::stoi(ReadWhole(dir_.file("port")));
  }

  // What the server logged: accepted messages and refused logins.
  std::vector<nlohmann::json> ServerLog(const std::string& event) {
    std::vector<nlohmann::json> out;
    std::istringstream in(ReadWhole(dir_.file("smtp.jsonl")));
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("event", "") == event) out.push_back(j);
    }
    return out;
  }

  // mxward.toml with [mail] for the server, then the executors and the dispatcher from it.
  void StartDispatcher(int port, const std::string& password) {
    std::ofstream(dir_.file("smtp-password")) << password << "\n";
    ::chmod(dir_.file("smtp-password").c_str(), 0600);
    std::ofstream(dir_.file("mxward.toml")) << fmt::format(
        "[mail]\nurl = \"smtp://127.0.0.1:{}\"\nfrom = \"mxward@mx.example\"\n"
        "to = [\"admin@example.org\"]\nusername = \"{}\"\npassword_file = \"{}\"\n"
        "starttls = true\nca_file = \"{}\"\ntimeout = \"10s\"\n"
        "incident_url = \"https://mx.example/incidents/{{id}}\"\n"
        "[dispatcher]\nmax_attempts = 50\n",
        port, kUser, dir_.file("smtp-password"), dir_.file("ca.pem"));
    std::vector<Diagnostic> diags;
    auto config = Config::Load(dir_.file("mxward.toml"), &diags);
    ASSERT_TRUE(config.ok()) << config.status().ToString()
                             << (diags.empty() ? "" : "\n" + diags[0].ToString());
    std::vector<std::string> notes;
    auto executors = BuildExecutors(*config, dir_.file("state.db"), &diags, &notes);
    ASSERT_OK(executors);
    auto options = DispatcherOptions::FromConfig(*config, &diags);
    ASSERT_OK(options);
    options->poll_interval_ms = 20;
    dispatcher_ = std::make_unique<ActionDispatcher>(dir_.file("state.db"), std::move(*executors),
                                                     *options, &clock_);
    ASSERT_OK(dispatcher_->Start());
  }

  // One incident with one mail action; returns the action's id.
  std::int64_t RecordIncident() {
    Incident inc;
    inc.playbook = "postfix-sasl-bruteforce";
    inc.description = "SASL brute force";
    inc.severity = Severity::kHigh;
    inc.key_kind = "client_ip";
    inc.key = "203.0.113.9";
    inc.trigger = "20 auth_failure in 10m (count >= 20)";
    inc.first_seen = kT0;
    inc.last_seen = kT0 + 60 * kMicrosPerSecond;
    inc.count = 20;
    inc.window_seconds = 600;
    inc.evidence.push_back({kT0,
                            "postfix/submission/smtpd[4101]: warning: unknown[203.0.113.9]: SASL "
                            "LOGIN authentication failed: UGFzc3dvcmQ6"});
    inc.actions.push_back({"mail", nlohmann::json::object(), false});
    std::vector<Incident> incidents = {inc};
    EXPECT_TRUE(store_->RecordIncidents(&incidents, kT0).ok());
    incident_id_ = incidents[0].id;
    auto actions = store_->ActionsForIncident(incident_id_);
    EXPECT_TRUE(actions.ok() && actions->size() == 1u);
    return (*actions)[0].id;
  }

  ActionRecord Get(std::int64_t id) { return *store_->GetAction(id); }

  bool WaitForStatus(std::int64_t id, ActionStatus status) {
    return testing::WaitUntil(std::chrono::seconds(30), [&] { return Get(id).status == status; });
  }

  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
  testing::ServerProcess receiver_;
  std::unique_ptr<ActionDispatcher> dispatcher_;
  ManualClock clock_{kT0};
  std::int64_t incident_id_ = 0;
};

TEST_F(MailSmtpTest, ArrivesOnceOverTlsAuthenticatedWithTheIncidentSummary) {
  const int port = StartReceiver(0);
  const std::int64_t id = RecordIncident();
  ASSERT_NO_FATAL_FAILURE(StartDispatcher(port, kPassword));
  ASSERT_TRUE(WaitForStatus(id, ActionStatus::kDone)) << Get(id).last_error;
  EXPECT_EQ(Get(id).attempts, 1);
  dispatcher_->Stop(std::chrono::seconds(5));

  const auto messages = ServerLog("message");
  ASSERT_EQ(messages.size(), 1u) << ReadWhole(dir_.file("smtp.jsonl"));
  const nlohmann::json& m = messages[0];
  EXPECT_EQ(m["tls"], true);
  EXPECT_TRUE(m["tls_version"] == "TLSv1.3" || m["tls_version"] == "TLSv1.2") << m["tls_version"];
  EXPECT_EQ(m["authenticated"], true);
  EXPECT_EQ(m["user"], kUser);
  EXPECT_EQ(m["mail_from"], "mxward@mx.example");
  EXPECT_EQ(m["rcpt_tos"], nlohmann::json::array({"admin@example.org"}));
  const std::string data = m["data"];
  for (const std::string& want : {
           fmt::format("Subject: [mxward] high postfix-sasl-bruteforce: client_ip 203.0.113.9"),
           fmt::format("Message-ID: <{}@mx.example>", Get(id).idempotency_key),
           fmt::format("Incident #{}: postfix-sasl-bruteforce", incident_id_),
           std::string("Key:        client_ip 203.0.113.9"),
           std::string("Count:      20 in 10m"),
           fmt::format("Link:       https://mx.example/incidents/{}", incident_id_),
           std::string("unknown[203.0.113.9]: SASL LOGIN authentication failed"),
       }) {
    EXPECT_NE(data.find(want), std::string::npos) << "missing '" << want << "' in\n" << data;
  }
  EXPECT_TRUE(ServerLog("login refused").empty());
}

TEST_F(MailSmtpTest, WrongPasswordFailsTheActionWithAClearError) {
  const int port = StartReceiver(0);
  const std::int64_t id = RecordIncident();
  ASSERT_NO_FATAL_FAILURE(StartDispatcher(port, "not the password"));
  ASSERT_TRUE(WaitForStatus(id, ActionStatus::kFailed)) << Get(id).last_error;
  const ActionRecord a = Get(id);
  EXPECT_EQ(a.attempts, 1) << "a refused login is not retried";
  EXPECT_NE(a.last_error.find("refused the login of user 'mxward'"), std::string::npos)
      << a.last_error;
  EXPECT_NE(a.last_error.find("SMTP 535"), std::string::npos) << a.last_error;
  EXPECT_NE(a.last_error.find("password_file"), std::string::npos) << a.last_error;
  EXPECT_EQ(a.last_error.find("not the password"), std::string::npos) << "secret in the error";
  // The server saw the attempt, under TLS only, and accepted nothing.
  const auto refused = ServerLog("login refused");
  ASSERT_FALSE(refused.empty());
  for (const auto& r : refused) EXPECT_EQ(r["tls"], true);
  EXPECT_TRUE(ServerLog("message").empty());
}

TEST_F(MailSmtpTest, ServerDownIsRetriedAndDeliveredOnceWhenItIsBack) {
  const int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  const std::int64_t id = RecordIncident();
  ASSERT_NO_FATAL_FAILURE(StartDispatcher(port, kPassword));
  // Nobody listens: transient, the action stays pending for a retry.
  ASSERT_TRUE(testing::WaitUntil(std::chrono::seconds(30), [&] { return Get(id).attempts >= 1; }));
  ActionRecord a = Get(id);
  EXPECT_EQ(a.status, ActionStatus::kPending) << a.last_error;
  EXPECT_NE(a.last_error.find(fmt::format("smtp://127.0.0.1:{}", port)), std::string::npos)
      << a.last_error;
  EXPECT_GT(a.next_attempt_at, a.updated_at) << "a retry is scheduled";

  ASSERT_EQ(StartReceiver(port), port);
  ASSERT_TRUE(testing::WaitUntil(std::chrono::seconds(30), [&] {
    clock_.Advance(3600 * kMicrosPerSecond);  // past any backoff
    dispatcher_->Notify();
    return Get(id).status == ActionStatus::kDone;
  })) << Get(id).last_error;
  dispatcher_->Stop(std::chrono::seconds(5));
  EXPECT_GE(Get(id).attempts, 2);
  const auto messages = ServerLog("message");
  ASSERT_EQ(messages.size(), 1u) << ReadWhole(dir_.file("smtp.jsonl"));
  EXPECT_EQ(messages[0]["tls"], true);
  EXPECT_EQ(messages[0]["authenticated"], true);
}

}  // namespace
}  // namespace mxward
