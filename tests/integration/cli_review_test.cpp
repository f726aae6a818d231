// The review CLI end to end through the real binary: a store populated through IncidentStore,
// then `mxward incidents|bans|accounts|stats` as an admin or a script runs them. Output is made
// deterministic with TZ=UTC and MXWARD_NOW (docs/cli.md). State-changing commands run with
// `dry_run = true` so nothing touches the host's firewall; their effect is checked in the outbox.
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include "mxward/control_protocol.h"
#include "mxward/incident_store.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;

UnixMicros At(int hour, int minute, int second) {
  return (DaysFromCivil(2026, 11, 23) * 86400 + hour * 3600 + minute * 60 + second) *
         kMicrosPerSecond;
}

class CliReviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n";
    auto s = IncidentStore::Open(db_);
    ASSERT_OK(s);
    store_ = std::move(*s);

    Incident ssh;
    ssh.playbook = "postfix-sasl";
    ssh.description = "SASL password guessing";
    ssh.severity = Severity::kHigh;
    ssh.key_kind = "client_ip";
    ssh.key = "203.0.113.7";
    ssh.trigger = "24 auth_failure in 10m (count >= 20)";
    ssh.first_seen = At(9, 0, 0);
    ssh.last_seen = At(9, 9, 30);
    ssh.count = 24;
    ssh.window_seconds = 600;
    ssh.evidence = {{At(9, 0, 0),
                     "postfix/smtpd[311]: warning: unknown[203.0.113.7]: SASL LOGIN "
                     "authentication failed: UGFzc3dvcmQ6"},
                    {At(9, 9, 30),
                     "postfix/smtpd[377]: warning: unknown[203.0.113.7]: SASL LOGIN "
                     "authentication failed: UGFzc3dvcmQ6"}};
    ssh.actions = {{"ban", {{"address", "203.0.113.7"}, {"duration_s", 14400}}, false},
                   {"webhook", {{"target", "ops"}}, false}};

    Incident dove;
    dove.playbook = "dovecot-auth";
    dove.severity = Severity::kMedium;
    dove.mode = PlaybookMode::kDryRun;
    dove.key_kind = "sasl_user";
    dove.key = "alice@example.org";
    dove.trigger = "7 auth_failure from 5 countries in 1h";
    dove.first_seen = At(10, 0, 0);
    dove.last_seen = At(10, 5, 0);
    dove.count = 7;
    dove.window_seconds = 3600;
    dove.evidence = {{At(10, 0, 0), "dovecot: imap-login: Disconnected: auth failed"}};
    dove.actions = {{"suspend_sending", {{"user", "alice@example.org"}}, false}};

    std::vector<Incident> batch{ssh, dove};
    ASSERT_TRUE(store_->RecordIncidents(&batch, At(9, 9, 31)).ok());
    ssh_id_ = batch[0].id;
    dove_id_ = batch[1].id;
    auto actions = store_->ActionsForIncident(ssh_id_);
    ASSERT_OK(actions);
    ASSERT_TRUE(store_->MarkActionDone((*actions)[0].id, At(9, 9, 32)).ok());
    ASSERT_TRUE(store_
                    ->MarkActionFinal((*actions)[1].id, ActionStatus::kFailed,
                                      "POST https://ops.example/hook: connection refused",
                                      At(9, 20, 0))
                    .ok());
    ASSERT_TRUE(
        store_->UpsertBan({"203.0.113.7", At(9, 9, 32), At(13, 9, 32), ssh_id_, "postfix-sasl"})
            .ok());
    ASSERT_TRUE(
        store_
            ->UpsertSuspension(
                {"bob@example.org", "suspend_sending", {{"smtp_active", 1}}, At(8, 0, 0), 0, 0})
            .ok());
    ASSERT_TRUE(
        store_->AddEventCounts(At(9, 0, 0), {{"auth_failure", 31}, {"delivery", 120}}).ok());
    ASSERT_TRUE(store_->AddEventCounts(At(10, 0, 0), {{"auth_failure", 7}}).ok());
  }

  CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    // Global options after the subcommand, as scripts often write them.
    argv.insert(argv.end(), {"--db", db_, "--config", config_, "--socket", socket_});
    return RunCommand(argv, "", {"TZ=UTC", "MXWARD_NOW=2026-11-23T12:00:00Z", "NO_COLOR=1"});
  }

  nlohmann::json Json(std::vector<std::string> args) {
    auto r = Mxward(std::move(args));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  std::set<std::string> Keys(const nlohmann::json& obj) {
    std::set<std::string> keys;
    for (const auto& [k, v] : obj.items()) keys.insert(k);
    return keys;
  }

  TempDir dir_;
  std::string db_, socket_, config_;
  std::unique_ptr<IncidentStore> store_;
  std::int64_t ssh_id_ = 0, dove_id_ = 0;
};

