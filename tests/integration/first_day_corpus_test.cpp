// The first day after install, end to end: a generated day of mail logs (bench/generate_maillog.py,
// fixed seed, one day, so there is no history and no learned baseline) with attacks and their
// ground truth, replayed through the real binary with the shipped rules.d. Every attack must end
// in its incident (a ban where the attack has an address to ban), the compromised account must be
// suspended by the outbound-anomaly warm-up fallback, and no legitimate actor (ordinary users
// with password typos, the newsletter, webmail through localhost, the server itself) may get an
// incident. Also here, on the same corpus: replays do not pollute live state (scratch store,
// `mode: replay`, no duplicates) and `mxward learn` warms the baselines up.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mxward/ip_address.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kSource = MXWARD_SOURCE_DIR;

// What each attack scenario of the ground truth must end in. `look_up` is the truth field whose
// value is the incident's key; `needs_ban` asks for a ban action among the incident's actions.
struct AttackExpectation {
  std::string scenario;
  std::string look_up;
  bool needs_ban;
  std::string playbook;  // empty: any playbook
};

// The expectations of this branch. The webmail brute force is asserted by its account incident
// (roundcube-login) only: the ban of the browser's address comes with the webmail-by-address
// playbook of branch `ports`. After that merge, the lead adds to kExpectationsAfterPortsMerge:
//   {"webmail_bruteforce", "client_ip", true, "<the webmail-by-address playbook>"}
const std::vector<AttackExpectation> kAttackExpectations = {
    {"smtp_bruteforce", "key", true, ""},
    {"imap_bruteforce", "key", true, ""},
    {"slow_bruteforce", "key", true, ""},
    {"webmail_bruteforce", "key", false, "roundcube-login"},
    {"compromised_account", "key", false, "outbound-anomaly"},
    // OpenDKIM's LogResults failures for example.net, 80 in a row (issue 22); the flaky partner
    // domain among the benign keys must open none.
    {"dkim_spoofing", "key", false, "dkim-failures"},
};
// Scenarios of the generator that issue #15 does not ask this corpus about, with why.
const std::set<std::string> kScenariosNotAskedHere = {};
// The webmail brute force also ends in a ban of the browser's address on the web ports.
const std::vector<AttackExpectation> kExpectationsAfterPortsMerge = {
    {"webmail_bruteforce", "client_ip", true, "roundcube-bruteforce"},
};

// The address as mxward prints it (RFC 5952), whatever the generator wrote.
std::string Canonical(const std::string& text) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1 &&
      inet_ntop(AF_INET6, buf, out, sizeof out) != nullptr) {
    return out;
  }
  return text;
}

