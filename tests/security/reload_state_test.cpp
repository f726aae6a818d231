// Reload and the state under a running `mxward serve` (issue 21, point 7), each against the real
// daemon in a network namespace of the test's own:
//  - SIGHUP rebuilds the parser pack with the playbooks: a parser added by the reload recognises
//    the next line; an invalid parser file refuses the whole reload at its file:line:col, and the
//    running parsers and playbooks keep working;
//  - a changed section the daemon applies only at start is named in the log and in `mxward status`
//    as needing a restart, and the reload is not called "reloaded"; an invalid one refuses it;
//  - the store deleted under the daemon is noticed, /healthz goes unhealthy, the store is
//    recreated at its path with what the lost file held, and recording continues there;
//  - a corrupt store at start does not switch protection off: serve starts, says what to repair,
//    and /healthz names the corruption.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/nft_sets.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::HttpGet;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::SendTcp;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
constexpr int kPort = 5514;

class ReloadStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = dir_.file("rules.d");
    std::filesystem::copy(kRules, rules_, std::filesystem::copy_options::recursive);
    db_ = dir_.file("state.db");
    config_ = dir_.file("mxward.toml");
    socket_ = dir_.file("control.sock");
    WriteConfig("");
  }

  void TearDown() override {
    if (started_) {
      EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
    }
  }

  // dry_run (unless dry_run is false), one tcp input; `extra` is appended (more sections).
  void WriteConfig(const std::string& extra, bool dry_run = true) {
    std::ofstream(config_) << "dry_run = " << (dry_run ? "true" : "false") << "\n"
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort
                           << "\"\nallowed_senders = [\"127.0.0.1\"]\n"
                           << extra;
  }

  // Starts serve on the rules directory (the copy of rules.d by default) with its own log.
  void Start(const std::string& rules = "", const std::string& log = "serve.log") {
    ASSERT_TRUE(daemon_.Start(kBinary,
                              {"--db", db_, "--config", config_, "--rules",
                               rules.empty() ? rules_ : rules, "--socket", socket_},
                              dir_.file(log)));
    started_ = true;
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << "serve did not get ready: " << daemon_.Log();
  }

  // Sends n Postfix SASL failures for addr over one TCP connection (LF framing), stamped now.
  static void SendFailures(const std::string& addr, int n) {
    const std::string stamp = SyslogStampNow();
    std::string data;
    for (int i = 0; i < n; ++i) {
      data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
              "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
    ASSERT_TRUE(SendTcp(kPort, data));
  }

  bool HasIncident(const std::string& key) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return false;
    IncidentQuery q;
    q.playbook = "postfix-sasl";
    q.key = key;
    auto list = (*store)->ListIncidents(q);
    return list.ok() && !list->empty();
  }

  // Sends SIGHUP and waits for the reload's own last line (any outcome); returns the log after.
  std::string Reload() {
    const std::size_t before = Occurrences(daemon_.Log());
    EXPECT_TRUE(daemon_.Signal(SIGHUP));
    EXPECT_TRUE(daemon_.WaitFor([&] { return Occurrences(daemon_.Log()) > before; }))
        << daemon_.Log();
    return daemon_.Log();
  }
  static std::size_t Occurrences(const std::string& log) {
    std::size_t n = 0;
    for (const char* needle : {"reloaded:", "reloaded in part:", "reload refused"}) {
      for (std::size_t p = log.find(needle); p != std::string::npos; p = log.find(needle, p + 1))
        ++n;
    }
    return n;
  }

  nlohmann::json StatusJson() {
    const CommandResult r = RunCommand(
        {kBinary, "status", "--json", "--db", db_, "--config", config_, "--socket", socket_}, "",
        {"TZ=UTC", "NO_COLOR=1"});
    if (r.exit_code != 0) return nullptr;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  std::string Events() {
    const std::string m = HttpGet(9580, "/metrics");
    const std::string needle = "mxward_events_total{type=\"auth_failure\"} ";
    const auto p = m.find(needle);
    return p == std::string::npos
               ? "0"
               : m.substr(p + needle.size(), m.find('\n', p) - p - needle.size());
  }

  TempDir dir_;
  std::string rules_, db_, config_, socket_;
  ServeProcess daemon_;
  bool started_ = false;
};

