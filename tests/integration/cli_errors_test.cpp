// Issue 16, point 11: errors that name their cause. The real binary, as an admin meets them:
// a store whose directory does not exist, a config file the user may not read (the package's
// root:mxward 0640), and a threshold written as a word.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;

TEST(CliErrorsTest, AMissingStoreDirectoryIsNamed) {
  TempDir dir;
  const std::string missing = dir.file("var-lib-mxward");
  const CommandResult r =
      RunCommand({kBinary, "bans", "add", "192.0.2.1", "--for", "5m", "--config", "/dev/null",
                  "--db", missing + "/mxward.db", "--socket", dir.file("no.sock")});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("the directory " + missing + " does not exist")) << r.err;
}

// Acting without a daemon, the CLI runs the dispatcher itself, which logs each action; docs/cli.md
// says stdout is the result only (`| jq` must not read a log line). It printed
// "[info] action #1 ban ... recorded as dry-run" on stdout.
TEST(CliErrorsTest, LogLinesOfADirectCommandGoToStderrNotStdout) {
  TempDir dir;
  const CommandResult r =
      RunCommand({kBinary, "bans", "add", "192.0.2.77", "--for", "1h", "--no-wait", "--config",
                  "/dev/null", "--rules", std::string(MXWARD_SOURCE_DIR) + "/rules.d", "--db",
                  dir.file("mxward.db"), "--socket", dir.file("no.sock")});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;  // dry-run: no [nftables]
  EXPECT_EQ(r.out,
            "ban 192.0.2.77 for 1h (ports: mail): dry-run, not applied: no [nftables] section in "
            "mxward.toml (action #1)\n");
  EXPECT_THAT(r.err, HasSubstr("action #1 ban 192.0.2.77 recorded as dry-run")) << r.err;
}

TEST(CliErrorsTest, AnUnreadableConfigIsOneMessageNamingTheGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a file another user cannot read";
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const std::string config = dir.file("mxward.toml");
  std::ofstream(config) << "dry_run = true\n";
  // As the package installs it: root, group adm here (a group nobody is not in), 0640.
  ASSERT_EQ(RunCommand({"chgrp", "adm", config}).exit_code, 0);
  ASSERT_EQ(::chmod(config.c_str(), 0640), 0);
  const CommandResult r =
      RunCommand({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", kBinary,
                  "incidents", "list", "--config", config});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.err,
            "mxward: cannot read " + config +
                ": Permission denied (owner root, group adm, mode 0640); the group may read it: "
                "run as root, or join the group: sudo adduser nobody adm (then log in again)\n");
  EXPECT_THAT(r.err, Not(HasSubstr("cannot read file")));
}

TEST(CliErrorsTest, AThresholdInWordsExpectsAnInteger) {
  TempDir dir;
  const std::string rules = dir.file("rules.d");
  std::filesystem::create_directories(rules);
  std::filesystem::copy(std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers", rules + "/parsers",
                        std::filesystem::copy_options::recursive);
  std::ofstream(rules + "/words.toml")
      << "description = \"x\"\nkey = \"client_ip\"\n[match]\nevents = [\"auth_failure\"]\n"
         "[trigger]\ntype = \"count\"\nthreshold = \"twenty\"\nwindow = \"10m\"\n";
  const CommandResult r = RunCommand({kBinary, "check", "--config", "/dev/null", "--rules", rules});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(rules + "/words.toml:7:13: error: 'threshold': expected an "
                                       "integer, got a string"));
}

}  // namespace
}  // namespace mxward
