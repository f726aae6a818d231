// Real servers, real clients: Postfix (Debian 12: 3.7) and Dovecot (2.3.19) from Debian's
// packages with private configurations (dovecot -c FILE, postfix -c DIR), Postfix SASL through
// Dovecot's auth socket, in a network namespace this test makes. Python clients (smtplib,
// imaplib, poplib; tests/integration/real_mail_servers.py) fail to log in every way a client can
// — wrong password, unknown user, PLAIN and LOGIN, plaintext where the listener forbids it,
// connect-and-drop, many attempts on one connection — from one source address per scenario, and
// log in successfully from another. The servers' logs then go through the real binary:
//  - `mxward explain --jsonl`: per address, the attempts counted (auth_failure events and held
//    lines released, summed by weight) equal the attempts made; successes are never counted;
//  - `mxward replay` with the shipped playbooks: every address over a playbook's threshold has
//    its incident.
// Variants: auth_verbose off / on (passdb lines held and settled, docs/parsers.md "One attempt,
// one event"), auth_debug on, Postfix smtpd_client_port_logging on. Users of one domain go
// through two chained passdbs (passwd, then passwd-file): with auth_verbose each attempt of
// theirs is two passdb lines, counted once, with and without the login process's line, over IMAP
// and over SMTP AUTH through Postfix (whose requests carry no session), with either program's
// lines alone, and a success through the chain is not counted. It prints
// the per-protocol table that docs/parsers.md quotes. About 30 s per variant. RealDovecotPolicyTest
// points the same Dovecot's auth_policy_server_url and Postfix's check_policy_service at a real
// `mxward serve` (docs/policy.md). RealRoundcubeTest adds Debian's Roundcube (php -S) logging in
// against the same Dovecot over HTTP, with log_driver file and syslog, and a trusted-proxy /
// untrusted-forwarder pair.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::NetworkNamespace;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kScript =
    std::string(MXWARD_SOURCE_DIR) + "/tests/integration/real_mail_servers.py";
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

struct Variant {
  std::string name;
  std::string auth_verbose, auth_debug, port_logging;
};
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

struct Counted {
  std::uint64_t failures = 0;   // auth_failure weight: attempts counted
  std::uint64_t successes = 0;  // auth_success events
};

// What mxward makes of a log, per client address.
std::map<std::string, Counted> CountPerAddress(const std::string& log, const std::string& config,
                                               std::string* error) {
  auto r = RunCommand({kBinary, "--config", config, "--rules", kRules, "explain", "--jsonl", log});
  if (r.exit_code != 0) {
    *error = "explain failed: " + r.err;
    return {};
  }
  std::map<std::string, Counted> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string outcome = j.value("outcome", "");
    if ((outcome != "event" && outcome != "released") || !j["ip"].is_string()) continue;
    const std::string event = j["event"].get<std::string>();
    Counted& c = out[j["ip"].get<std::string>()];
    if (event == "auth_failure") c.failures += j.value("weight", 1u);
    if (event == "auth_success") ++c.successes;
  }
  return out;
}

// Per address: counted == made, successes never counted (and their success lines read).
// Returns the table docs/parsers.md quotes. `config`: mxward.toml for explain (trusted_proxies).
std::string CheckCounts(const nlohmann::json& result, const std::string& config = "/dev/null") {
  std::string error;
  const auto counted = CountPerAddress(result["merged"].get<std::string>(), config, &error);
  EXPECT_TRUE(error.empty()) << error;
  std::string table = "| protocol, how | address | attempts made | counted |\n|---|---|---|---|\n";
  for (const auto& [ip, made] : result["made"].items()) {
    const std::string protocol = made["protocol"].get<std::string>();
    const std::uint64_t attempts = made["attempts"].get<std::uint64_t>();
    const auto it = counted.find(ip);
    const Counted c = it == counted.end() ? Counted{} : it->second;
    // Failed attempts no server line logs (a failure before a login on one connection, without
    // auth_verbose): noted in the table, not counted.
    const std::uint64_t unlogged = made.value("attempts_unlogged", std::uint64_t{0});
    table += "| " + protocol +
             (unlogged > 0 ? " (+" + std::to_string(unlogged) + " not logged)" : "") + " | " + ip +
             " | " + std::to_string(attempts) + " | " + std::to_string(c.failures) + " |\n";
    EXPECT_EQ(c.failures, attempts) << protocol << " from " << ip;
    if (made["successes"].get<int>() > 0) {
      // A successful login is never counted (its address's failures, if any, are, once each).
      EXPECT_EQ(c.failures, attempts) << "a successful login was counted, from " << ip;
      EXPECT_GE(c.successes, made["successes_logged"].get<std::uint64_t>())
          << "success lines (Dovecot's Login:, Roundcube's Successful login) from " << ip;
    }
  }
  return table;
}

