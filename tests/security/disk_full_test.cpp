// Disk full for the SQLite store (issue 9, faults): the real `mxward serve` with its --db on a
// small tmpfs the test mounts in a private mount namespace and fills, in its own network
// namespace with real nftables. While the disk is full the daemon keeps counting (metrics), the
// ban already in the kernel stays, /healthz fails naming the store, the log says what happens;
// when the space returns every held incident lands in the store and its ban reaches the kernel.
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/nft_sets.h"
#include "support/subprocess.h"
#include "support/tiny_filesystem.h"

namespace mxward {
namespace {

using testing::HttpGet;
using testing::KernelSetAddresses;
using testing::MetricSample;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;
using testing::TinyFilesystem;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
constexpr int kPort = 5514;

std::set<std::string> BannedV4() { return KernelSetAddresses("banned_v4"); }

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    ASSERT_EQ(RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
    ASSERT_TRUE(fs_.Mount(dir_.file("state"), 2 * 1024 * 1024)) << fs_.error();
    db_ = dir_.file("state") + "/state.db";
    rules_ = dir_.file("rules.d");
    std::filesystem::copy(kRules, rules_, std::filesystem::copy_options::recursive);
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << extra_config_
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort
                           << "\"\n[nftables]\nenabled = true\n";
    ASSERT_TRUE(daemon_.Start(kBinary,
                              {"--db", db_, "--config", config_, "--rules", rules_, "--socket",
                               dir_.file("control.sock")},
                              dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << daemon_.Log();
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  // 20 Postfix SASL failures from addr (postfix-sasl's threshold), over one TCP connection, with
  // long user-supplied noise so each incident's evidence takes room in the store.
  static bool Attack(const std::string& addr) {
    const std::string stamp = SyslogStampNow();
    std::string data;
    for (int i = 0; i < 20; ++i) {
      data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
              "]: SASL LOGIN authentication failed: " + std::string(200, 'A' + i) + "\n";
    }
    return SendTcp(kPort, data);
  }

  static std::string Metrics() { return HttpGet(9580, "/metrics"); }

  std::set<std::string> IncidentKeys() {
    std::set<std::string> keys;
    auto store = IncidentStore::Open(db_, {.read_only = true});
    if (!store.ok()) return keys;
    IncidentQuery q;
    q.playbook = "postfix-sasl";
    q.limit = 10000;
    auto list = (*store)->ListIncidents(q);
    if (list.ok()) {
      for (const auto& inc : *list) keys.insert(inc.key);
    }
    return keys;
  }

  TempDir dir_;
  TinyFilesystem fs_;  // after dir_: unmounted before the directory is removed
  std::string db_, rules_, config_;
  std::string extra_config_;  // TOML before the [[input]], set by a derived fixture
  ServeProcess daemon_;
};

TEST_F(DiskFullTest, KeepsDetectingWhileFullAndCatchesUpWhenSpaceReturns) {
  // A ban from before the disk filled up.
  ASSERT_TRUE(Attack("198.51.100.1"));
  ASSERT_TRUE(daemon_.WaitFor([&] { return BannedV4().count("198.51.100.1") == 1; }))
      << daemon_.Log();

  ASSERT_GT(fs_.Fill(), 0);
  // Attack from new addresses until the store reports the failure (SQLite may still have room
  // in pages it already owns for the first few).
  std::set<std::string> attackers;
  for (int i = 1; i <= 200; ++i) {
    const std::string addr = "203.0.113." + std::to_string(i);
    ASSERT_TRUE(Attack(addr));
    attackers.insert(addr);
    if (MetricSample(Metrics(), "mxward_store_write_errors_total") > 0) break;
  }
  ASSERT_TRUE(daemon_.WaitFor([&] {
    return MetricSample(Metrics(), "mxward_store_write_errors_total") > 0;
  })) << Metrics()
      << daemon_.Log();
  // Three more while it is known to fail: they must be held, not lost.
  for (int i = 201; i <= 203; ++i) {
    const std::string addr = "203.0.113." + std::to_string(i % 250);
    ASSERT_TRUE(Attack(addr));
    attackers.insert(addr);
  }
  const double lines_expected = 20.0 * (attackers.size() + 1);
  // Detection keeps running: every line is counted and every attacker opens an incident.
  ASSERT_TRUE(daemon_.WaitFor([&] {
    const std::string m = Metrics();
    return MetricSample(m, "mxward_events_total{type=\"auth_failure\"}") == lines_expected;
  })) << Metrics();
  const std::string during = Metrics();
  EXPECT_GE(MetricSample(during, "mxward_store_held_incidents"), 3) << during;
  EXPECT_EQ(MetricSample(during, "mxward_store_writable"), 0) << during;
  EXPECT_EQ(MetricSample(during, "mxward_store_incidents_dropped_total"), 0) << during;
  const std::string health = HttpGet(9580, "/healthz");
  EXPECT_NE(health.find("503"), std::string::npos) << health;
  EXPECT_NE(health.find("store: cannot write incidents to " + db_), std::string::npos) << health;
  EXPECT_NE(daemon_.Log().find("cannot write incidents to " + db_), std::string::npos)
      << daemon_.Log();
  // The ban already in the kernel stays.
  EXPECT_EQ(BannedV4().count("198.51.100.1"), 1u);

  ASSERT_TRUE(fs_.Free());
  // Everything held lands in the store, and the actions run: the bans reach the kernel.
  ASSERT_TRUE(daemon_.WaitFor([&] {
    return MetricSample(Metrics(), "mxward_store_held_incidents") == 0;
  })) << Metrics()
      << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitFor([&] {
    auto keys = IncidentKeys();
    for (const auto& a : attackers) {
      if (!keys.count(a)) return false;
    }
    return true;
  })) << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitFor([&] {
    auto banned = BannedV4();
    for (const auto& a : attackers) {
      if (!banned.count(a)) return false;
    }
    return true;
  })) << daemon_.Log();
  EXPECT_EQ(MetricSample(Metrics(), "mxward_store_writable"), 1);
  EXPECT_TRUE(daemon_.WaitFor([&] {
    return HttpGet(9580, "/healthz").find("200") != std::string::npos;
  })) << HttpGet(9580, "/healthz");
  EXPECT_NE(daemon_.Log().find("is writable again"), std::string::npos) << daemon_.Log();
  RecordProperty("attackers_while_full", static_cast<int>(attackers.size()));
}

// The one case where an incident is lost (the store unwritable and max_held_incidents held) is
// loud: logged with the counts, and /healthz stays unhealthy after the store recovers, since
// an attack went unanswered (issue 21, point 3). A limit of 3 instead of 50,000 makes the case
// reachable with a few attackers; only the size differs.
class DiskFullDropTest : public DiskFullTest {
 protected:
  DiskFullDropTest() { extra_config_ = "[store]\nmax_held_incidents = 3\n"; }
};

TEST_F(DiskFullDropTest, ADroppedIncidentKeepsHealthzUnhealthyAfterTheStoreRecovers) {
  ASSERT_GT(fs_.Fill(), 0);
  for (int i = 1; i <= 200; ++i) {
    ASSERT_TRUE(Attack("203.0.113." + std::to_string(i)));
    if (MetricSample(Metrics(), "mxward_store_incidents_dropped_total") > 0) break;
  }
  ASSERT_TRUE(daemon_.WaitFor([&] {
    return MetricSample(Metrics(), "mxward_store_incidents_dropped_total") > 0;
  })) << Metrics()
      << daemon_.Log();
  EXPECT_NE(daemon_.Log().find("was not kept (1 dropped so far)"), std::string::npos)
      << daemon_.Log();
  EXPECT_NE(HttpGet(9580, "/healthz").find("503"), std::string::npos);

  ASSERT_TRUE(fs_.Free());
  ASSERT_TRUE(daemon_.WaitFor([&] {
    const std::string m = Metrics();
    return MetricSample(m, "mxward_store_writable") == 1 &&
           MetricSample(m, "mxward_store_held_incidents") == 0;
  })) << Metrics()
      << daemon_.Log();
  // Writable again, and still unhealthy: the dropped incident's attack went unanswered.
  const std::string health = HttpGet(9580, "/healthz");
  EXPECT_NE(health.find("503"), std::string::npos) << health;
  EXPECT_NE(health.find("incident(s) dropped since start"), std::string::npos) << health;
  EXPECT_GE(IncidentKeys().size(), 3u);  // the three held ones were written
}

}  // namespace
}  // namespace mxward
