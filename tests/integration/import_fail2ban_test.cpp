// Issue 16, point 10: `mxward import fail2ban` writes playbooks that work as written next to the
// shipped ones (f2b-* names, parsers from the shipped directory), or in their place with
// --replace; prints the next step; and `check` refuses what `serve` refuses (a rules directory
// without parsers). Real binary, Debian's /etc/fail2ban (package fail2ban) plus a jail.local.
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/subprocess.h"

namespace mxward {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using ::testing::HasSubstr;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

class ImportFail2banTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists("/etc/fail2ban/jail.conf"))
        << "fail2ban is not installed (packaging/install-deps.sh test lists it)";
    f2b_ = dir_.file("fail2ban");
    fs::copy("/etc/fail2ban", f2b_, fs::copy_options::recursive);
    std::ofstream(f2b_ + "/jail.local")
        << "[postfix-sasl]\nenabled = true\nmaxretry = 3\n\n[dovecot]\nenabled = true\n";
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "[rules]\ndirs = [\"" << kRules << "\"]\n";
  }

  CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary, "--config", config_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  TempDir dir_;
  std::string f2b_, config_;
};

TEST_F(ImportFail2banTest, ImportedPlaybooksLoadNextToTheShippedOnes) {
  const std::string out = dir_.file("imported");
  CommandResult r = Mxward({"import", "fail2ban", f2b_, "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(fs::exists(out + "/f2b-postfix-sasl.toml")) << r.out;
  EXPECT_TRUE(fs::exists(out + "/f2b-dovecot-auth.toml")) << r.out;
  EXPECT_FALSE(fs::exists(out + "/postfix-sasl.toml"));
  // The next step is printed, and it passes as printed.
  EXPECT_THAT(r.out, HasSubstr("next: mxward check --rules " + kRules + " --rules " + out + "\n"));
  r = Mxward({"check", "--rules", kRules, "--rules", out});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;

  // The imported directory alone has no parsers: serve refuses it, so check does too.
  r = Mxward({"check", "--rules", out});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("no parser directory found"));
}

TEST_F(ImportFail2banTest, ReplaceWritesTheShippedNamesIntoARulesDirectory) {
  // Not a rules directory (no parsers/): refused before anything is written.
  const std::string bare = dir_.file("bare");
  CommandResult r = Mxward({"import", "fail2ban", f2b_, "--out", bare, "--replace"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.err, HasSubstr("has no parsers/"));
  EXPECT_FALSE(fs::exists(bare + "/postfix-sasl.toml"));

  const std::string rules = dir_.file("rules.d");
  fs::copy(kRules, rules, fs::copy_options::recursive);
  r = Mxward({"import", "fail2ban", f2b_, "--out", rules, "--replace"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::ifstream in(rules + "/postfix-sasl.toml");
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_THAT(text, HasSubstr("Imported from fail2ban jail [postfix-sasl]"));
  EXPECT_THAT(text, HasSubstr("threshold = 3"));
  EXPECT_FALSE(fs::exists(rules + "/f2b-postfix-sasl.toml"));
  r = Mxward({"check", "--rules", rules});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok: "));
}

}  // namespace
}  // namespace mxward