std::set<std::pair<std::string, std::string>> Incidents(const std::string& db, std::string* raw) {
  auto list = RunCommand({kBinary, "incidents", "list", "--json", "--limit", "1000", "--db", db});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  *raw = list.out;
  std::set<std::pair<std::string, std::string>> out;
  if (list.exit_code != 0) return out;
  for (const auto& i : nlohmann::json::parse(list.out)) {
    out.emplace(i["playbook"].get<std::string>(), i["key"].get<std::string>());
  }
  return out;
}

// The servers need root (their users, ports, the namespaces) and Debian's packages.
std::string WhyNotRunnable() {
  if (geteuid() != 0) return "needs root (network and mount namespaces, the servers' users)";
  for (const char* bin : {"/usr/sbin/dovecot", "/usr/sbin/postfix"}) {
    if (!std::filesystem::exists(bin)) {
      return std::string(bin) +
             " missing: packaging/install-deps.sh test installs postfix and "
             "dovecot-core/imapd/pop3d/submissiond";
    }
  }
  return "";
}

// real_mail_servers.py's users of the chained passdbs (198.51.100.10 + index of their name): one
// wrong password; an unknown user, 2 connections x 3 attempts.
constexpr const char* kChainedOnce = "198.51.100.23";
constexpr const char* kChainedMany = "198.51.100.24";
// The same over SMTP AUTH through Postfix (no session in Dovecot's lines): one wrong password; an
// unknown user, 2 connections x 3 attempts; a success the first passdb refused.
constexpr const char* kSmtpChainedOnce = "198.51.100.25";
constexpr const char* kSmtpChainedMany = "198.51.100.26";
constexpr const char* kSmtpChainedSuccess = "198.51.100.27";
// IMAP and POP3 logins of carol through the chain (passwd refuses, passwd-file accepts), alone and
// after one wrong password on the same connection.
constexpr const char* kImapChainedLogin = "198.51.100.28";
constexpr const char* kImapChainedFailLogin = "198.51.100.29";
constexpr const char* kPop3ChainedLogin = "198.51.100.30";
constexpr const char* kPop3ChainedFailLogin = "198.51.100.31";

// The merged log without the lines that contain `drop` (a program logging elsewhere), written to
// `out`; what mxward counts per address in it.
std::map<std::string, Counted> CountWithout(const nlohmann::json& result, const std::string& drop,
                                            const std::string& out) {
  {
    std::ifstream in(result["merged"].get<std::string>());
    std::ofstream kept(out);
    for (std::string line; std::getline(in, line);) {
      if (line.find(drop) == std::string::npos) kept << line << "\n";
    }
  }
  std::string error;
  auto counted = CountPerAddress(out, "/dev/null", &error);
  EXPECT_TRUE(error.empty()) << error;
  return counted;
}

std::uint64_t FailuresOf(const std::map<std::string, Counted>& counted, const std::string& ip) {
  const auto it = counted.find(ip);
  return it == counted.end() ? 0u : it->second.failures;
}

class RealMailServersTest : public ::testing::TestWithParam<Variant> {
 protected:
  static void SetUpTestSuite() { (void)NetworkNamespace::Enter(); }
};

