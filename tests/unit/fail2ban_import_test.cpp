// `mxward import fail2ban` on Debian's own fail2ban configuration (package fail2ban, /etc/fail2ban)
// plus jail.local / jail.d files the test writes: read in fail2ban's order, enabled mail jails
// turned into playbooks that compile, and what cannot be carried is listed.
#include "engine/cli/fail2ban_import.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "mxward/playbook.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

namespace fs = std::filesystem;

class Fail2banImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Debian's package: a missing fail2ban is a broken test machine, not a skip.
    ASSERT_TRUE(fs::exists("/etc/fail2ban/jail.conf"))
        << "fail2ban is not installed (packaging/install-deps.sh lists it)";
    char tmpl[] = "/tmp/mxward-f2b-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::copy("/etc/fail2ban", dir_, fs::copy_options::recursive);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((fs::path(dir_) / rel).parent_path());
    std::ofstream(fs::path(dir_) / rel) << text;
  }

  const ImportedPlaybook* Find(const Fail2banImport& r, const std::string& name) {
    for (const auto& p : r.playbooks) {
      if (p.name == name) return &p;
    }
    return nullptr;
  }

  Playbook Compile(const ImportedPlaybook& p) {
    std::vector<Diagnostic> diags;
    auto pb = CompilePlaybookText(p.toml, p.name + ".toml", &diags);
    for (const auto& d : diags) ADD_FAILURE() << d.ToString() << "\n" << p.toml;
    return pb.ok() ? *pb : Playbook{};
  }

  bool Listed(const Fail2banImport& r, const std::string& needle) {
    for (const auto& n : r.not_carried) {
      if (n.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  std::string dir_;
};

TEST_F(Fail2banImportTest, DebianDefaultsEnableNoMailJail) {
  fs::remove(fs::path(dir_) / "jail.local");
  auto r = ImportFail2ban(dir_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->playbooks.empty());
  EXPECT_TRUE(Listed(*r, "no mail jail is enabled"));
  ASSERT_GE(r->files_read.size(), 2u);
  EXPECT_EQ(r->files_read[0], dir_ + "/jail.conf");
  EXPECT_EQ(r->files_read[1], dir_ + "/jail.d/defaults-debian.conf");
}

TEST_F(Fail2banImportTest, EnabledMailJailsBecomePlaybooksWithTheirSettings) {
  Write("jail.local", R"(
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1 192.0.2.0/24 trusted.example.org
bantime = 30m

[postfix-sasl]
enabled = true
maxretry = 3
findtime = 1h
bantime = 2h   ; inline comment
bantime.increment = true
bantime.maxtime = 2d
bantime.overalljails = true
bantime.rndtime = 5m

[postfix]
enabled = true
mode = aggressive

[dovecot]
enabled = true
maxretry = 4

[sieve]
enabled = true
failregex = ^custom$

[roundcube-auth]
enabled = true

[postfix-rbl]
enabled = false

[recidive]
enabled = true

[exim]
enabled = true
)");
  // jail.d/*.local is read after jail.local: it wins.
  Write("jail.d/zz-site.local", "[dovecot]\nmaxretry = 7\nfindtime = 20 min\n");
  auto r = ImportFail2ban(dir_);
  ASSERT_OK(r);
  EXPECT_EQ(r->files_read.back(), dir_ + "/jail.d/zz-site.local");
  EXPECT_EQ(r->files_read[r->files_read.size() - 2], dir_ + "/jail.local");

  const ImportedPlaybook* sasl = Find(*r, "postfix-sasl");
  ASSERT_NE(sasl, nullptr);
  EXPECT_EQ(sasl->jail, "postfix-sasl");
  Playbook pb = Compile(*sasl);
  EXPECT_EQ(pb.trigger.threshold, 3u);
  EXPECT_EQ(pb.trigger.window_seconds, 3600);
  ASSERT_EQ(pb.actions.size(), 1u);
  EXPECT_EQ(pb.actions[0].type, "ban");
  EXPECT_EQ(pb.actions[0].duration_seconds, 7200);
  EXPECT_TRUE(pb.escalation.enabled);
  // bantime.maxtime = 2d, but [recidive] (enabled, Debian's bantime 1w) bans repeat offenders
  // for a week whatever the jail's maxtime: the longer bound is what fail2ban enforces.
  EXPECT_EQ(pb.escalation.max_seconds, 7 * 86400);
  EXPECT_EQ(pb.escalation.lookback_seconds, 86400);  // fail2ban.conf dbpurgeage
  EXPECT_TRUE(pb.escalation.across_playbooks);
  ASSERT_EQ(pb.allow.cidrs.size(), 3u);
  EXPECT_EQ(pb.allow.cidrs[2].ToString(), "192.0.2.0/24");
  EXPECT_TRUE(Listed(*r, "ignoreip trusted.example.org"));
  EXPECT_TRUE(Listed(*r, "bantime.rndtime"));

  const ImportedPlaybook* postfix = Find(*r, "postfix");
  ASSERT_NE(postfix, nullptr);
  pb = Compile(*postfix);
  EXPECT_TRUE(pb.match.types[static_cast<int>(EventType::kAuthFailure)]);
  EXPECT_TRUE(pb.match.types[static_cast<int>(EventType::kProtocolAbuse)]);
  EXPECT_TRUE(pb.match.types[static_cast<int>(EventType::kRelayDenied)]);
  EXPECT_EQ(pb.actions[0].duration_seconds, 1800);  // [DEFAULT] bantime from jail.local
  EXPECT_TRUE(pb.escalation.enabled) << "recidive carried as escalation";
  EXPECT_EQ(pb.escalation.max_seconds, 7 * 86400);

  const ImportedPlaybook* dovecot = Find(*r, "dovecot-auth");
  ASSERT_NE(dovecot, nullptr);
  pb = Compile(*dovecot);
  EXPECT_EQ(pb.trigger.threshold, 7u);
  EXPECT_EQ(pb.trigger.window_seconds, 1200);

  const ImportedPlaybook* sieve = Find(*r, "sieve-auth");
  ASSERT_NE(sieve, nullptr);
  Compile(*sieve);
  EXPECT_TRUE(Listed(*r, "[sieve]: failregex"));

  const ImportedPlaybook* rc = Find(*r, "roundcube-login");
  ASSERT_NE(rc, nullptr);
  pb = Compile(*rc);
  EXPECT_EQ(pb.key_kind, "user");
  EXPECT_EQ(pb.actions[0].type, "mail");

  EXPECT_EQ(Find(*r, "postfix-rbl"), nullptr) << "disabled";
  EXPECT_EQ(r->playbooks.size(), 5u);
  EXPECT_TRUE(Listed(*r, "[recidive] maxretry = 5"));
  EXPECT_FALSE(Listed(*r, "[sshd]")) << "not a mail jail: not mentioned";
}

// Issue 16, point 10: with bantime.increment on and [recidive] enabled, the import said recidive
// was carried yet wrote across_playbooks = false, so repeat offenders of other jails did not count.
TEST_F(Fail2banImportTest, RecidiveIsCarriedTruthfullyNextToBantimeIncrement) {
  Write("jail.local", R"(
[postfix-sasl]
enabled = true
bantime.increment = true
bantime.maxtime = 2d

[dovecot]
enabled = true
bantime.increment = true
bantime.maxtime = 2d

[recidive]
enabled = true
findtime = 3d
bantime = 1w
)");
  auto r = ImportFail2ban(dir_);
  ASSERT_OK(r);
  for (const char* name : {"postfix-sasl", "dovecot-auth"}) {
    const ImportedPlaybook* p = Find(*r, name);
    ASSERT_NE(p, nullptr) << name;
    const Playbook pb = Compile(*p);
    EXPECT_TRUE(pb.escalation.enabled) << name;
    EXPECT_TRUE(pb.escalation.across_playbooks) << "recidive counts every jail's bans\n" << p->toml;
    EXPECT_EQ(pb.escalation.lookback_seconds, 3 * 86400) << "recidive's findtime is longer";
    EXPECT_EQ(pb.escalation.max_seconds, 7 * 86400) << "recidive's bantime is longer";
    EXPECT_NE(p->toml.find("[recidive] is enabled"), std::string::npos) << p->toml;
  }

  // Without recidive and without overalljails, increment counts the jail's own bans only.
  Write("jail.local", "[postfix-sasl]\nenabled = true\nbantime.increment = true\n");
  r = ImportFail2ban(dir_);
  ASSERT_OK(r);
  const ImportedPlaybook* p = Find(*r, "postfix-sasl");
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(Compile(*p).escalation.across_playbooks) << p->toml;
}

TEST_F(Fail2banImportTest, CustomFiltersAndUnknownModesAreListedNotGuessed) {
  Write("jail.local", R"(
[postfix-sasl]
enabled = true
filter = my-postfix

[postfix]
enabled = true
filter = postfix[mode=weird]

[postfix-custom]
enabled = true
filter = postfix
)");
  auto r = ImportFail2ban(dir_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->playbooks.empty());
  EXPECT_TRUE(Listed(*r, "[postfix-sasl] filter = my-postfix: a custom filter"));
  EXPECT_TRUE(Listed(*r, "[postfix] mode = weird"));
  EXPECT_TRUE(Listed(*r, "[postfix-custom]: a jail mxward does not know"));
}

TEST(Fail2banImportDirTest, NotAFail2banDirectory) {
  auto r = ImportFail2ban("/nonexistent/fail2ban");
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace mxward
