// Fault tests for the action path (issue 9, "Faults"): what survives a database outage and a
// kill -9 of the daemon, checked on the real parts (a real MariaDB / PostgreSQL server started by
// the test, the real ActionDispatcher and PostfixAdminAccounts).
#include <sqlite3.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actions/postfixadmin/postfixadmin_accounts.h"
#include "mxward/action_dispatcher.h"
#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/eventually.h"
#include "support/nft_sets.h"
#include "support/postfixadmin_scenarios.h"
#include "support/server_process.h"
#include "support/sql_servers.h"
#include "support/status_matchers.h"

using mxward::testing::Eventually;

namespace mxward {
namespace {

using testing::TempDir;

// The database of PostfixAdmin goes away while a suspension is due, stays away through several
// retries, and comes back: the suspension is applied exactly once (one `log` row, smtp_active 0,
// one saved `previous`).
//
// An outage of minutes is the same sequence as this one with more retries: the backoff here is
// shortened to milliseconds ([dispatcher] backoff_base/backoff_max) so the test runs in seconds;
// what is checked, that a failed attempt changes nothing and the first successful one changes
// everything once, does not depend on how long the server was away.
template <typename Server>
void SuspensionSurvivesADatabaseOutage(Server& server) {
  TempDir dir;
  PostfixAdminOptions options;
  ASSERT_EQ(testing::StartPostfixAdminDatabase(server, &options.database), "");
  options.database.connect_timeout_s = 2;
  const std::string store_path = dir.file("mxward.db");
  {
    auto db = SqlConnection::Open(options.database);
    ASSERT_OK(db);
    testing::SeedPostfixAdmin(db->get());
  }
  auto store = IncidentStore::Open(store_path);
  ASSERT_OK(store);

  server.Stop();  // down before the action is due
  auto id = (*store)->EnqueueAction(
      42, ActionRequest{"suspend_sending", {{"user", testing::kAlice}}, false}, false,
      SystemClock::Instance()->Now());
  ASSERT_OK(id);

  DispatcherOptions d;
  d.base_backoff_ms = 20;
  d.max_backoff_ms = 100;
  d.max_attempts = 10'000;
  d.poll_interval_ms = 20;
  std::vector<std::unique_ptr<ActionExecutor>> executors;
  executors.push_back(
      std::make_unique<PostfixAdminAccounts>(options, store_path, SystemClock::Instance()));
  ActionDispatcher dispatcher(store_path, std::move(executors), d, SystemClock::Instance());
  ASSERT_OK(dispatcher.Start());
  auto action = [&] {
    auto a = (*store)->GetAction(*id);
    EXPECT_OK(a);
    return a.ok() ? *a : ActionRecord{};
  };
  // Several failed attempts while the server is down; the action stays pending.
  ASSERT_TRUE(Eventually([&] { return action().attempts >= 3; })) << action().last_error;
  const ActionRecord during = action();
  EXPECT_EQ(during.status, ActionStatus::kPending);
  EXPECT_FALSE(during.last_error.empty());

  ASSERT_EQ(server.Start(), "");  // back, same data
  ASSERT_TRUE(Eventually([&] { return action().status == ActionStatus::kDone; }))
      << action().last_error;
  dispatcher.Stop(std::chrono::seconds(5));

  auto db = SqlConnection::Open(options.database);
  ASSERT_OK(db);
  const testing::MailboxRow row = testing::ReadMailbox(db->get(), testing::kAlice);
  EXPECT_FALSE(row.smtp_active);
  EXPECT_TRUE(row.active);
  const auto log = testing::ReadLog(db->get());
  ASSERT_EQ(log.size(), 1u) << "applied exactly once";
  EXPECT_EQ(log[0].data, testing::kAlice);
  auto suspensions = (*store)->ActiveSuspensions();
  ASSERT_EQ(suspensions->size(), 1u);
  EXPECT_EQ(suspensions->front().previous["smtp_active"], true);  // the state before, not after
  EXPECT_GE(action().attempts, 4);
  ::testing::Test::RecordProperty("failed_attempts_during_outage", during.attempts);
  std::printf("database outage: %d failed attempts, then applied once (1 log row)\n",
              during.attempts);
}

TEST(ActionFaultsTest, MariadbDownThenBackAppliesTheSuspensionExactlyOnce) {
  testing::MariadbServer server;
  SuspensionSurvivesADatabaseOutage(server);
}

TEST(ActionFaultsTest, PostgresDownThenBackAppliesTheSuspensionExactlyOnce) {
  testing::PostgresServer server;
  SuspensionSurvivesADatabaseOutage(server);
}

// --- kill -9 of `mxward serve` during a burst ----------------------------------------------------

const std::string kBinary = MXWARD_BINARY;
constexpr int kSyslogPort = 5514;
constexpr int kAttackers = 24;
constexpr int kFailuresEach = 20;

// Addresses and prefixes in the kernel's set, as `nft -j` prints them.
std::set<std::string> KernelSet(const std::string& set) { return testing::KernelSetAddresses(set); }

// Every request the receiver logged: (idempotency key, accepted as new).
std::vector<std::pair<std::string, bool>> Deliveries(const std::string& log_path) {
  std::vector<std::pair<std::string, bool>> out;
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;  // a line being written
    out.emplace_back(j.value("key", ""), j.value("code", 0) == 200 && !j.value("duplicate", true));
  }
  return out;
}

// serve in a network namespace of the test's own, with the real nftables executor and a webhook
// to a receiver that answers slowly (so webhooks are in flight and pending when the kill comes):
// N attackers x 20 SASL failures over TCP, SIGKILL mid-burst, restart. Then every incident's
// webhook was accepted exactly once by idempotency key (a request the killed daemon sent but never
// saw answered is re-sent with the same key and dropped by the receiver as a duplicate), every
// banned address is back in the kernel set (flushed while the daemon was down), the store passes
// integrity_check and nothing is pending.
// The restart runs the actions that were in flight at once: with only the 5-minute claim lease
// this test would time out.
TEST(ActionFaultsTest, KillDashNineDuringABurstLosesAndDoublesNothing) {
  auto& ns = testing::NetworkNamespace::Enter();
  ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
  ASSERT_EQ(testing::RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
  ASSERT_EQ(::access("/usr/bin/python3", X_OK), 0) << "python3 is required for this test";
  testing::RunCommand({"nft", "flush", "ruleset"});
  TempDir dir;

  // The receiver: every request takes 0.25 s.
  std::string plan;
  for (int i = 0; i < 4 * kAttackers; ++i) plan += "slow:0.25,";
  testing::ServerProcess receiver;
  ASSERT_TRUE(receiver.Start(
      {"/usr/bin/python3", std::string(MXWARD_SOURCE_DIR) + "/tests/support/webhook_receiver.py",
       "--port-file", dir.file("port"), "--log", dir.file("requests.jsonl"), "--plan", plan},
      dir.file("receiver.log")));
  ASSERT_TRUE(testing::Eventually([&] { return ::access(dir.file("port").c_str(), R_OK) == 0; },
                                  std::chrono::seconds(20)))
      << "the receiver did not start";
  const int port = std::stoi(testing::MariadbServer::ReadWholeFile(dir.file("port")));

  // One playbook: postfix-sasl's trigger, a ban and a webhook per incident.
  const std::string rules =
      testing::WriteSaslBanRules(dir.path(), "[[action]]\ntype = \"webhook\"\ntarget = \"ops\"\n");
  const std::string config = dir.file("mxward.toml");
  std::ofstream(config) << fmt::format(
      "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:{}\"\n"
      "[nftables]\nenabled = true\n"
      "[webhook.ops]\nurl = \"http://127.0.0.1:{}/hook\"\ntimeout = \"10s\"\n"
      "[dispatcher]\nbackoff_base = \"1s\"\nbackoff_max = \"2s\"\n",
      kSyslogPort, port);
  const std::string db = dir.file("state.db");
  const std::vector<std::string> args = {"--db",    db,    "--config", config,
                                         "--rules", rules, "--socket", dir.file("control.sock")};

  testing::ServeProcess daemon;
  ASSERT_TRUE(daemon.Start(kBinary, args, dir.file("serve.log")));
  ASSERT_TRUE(daemon.WaitForLog("ready:")) << daemon.Log();
  std::vector<std::string> attackers;
  std::string burst;
  const std::string stamp = testing::SyslogStampNow();
  for (int a = 0; a < kAttackers; ++a) {
    attackers.push_back(fmt::format("203.0.113.{}", 10 + a));
    for (int i = 0; i < kFailuresEach; ++i) {
      burst += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" +
               attackers.back() + "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
  }
  ASSERT_TRUE(testing::SendTcp(kSyslogPort, burst));

  auto outbox = [&]() -> std::int64_t {
    auto store = IncidentStore::Open(db);
    if (!store.ok()) return -1;
    auto stats = (*store)->GetOutboxStats();
    return stats.ok() ? stats->pending : -1;
  };
  // Kill while webhooks are in flight and others still pending.
  ASSERT_TRUE(daemon.WaitFor([&] { return Deliveries(dir.file("requests.jsonl")).size() >= 3; },
                             std::chrono::seconds(60)))
      << daemon.Log();
  const std::int64_t pending_at_kill = outbox();
  daemon.Kill();
  ASSERT_GT(pending_at_kill, 0) << "the kill came too late to test anything";
  // The kernel's state goes too (a reboot, `nft flush ruleset`): the bans must come back from the
  // store, not survive by accident in the test's namespace.
  ASSERT_EQ(testing::RunCommand({"nft", "flush", "ruleset"}).exit_code, 0);
  ASSERT_TRUE(KernelSet("banned_v4").empty());

  testing::ServeProcess restarted;
  ASSERT_TRUE(restarted.Start(kBinary, args, dir.file("serve2.log")));
  ASSERT_TRUE(restarted.WaitForLog("ready:")) << restarted.Log();

  // Incidents the first daemon recorded are all there; wait until their actions are done.
  auto store = IncidentStore::Open(db);
  ASSERT_OK(store);
  IncidentQuery q;
  q.limit = 1000;
  ASSERT_TRUE(restarted.WaitFor(
      [&] {
        auto list = (*store)->ListIncidents(q);
        return list.ok() && list->size() == attackers.size() && outbox() == 0;
      },
      std::chrono::seconds(90)))
      << "outbox " << outbox() << "\n"
      << restarted.Log();

  std::map<std::string, int> accepted;  // idempotency key -> times accepted as new
  std::set<std::string> expected;
  int actions = 0, done = 0;
  auto incidents = (*store)->ListIncidents(q);
  ASSERT_OK(incidents);
  for (const Incident& inc : *incidents) {
    auto of_incident = (*store)->ActionsForIncident(inc.id);
    ASSERT_OK(of_incident);
    for (const ActionRecord& a : *of_incident) {
      ++actions;
      if (a.status == ActionStatus::kDone) ++done;
      EXPECT_EQ(a.status, ActionStatus::kDone) << a.type << " #" << a.id << ": " << a.last_error;
      if (a.type == "webhook") expected.insert(a.idempotency_key);
    }
  }
  const auto deliveries = Deliveries(dir.file("requests.jsonl"));
  int redelivered = 0;
  for (const auto& [key, fresh] : deliveries) {
    if (fresh) {
      ++accepted[key];
    } else {
      ++redelivered;
    }
  }
  int duplicates = 0;
  for (const auto& [key, n] : accepted) duplicates += n - 1;
  EXPECT_EQ(expected.size(), attackers.size());
  EXPECT_EQ(accepted.size(), expected.size()) << "every incident's webhook arrived";
  for (const std::string& key : expected) EXPECT_EQ(accepted[key], 1) << key;
  EXPECT_EQ(duplicates, 0);

  const std::set<std::string> kernel = KernelSet("banned_v4");
  for (const std::string& a : attackers) EXPECT_TRUE(kernel.count(a)) << a << " not in the set";

  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* check = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &check, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(check), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(check, 0)), "ok");
  sqlite3_finalize(check);
  sqlite3_close(raw);
  EXPECT_EQ(outbox(), 0);
  EXPECT_TRUE(restarted.Stop()) << restarted.Log();
  std::printf(
      "kill -9 burst: %d incidents, %d actions expected / %d done, %lld pending at the kill, "
      "%zu webhook requests (%d re-sent after the kill, dropped by key), duplicates %d, "
      "%zu/%d addresses in the kernel set\n",
      static_cast<int>(attackers.size()), actions, done, static_cast<long long>(pending_at_kill),
      deliveries.size(), redelivered, duplicates, kernel.size(), kAttackers);
}

}  // namespace
}  // namespace mxward
