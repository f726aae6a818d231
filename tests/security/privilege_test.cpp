// Privilege and exposure, against the real `mxward serve` in a network namespace of the test's own:
//  - the control socket is mode 0660, group of the daemon, and refuses a client running as another
//    uid (nobody) even when the file mode would let it connect (SO_PEERCRED check in the daemon);
//  - /metrics and /healthz carry no user names, offenders' addresses, evidence lines or secrets
//    after incidents about named users;
//  - secret files (webhook hmac_secret_file, mail password_file, PostfixAdmin password_file) that
//    others may read are refused at start, and a secret never appears in the daemon's log or in
//    `mxward check` output.
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward::testing {
namespace {

constexpr int kPort = 5514;
constexpr int kMetricsPort = 9580;
constexpr uid_t kNobody = 65534;
const std::string kHmacSecret = "S3cr3t-hmac-7f1e2d";
const std::string kMailSecret = "Pa55-mail-c0ffee";
const std::string kPfaSecret = "Pa55-pfa-d00d";
const std::string kVictim = "victim.user.q7@example.org";
const std::string kOffender = "203.0.113.66";

void WriteSecret(const std::string& path, const std::string& secret, mode_t mode) {
  std::ofstream(path) << secret << "\n";
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

// Connects to the control socket as `uid` in a child process and sends a request; the child's
// exit code says what came back: 0 permission_denied, 1 any other answer, 2 no connection.
int ControlAsUser(const std::string& socket_path, uid_t uid, std::string* reply_out) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    if (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0) _exit(3);
    if (getuid() != uid || geteuid() != uid) _exit(3);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket_path.c_str());
    auto fail = [&](const char* what) {
      const std::string why = std::string(what) + ": " + std::strerror(errno);
      if (write(pipefd[1], why.data(), why.size()) < 0) _exit(4);
      _exit(2);
    };
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) fail("connect");
    const std::string req =
        "{\"op\":\"bans.add\",\"address\":\"192.0.2.99\",\"duration_s\":60,\"reason\":\"x\"}\n";
    // The daemon may answer a refused peer and close before reading anything: a failed send is
    // fine, the answer is still there to read.
    const bool sent =
        send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
    std::string reply;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
      reply.append(buf, static_cast<std::size_t>(n));
      if (reply.find('\n') != std::string::npos) break;
    }
    if (reply.empty() && !sent) fail("send");
    if (write(pipefd[1], reply.data(), reply.size()) < 0) _exit(4);
    _exit(reply.find("\"permission_denied\"") != std::string::npos ? 0 : 1);
  }
  close(pipefd[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) reply_out->append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class PrivilegeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    ASSERT_EQ(geteuid(), 0u) << "these tests switch to another uid: run them as root";
    // nobody must be able to reach the socket file for the daemon's own check to be tested.
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    socket_ = dir_.file("control.sock");
    db_ = dir_.file("state.db");
  }

  void TearDown() override {
    if (started_) {
      EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
      ExpectNoSecretIn(daemon_.Log(), "the daemon's log");
    }
  }

  // A config with every secret-bearing section, secrets 0600 unless told otherwise.
  std::string WriteConfig(const std::string& extra = "") {
    WriteSecret(dir_.file("hmac"), kHmacSecret, 0600);
    WriteSecret(dir_.file("mailpw"), kMailSecret, 0600);
    const std::string config = dir_.file("mxward.toml");
    std::ofstream(config) << "dry_run = true\n"
                          << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kPort << "\"\n"
                          << "[webhook.ops]\nurl = \"http://127.0.0.1:1/hook\"\n"
                          << "hmac_secret_file = \"" << dir_.file("hmac") << "\"\n"
                          << "[mail]\nurl = \"smtp://127.0.0.1:1\"\nfrom = \"mxward@example.org\"\n"
                          << "to = [\"postmaster@example.org\"]\nusername = \"mxward\"\n"
                          << "password_file = \"" << dir_.file("mailpw") << "\"\n"
                          << extra;
    return config;
  }

  void Start(const std::string& config) {
    ASSERT_TRUE(daemon_.Start(MXWARD_BINARY,
                              {"--db", db_, "--config", config, "--rules",
                               MXWARD_SOURCE_DIR "/rules.d", "--socket", socket_},
                              dir_.file("serve.log")));
    started_ = true;
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << daemon_.Log();
  }

  // `mxward serve` with this config must refuse to start, naming the file, not the secret.
  void ExpectServeRefuses(const std::string& config, const std::string& secret_path) {
    // timeout: a daemon that accepts the file would run until stopped (exit 124).
    const auto r = RunCommand({"timeout", "20", MXWARD_BINARY, "serve", "--config", config, "--db",
                               db_, "--rules", MXWARD_SOURCE_DIR "/rules.d", "--socket", socket_});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.exit_code, 124) << "started with a readable secret file " << secret_path;
    EXPECT_NE(r.exit_code, -1) << "killed by a signal";
    EXPECT_NE(r.err.find(secret_path), std::string::npos) << r.err;
    ExpectNoSecretIn(r.out + r.err, "serve's refusal");
  }

  static void ExpectNoSecretIn(const std::string& text, const std::string& where) {
    for (const auto& s : {kHmacSecret, kMailSecret, kPfaSecret}) {
      EXPECT_EQ(text.find(s), std::string::npos) << "secret " << s << " in " << where;
    }
  }

  bool HasIncident(const std::string& playbook) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return false;
    IncidentQuery q;
    q.playbook = playbook;
    auto list = (*store)->ListIncidents(q);
    return list.ok() && !list->empty();
  }

  TempDir dir_;
  std::string socket_, db_;
  ServeProcess daemon_;
  bool started_ = false;
};

