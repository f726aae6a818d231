// `mxward replay --threads N` through the real binary: a generated mail day with a heavy attack
// share (bench/generate_maillog.py, as `make bench` makes its corpora, smaller) replayed with one
// thread and with four gives the same summary (lines, events, malformed, incidents) and the same
// incidents in the store: playbook, key, counts, times, evidence lines, actions, in the same
// order. (tests/unit/parallel_lines_test.cpp compares the event stream itself.)
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <string>

#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kSource = MXWARD_SOURCE_DIR;
const std::string kRules = kSource + "/rules.d";

// The summary without its timings: "replayed N lines ... : E events, M malformed, I incidents".
std::string Counts(const std::string& summary) {
  static const std::regex kRe(
      R"(replayed (\d+) lines.*: (\d+) events, (\d+) malformed, (\d+) incidents)");
  std::smatch m;
  if (!std::regex_search(summary, m, kRe)) return "no summary in: " + summary;
  return m[1].str() + " lines, " + m[2].str() + " events, " + m[3].str() + " malformed, " +
         m[4].str() + " incidents";
}

// Everything of each incident but the store's own numbering and bookkeeping.
nlohmann::json Incidents(const std::string& db) {
  auto r = RunCommand({kBinary, "incidents", "list", "--json", "--limit", "1000000", "--db", db});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json all = nlohmann::json::parse(r.out);
  for (auto& inc : all) {
    inc.erase("id");
    inc.erase("created_at");
    inc.erase("updated_at");
    for (auto& a : inc["actions"]) {
      a.erase("id");
      a.erase("incident_id");
      a.erase("created_at");
      a.erase("updated_at");
      a.erase("next_attempt_at");
    }
  }
  return all;
}

TEST(ReplayThreadsTest, FourThreadsGiveTheIncidentsOfOne) {
  TempDir dir;
  const std::string log = dir.file("mail.log");
  auto gen = RunCommand({"python3", kSource + "/bench/generate_maillog.py", "--lines", "30000",
                         "--seed", "3", "--attackers", "300", "--attack-share", "0.40", "--out",
                         log, "--truth", dir.file("truth.json")});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;

  std::string summary[2];
  nlohmann::json incidents[2];
  const char* threads[2] = {"1", "4"};
  for (int i = 0; i < 2; ++i) {
    const std::string db = dir.file(std::string("t") + threads[i] + ".db");
    auto r = RunCommand({kBinary, "replay", "--threads", threads[i], "--db", db, "--rules", kRules,
                         "--config", "/dev/null", log});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    summary[i] = Counts(r.err);
    incidents[i] = Incidents(db);
  }
  EXPECT_EQ(summary[0], summary[1]);
  ASSERT_TRUE(incidents[0].is_array());
  // A heavy attack share: there is something to compare.
  EXPECT_GT(incidents[0].size(), 20u) << summary[0];
  ASSERT_EQ(incidents[0].size(), incidents[1].size());
  for (std::size_t i = 0; i < incidents[0].size(); ++i) {
    ASSERT_EQ(incidents[0][i], incidents[1][i]) << "incident " << i;
  }
  std::printf("%s, the same with --threads 1 and 4\n", summary[0].c_str());
}

}  // namespace
}  // namespace mxward