// Dovecot log_path and Postfix maillog_file: files, read as a replay would.
TEST_P(RealMailServersTest, EveryFailedLoginIsCountedOnceAndNoSuccessIs) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(NetworkNamespace::Enter().ok()) << NetworkNamespace::Enter().error();
  const Variant& v = GetParam();
  TempDir dir;
  auto run = RunCommand({"python3", kScript, dir.path(), "--auth-verbose", v.auth_verbose,
                         "--auth-debug", v.auth_debug, "--port-logging", v.port_logging});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  const auto result = nlohmann::json::parse(run.out);

  const std::string table = CheckCounts(result);
  std::printf("\nfiles, %s (auth_verbose=%s auth_debug=%s smtpd_client_port_logging=%s)\n%s",
              v.name.c_str(), v.auth_verbose.c_str(), v.auth_debug.c_str(), v.port_logging.c_str(),
              table.c_str());

  // The shipped playbooks over the same log: each address over a threshold has its incident.
  const std::string db = dir.file("state.db");
  auto replay = RunCommand({kBinary, "replay", "--db", db, "--rules", kRules, "--config",
                            "/dev/null", result["merged"].get<std::string>()});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  std::string raw;
  const auto incidents = Incidents(db, &raw);
  EXPECT_TRUE(incidents.count({"dovecot-auth", "198.51.100.20"})) << raw;
  EXPECT_TRUE(incidents.count({"postfix-sasl", "198.51.100.21"})) << raw;
  for (const auto& [playbook, key] : incidents) {
    EXPECT_NE(key, "198.51.100.19") << playbook << " opened an incident for the successes";
  }
  // Chained passdbs: 6 attempts (dovecot-auth's threshold is 10) written by 12 passdb lines
  // with auth_verbose. The incident counts attempts, not lines.
  EXPECT_FALSE(incidents.count({"dovecot-auth", kChainedMany})) << raw;

  // Chained passdbs over SMTP AUTH: 6 attempts under postfix-sasl's 20, written by 12 passdb
  // lines and 6 SASL warnings.
  EXPECT_FALSE(incidents.count({"postfix-sasl", kSmtpChainedMany})) << raw;

  // The chained logins were made as described, and their failures are logged only with
  // auth_verbose (the login process writes "Login:", no "auth failed" line, for the connection).
  for (const char* ip : {kImapChainedLogin, kPop3ChainedLogin}) {
    EXPECT_EQ(result["made"][ip]["successes"].get<int>(), 1) << ip;
    EXPECT_EQ(result["made"][ip]["attempts"].get<int>(), 0) << ip;
  }
  for (const char* ip : {kImapChainedFailLogin, kPop3ChainedFailLogin}) {
    EXPECT_EQ(result["made"][ip]["successes"].get<int>(), 1) << ip;
    EXPECT_EQ(result["made"][ip]["attempts"].get<int>(), v.auth_verbose == "yes" ? 1 : 0) << ip;
    EXPECT_EQ(result["made"][ip]["attempts_unlogged"].get<int>(), v.auth_verbose == "yes" ? 0 : 1)
        << ip;
  }

  // The login process's lines gone (another file, a shape we do not read): the held passdb
  // lines are released, and the two passdbs' lines of each attempt still count it once. The
  // same for Postfix's lines gone (SMTP AUTH: Dovecot's lines have no session); and with
  // Dovecot's lines gone, Postfix's alone count each attempt once.
  if (v.auth_verbose == "yes") {
    const auto passdb_only = CountWithout(result, "-login: ", dir.file("passdb-only.log"));
    for (const char* ip : {kChainedOnce, kChainedMany}) {
      EXPECT_EQ(FailuresOf(passdb_only, ip), result["made"][ip]["attempts"].get<std::uint64_t>())
          << "released passdb lines of " << ip;
    }
    const auto without_postfix = CountWithout(result, " postfix/", dir.file("dovecot-only.log"));
    for (const char* ip : {kSmtpChainedOnce, kSmtpChainedMany}) {
      EXPECT_EQ(FailuresOf(without_postfix, ip),
                result["made"][ip]["attempts"].get<std::uint64_t>())
          << "released passdb lines of SMTP AUTH from " << ip;
    }
    std::printf("Dovecot's lines alone: %s counted %llu (made %llu), %s counted %llu (made %llu)\n",
                kSmtpChainedOnce,
                static_cast<unsigned long long>(FailuresOf(without_postfix, kSmtpChainedOnce)),
                static_cast<unsigned long long>(
                    result["made"][kSmtpChainedOnce]["attempts"].get<std::uint64_t>()),
                kSmtpChainedMany,
                static_cast<unsigned long long>(FailuresOf(without_postfix, kSmtpChainedMany)),
                static_cast<unsigned long long>(
                    result["made"][kSmtpChainedMany]["attempts"].get<std::uint64_t>()));
  }
  const auto postfix_only = CountWithout(result, " dovecot: ", dir.file("postfix-only.log"));
  for (const char* ip : {kSmtpChainedOnce, kSmtpChainedMany, kSmtpChainedSuccess}) {
    EXPECT_EQ(FailuresOf(postfix_only, ip), result["made"][ip]["attempts"].get<std::uint64_t>())
        << "Postfix's lines alone, SMTP AUTH from " << ip;
  }
}

