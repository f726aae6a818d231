// The policy servers in a real `mxward serve`, in a network namespace of the test's own: a real
// HTTP client asks as Dovecot does (auth_policy_server_url) and a socket client as Postfix does
// (check_policy_service). A ban decided from log lines, a ban decided from Dovecot reports
// (distinct password hashes), a hold decided at DATA, and a ban added by hand are all answered at
// once; bans survive a restart even with no [nftables] section (no firewall at all).
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/server_process.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
constexpr int kSyslogPort = 5514;
constexpr int kDovecotPort = 9581;
constexpr int kPostfixPort = 9582;
constexpr const char* kSecret = "policy-secret-for-tests";

class PolicyServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = testing::WriteSaslBanRules(dir_.path());
    std::ofstream(rules_ + "/dovecot-passwords.toml")
        << "description = \"distinct passwords from one address\"\nkey = \"client_ip\"\n"
           "[match]\nevents = [\"auth_failure\"]\nsource = \"dovecot-policy\"\n"
           "[trigger]\ntype = \"distinct\"\nfield = \"pwhash\"\nthreshold = 5\nwindow = \"10m\"\n"
           "[[action]]\ntype = \"ban\"\naddress = \"{client_ip}\"\nduration = \"1h\"\n";
    std::ofstream(rules_ + "/account-rate.toml")
        << "description = \"more than 3 messages in an hour\"\nkey = \"sasl_user\"\n"
           "[match]\nevents = [\"message_submitted\"]\nsource = \"postfix-policy\"\n"
           "[trigger]\ntype = \"count\"\nthreshold = 3\nwindow = \"1h\"\n"
           "[[action]]\ntype = \"hold_queue\"\nuser = \"{sasl_user}\"\nduration = \"1h\"\n";
    std::ofstream(dir_.file("policy.secret")) << kSecret << "\n";
    ::chmod(dir_.file("policy.secret").c_str(), 0600);  // a secret file others can read is refused
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    postfix_socket_ = dir_.file("spool/private/mxward-policy");
    config_ = dir_.file("mxward.toml");
    // No [nftables]: bans are recorded dry-run by the dispatcher, and the policy servers are
    // then the only thing that enforces them.
    std::ofstream(config_) << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kSyslogPort
                           << "\"\n[policy.dovecot]\nenabled = true\nlisten = \"127.0.0.1:"
                           << kDovecotPort << "\"\nsecret_file = \"" << dir_.file("policy.secret")
                           << "\"\n[policy.postfix]\nenabled = true\nsocket = \"" << postfix_socket_
                           << "\"\nlisten = \"127.0.0.1:" << kPostfixPort << "\"\n";
    Start();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  // log: a file of its own per start, so the "ready:" waited for is this start's.
  void Start(const std::string& log = "serve.log") {
    ASSERT_TRUE(daemon_.Start(
        kBinary, {"--db", db_, "--config", config_, "--rules", rules_, "--socket", socket_},
        dir_.file(log)));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << daemon_.Log();
  }

  // Dovecot's request: POST ?command=..., its JSON, its API header. The answer's status, or
  // -1000 when there was no JSON answer.
  static int AskDovecot(const std::string& command, const nlohmann::json& body,
                        const std::string& secret = kSecret) {
    asio::io_context io;
    beast::tcp_stream stream(io);
    beast::error_code ec;
    stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), kDovecotPort), ec);
    if (ec) return -1000;
    http::request<http::string_body> req{http::verb::post, "/?command=" + command, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.set("X-API-Key", secret);
    req.body() = body.dump();
    req.prepare_payload();
    http::write(stream, req, ec);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res, ec);
    if (ec || res.result() != http::status::ok) return -1000;
    const auto j = nlohmann::json::parse(res.body(), nullptr, false);
    return j.is_object() && j.contains("status") ? j["status"].get<int>() : -1000;
  }

  static nlohmann::json Attempt(const std::string& remote, const std::string& pwhash) {
    return {{"login", "alice@example.org"},
            {"pwhash", pwhash},
            {"remote", remote},
            {"device_id", ""},
            {"protocol", "imap"},
            {"session_id", "s1"},
            {"fail_type", "credentials"},
            {"success", false},
            {"policy_reject", false},
            {"tls", true}};
  }

  // One Postfix request over the unix socket; the action line.
  std::string AskPostfix(const std::string& state, const std::string& client,
                         const std::string& user = "", const std::string& queue_id = "") {
    return testing::AskPostfixPolicy(postfix_socket_,
                                     "request=smtpd_access_policy\nprotocol_state=" + state +
                                         "\nclient_address=" + client + "\nsasl_username=" + user +
                                         "\nqueue_id=" + queue_id + "\nrecipient_count=1\n");
  }

  // n Postfix SASL failures for addr, as the log says them.
  static void SendSaslFailures(const std::string& addr, int n) {
    const std::string stamp = SyslogStampNow();
    std::string data;
    for (int i = 0; i < n; ++i) {
      data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
              "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
    ASSERT_TRUE(SendTcp(kSyslogPort, data));
  }

  std::vector<Incident> Incidents(const std::string& playbook) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return {};
    IncidentQuery q;
    q.playbook = playbook;
    auto list = (*store)->ListIncidents(q);
    return list.ok() ? *list : std::vector<Incident>{};
  }

  TempDir dir_;
  std::string rules_, db_, socket_, postfix_socket_, config_;
  ServeProcess daemon_;
};