// Before: SIGHUP rebuilt only the playbooks, and a parser file added or changed was ignored until
// a restart. The daemon starts without the Postfix parser, so SASL failures are unmatched; the
// parser comes back and SIGHUP: the next 20 failures open the incident.
TEST_F(ReloadStateTest, AParserAddedByTheReloadRecognisesTheNextLine) {
  const std::string parked = dir_.file("postfix-parser.toml");
  std::filesystem::rename(rules_ + "/parsers/postfix.toml", parked);
  Start();
  SendFailures("203.0.113.70", 20);
  ASSERT_TRUE(daemon_.WaitFor([&] {
    return HttpGet(9580, "/metrics").find("mxward_lines_total 20\n") != std::string::npos;
  })) << HttpGet(9580, "/metrics");
  EXPECT_EQ(Events(), "0") << "without the Postfix parser no SASL failure is an event";
  EXPECT_FALSE(HasIncident("203.0.113.70"));

  std::filesystem::rename(parked, rules_ + "/parsers/postfix.toml");
  const std::string log = Reload();
  ASSERT_NE(log.find("reloaded:"), std::string::npos) << log;
  SendFailures("203.0.113.71", 20);
  EXPECT_TRUE(daemon_.WaitFor([&] { return HasIncident("203.0.113.71"); })) << daemon_.Log();
}