// Dovecot log_path = syslog and Postfix's syslog: both write to /dev/log, which in the servers'
// mount namespace is a relay that records each datagram and passes it to the running daemon's
// unix-dgram input. The record gives the counts; the daemon must open the incidents live.
TEST(RealMailServersSyslogTest, ThroughTheDaemonsUnixSocket) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(NetworkNamespace::Enter().ok()) << NetworkNamespace::Enter().error();
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  const std::string sock = dir.file("mxward.sock");
  const std::string db = dir.file("state.db");
  std::ofstream(dir.file("mxward.toml"))
      << "dry_run = true\n[[input]]\ntype = \"unix-dgram\"\npath = \"" << sock
      << "\"\nmode = \"0666\"\n";
  testing::ServeProcess daemon;
  ASSERT_TRUE(daemon.Start(kBinary,
                           {"--db", db, "--config", dir.file("mxward.toml"), "--rules", kRules,
                            "--socket", dir.file("control.sock")},
                           dir.file("serve.log")));
  ASSERT_TRUE(daemon.WaitForLog("ready:")) << daemon.Log();

  auto run = RunCommand(
      {"python3", kScript, dir.path(), "--auth-verbose", "yes", "--syslog", "--forward", sock});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  const auto result = nlohmann::json::parse(run.out);
  const std::string table = CheckCounts(result);
  std::printf("\nsyslog to the daemon's unix socket (auth_verbose=yes)\n%s", table.c_str());

  std::string raw;
  EXPECT_TRUE(daemon.WaitFor([&] {
    const auto incidents = Incidents(db, &raw);
    return incidents.count({"dovecot-auth", "198.51.100.20"}) &&
           incidents.count({"postfix-sasl", "198.51.100.21"});
  })) << raw
      << daemon.Log();
  for (const auto& [playbook, key] : Incidents(db, &raw)) {
    EXPECT_NE(key, "198.51.100.19") << playbook << " opened an incident for the successes";
  }
  EXPECT_TRUE(daemon.Stop()) << daemon.Log();
}