TEST_F(PolicyServeTest, ABanFromLogLinesIsAnsweredByBothServersAndSurvivesARestart) {
  const std::string attacker = "203.0.113.80";
  EXPECT_EQ(AskDovecot("allow", Attempt(attacker, "h")), 0);
  EXPECT_EQ(AskPostfix("CONNECT", attacker), "action=DUNNO");
  SendSaslFailures(attacker, 20);
  ASSERT_TRUE(daemon_.WaitFor([&] { return AskPostfix("CONNECT", attacker) != "action=DUNNO"; }))
      << daemon_.Log();
  EXPECT_EQ(AskPostfix("CONNECT", attacker), "action=REJECT 5.7.1 Access denied by policy");
  EXPECT_EQ(AskDovecot("allow", Attempt(attacker, "h")), -1);
  EXPECT_EQ(AskDovecot("allow", Attempt("203.0.113.81", "h")), 0);
  // Written to the store (and handed to the dispatcher, which has no firewall to run it).
  ASSERT_TRUE(daemon_.WaitFor([&] { return Incidents("postfix-sasl").size() == 1; }));

  ASSERT_TRUE(daemon_.Stop()) << daemon_.Log();
  Start("serve-after-restart.log");
  EXPECT_EQ(AskPostfix("MAIL", attacker), "action=REJECT 5.7.1 Access denied by policy");
  EXPECT_EQ(AskDovecot("allow", Attempt(attacker, "h")), -1);
  EXPECT_NE(daemon_.Log().find("policy: 1 decisions in force loaded from the store"),
            std::string::npos)
      << daemon_.Log();
}

TEST_F(PolicyServeTest, DistinctPasswordHashesBanADictionaryNotAStalePhone) {
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(AskDovecot("allow", Attempt("198.51.100.6", "stale")), 0) << i;
    ASSERT_EQ(AskDovecot("report", Attempt("198.51.100.6", "stale")), 0) << i;
  }
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(AskDovecot("allow", Attempt("198.51.100.5", "guess" + std::to_string(i))), 0) << i;
    ASSERT_EQ(AskDovecot("report", Attempt("198.51.100.5", "guess" + std::to_string(i))), 0);
  }
  EXPECT_EQ(AskDovecot("allow", Attempt("198.51.100.5", "right")), -1);
  EXPECT_EQ(AskDovecot("allow", Attempt("198.51.100.6", "stale")), 0);
  // The log playbook (postfix-sasl) never counted a report; the incident is the policy's.
  ASSERT_TRUE(daemon_.WaitFor([&] { return Incidents("dovecot-passwords").size() == 1; }));
  EXPECT_EQ(Incidents("dovecot-passwords")[0].key, "198.51.100.5");
  EXPECT_TRUE(Incidents("postfix-sasl").empty());
}