// Before: an invalid parser file was answered "reloaded" (and the next restart refused to start).
// Now the reload is refused at the file's line:col, a playbook changed in the same reload is not
// taken either, and the running parsers still recognise lines.
TEST_F(ReloadStateTest, AnInvalidParserFileRefusesTheWholeReload) {
  Start();
  std::ofstream(rules_ + "/parsers/broken.toml")
      << "[parser]\nname = \"broken\"\nprograms = [\"broken\"]\n\n[[pattern]]\nname = \"x\"\n"
         "event = \"auth_failure\"\nregex = \"(unclosed\"\n";
  // The same reload would also change the SASL playbook's threshold to 2.
  std::string playbook;
  {
    std::ifstream in(rules_ + "/postfix-sasl.toml");
    playbook.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto at = playbook.find("threshold = ");
  ASSERT_NE(at, std::string::npos);
  playbook.replace(at, playbook.find('\n', at) - at, "threshold = 2");
  std::ofstream(rules_ + "/postfix-sasl.toml") << playbook;

  const std::string log = Reload();
  EXPECT_NE(log.find("reload refused"), std::string::npos) << log;
  EXPECT_EQ(log.find("reloaded"), std::string::npos) << log;
  EXPECT_NE(log.find("broken.toml:8:"), std::string::npos) << "names file:line:col\n" << log;
  const nlohmann::json status = StatusJson();
  ASSERT_TRUE(status.is_object()) << daemon_.Log();
  EXPECT_EQ(status["last_reload"]["outcome"], "refused") << status.dump();

  // The running playbook (threshold 20) is still the one counting: 2 failures open nothing.
  SendFailures("203.0.113.72", 2);
  ASSERT_TRUE(daemon_.WaitFor([&] { return Events() == "2"; })) << HttpGet(9580, "/metrics");
  EXPECT_FALSE(HasIncident("203.0.113.72"));
  SendFailures("203.0.113.72", 18);
  EXPECT_TRUE(daemon_.WaitFor([&] { return HasIncident("203.0.113.72"); })) << daemon_.Log();
}

// Before: a new [[input]] or [webhook.NAME] was silently not applied and the reload said
// "reloaded". Now each changed section that waits for a restart has its own log line, the reload
// says "reloaded in part" and `status` lists them; what can change (the playbooks) did.
TEST_F(ReloadStateTest, SectionsThatNeedARestartAreNamed) {
  Start();
  WriteConfig(
      "[[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:5515\"\n"
      "[webhook.ops]\nurl = \"http://127.0.0.1:9/hook\"\n");
  const std::string log = Reload();
  EXPECT_NE(log.find("reload: [[input]] changed and needs a restart"), std::string::npos) << log;
  EXPECT_NE(log.find("reload: [webhook.*] changed and needs a restart"), std::string::npos) << log;
  EXPECT_NE(log.find("reloaded in part:"), std::string::npos) << log;
  EXPECT_EQ(log.find("reloaded:"), std::string::npos) << log;
  const nlohmann::json status = StatusJson();
  ASSERT_TRUE(status.is_object()) << daemon_.Log();
  const nlohmann::json& r = status["last_reload"];
  EXPECT_EQ(r["outcome"], "reloaded in part") << status.dump();
  EXPECT_EQ(r["needs_restart"], nlohmann::json::array({"[[input]]", "[webhook.*]"}))
      << status.dump();

  // Reloading the same file again does not make them applied: they still wait for the restart.
  const std::string again = Reload();
  EXPECT_EQ(again.find("reloaded:"), std::string::npos) << again;
  EXPECT_EQ(StatusJson()["last_reload"]["needs_restart"],
            nlohmann::json::array({"[[input]]", "[webhook.*]"}));

  // An invalid section refuses the reload, even one applied only at restart: that restart
  // would refuse to start.
  WriteConfig("[webhook.ops]\nurl = 5\n");
  const std::string refused = Reload();
  EXPECT_NE(refused.find("reload refused"), std::string::npos) << refused;
  EXPECT_NE(refused.find("mxward.toml:"), std::string::npos) << refused;
  EXPECT_EQ(StatusJson()["last_reload"]["outcome"], "refused");

  // [provenance] is applied by the reload (the writers' table is resolved again), so it is not a
  // section that waits for a restart; an invalid one refuses the reload like any other.
  WriteConfig("[provenance]\nenforce = \"yes\"\n");
  std::size_t from = daemon_.Log().size();
  const std::string bad_provenance = Reload().substr(from);
  EXPECT_NE(bad_provenance.find("reload refused"), std::string::npos) << bad_provenance;
  EXPECT_EQ(StatusJson()["last_reload"]["outcome"], "refused");
  WriteConfig("[provenance]\nenforce = false\n");
  from = daemon_.Log().size();
  const std::string provenance = Reload().substr(from);
  EXPECT_EQ(StatusJson()["last_reload"]["outcome"], "reloaded") << provenance;
  EXPECT_EQ(provenance.find("needs a restart"), std::string::npos) << provenance;
}

// Before: `rm` of the store under the running daemon went unnoticed; new incidents went to the
// unlinked file and vanished, /healthz said ok. Now the daemon notices within about a second,
// copies the lost file back to its path (owner kept) and restarts in place on it: the incident
// from before is there, the next one is recorded there, and /healthz says what happened.
TEST_F(ReloadStateTest, AStoreDeletedUnderTheDaemonIsRecreatedWithWhatItHeld) {
  Start();
  const pid_t pid = daemon_.pid();
  SendFailures("203.0.113.80", 20);
  ASSERT_TRUE(daemon_.WaitFor([&] { return HasIncident("203.0.113.80"); })) << daemon_.Log();
  ASSERT_EQ(::chown(db_.c_str(), 65534, 65534), 0);  // owned by another user: kept
  ASSERT_EQ(::unlink(db_.c_str()), 0);               // the -wal and -shm stay, as after `rm`

  ASSERT_TRUE(daemon_.WaitForLog("was deleted under the running daemon")) << daemon_.Log();
  // Restarted in place: the same pid gets ready a second time.
  ASSERT_TRUE(daemon_.WaitFor([&] {
    const std::string log = daemon_.Log();
    return log.find("ready:") != log.rfind("ready:");
  })) << daemon_.Log();
  EXPECT_EQ(daemon_.pid(), pid);
  struct stat st {};
  ASSERT_EQ(::stat(db_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_TRUE(HasIncident("203.0.113.80")) << "what the lost file held is back";
  const std::string health = HttpGet(9580, "/healthz");
  EXPECT_NE(health.find(" 503 "), std::string::npos) << health;
  EXPECT_NE(health.find("was deleted"), std::string::npos) << health;

  SendFailures("203.0.113.81", 20);
  EXPECT_TRUE(daemon_.WaitFor([&] { return HasIncident("203.0.113.81"); })) << daemon_.Log();
}

// Before: a corrupt store (here truncated to half: it still opens) made serve refuse to start,
// so a disk hiccup switched protection off. Now serve moves it aside, starts on a fresh store,
// logs what to repair (the file and the command) and /healthz names the corruption until the
// moved file is dealt with.
TEST_F(ReloadStateTest, ACorruptStoreAtStartIsMovedAsideAndProtectionGoesOn) {
  {
    auto store = IncidentStore::Open(db_);
    ASSERT_OK(store.status());
    // Enough rows for several pages, so half the file cuts through tables.
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec((*store)->db(),
                           "CREATE TABLE filler(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                           "SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO filler SELECT "
                           "randomblob(200) FROM n; PRAGMA wal_checkpoint(TRUNCATE);",
                           nullptr, nullptr, &err),
              SQLITE_OK)
        << (err ? err : "");
  }
  const auto size = std::filesystem::file_size(db_);
  ASSERT_GT(size, 100'000u);
  std::filesystem::resize_file(db_, size / 2);

  Start();
  const std::string log = daemon_.Log();
  EXPECT_NE(log.find("is corrupt"), std::string::npos) << log;
  EXPECT_NE(log.find(".recover"), std::string::npos) << log;
  std::string aside;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    if (e.path().filename().string().rfind("state.db.corrupt-", 0) == 0 &&
        e.path().string().find("-wal") == std::string::npos &&
        e.path().string().find("-shm") == std::string::npos) {
      aside = e.path().string();
    }
  }
  ASSERT_FALSE(aside.empty()) << log;
  EXPECT_NE(log.find(aside), std::string::npos) << "the log names the moved file\n" << log;
  std::string health = HttpGet(9580, "/healthz");
  EXPECT_NE(health.find(" 503 "), std::string::npos) << health;
  EXPECT_NE(health.find("corrupt"), std::string::npos) << health;

  SendFailures("203.0.113.90", 20);
  EXPECT_TRUE(daemon_.WaitFor([&] { return HasIncident("203.0.113.90"); })) << daemon_.Log();

  // Dealt with (recovered or kept elsewhere): healthy again.
  std::filesystem::rename(aside, dir_.file("kept-for-recovery.db"));
  EXPECT_TRUE(daemon_.WaitFor([&] {
    return HttpGet(9580, "/healthz").find(" 200 ") != std::string::npos;
  })) << HttpGet(9580, "/healthz");
}

// The same with nftables: before, the start on the fresh store rebuilt the table from it and so
// unbanned every address the kernel held. Now the table is kept (its elements end at their own
// timeouts) and the next attacker is banned beside them.
TEST_F(ReloadStateTest, ACorruptStoreAtStartKeepsTheKernelsBans) {
  const std::string missing = testing::EnterNamespaceWithNft();
  if (!missing.empty()) GTEST_SKIP() << missing;
  const std::string rules = testing::WriteSaslBanRules(dir_.file("sasl"));
  WriteConfig("[nftables]\nenabled = true\n", /*dry_run=*/false);
  Start(rules);
  SendFailures("203.0.113.100", 20);
  ASSERT_TRUE(daemon_.WaitFor([] {
    return testing::KernelSetAddresses("banned_v4").contains("203.0.113.100");
  })) << daemon_.Log();
  ASSERT_TRUE(daemon_.Stop()) << daemon_.Log();
  started_ = false;
  {
    std::fstream f(db_, std::ios::in | std::ios::out | std::ios::binary);
    f.write("this is no longer an SQLite file header", 39);  // SQLite: "file is not a database"
  }

  Start(rules, "serve-again.log");
  EXPECT_NE(daemon_.Log().find("is corrupt"), std::string::npos) << daemon_.Log();
  ASSERT_TRUE(daemon_.WaitForLog("kept as it is")) << daemon_.Log();
  EXPECT_TRUE(testing::KernelSetAddresses("banned_v4").contains("203.0.113.100"))
      << "the start on a fresh store must not unban what the kernel holds\n"
      << daemon_.Log();
  SendFailures("203.0.113.101", 20);
  EXPECT_TRUE(daemon_.WaitFor([] {
    const auto set = testing::KernelSetAddresses("banned_v4");
    return set.contains("203.0.113.101") && set.contains("203.0.113.100");
  })) << daemon_.Log();
}

}  // namespace
}  // namespace mxward
