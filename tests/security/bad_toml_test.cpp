// Malformed TOML: every playbook in tests/security/data/bad_playbooks/ and every mxward.toml in
// tests/security/data/bad_configs/ makes `mxward check` exit 1 (docs/cli.md: "a check failed")
// with `file:line:col: error: message` at the place listed in that directory's EXPECTED file,
// never a crash, a hang or an uncaught exception. The same files seed the loaders' fuzz targets
// (tests/fuzz/corpus/playbook_loader_fuzz, config_loader_fuzz).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "support/subprocess.h"

namespace mxward::testing {
namespace {

namespace fs = std::filesystem;

const std::string kData = std::string(MXWARD_SOURCE_DIR) + "/tests/security/data";
constexpr int kExitCheckFailed = 1;

std::map<std::string, std::string> Expected(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::ifstream in(dir + "/EXPECTED");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, where;
    fields >> name >> where;
    out[name] = where;
  }
  return out;
}

// The first line of stderr must be "<path>:<line>:<col>: error: ..." at the expected place.
void ExpectLocated(const CommandResult& r, const std::string& path, const std::string& where) {
  EXPECT_EQ(r.exit_code, kExitCheckFailed) << r.err;
  const std::string first = r.err.substr(0, r.err.find('\n'));
  EXPECT_EQ(first.rfind(path + ":" + where + ": error: ", 0), 0u)
      << "expected " << path << ":" << where << ", got: " << first;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("ok:"), std::string::npos) << r.out;
}

TEST(BadTomlTest, EveryMalformedPlaybookIsLocated) {
  const std::string dir = kData + "/bad_playbooks";
  const auto expected = Expected(dir);
  ASSERT_GE(expected.size(), 20u);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    const std::string name = e.path().filename();
    SCOPED_TRACE(name);
    ASSERT_TRUE(expected.count(name)) << name << " has no line in EXPECTED";
    TempDir rules;  // the playbook alone, so its diagnostic is the first
    fs::copy_file(e.path(), rules.file(name));
    const auto r = RunCommand({MXWARD_BINARY, "check", "--rules", rules.path()});
    ExpectLocated(r, rules.file(name), expected.at(name));
    ++files;
  }
  EXPECT_EQ(files, static_cast<int>(expected.size()));
}

// All of them in one directory: every file is reported in the same run, none hides another.
TEST(BadTomlTest, EveryMalformedPlaybookIsReportedInOneRun) {
  const std::string dir = kData + "/bad_playbooks";
  const auto expected = Expected(dir);
  TempDir rules;
  for (const auto& [name, where] : expected) fs::copy_file(dir + "/" + name, rules.file(name));
  const auto r = RunCommand({MXWARD_BINARY, "check", "--rules", rules.path()});
  EXPECT_EQ(r.exit_code, kExitCheckFailed);
  for (const auto& [name, where] : expected) {
    EXPECT_NE(r.err.find(rules.file(name) + ":" + where + ": error: "), std::string::npos)
        << name << " not reported at " << where;
  }
}

TEST(BadTomlTest, EveryMalformedConfigIsLocated) {
  const std::string dir = kData + "/bad_configs";
  const auto expected = Expected(dir);
  ASSERT_GE(expected.size(), 10u);
  TempDir rules;  // empty rules directory: only the config can be wrong
  for (const auto& [name, where] : expected) {
    SCOPED_TRACE(name);
    const std::string path = dir + "/" + name;
    ASSERT_TRUE(fs::exists(path));
    const auto r = RunCommand({MXWARD_BINARY, "check", "--config", path, "--rules", rules.path()});
    ExpectLocated(r, path, expected.at(name));
  }
}

// A broken mxward.toml stops the daemon at start with the same located message, before it binds
// anything; it never runs on half a configuration.
TEST(BadTomlTest, ServeRefusesAMalformedConfig) {
  const std::string dir = kData + "/bad_configs";
  TempDir state;
  for (const std::string name : {"syntax_unclosed_array.toml", "bad_allow_address.toml"}) {
    const std::string path = dir + "/" + name;
    const auto r = RunCommand({MXWARD_BINARY, "serve", "--config", path, "--db", state.file("x.db"),
                               "--rules", MXWARD_SOURCE_DIR "/rules.d"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.exit_code, -1) << "killed by a signal";
    EXPECT_NE((r.out + r.err).find(path + ":"), std::string::npos) << r.err;
  }
}

// `mxward check` validates every section `serve` reads, with the readers serve uses, and refuses
// a misspelt section ([stor]): `mxward check && systemctl reload mxward` must not pass a config
// the daemon would then refuse or half ignore.
TEST(BadTomlTest, CheckValidatesEverySectionServeReads) {
  const std::string dir = kData + "/bad_configs_unchecked";
  TempDir rules;
  for (const auto& e : fs::directory_iterator(dir)) {
    SCOPED_TRACE(e.path().filename().string());
    const auto r = RunCommand(
        {MXWARD_BINARY, "check", "--config", e.path().string(), "--rules", rules.path()});
    EXPECT_EQ(r.exit_code, kExitCheckFailed) << r.out;
    EXPECT_NE(r.err.find(e.path().string() + ":"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace mxward::testing