TEST_F(CliReviewTest, ListTableGolden) {
  auto r = Mxward({"incidents", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID  LAST SEEN                     PLAYBOOK      KEY                COUNT  SEVERITY  "
            "STATUS  ACTIONS\n"
            " 2  2026-11-23 10:05:00 (1h ago)  dovecot-auth  alice@example.org      7  medium    "
            "open    suspend_sending:dry_run (dry-run)\n"
            " 1  2026-11-23 09:09:30 (2h ago)  postfix-sasl  203.0.113.7           24  high      "
            "open    ban:done webhook:failed\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(CliReviewTest, ListJsonFieldsAreExactlyTheDocumentedOnes) {
  auto all = Json({"incidents", "list", "--json"});
  ASSERT_TRUE(all.is_array());
  ASSERT_EQ(all.size(), 2u);
  const auto& ssh = all[1];
  EXPECT_EQ(Keys(ssh),
            (std::set<std::string>{"id", "playbook", "description", "key_kind", "key", "status",
                                   "severity", "count", "triggers", "first_seen", "last_seen",
                                   "mode", "origin", "trigger", "window_seconds", "actions"}));
  EXPECT_EQ(ssh.at("triggers"), 1);
  EXPECT_EQ(ssh.at("id"), ssh_id_);
  EXPECT_EQ(ssh.at("origin"), "live");
  EXPECT_EQ(ssh.at("playbook"), "postfix-sasl");
  EXPECT_EQ(ssh.at("key_kind"), "client_ip");
  EXPECT_EQ(ssh.at("key"), "203.0.113.7");
  EXPECT_EQ(ssh.at("status"), "open");
  EXPECT_EQ(ssh.at("severity"), "high");
  EXPECT_EQ(ssh.at("count"), 24);
  EXPECT_EQ(ssh.at("first_seen"), "2026-11-23T09:00:00Z");
  EXPECT_EQ(ssh.at("last_seen"), "2026-11-23T09:09:30Z");
  EXPECT_EQ(ssh.at("mode"), "enforce");
  EXPECT_EQ(ssh.at("window_seconds"), 600);
  ASSERT_EQ(ssh.at("actions").size(), 2u);
  EXPECT_EQ(Keys(ssh.at("actions")[0]), (std::set<std::string>{"id", "type", "status", "revert"}));
  EXPECT_EQ(ssh.at("actions")[0].at("type"), "ban");
  EXPECT_EQ(ssh.at("actions")[0].at("status"), "done");
  EXPECT_EQ(ssh.at("actions")[1].at("status"), "failed");
  EXPECT_EQ(all[0].at("mode"), "dry-run");
  EXPECT_EQ(all[0].at("actions")[0].at("status"), "dry_run");
}

TEST_F(CliReviewTest, ListFilters) {
  auto ids = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"incidents", "list", "--json"});
    std::vector<std::int64_t> out;
    for (const auto& i : Json(args)) out.push_back(i.at("id").get<std::int64_t>());
    return out;
  };
  EXPECT_EQ(ids({"--playbook", "postfix-sasl"}), std::vector<std::int64_t>{ssh_id_});
  EXPECT_EQ(ids({"--key", "alice@example.org"}), std::vector<std::int64_t>{dove_id_});
  EXPECT_EQ(ids({"--since", "2h"}), std::vector<std::int64_t>{dove_id_});  // now is 12:00
  EXPECT_EQ(ids({"--limit", "1"}), std::vector<std::int64_t>{dove_id_});
  EXPECT_EQ(ids({"--status", "resolved"}), std::vector<std::int64_t>{});
  EXPECT_EQ(Mxward({"incidents", "list", "--key", "198.51.100.1"}).out, "no incidents\n");
}