// Dovecot asks a real `mxward serve` before every login (auth_policy_server_url, fail-open as
// docs/policy.md ships it), and mxward counts distinct password hashes from Dovecot's reports
// (a playbook with source = "dovecot-policy"). A dictionary over IMAP is refused by policy, so
// the right password fails afterwards; a phone retrying one stale password 200 times is one
// guess and still gets in; a dictionary over SMTP AUTH through Postfix (Dovecot's SASL socket)
// is covered by the same policy; an address nobody attacked from gets in.
TEST(RealDovecotPolicyTest, DistinctPasswordsAreRefusedByPolicyAStalePhoneIsNot) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(NetworkNamespace::Enter().ok()) << NetworkNamespace::Enter().error();
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  const std::string rules = testing::WriteSaslBanRules(dir.path());
  std::ofstream(rules + "/dovecot-passwords.toml")
      << "description = \"distinct passwords from one address\"\nkey = \"client_ip\"\n"
         "[match]\nevents = [\"auth_failure\"]\nsource = \"dovecot-policy\"\n"
         "[trigger]\ntype = \"distinct\"\nfield = \"pwhash\"\nthreshold = 5\n"
         "window = \"10m\"\n[policy]\ndelay_from = 3\ndelay = \"1s\"\n"
         "[[action]]\ntype = \"ban\"\naddress = \"{client_ip}\"\nduration = \"1h\"\n";
  std::ofstream(rules + "/account-rate.toml")
      << "description = \"more than 2 messages in an hour\"\nkey = \"sasl_user\"\n"
         "[match]\nevents = [\"message_submitted\"]\nsource = \"postfix-policy\"\n"
         "[trigger]\ntype = \"count\"\nthreshold = 3\nwindow = \"1h\"\n"
         "[[action]]\ntype = \"hold_queue\"\nuser = \"{sasl_user}\"\nduration = \"1h\"\n";
  std::ofstream(rules + "/rcpt-domains.toml")
      << "description = \"4 recipient domains at RCPT in an hour\"\nkey = \"sasl_user\"\n"
         "[match]\nevents = [\"recipient_submitted\"]\nsource = \"postfix-policy\"\n"
         "[trigger]\ntype = \"distinct\"\nfield = \"recipient_domain\"\nthreshold = 4\n"
         "window = \"1h\"\n[[action]]\ntype = \"suspend_sending\"\nuser = \"{sasl_user}\"\n"
         "duration = \"1h\"\n";
  const std::string secret = "real-servers-policy-secret";
  std::ofstream(dir.file("policy.secret")) << secret << "\n";
  ::chmod(dir.file("policy.secret").c_str(), 0600);
  const std::string db = dir.file("state.db");
  // The test's clients (198.51.100.10-14) are addresses of this namespace's own interface, which
  // [allow] own_addresses would allowlist: here they stand for outside hosts.
  std::ofstream(dir.file("mxward.toml"))
      << "[allow]\nown_addresses = false\n"
      << "[[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:5514\"\n[policy.dovecot]\n"
         "enabled = true\nlisten = \"127.0.0.1:9581\"\nsecret_file = \""
      << dir.file("policy.secret")
      // Postfix's unix:private/mxward-policy in the queue directory real_mail_servers.py gives it.
      << "\"\n[policy.postfix]\nenabled = true\nsocket = \""
      << dir.file("postfix-queue/private/mxward-policy") << "\"\nsocket_group = \"postfix\"\n";
  // private/ is Postfix's (its master makes its own sockets there), as in an installed Postfix
  // where mxward's socket joins them; one mxward made would be root's and Postfix would not start.
  ASSERT_EQ(RunCommand({"install", "-d", "-o", "postfix", "-g", "root", "-m", "0700",
                        dir.file("postfix-queue/private")})
                .exit_code,
            0);
  testing::ServeProcess daemon;
  ASSERT_TRUE(daemon.Start(kBinary,
                           {"--db", db, "--config", dir.file("mxward.toml"), "--rules", rules,
                            "--socket", dir.file("control.sock")},
                           dir.file("serve.log")));
  ASSERT_TRUE(daemon.WaitForLog("ready:")) << daemon.Log();

  // auth_verbose: Dovecot logs "Authentication failure due to policy server refusal" only then.
  auto run = RunCommand({"python3", kScript, dir.path(), "--auth-verbose", "yes", "--policy",
                         "http://127.0.0.1:9581/", "--policy-header", "X-API-Key:" + secret,
                         "--policy-guesses", "5"});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out << daemon.Log();
  const auto result = nlohmann::json::parse(run.out);
  const auto& policy = result["policy"];
  EXPECT_TRUE(policy["dictionary_refused_by_policy"].get<bool>()) << run.out;
  EXPECT_FALSE(policy["dictionary_then_right_password"].get<bool>()) << run.out;
  EXPECT_TRUE(policy["stale_phone_then_right_password"].get<bool>()) << run.out;
  EXPECT_TRUE(policy["smtp_dictionary_refused_by_policy"].get<bool>()) << run.out;
  EXPECT_FALSE(policy["smtp_dictionary_then_right_password"].get<bool>()) << run.out;
  EXPECT_TRUE(policy["bystander_right_password"].get<bool>()) << run.out;

  // Postfix asked mxward: the address banned for its IMAP dictionary is refused at RCPT, and
  // the third message of the account (the threshold) and the fourth are in the hold queue.
  EXPECT_EQ(policy["banned_address_rcpt_code"].get<int>(), 554) << run.out;
  EXPECT_EQ(policy["messages_accepted"], nlohmann::json::array({true, true, true, true}));
  std::set<std::string> held;
  for (const auto& m : policy["queue"]) {
    if (m["queue_name"] == "hold") held.insert(m["queue_id"].get<std::string>());
  }
  EXPECT_EQ(held.size(), 2u) << run.out;
  // Asked at each RCPT (twice, by the client and the recipient restrictions, counted once), the
  // fourth new domain pauses the account: it and the two after it are deferred (450), before
  // Postfix accepted them.
  EXPECT_EQ(policy["spam_run_rcpt_codes"], nlohmann::json::array({250, 250, 250, 450, 450, 450}))
      << run.out;

  // Dovecot says why the right password failed.
  std::string dovecot_log;
  for (const auto& path : result["logs"]) {
    std::ifstream in(path.get<std::string>());
    dovecot_log += std::string(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_NE(dovecot_log.find("policy server refusal"), std::string::npos) << dovecot_log;
  // From the third distinct password on, mxward answered "wait 1 s" (the playbook's [policy]),
  // and Dovecot (src/auth/auth-policy.c) says it tarpitted the attempt.
  EXPECT_NE(dovecot_log.find("Policy check action is tarpit 1 second(s)"), std::string::npos)
      << dovecot_log;

  std::string raw;
  const std::string dictionary = result["ips"]["policy_dictionary"].get<std::string>();
  const std::string smtp = result["ips"]["policy_smtp_dictionary"].get<std::string>();
  const std::string phone = result["ips"]["policy_stale_phone"].get<std::string>();
  EXPECT_TRUE(daemon.WaitFor([&] {
    const auto incidents = Incidents(db, &raw);
    return incidents.count({"dovecot-passwords", dictionary}) &&
           incidents.count({"dovecot-passwords", smtp});
  })) << raw;
  for (const auto& [playbook, key] : Incidents(db, &raw)) {
    EXPECT_NE(key, phone) << playbook << " opened an incident for the stale password";
  }
  // The hold incident names the message that crossed the threshold, one of the held two.
  ASSERT_TRUE(Incidents(db, &raw).count({"account-rate", "bob@example.org"})) << raw;
  auto store = IncidentStore::Open(db);
  ASSERT_TRUE(store.ok());
  IncidentQuery q;
  q.playbook = "account-rate";
  auto list = (*store)->ListIncidents(q);
  ASSERT_TRUE(list.ok() && list->size() == 1u);
  auto actions = (*store)->ActionsForIncident((*list)[0].id);
  ASSERT_TRUE(actions.ok() && actions->size() == 1u);
  const auto& queue_ids = (*actions)[0].params["queue_ids"];
  ASSERT_EQ(queue_ids.size(), 1u) << queue_ids.dump();
  EXPECT_TRUE(held.count(queue_ids[0].get<std::string>())) << queue_ids.dump() << run.out;
  EXPECT_TRUE(daemon.Stop()) << daemon.Log();
}

// Roundcube (Debian's roundcube-core, SQLite) under php's built-in server, logging in against
// the same Dovecot from 127.0.0.1 (Dovecot also listens there). Browsers fail to log in over
// HTTP from their own addresses; a trusted proxy (in [rules] trusted_proxies) acts for a browser
// with X-Forwarded-For / X-Real-IP; an untrusted forwarder sends the same headers naming a
// victim; one login succeeds. Roundcube logs to its log_dir files (errors.log, userlogins.log,
// merged with Dovecot's log_path file by time) or to syslog (recorded by the relay).
struct RoundcubeVariant {
  std::string name;
  std::vector<std::string> script_args;
};
void PrintTo(const RoundcubeVariant& v, std::ostream* os) { *os << v.name; }

class RealRoundcubeTest : public ::testing::TestWithParam<RoundcubeVariant> {
 protected:
  static void SetUpTestSuite() { (void)NetworkNamespace::Enter(); }
};

// real_mail_servers.py's addresses for the Roundcube run (198.51.100.10 + index of its name).
constexpr const char* kTrustedProxy = "198.51.100.13";
constexpr const char* kBehindProxy = "198.51.100.12";

TEST_P(RealRoundcubeTest, EachLoginCountedOnceWithTheBrowsersAddress) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  for (const char* path : {"/usr/bin/php", "/var/lib/roundcube/public_html/index.php",
                           "/usr/share/roundcube/SQL/sqlite.initial.sql"}) {
    if (!std::filesystem::exists(path)) {
      GTEST_SKIP() << path
                   << " missing: packaging/install-deps.sh test installs roundcube-core, "
                      "roundcube-sqlite3 and php-cli";
    }
  }
  ASSERT_TRUE(NetworkNamespace::Enter().ok()) << NetworkNamespace::Enter().error();
  const RoundcubeVariant& v = GetParam();
  TempDir dir;
  std::vector<std::string> argv = {"python3", kScript, dir.path(), "--auth-verbose", "yes"};
  argv.insert(argv.end(), v.script_args.begin(), v.script_args.end());
  auto run = RunCommand(argv);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  const auto result = nlohmann::json::parse(run.out);

  // Every Roundcube attempt also failed in Dovecot, from loopback: those lines are there, and
  // CheckCounts' row for 127.0.0.1 (0 made) shows they were folded.
  std::uint64_t attempts = 0;
  for (const auto& [ip, made] : result["made"].items()) {
    attempts += made["attempts"].get<std::uint64_t>();
  }
  EXPECT_EQ(result["dovecot_loopback_failures"].get<std::uint64_t>(), attempts);

  const std::string config = dir.file("mxward.toml");
  std::ofstream(config) << "[rules]\ntrusted_proxies = [\"127.0.0.0/8\", \"::1\", \""
                        << kTrustedProxy << "\"]\n";
  const std::string table = CheckCounts(result, config);
  std::printf("\nroundcube, %s (trusted_proxies: loopback, %s)\n%s", v.name.c_str(), kTrustedProxy,
              table.c_str());

  // Without the proxy in trusted_proxies its headers are the client's text: the proxy counts.
  std::string error;
  const auto untrusted = CountPerAddress(result["merged"].get<std::string>(), "/dev/null", &error);
  EXPECT_TRUE(error.empty()) << error;
  const auto proxy = untrusted.find(kTrustedProxy);
  EXPECT_EQ(proxy == untrusted.end() ? 0u : proxy->second.failures,
            result["made"][kBehindProxy]["attempts"].get<std::uint64_t>());
  EXPECT_EQ(untrusted.count(kBehindProxy), 0u) << "a header was believed from an untrusted peer";
}

INSTANTIATE_TEST_SUITE_P(
    Variants, RealRoundcubeTest,
    ::testing::Values(RoundcubeVariant{"log_driver_file", {"--roundcube", "file"}},
                      RoundcubeVariant{"log_driver_syslog", {"--syslog", "--roundcube", "syslog"}}),
    [](const ::testing::TestParamInfo<RoundcubeVariant>& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Variants, RealMailServersTest,
    ::testing::Values(Variant{"auth_verbose_off", "no", "no", "no"},
                      Variant{"auth_verbose_on_port_logging", "yes", "no", "yes"},
                      Variant{"auth_debug_on", "yes", "yes", "no"}),
    [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

}  // namespace
}  // namespace mxward