// Whether an incident's key names the attacker: the same text, or (IPv6 clients are /64s) a
// prefix that contains the attacker's address.
bool KeyNames(const std::string& incident_key, const std::string& attacker) {
  if (incident_key == attacker) return true;
  mxward::IpPrefix prefix;
  mxward::IpAddress address;
  return incident_key.find('/') != std::string::npos &&
         mxward::IpPrefix::Parse(incident_key, &prefix, /*strict=*/true) &&
         mxward::IpAddress::Parse(attacker, &address) && prefix.Contains(address);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One generated day, shared by every test of this file (generating and replaying it once).
class FirstDayCorpusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    log_ = dir_->file("mail.log");
    truth_path_ = dir_->file("truth.json");
    config_ = dir_->file("mxward.toml");
    db_ = dir_->file("replay.db");
    std::ofstream(config_) << "[store]\npath = \"" << dir_->file("live.db")
                           << "\"\n[rules]\ndirs = [\"" << kSource << "/rules.d\"]\n"
                           << "local_domains = [\"example.org\", \"example.net\", "
                              "\"mail-lab.example\"]\n";
    auto gen = RunCommand({"python3", kSource + "/bench/generate_maillog.py", "--days", "1",
                           "--lines", "60000", "--seed", "1515", "--local-traffic", "--out", log_,
                           "--truth", truth_path_});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    truth_ = new nlohmann::json(nlohmann::json::parse(Slurp(truth_path_)));
    auto r = RunCommand({kBinary, "--config", config_, "--db", db_, "replay", "-q", log_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete truth_;
    delete dir_;
  }

  static nlohmann::json Incidents(const std::string& db) {
    auto r = RunCommand({kBinary, "--config", config_, "--db", db, "incidents", "list", "--json",
                         "--limit", "100000"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  static bool HasAction(const nlohmann::json& inc, const std::string& type) {
    for (const auto& a : inc.at("actions")) {
      if (a.at("type") == type) return true;
    }
    return false;
  }

  static inline TempDir* dir_ = nullptr;
  static inline nlohmann::json* truth_ = nullptr;
  static inline std::string log_, truth_path_, config_, db_;
};

TEST_F(FirstDayCorpusTest, EveryAttackInTheGroundTruthHasItsIncident) {
  const nlohmann::json incidents = Incidents(db_);
  std::vector<AttackExpectation> expectations = kAttackExpectations;
  expectations.insert(expectations.end(), kExpectationsAfterPortsMerge.begin(),
                      kExpectationsAfterPortsMerge.end());
  std::set<std::string> scenarios_seen;
  for (const auto& attack : truth_->at("attacks")) {
    const std::string scenario = attack.at("scenario");
    scenarios_seen.insert(scenario);
    bool expected = false;
    for (const auto& e : expectations) {
      if (e.scenario != scenario) continue;
      expected = true;
      const std::string key = Canonical(attack.at(e.look_up).get<std::string>());
      bool found = false;
      for (const auto& inc : incidents) {
        if (!KeyNames(inc.at("key").get<std::string>(), key)) continue;
        if (!e.playbook.empty() && inc.at("playbook") != e.playbook) continue;
        if (e.needs_ban && !HasAction(inc, "ban")) continue;
        found = true;
      }
      EXPECT_TRUE(found) << scenario << " " << key << (e.needs_ban ? " (with a ban)" : "")
                         << " has no incident" << (e.playbook.empty() ? "" : " of " + e.playbook);
    }
    EXPECT_TRUE(expected || kScenariosNotAskedHere.contains(scenario))
        << "no expectation for scenario " << scenario;
  }
  // The corpus holds every kind of attack the issue names.
  for (const char* s : {"smtp_bruteforce", "imap_bruteforce", "webmail_bruteforce",
                        "slow_bruteforce", "compromised_account"}) {
    EXPECT_TRUE(scenarios_seen.contains(s)) << s;
  }
}

TEST_F(FirstDayCorpusTest, TheCompromisedAccountIsSuspendedOnAColdStartByTheWarmupFallback) {
  const nlohmann::json incidents = Incidents(db_);
  int compromised = 0;
  for (const auto& attack : truth_->at("attacks")) {
    if (attack.at("scenario") != "compromised_account") continue;
    ++compromised;
    const std::string user = attack.at("key");
    bool suspended = false;
    for (const auto& inc : incidents) {
      if (inc.at("playbook") != "outbound-anomaly" || inc.at("key") != user) continue;
      EXPECT_EQ(inc.at("trigger").get<std::string>().rfind("warm-up fallback: ", 0), 0u)
          << inc.at("trigger");
      EXPECT_EQ(inc.at("origin"), "replay");
      suspended = suspended || HasAction(inc, "suspend_sending");
    }
    EXPECT_TRUE(suspended) << user;
  }
  EXPECT_GT(compromised, 0);
}

TEST_F(FirstDayCorpusTest, NoLegitimateActorGetsAnIncident) {
  const nlohmann::json incidents = Incidents(db_);
  std::set<std::string> benign;
  for (const auto& b : truth_->at("benign")) benign.insert(Canonical(b.at("key")));
  EXPECT_TRUE(benign.contains("127.0.0.1"));
  EXPECT_TRUE(benign.contains("192.0.2.25"));
  for (const auto& inc : incidents) {
    // A tuple key ("user,address") touches each of its parts.
    std::stringstream parts(inc.at("key").get<std::string>());
    for (std::string part; std::getline(parts, part, ',');) {
      // Exactly, or a network (an IPv6 client's /64) with a legitimate address inside.
      for (const std::string& b : benign) {
        EXPECT_FALSE(KeyNames(part, b)) << inc.at("playbook") << " opened an incident on " << part
                                        << " (" << b << "): " << inc.at("trigger");
      }
    }
  }
}

TEST_F(FirstDayCorpusTest, ReplayingTheSameFileAgainDoesNotDuplicateIncidents) {
  const std::size_t before = Incidents(db_).size();
  ASSERT_GT(before, 0u);
  auto r = RunCommand({kBinary, "--config", config_, "--db", db_, "replay", "-q", log_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Incidents(db_).size(), before);
}

TEST_F(FirstDayCorpusTest, ReplayWithoutDbWritesAScratchStoreAndLeavesTheLiveOneAlone) {
  TempDir tmp;
  const std::string env = "TMPDIR=" + tmp.path();
  auto r = RunCommand({kBinary, "--config", config_, "replay", log_}, "", {env});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("scratch store, removed"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_->file("live.db")));
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));

  // --keep leaves it, and names it; its incidents are marked as replayed.
  r = RunCommand({kBinary, "--config", config_, "replay", "--keep", log_}, "", {env});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_->file("live.db")));
  std::string kept;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    kept = e.path().string() + "/replay.db";
  }
  ASSERT_TRUE(std::filesystem::exists(kept)) << r.err;
  EXPECT_NE(r.err.find(kept), std::string::npos) << r.err;
  const nlohmann::json incidents = Incidents(kept);
  ASSERT_FALSE(incidents.empty());
  for (const auto& inc : incidents) EXPECT_EQ(inc.at("origin"), "replay");
}