TEST_F(CliReviewTest, ShowTableGolden) {
  auto r = Mxward({"incidents", "show", std::to_string(ssh_id_)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(ssh_id_, 1);
  EXPECT_EQ(r.out,
            "Incident 1  postfix-sasl  high  open\n"
            "  SASL password guessing\n"
            "  key:      client_ip 203.0.113.7\n"
            "  why:      24 auth_failure in 10m (count >= 20)\n"
            "  first:    2026-11-23 09:00:00 (3h ago)\n"
            "  last:     2026-11-23 09:09:30 (2h ago)\n"
            "  events:   24 (window 10m)\n"
            "  mode:     enforce\n"
            "\n"
            "Evidence (2 lines kept):\n"
            "  2026-11-23 09:00:00  postfix/smtpd[311]: warning: unknown[203.0.113.7]: SASL LOGIN "
            "authentication failed: UGFzc3dvcmQ6\n"
            "  2026-11-23 09:09:30  postfix/smtpd[377]: warning: unknown[203.0.113.7]: SASL LOGIN "
            "authentication failed: UGFzc3dvcmQ6\n"
            "\n"
            "Actions:\n"
            "  #1 ban address=203.0.113.7 duration_s=14400  done  attempts 1  2h ago\n"
            "  #2 webhook target=ops  failed  attempts 1  2h ago\n"
            "      error: POST https://ops.example/hook: connection refused\n"
            "\n"
            "In effect:\n"
            "  ban 203.0.113.7 until 2026-11-23 13:09:32 (in 1h)\n");
}

TEST_F(CliReviewTest, ShowJsonAddsEvidenceNotesAndWhatIsInEffect) {
  auto j = Json({"incidents", "show", std::to_string(ssh_id_), "--json"});
  for (const char* k :
       {"id", "playbook", "key_kind", "key", "status", "severity", "count", "first_seen",
        "last_seen", "mode", "trigger", "actions", "evidence", "notes", "in_effect"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  ASSERT_EQ(j.at("evidence").size(), 2u);
  EXPECT_EQ(Keys(j.at("evidence")[0]), (std::set<std::string>{"time", "line"}));
  EXPECT_EQ(j.at("evidence")[1].at("time"), "2026-11-23T09:09:30Z");
  const auto& webhook = j.at("actions")[1];
  EXPECT_EQ(webhook.at("last_error"), "POST https://ops.example/hook: connection refused");
  EXPECT_EQ(webhook.at("params"), (nlohmann::json{{"target", "ops"}}));
  EXPECT_EQ(webhook.at("attempts"), 1);
  ASSERT_EQ(j.at("in_effect").size(), 1u);
  EXPECT_EQ(j.at("in_effect")[0], (nlohmann::json{{"type", "ban"},
                                                  {"address", "203.0.113.7"},
                                                  {"ports", "mail"},
                                                  {"until", "2026-11-23T13:09:32Z"}}));
}

TEST_F(CliReviewTest, AckAndResolveActDirectlyWithoutADaemon) {
  auto r = Mxward({"incidents", "ack", std::to_string(ssh_id_), "--note", "known scanner"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "incident " + std::to_string(ssh_id_) + " acknowledged\n");
  EXPECT_NE(r.err.find("daemon not running: acting directly"), std::string::npos) << r.err;
  EXPECT_EQ(store_->GetIncident(ssh_id_)->status, IncidentStatus::kAcknowledged);
  auto j = Json({"incidents", "show", std::to_string(ssh_id_), "--json"});
  ASSERT_EQ(j.at("notes").size(), 1u);
  EXPECT_EQ(j.at("notes")[0].at("text"), "known scanner");
  EXPECT_EQ(j.at("notes")[0].at("kind"), "ack");

  r = Mxward({"incidents", "resolve", std::to_string(ssh_id_), "--revert"});
  EXPECT_NE(r.err.find("daemon not running: acting directly"), std::string::npos) << r.err;
  EXPECT_EQ(store_->GetIncident(ssh_id_)->status, IncidentStatus::kResolved);
  // The ban it applied is queued for undoing, in this incident's name; the failed webhook is not.
  auto actions = store_->ActionsForIncident(ssh_id_);
  ASSERT_OK(actions);
  ASSERT_EQ(actions->size(), 3u);
  const ActionRecord& undo = actions->back();
  EXPECT_EQ(undo.type, "ban");
  EXPECT_TRUE(undo.revert);
  EXPECT_EQ(undo.params.at("address"), "203.0.113.7");
  EXPECT_EQ(undo.idempotency_key, "mxward-" + std::to_string(undo.id));

  // Resolved incidents cannot be acknowledged again: a usage error, not a silent reopen.
  EXPECT_EQ(Mxward({"incidents", "ack", std::to_string(ssh_id_)}).exit_code, 2);
}

TEST_F(CliReviewTest, ExitCodesForMissingIdsAndBadFlags) {
  auto r = Mxward({"incidents", "show", "999"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "mxward: no incident 999\n");
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Mxward({"incidents", "ack", "999"}).exit_code, 1);
  EXPECT_EQ(Mxward({"incidents", "resolve", "999"}).exit_code, 1);
  EXPECT_EQ(Mxward({"incidents", "show", "abc"}).exit_code, 2);
  EXPECT_EQ(Mxward({"incidents", "list", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(Mxward({"incidents", "list", "--status", "closed"}).exit_code, 2);
  EXPECT_EQ(Mxward({"incidents", "list", "--since", "yesterday"}).exit_code, 2);
  EXPECT_EQ(Mxward({"incidents"}).exit_code, 2);
  EXPECT_EQ(Mxward({"bans", "add", "192.0.2.7"}).exit_code, 2) << "--for is required";
  EXPECT_EQ(Mxward({"stats", "--since", "0s"}).exit_code, 2);
}

TEST_F(CliReviewTest, BansAddValidatesAndQueuesTheCanonicalAddress) {
  auto r = Mxward({"bans", "add", "192.0.2.7/24", "--for", "1h"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("did you mean 192.0.2.0/24"), std::string::npos) << r.err;
  r = Mxward({"bans", "add", "192.0.2.7;reboot", "--for", "1h"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(store_->DueActions(std::numeric_limits<UnixMicros>::max(), 100)->empty())
      << "nothing queued";

  r = Mxward({"bans", "add", "2001:DB8:0::/64", "--for", "90m", "--reason", "manual test"});
  EXPECT_NE(r.err.find("daemon not running: acting directly"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("2001:db8::/64"), std::string::npos) << r.out;
  // The fixture recorded 3 actions (ban, webhook, suspend_sending); this is the 4th.
  auto ban = store_->GetAction(4);
  ASSERT_OK(ban);
  EXPECT_EQ(ban->type, "ban");
  EXPECT_FALSE(ban->revert);
  EXPECT_EQ(ban->incident_id, 0);
  EXPECT_EQ(ban->params, (nlohmann::json{{"address", "2001:db8::/64"},
                                         {"duration_s", 5400},
                                         {"ports", "mail"},
                                         {"reason", "manual test"}}));
  EXPECT_EQ(ban->idempotency_key, "mxward-4");

  r = Mxward({"bans", "remove", "2001:db8::/64"});
  EXPECT_NE(r.err.find("daemon not running: acting directly"), std::string::npos) << r.err;
  auto unban = store_->GetAction(5);
  ASSERT_OK(unban);
  EXPECT_TRUE(unban->revert);
  EXPECT_EQ(unban->params.at("address"), "2001:db8::/64");
  EXPECT_EQ(unban->params.at("ports"), "*");  // every scope the address is banned in
}

TEST_F(CliReviewTest, BansAndAccountsListGolden) {
  auto r = Mxward({"bans", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ADDRESS      PORTS  SINCE                         UNTIL                        "
            "INCIDENT  REASON\n"
            "203.0.113.7  mail   2026-11-23 09:09:32 (2h ago)  2026-11-23 13:09:32 (in 1h)  "
            "1         postfix-sasl\n");
  auto bans = Json({"bans", "list", "--json"});
  ASSERT_EQ(bans.size(), 1u);
  EXPECT_EQ(bans[0].at("address"), "203.0.113.7");
  EXPECT_EQ(bans[0].at("until"), "2026-11-23T13:09:32Z");
  EXPECT_EQ(bans[0].at("ports"), "mail");
  EXPECT_EQ(bans[0].at("incident_id"), ssh_id_);

  r = Mxward({"accounts", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "USER             KIND             SINCE                         UNTIL           "
            "INCIDENT\n"
            "bob@example.org  suspend_sending  2026-11-23 08:00:00 (4h ago)  until restored  -\n");
  auto accounts = Json({"accounts", "list", "--json"});
  ASSERT_EQ(accounts.size(), 1u);
  EXPECT_EQ(accounts[0].at("user"), "bob@example.org");
  EXPECT_EQ(accounts[0].at("until"), nullptr);

  EXPECT_EQ(Mxward({"accounts", "suspend", "bob' OR 1=1"}).exit_code, 2);
  r = Mxward({"accounts", "restore", "bob@example.org"});
  auto undo = store_->GetAction(4);
  ASSERT_TRUE(undo.ok()) << r.err;
  EXPECT_EQ(undo->type, "suspend_sending");
  EXPECT_TRUE(undo->revert);
  EXPECT_EQ(undo->params.at("user"), "bob@example.org");
}

TEST_F(CliReviewTest, StatsGolden) {
  auto r = Mxward({"stats", "--since", "6h"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Since 2026-11-23 06:00:00 (6h ago)\n"
            "\n"
            "Events by type:\n"
            "  delivery           120\n"
            "  auth_failure        38\n"
            "\n"
            "Incidents by playbook:\n"
            "  dovecot-auth         1\n"
            "  postfix-sasl         1\n"
            "\n"
            "Top offenders:\n"
            "  client_ip 203.0.113.7               1\n"
            "  sasl_user alice@example.org         1\n"
            "\n"
            "Incidents per hour: 2 incidents, peak 1\n"
            "  ▁▁▁██▁▁\n");
  auto j = Json({"stats", "--since", "6h", "--json"});
  EXPECT_EQ(j.at("events").at("auth_failure"), 38);
  EXPECT_EQ(j.at("incidents"), 2);
  EXPECT_EQ(j.at("incidents_per_bucket"), (nlohmann::json{0, 0, 0, 1, 1, 0, 0}));
}

TEST_F(CliReviewTest, GlobalOptionsWorkBeforeTheSubcommandToo) {
  auto r = RunCommand({kBinary, "--db", db_, "--config", config_, "incidents", "list", "--json"},
                      "", {"TZ=UTC"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 2u);
}

// With a daemon answering on the socket, state changes go to it, not to the file directly.
TEST_F(CliReviewTest, StateChangesGoThroughARunningDaemon) {
  boost::asio::io_context io;
  std::mutex mu;
  std::vector<nlohmann::json> seen;
  ControlServerOptions options;
  options.socket_path = socket_;
  ControlServer server(io, options, [&](const nlohmann::json& req) {
    std::lock_guard lock(mu);
    seen.push_back(req);
    return ExecuteControlRequest(store_.get(), req, At(12, 0, 0));
  });
  ASSERT_OK(server.Start());
  std::thread t([&] { io.run(); });

  auto r = Mxward({"incidents", "ack", std::to_string(dove_id_), "--note", "via daemon"});
  // This server runs no dispatcher: the ban stays pending, and --no-wait says so at once.
  auto b = Mxward({"bans", "add", "198.51.100.9", "--for", "10m", "--no-wait"});
  auto missing = Mxward({"incidents", "resolve", "999"});
  boost::asio::post(io, [&] { server.Stop(); });
  t.join();

  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("acting directly"), std::string::npos) << r.err;
  EXPECT_EQ(b.exit_code, 5) << b.err;
  EXPECT_NE(b.out.find("198.51.100.9 for 10m (ports: mail): still pending; follow it with: mxward "
                       "actions show 4 (action #4)"),
            std::string::npos)
      << b.out;
  EXPECT_EQ(missing.exit_code, 1) << missing.err;
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].at("op"), "incidents.ack");
  EXPECT_EQ(seen[1].at("op"), "bans.add");
  EXPECT_EQ(seen[1].at("duration_s"), 600);
  EXPECT_EQ(store_->GetIncident(dove_id_)->status, IncidentStatus::kAcknowledged);
}

}  // namespace
}  // namespace mxward
