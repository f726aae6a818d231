// Who creates the store, and as whom (issue 16, point 1): a command that only shows something
// opens the store read-only and never creates it, so `mxward incidents list` run as root before the
// daemon's first start cannot leave a root-owned store that the daemon (user mxward) then cannot
// write; a state-changing command run as root that has to create the store gives the new files
// to the owner of the store's directory, the daemon's user in the package layout; and `serve`,
// given a store it can only read, says what to fix and exits instead of reporting ready.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/status_matchers.h"
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
  // The dispatcher's claim lock too: the daemon could not open a root-owned 0600 one.
  ASSERT_TRUE(std::filesystem::exists(db + "-claims.lock"));
  for (const std::string& f : {db, db + "-wal", db + "-shm", db + "-claims.lock"}) {
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

// The case: a store created by root before the daemon's first start, the daemon running as
// its own user. It used to say "ready" and then record nothing; now it names the file, its owner
// and mode, and the chown that fixes it, and exits 3 before READY.
TEST_F(CliStoreTest, ServeRefusesAStoreItCannotWriteAndSaysWhatToFix) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to run serve as another uid)";
  ASSERT_EQ(testing::RunCommand({"setpriv", "--version"}).exit_code, 0) << "setpriv (util-linux)";
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  const std::string dir = dir_.file("lib-mxward");
  std::filesystem::create_directory(dir);
  // The directory is the daemon's (uid 65534 here), the store root's, read-only for the rest.
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);
  const std::string db = dir + "/mxward.db";
  ASSERT_OK(IncidentStore::Open(db));
  ASSERT_EQ(::chmod(db.c_str(), 0644), 0);

  const std::vector<std::string> serve = {
      "timeout",       "30",
      "setpriv",       "--reuid=65534",
      "--regid=65534", "--clear-groups",
      MXWARD_BINARY,   "serve",
      "--db",          db,
      "--config",      config_,
      "--rules",       std::string(MXWARD_SOURCE_DIR) + "/rules.d",
      "--socket",      dir + "/control.sock"};
  CommandResult r = testing::RunCommand(serve, "", {"TZ=UTC"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;  // 124: timeout, it ran as if all was well
  const std::string out = r.out + r.err;
  EXPECT_EQ(out.find("ready"), std::string::npos) << out;
  EXPECT_NE(out.find("cannot write the store " + db), std::string::npos) << out;
  EXPECT_NE(out.find(db + " is owned by uid 0 (root), group 0 (root), mode 0644"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("mxward runs as uid 65534"), std::string::npos) << out;
  EXPECT_NE(out.find("Fix: chown nobody: " + db), std::string::npos) << out;
}

}  // namespace
}  // namespace mxward