TEST_F(PrivilegeTest, ControlSocketIsGroupOnlyAndRefusesAnotherUid) {
  Start(WriteConfig());
  struct stat st {};
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_gid, getegid());

  // With the file mode as shipped, nobody cannot even connect.
  std::string reply;
  EXPECT_EQ(ControlAsUser(socket_, kNobody, &reply), 2) << reply;
  // Open the file to everybody (a misconfiguration): the daemon itself still refuses.
  ASSERT_EQ(chmod(socket_.c_str(), 0666), 0);
  reply.clear();
  EXPECT_EQ(ControlAsUser(socket_, kNobody, &reply), 0) << "reply: " << reply;
  EXPECT_NE(reply.find("\"ok\":false"), std::string::npos) << reply;
  // Root is served (the check is not refusing everybody).
  reply.clear();
  EXPECT_EQ(ControlAsUser(socket_, 0, &reply), 1) << reply;
  EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
}

TEST_F(PrivilegeTest, MetricsAndHealthExposeNoUsersAddressesEvidenceOrSecrets) {
  Start(WriteConfig());
  const std::string stamp = SyslogStampNow();
  std::string data;
  for (int i = 0; i < 25; ++i) {
    data +=
        "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + kOffender +
        "]: SASL LOGIN authentication failed: authentication failure, sasl_username=" + kVictim +
        "\n";
    data += "<22>" + stamp + " mx1 dovecot: imap-login: Disconnected (auth failed, 1 attempts " +
            "in 2 secs): user=<" + kVictim + ">, method=PLAIN, rip=" + kOffender +
            ", lip=192.0.2.1, TLS, session=<s" + std::to_string(i) + ">\n";
  }
  ASSERT_TRUE(SendTcp(kPort, data));
  ASSERT_TRUE(daemon_.WaitFor([&] { return HasIncident("postfix-sasl"); })) << daemon_.Log();
  const std::string metrics = HttpGet(kMetricsPort, "/metrics");
  const std::string health = HttpGet(kMetricsPort, "/healthz");
  ASSERT_NE(metrics.find("mxward_events_total"), std::string::npos) << metrics;
  ASSERT_FALSE(health.empty());
  for (const auto& [name, body] : {std::pair{"/metrics", metrics}, std::pair{"/healthz", health}}) {
    SCOPED_TRACE(name);
    ExpectNoSecretIn(body, name);
    for (const std::string& needle :
         {kVictim, std::string("victim.user"), kOffender, std::string("203.0.113."),
          std::string("SASL"), std::string("sasl_username"), std::string("rip="),
          std::string("authentication failed"), std::string("session=<")}) {
      EXPECT_EQ(body.find(needle), std::string::npos) << needle << " exposed in " << name;
    }
  }
}

TEST_F(PrivilegeTest, SecretsNeverInCheckOutputOrLog) {
  const std::string config = WriteConfig();
  const auto r = RunCommand(
      {MXWARD_BINARY, "check", "--config", config, "--rules", MXWARD_SOURCE_DIR "/rules.d"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectNoSecretIn(r.out + r.err, "mxward check");
  Start(config);  // TearDown checks the log after a clean stop
}

TEST_F(PrivilegeTest, WorldReadableWebhookSecretIsRefused) {
  const std::string config = WriteConfig();
  WriteSecret(dir_.file("hmac"), kHmacSecret, 0644);
  ExpectServeRefuses(config, dir_.file("hmac"));
  WriteSecret(dir_.file("hmac"), kHmacSecret, 0620);  // group-writable: someone could replace it
  ExpectServeRefuses(config, dir_.file("hmac"));
}

TEST_F(PrivilegeTest, WorldReadableMailPasswordIsRefused) {
  const std::string config = WriteConfig();
  WriteSecret(dir_.file("mailpw"), kMailSecret, 0604);
  ExpectServeRefuses(config, dir_.file("mailpw"));
}

TEST_F(PrivilegeTest, SecretFileThroughASymlinkIsRefused) {
  const std::string config = WriteConfig();
  WriteSecret(dir_.file("real-hmac"), kHmacSecret, 0600);
  std::filesystem::remove(dir_.file("hmac"));
  std::filesystem::create_symlink(dir_.file("real-hmac"), dir_.file("hmac"));
  ExpectServeRefuses(config, dir_.file("hmac"));
}

// [postfixadmin] password_file gets the same mode check as the webhook and mail secrets.
TEST_F(PrivilegeTest, WorldReadablePostfixAdminPasswordIsRefused) {
  WriteSecret(dir_.file("pfapw"), kPfaSecret, 0644);
  const auto sql = RunCommand(
      {"sqlite3", dir_.file("pfa.db"), "CREATE TABLE mailbox (username TEXT, active INTEGER);"});
  ASSERT_EQ(sql.exit_code, 0) << sql.err;
  const std::string config =
      WriteConfig("[postfixadmin]\nbackend = \"sqlite\"\npath = \"" + dir_.file("pfa.db") +
                  "\"\npassword_file = \"" + dir_.file("pfapw") + "\"\n");
  ExpectServeRefuses(config, dir_.file("pfapw"));
}

}  // namespace
}  // namespace mxward::testing
