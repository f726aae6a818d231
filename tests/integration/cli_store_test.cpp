// Who creates the store, and as whom (issue 16, point 1): a command that only shows something
// opens the store read-only and never creates it, so `mxward incidents list` run as root before the
// daemon's first start cannot leave a root-owned store that the daemon (user mxward) then cannot
// write; a state-changing command run as root that has to create the store gives the new files
// to the owner of the store's directory, the daemon's user in the package layout.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;

class CliStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n";
  }
  CommandResult Mxward(std::vector<std::string> args, const std::string& db) {
    std::vector<std::string> argv = {MXWARD_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(),
                {"--db", db, "--config", config_, "--socket", dir_.file("control.sock")});
    return RunCommand(argv, "", {"TZ=UTC", "NO_COLOR=1"});
  }
  TempDir dir_;
  std::string config_;
};

TEST_F(CliStoreTest, ReadCommandsNeverCreateTheStore) {
  const std::string db = dir_.file("absent.db");
  const std::vector<std::vector<std::string>> reads = {{"incidents", "list"},
                                                       {"incidents", "show", "1"},
                                                       {"bans", "list"},
                                                       {"accounts", "list"},
                                                       {"stats"}};
  for (const auto& args : reads) {
    const CommandResult r = Mxward(args, db);
    EXPECT_NE(r.exit_code, 0) << args[0];
    EXPECT_NE(r.err.find("no store at " + db), std::string::npos) << args[0] << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(db)) << args[0] << " created the store";
  }
}

TEST_F(CliStoreTest, AStoreRootCreatesBelongsToTheOwnerOfItsDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (the case is root creating the store)";
  const std::string dir = dir_.file("lib-mxward");
  std::filesystem::create_directory(dir);
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);  // as the package's /var/lib/mxward is mxward's
  const std::string db = dir + "/mxward.db";
  const CommandResult r = Mxward({"bans", "add", "192.0.2.7", "--for", "1h"}, db);
  ASSERT_EQ(r.exit_code, 4) << r.err;  // dry_run = true: recorded, not applied
  for (const std::string& f : {db, db + "-wal", db + "-shm"}) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) continue;  // -wal/-shm are gone after a clean close
    EXPECT_EQ(st.st_uid, 65534u) << f;
    EXPECT_EQ(st.st_gid, 65534u) << f;
  }
  // The reader sees what was written, as root, without taking anything over.
  const CommandResult list = Mxward({"incidents", "list"}, db);
  EXPECT_EQ(list.exit_code, 0) << list.err;
  struct stat st {};
  ASSERT_EQ(::stat(db.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
}

}  // namespace
}  // namespace mxward