TEST_F(PolicyServeTest, TheMessagePastTheAccountLimitIsHeldAndTheIncidentNamesIt) {
  EXPECT_EQ(AskPostfix("DATA", "192.0.2.30", "bob@example.org", "3F1A1"), "action=DUNNO");
  EXPECT_EQ(AskPostfix("DATA", "192.0.2.30", "bob@example.org", "3F1A2"), "action=DUNNO");
  EXPECT_EQ(AskPostfix("DATA", "192.0.2.30", "bob@example.org", "3F1A3"),
            "action=HOLD mxward: held for review");
  EXPECT_EQ(AskPostfix("RCPT", "192.0.2.30", "bob@example.org"),
            "action=HOLD mxward: held for review");
  EXPECT_EQ(AskPostfix("RCPT", "192.0.2.30", "carol@example.org"), "action=DUNNO");
  // Counted on /metrics: two HOLD answers, one decision about an account.
  const std::string metrics = testing::HttpGet(9580, "/metrics");
  EXPECT_NE(metrics.find("mxward_policy_requests_total{type=\"postfix\",outcome=\"hold\"} 2\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("mxward_policy_decisions{type=\"account\"} 1\n"), std::string::npos);
  ASSERT_TRUE(daemon_.WaitFor([&] { return Incidents("account-rate").size() == 1; }));
  auto store = IncidentStore::Open(db_);
  ASSERT_OK(store);
  auto actions = (*store)->ActionsForIncident(Incidents("account-rate")[0].id);
  ASSERT_OK(actions);
  ASSERT_EQ(actions->size(), 1u);
  EXPECT_EQ((*actions)[0].type, "hold_queue");
  EXPECT_EQ((*actions)[0].params["queue_ids"], nlohmann::json::array({"3F1A3"}));
}

TEST_F(PolicyServeTest, ABanByHandHoldsAtOnceAndItsRemovalToo) {
  auto mxward = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--db", db_, "--config", config_, "--socket", socket_});
    return RunCommand(argv, "", {"TZ=UTC"});
  };
  // No [nftables] here: the ban action is dry-run (exit 4), the policy servers enforce it.
  auto r = mxward({"bans", "add", "192.0.2.0/24", "--for", "1h"});
  ASSERT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_EQ(AskPostfix("CONNECT", "192.0.2.77"), "action=REJECT 5.7.1 Access denied by policy");
  EXPECT_EQ(AskDovecot("allow", Attempt("192.0.2.77", "x")), -1);
  r = mxward({"bans", "remove", "192.0.2.0/24"});
  ASSERT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_EQ(AskPostfix("CONNECT", "192.0.2.77"), "action=DUNNO");
  EXPECT_EQ(AskDovecot("allow", Attempt("192.0.2.77", "x")), 0);
}

// SIGHUP: a rotated secret file and a moved Postfix socket take effect without a restart.
TEST_F(PolicyServeTest, SighupRotatesTheDovecotSecretAndMovesThePostfixSocket) {
  ASSERT_EQ(AskDovecot("allow", Attempt("192.0.2.60", "x")), 0);
  ASSERT_EQ(AskPostfix("RCPT", "192.0.2.60"), "action=DUNNO");
  const std::string old_socket = postfix_socket_;
  std::ofstream(dir_.file("policy.secret")) << "rotated-secret\n";
  std::string config = testing::ServerProcess::ReadFile(config_);
  config.replace(config.find(old_socket), old_socket.size(), dir_.file("spool/private/moved"));
  std::ofstream(config_) << config;
  ASSERT_TRUE(daemon_.Signal(SIGHUP));
  ASSERT_TRUE(daemon_.WaitForLog("[policy.postfix] reloaded")) << daemon_.Log();
  ASSERT_TRUE(daemon_.WaitForLog("[policy.dovecot] reloaded")) << daemon_.Log();

  EXPECT_EQ(AskDovecot("allow", Attempt("192.0.2.60", "x")), -1000) << "the old secret (401)";
  EXPECT_EQ(AskDovecot("allow", Attempt("192.0.2.60", "x"), "rotated-secret"), 0);
  EXPECT_FALSE(std::filesystem::exists(old_socket));
  postfix_socket_ = dir_.file("spool/private/moved");
  EXPECT_EQ(AskPostfix("RCPT", "192.0.2.60"), "action=DUNNO");
}

TEST_F(PolicyServeTest, CheckValidatesThePolicySections) {
  const std::string bad = dir_.file("bad.toml");
  std::ofstream(bad) << "[policy.dovecot]\nenabled = true\nlisten = \"localhost:1\"\n"
                        "secret_file = \"/nonexistent/secret\"\n[policy.postfix]\nenabled = true\n"
                        "socket_mode = \"rw\"\n[policy.other]\n";
  auto r = RunCommand({kBinary, "check", "--config", bad, "--rules", rules_});
  EXPECT_EQ(r.exit_code, 1);
  for (const char* needle :
       {"bad.toml:3:10: error: listen address 'localhost:1'",
        "cannot open secret file /nonexistent/secret", "'socket_mode': expected an octal",
        "neither 'socket' nor 'listen'", "unknown key 'other' in [policy]"}) {
    EXPECT_NE(r.err.find(needle), std::string::npos) << needle << "\n" << r.err;
  }
  // Off loopback without a secret, anyone who reaches the port could report failures and get
  // addresses banned: refused.
  const std::string open = dir_.file("open.toml");
  std::ofstream(open) << "[policy.dovecot]\nenabled = true\nlisten = \"0.0.0.0:9581\"\n"
                         "[policy.postfix]\nenabled = true\nlisten = \"0.0.0.0:9582\"\n";
  r = RunCommand({kBinary, "check", "--config", open, "--rules", rules_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("open.toml:3:10: error: [policy.dovecot] listens on 0.0.0.0 without "
                       "secret_file"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("open.toml:6:10: error: [policy.postfix] listen must be a loopback "
                       "address, not 0.0.0.0"),
            std::string::npos)
      << r.err;
  r = RunCommand({kBinary, "check", "--config", config_, "--rules", rules_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace mxward