TEST_F(FirstDayCorpusTest, LearnReadsRotatedAndCompressedLogsAndWarmsTheBaselineWithoutIncidents) {
  TempDir tmp;
  const std::string learn_db = tmp.file("learn.db");
  // The day split in two: the older half rotated and compressed, as logrotate leaves it.
  std::vector<std::string> lines;
  std::ifstream in(log_);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::ofstream older(tmp.file("mail.log.2")), newer(tmp.file("mail.log.1"));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    (i < lines.size() / 2 ? older : newer) << lines[i] << '\n';
  }
  older.close();
  newer.close();
  ASSERT_EQ(RunCommand({"gzip", tmp.file("mail.log.2")}).exit_code, 0);
  // Given newest first: learn reads mail.log.2.gz first anyway.
  auto r = RunCommand({kBinary, "--config", config_, "--db", learn_db, "learn",
                       tmp.file("mail.log.1"), tmp.file("mail.log.2.gz")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string newsletter = "newsletter@example.org";
  EXPECT_NE(r.out.find("outbound-anomaly: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  " + newsletter + ": "), std::string::npos) << r.out;
  EXPECT_EQ(Incidents(learn_db).size(), 0u);

  auto b = RunCommand({kBinary, "--config", config_, "--db", learn_db, "accounts", "baseline",
                       "Newsletter@Example.org", "--json"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const nlohmann::json baseline = nlohmann::json::parse(b.out);
  ASSERT_EQ(baseline.size(), 1u) << b.out;
  EXPECT_EQ(baseline[0].at("playbook"), "outbound-anomaly");
  EXPECT_EQ(baseline[0].at("key"), newsletter);
  // How warm depends on how long ago the generated day lies (its lines carry no year), so only
  // that the account's learning is dated and worded.
  EXPECT_TRUE(baseline[0].at("learning_since").is_string()) << b.out;
  EXPECT_EQ(baseline[0].at("warmup_seconds"), 7 * 86400);
  EXPECT_FALSE(baseline[0].at("warmth").get<std::string>().empty());
  EXPECT_GT(baseline[0].at("values").size(), 50u);  // ~300 messages to random domains
}

}  // namespace
}  // namespace mxward
