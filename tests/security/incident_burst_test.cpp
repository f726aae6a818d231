// A burst of incidents with a writable store (issue 21, point 3): the real `mxward serve` with
// `[store] max_held_incidents = 20`, in its own network namespace, fed over TCP. Before, the
// recorder dropped whatever exceeded its in-memory limit while the disk was fine; now the writer
// being behind pushes back (the daemon stops reading the TCP connection until the writer made
// room), so the sender is slowed, completes, and nothing is dropped. A key that fires again and
// again while its incident is open costs one row: the incident counts the triggers.
#include <sqlite3.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::HttpGet;
using testing::MetricSample;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::SendTcp;
using testing::ServeProcess;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";
constexpr int kPort = 5514;
constexpr int kBurst = 50'000;  // distinct attackers, one incident each: 2,500 x max_held
constexpr int kRepeats = 30;    // triggers of one key while its incident is open

// Every SASL failure opens an incident of its address (threshold 1), in dry-run so no action
// runs; the cooldown (1 s) is shorter than the ban (1 h), so one key fires again and again.
constexpr char kPlaybook[] = R"(
description = "every SASL failure"
severity = "medium"
mode = "dry-run"
key = "client_ip"
cooldown = "1s"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 1
window = "1m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

// "Nov 23 15:04:05" for now - seconds_ago, local time, as rsyslog forwards it.
std::string Stamp(int seconds_ago) {
  const std::time_t t = std::time(nullptr) - seconds_ago;
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
  return stamp;
}

std::string SaslFailure(const std::string& stamp, const std::string& addr) {
  return "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
         "]: SASL LOGIN authentication failed: " + std::string(180, 'x') + "\n";
}

std::int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) != SQLITE_OK) return -1;
  const std::int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
  sqlite3_finalize(q);
  return v;
}

class IncidentBurstTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    const std::string rules = dir_.file("rules.d");
    std::filesystem::create_directories(rules);
    std::filesystem::copy(kParsers, rules + "/parsers", std::filesystem::copy_options::recursive);
    std::ofstream(rules + "/burst.toml") << kPlaybook;
    db_ = dir_.file("state.db");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "[store]\nmax_held_incidents = 20\n[[input]]\ntype = \"tcp\"\n"
                           << "address = \"127.0.0.1:" << kPort << "\"\n";
    ASSERT_TRUE(daemon_.Start(
        kBinary,
        {"--db", db_, "--config", config_, "--rules", rules, "--socket", dir_.file("control.sock")},
        dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << daemon_.Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  static std::string Metrics() { return HttpGet(9580, "/metrics"); }

  TempDir dir_;
  std::string db_, config_;
  ServeProcess daemon_;
};

TEST_F(IncidentBurstTest, ABurstFarOverTheLimitPushesBackAndLosesNothing) {
  // One connection, ~12 MB: far more than the socket buffers hold, so the sender completes only
  // as fast as the daemon reads, which it does only as fast as its store writer makes room.
  std::string burst;
  burst.reserve(static_cast<std::size_t>(kBurst) * 260);
  const std::string now = Stamp(0);
  for (int i = 0; i < kBurst; ++i) {
    burst +=
        SaslFailure(now, "198.18." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
  }
  // The repeating key: one failure every 2 s (past its 1 s cooldown) while its ban would stand.
  for (int i = 0; i < kRepeats; ++i) {
    burst += SaslFailure(Stamp(2 * (kRepeats - i)), "192.0.2.50");
  }
  ASSERT_TRUE(SendTcp(kPort, burst)) << daemon_.Log();

  const double lines = kBurst + kRepeats;
  ASSERT_TRUE(daemon_.WaitFor([&] {
    const std::string m = Metrics();
    return MetricSample(m, "mxward_events_total{type=\"auth_failure\"}") == lines &&
           MetricSample(m, "mxward_store_held_incidents") == 0;
  })) << Metrics()
      << daemon_.Log();
  const std::string m = Metrics();
  EXPECT_EQ(MetricSample(m, "mxward_store_incidents_dropped_total"), 0) << m;
  EXPECT_EQ(MetricSample(m, "mxward_store_evidence_shed_total"), 0) << m;
  EXPECT_EQ(MetricSample(m, "mxward_store_write_errors_total"), 0) << m;
  // The pipeline waited for the writer: the io thread stopped reading the sender meanwhile.
  const double waits = MetricSample(m, "mxward_store_pushback_total");
  EXPECT_GT(waits, 0) << m;
  EXPECT_EQ(MetricSample(m, "mxward_store_incident_repeats_total"), kRepeats - 1) << m;
  EXPECT_NE(HttpGet(9580, "/healthz").find("200"), std::string::npos);

  // Every attacker's incident is in the store; the repeating key is one incident.
  auto store = IncidentStore::Open(db_, {.read_only = true});
  ASSERT_OK(store);
  sqlite3* db = (*store)->db();
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM incidents WHERE key LIKE '198.18.%'"), kBurst);
  EXPECT_EQ(QueryInt(db, "SELECT count(DISTINCT key) FROM incidents WHERE key LIKE '198.18.%'"),
            kBurst);
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM incidents WHERE key = '192.0.2.50'"), 1);
  const std::int64_t id = QueryInt(db, "SELECT id FROM incidents WHERE key = '192.0.2.50'");
  EXPECT_EQ(QueryInt(db, "SELECT triggers FROM incidents WHERE key = '192.0.2.50'"), kRepeats);
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM actions WHERE incident_id = " + std::to_string(id)),
            1);  // one ban, not 30
  // `incidents show` says how often it fired.
  auto shown = RunCommand(
      {kBinary, "incidents", "show", std::to_string(id), "--db", db_, "--config", config_}, "",
      {"NO_COLOR=1"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("triggers: 30"), std::string::npos) << shown.out;
  RecordProperty("pushback_waits", static_cast<int>(waits));
}

}  // namespace
}  // namespace mxward
