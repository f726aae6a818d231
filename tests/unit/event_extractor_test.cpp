// EventExtractor over the shipped parser pack: one attempt one event (Dovecot, Roundcube),
// queue-id correlation across Postfix, OpenDKIM, Amavis and Rspamd lines, and its stats.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "mxward/parser_pack.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";
constexpr UnixMicros kT0 = 1'700'000'000 * kMicrosPerSecond;

class EventExtractorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<Diagnostic> diags;
    auto pack = ParserPack::Load({kParsers}, &diags);
    ASSERT_OK(pack);
    pack_ = *pack;
    extractor_ = EventExtractor::Create(pack_);
  }

  // Feeds one line; the line buffer is overwritten by the next call, as a reader's would be.
  bool Feed(std::string_view program, std::string_view message, int second = 0) {
    buffer_.assign(message);
    SyslogMessage m;
    m.program = program;
    m.message = buffer_;
    m.raw = buffer_;
    m.time = kT0 + second * kMicrosPerSecond;
    m.has_time = true;
    return extractor_->Extract(m, &event_);
  }

  std::shared_ptr<const ParserPack> pack_;
  std::unique_ptr<EventExtractor> extractor_;
  std::string buffer_;
  Event event_;
};

// --- One attempt, one count (engine/parse/pending_attempts.h) ---------------------------------
// Counted() adds up what the pipeline would count: events from Extract() and held lines released
// afterwards, per client address.

constexpr const char* kPassdbPam = "auth-worker(24544): pam(toto,192.0.2.10): unknown user";
constexpr const char* kPassdbFile = "auth: passwd-file(toto,192.0.2.10,<AbCd>): Password mismatch";
constexpr const char* kLogin2 =
    "imap-login: Disconnected (auth failed, 2 attempts in 6 secs): user=<toto>, method=PLAIN, "
    "rip=192.0.2.10, lip=192.0.2.1, TLS, session=<a>";

class OneAttemptOneCountTest : public EventExtractorTest {
 protected:
  // Feeds the line and collects every counted auth_failure (the line's and any released).
  void Line(std::string_view program, std::string_view message, int second) {
    if (Feed(program, message, second)) Collect(event_);
    Drain();
  }
  void Drain() {
    Event released;
    while (extractor_->NextReleased(&released)) {
      EXPECT_EQ(released.parser, "dovecot");
      EXPECT_EQ(released.get(Field::kService), "auth");
      ++released_events_;
      Collect(released);
    }
  }
  void Shutdown() {
    extractor_->ReleaseAll();
    Drain();
  }
  void Collect(const Event& e) {
    if (e.type != EventType::kAuthFailure) return;
    counted_[e.client_ip.ToString()] += e.weight;
    services_.push_back(std::string(e.get(Field::kService)));
  }
  std::uint32_t Counted(const std::string& ip) { return counted_[ip]; }

  std::map<std::string, std::uint32_t> counted_;
  std::vector<std::string> services_;
  int released_events_ = 0;
};

TEST_F(OneAttemptOneCountTest, PassdbLinesThenLoginLineCountOnceOnTheLoginLine) {
  Line("dovecot", kPassdbPam, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("dovecot", kPassdbFile, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  EXPECT_EQ(Counted("192.0.2.10"), 0u);
  Line("dovecot", kLogin2, 2);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  EXPECT_EQ(event_.weight, 2u);
  EXPECT_EQ(event_.get(Field::kUser), "toto");
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
  EXPECT_EQ(services_, std::vector<std::string>{"imap"});  // the playbooks' service
  EXPECT_EQ(released_events_, 0);
  EXPECT_EQ(extractor_->stats().held, 2u);
  EXPECT_EQ(extractor_->stats().released, 0u);
}

// Holds that end at different times are each released in the second theirs ends, and not
// before, however many seconds of lines pass in between (the extractor skips its walk of the
// held addresses until the earliest hold can have ended: a wrong bound would release late).
TEST_F(OneAttemptOneCountTest, EachHoldIsReleasedWhenItEndsNotBeforeAndNotLater) {
  constexpr const char* kFiller =
      "imap-login: Login: user=<x>, method=PLAIN, rip=192.0.2.99, lip=192.0.2.1, mpid=1, TLS, "
      "session=<z>";
  Line("dovecot", kPassdbPam, 0);  // 192.0.2.10, held until 20
  Line("dovecot", "auth-worker(24544): pam(toto,192.0.2.11): unknown user", 10);  // until 30
  for (int second = 11; second < 20; ++second) Line("dovecot", kFiller, second);
  EXPECT_EQ(Counted("192.0.2.10"), 0u);
  Line("dovecot", kFiller, 20);
  EXPECT_EQ(Counted("192.0.2.10"), 1u);
  EXPECT_EQ(Counted("192.0.2.11"), 0u);
  for (int second = 21; second < 30; ++second) Line("dovecot", kFiller, second);
  EXPECT_EQ(Counted("192.0.2.11"), 0u);
  Line("dovecot", kFiller, 30);
  EXPECT_EQ(Counted("192.0.2.11"), 1u);
  // A hold its counting line settled ends nothing; a later hold still ends on time.
  Line("dovecot", kPassdbPam, 40);
  Line("dovecot", kLogin2, 41);
  Line("dovecot", "auth-worker(24544): pam(toto,192.0.2.12): unknown user", 45);  // until 65
  for (int second = 46; second < 65; ++second) Line("dovecot", kFiller, second);
  EXPECT_EQ(Counted("192.0.2.12"), 0u);
  Line("dovecot", kFiller, 65);
  EXPECT_EQ(Counted("192.0.2.12"), 1u);
  Shutdown();
  // 1 released at 20; the login line's 2 attempts: one settles the hold of 40, the other is the
  // one released at 20 (already counted).
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
  EXPECT_EQ(released_events_, 3);
}

TEST_F(OneAttemptOneCountTest, LoginLineThenPassdbLinesCountOnce) {
  Line("dovecot", kLogin2, 0);
  Line("dovecot", kPassdbPam, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot", kPassdbFile, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot",
       "imap-login: Login: user=<x>, method=PLAIN, rip=192.0.2.99, lip=192.0.2.1, "
       "mpid=1, TLS, session=<z>",
       100);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
  EXPECT_EQ(released_events_, 0);
}

TEST_F(OneAttemptOneCountTest, PassdbLineAloneIsCountedOnceWhenItsHoldEnds) {
  Line("dovecot", kPassdbPam, 0);
  Line("postfix/qmgr", "ABCDEF0001: removed", 10);  // any later line moves event time
  EXPECT_EQ(Counted("192.0.2.10"), 0u);             // still within the hold
  Line("postfix/qmgr", "ABCDEF0002: removed", 30);
  EXPECT_EQ(Counted("192.0.2.10"), 1u);
  EXPECT_EQ(released_events_, 1);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.10"), 1u);
  EXPECT_EQ(extractor_->stats().released, 1u);
}

TEST_F(OneAttemptOneCountTest, PassdbLinesAloneAreCountedAtShutdownAndOnTheClock) {
  Line("dovecot", kPassdbPam, 0);
  Line("dovecot", kPassdbFile, 0);
  // The daemon's clock, not a log line, ends the hold in a quiet log.
  extractor_->Advance(kT0 + 21 * kMicrosPerSecond);
  Drain();
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
  EXPECT_EQ(released_events_, 1);  // one event of weight 2: the newest held line
  Line("dovecot", "auth: passwd-file(eve,198.51.100.3): unknown user", 22);
  Shutdown();  // end of replay / shutdown: nothing held is lost
  EXPECT_EQ(Counted("198.51.100.3"), 1u);
}

TEST_F(OneAttemptOneCountTest, LoginLineAloneCountsOnce) {
  Line("dovecot", kLogin2, 0);
  Line("postfix/qmgr", "ABCDEF0002: removed", 700);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
}

TEST_F(OneAttemptOneCountTest, LoginLineAfterTheReleaseCountsOnlyWhatWasNotCounted) {
  Line("dovecot", kPassdbPam, 0);
  Line("dovecot", kPassdbFile, 1);
  Line("postfix/qmgr", "ABCDEF0002: removed", 40);
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
  // A long connection: the login process writes its line after the hold ended.
  Line("dovecot",
       "imap-login: Disconnected: Connection closed (auth failed, 3 attempts in 60 secs): "
       "user=<toto>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS, session=<a>",
       60);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  EXPECT_EQ(event_.weight, 1u);  // two of its three were counted by the released line
  Line("dovecot", kLogin2, 61);  // a second connection: nothing counted for it yet
  EXPECT_EQ(event_.weight, 2u);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.10"), 5u);
}

TEST_F(OneAttemptOneCountTest, ALateLoginLineWhoseAttemptsWereAllReleasedIsFolded) {
  Line("dovecot", kPassdbPam, 0);
  Line("dovecot", kPassdbFile, 1);
  extractor_->Advance(kT0 + 30 * kMicrosPerSecond);
  Drain();
  Line("dovecot", kLogin2, 31);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.10"), 2u);
}

TEST_F(OneAttemptOneCountTest, PostfixSaslLineSettlesThePassdbLineOfSmtpAuth) {
  Line("dovecot", "auth: passwd-file(bob,203.0.113.7,<q>): Password mismatch", 0);
  Line("postfix/submission/smtpd",
       "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", 2);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  Line("postfix/submission/smtpd",
       "warning: unknown[203.0.113.7]: SASL PLAIN authentication failed: authentication failure",
       3);  // its passdb line comes later (another file)
  Line("dovecot", "auth: passwd-file(bob,203.0.113.7,<r>): Password mismatch", 3);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Shutdown();
  EXPECT_EQ(Counted("203.0.113.7"), 2u);
  EXPECT_EQ(services_, (std::vector<std::string>{"submission", "submission"}));
}

TEST_F(OneAttemptOneCountTest, AddressesAreIndependentAndLoopbackIsWebmail) {
  Line("dovecot", "auth: passwd-file(a,198.51.100.1): unknown user", 0);
  Line("dovecot", "auth: passwd-file(a,127.0.0.1): unknown user", 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot",
       "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, "
       "rip=198.51.100.2, lip=192.0.2.1, session=<x>",
       1);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.1"), 1u);  // its own line, after the hold
  EXPECT_EQ(Counted("198.51.100.2"), 1u);
  EXPECT_EQ(Counted("127.0.0.1"), 0u);
}

TEST_F(OneAttemptOneCountTest, ATinyTableEvictsByCountingNeverByLosing) {
  EventExtractorOptions options;
  options.held_capacity = 2;
  extractor_ = EventExtractor::Create(pack_, options);
  for (int i = 1; i <= 5; ++i) {
    Line("dovecot", "auth: passwd-file(a,198.51.100." + std::to_string(i) + "): unknown user", 0);
  }
  EXPECT_EQ(extractor_->stats().held_now, 2u);
  EXPECT_EQ(released_events_, 3);  // evicted: counted now rather than lost
  Shutdown();
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(Counted("198.51.100." + std::to_string(i)), 1u) << i;
}

// --- Chained passdbs (docs/parsers.md, "One attempt, one event") ------------------------------
// With two passdbs chained and verbose_passwords = no, each passdb that refuses writes its own
// line for the same attempt, with the login process's session. The lines below are Debian 12's
// Dovecot 2.3.19.1 (tests/integration/real_mail_servers.py: passdb passwd for one domain, then
// passwd-file); the session is per connection, so attempts on one connection share it.
constexpr const char* kChainedWorker =
    "auth-worker(10909): Info: conn unix:auth-worker (pid=10898,uid=106): auth-worker<2>: "
    "passwd(ghost@chained.example,198.51.100.24,<AazzFg1it5XGM2QY>): unknown user";
constexpr const char* kChainedFile =
    "auth: Info: passwd-file(ghost@chained.example,198.51.100.24,<AazzFg1it5XGM2QY>): unknown "
    "user";
// The same two lines as syslog carries them (log_path = syslog: no "Info: "; the auth process's
// line is read by a template).
constexpr const char* kChainedWorkerSyslog =
    "auth-worker(12872): conn unix:auth-worker (pid=12860,uid=106): auth-worker<1>: "
    "passwd(ghost@chained.example,198.51.100.24,<AazzFg1it5XGM2QY>): unknown user";
constexpr const char* kChainedFileSyslog =
    "auth: passwd-file(ghost@chained.example,198.51.100.24,<AazzFg1it5XGM2QY>): unknown user";
constexpr const char* kChainedLogin3 =
    "imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 3 attempts in 1 "
    "secs): user=<ghost@chained.example>, method=PLAIN, rip=198.51.100.24, lip=192.0.2.1, "
    "session=<AazzFg1it5XGM2QY>";

TEST_F(OneAttemptOneCountTest, ChainedPassdbsLinesOfOneAttemptCountOnceWhenReleased) {
  Line("dovecot", kChainedWorker, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  EXPECT_EQ(extractor_->last_outcome().pattern->name, "passdb_worker_info_conn_unknown_user_fast");
  Line("dovecot", kChainedFile, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);  // the same attempt
  Line("postfix/qmgr", "ABCDEF0003: removed", 30);  // no login line: the hold ends
  EXPECT_EQ(Counted("198.51.100.24"), 1u);
  EXPECT_EQ(released_events_, 1);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.24"), 1u);
}

TEST_F(OneAttemptOneCountTest, ChainedPassdbsThreeAttemptsOnOneConnectionCountThree) {
  // Three attempts on one connection: one session, the chain logged three times (the syslog
  // form); the first line of each pair starts an attempt, the second is folded.
  for (int i = 0; i < 3; ++i) {
    Line("dovecot", kChainedWorkerSyslog, i);
    EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld) << i;
    EXPECT_EQ(extractor_->last_outcome().pattern->name, "passdb_worker_conn_unknown_user_fast");
    EXPECT_EQ(event_.get(Field::kSession), "AazzFg1it5XGM2QY");
    EXPECT_EQ(event_.get(Field::kPassdb), "passwd");
    Line("dovecot", kChainedFileSyslog, i);
    EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded) << i;
    EXPECT_EQ(extractor_->last_outcome().pattern->name, "passdb_auth_unknown_user_fast");
  }
  Line("dovecot", kChainedLogin3, 3);
  EXPECT_EQ(event_.weight, 3u);  // it takes over the three held attempts
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.24"), 3u);
  EXPECT_EQ(released_events_, 0);
  EXPECT_EQ(extractor_->stats().held, 3u);
}

TEST_F(OneAttemptOneCountTest, ChainedPassdbsAfterTheLoginLineAreFoldedBothByItsCredit) {
  Line("dovecot", kChainedLogin3, 0);  // the login line first (another file, read earlier)
  for (int i = 0; i < 3; ++i) {
    Line("dovecot", kChainedWorker, 1);
    EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded) << i;
    Line("dovecot", kChainedFile, 1);
    EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded) << i;
  }
  Line("dovecot", kChainedWorker, 2);  // a fourth attempt the login line did not count
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.24"), 4u);
}

TEST_F(OneAttemptOneCountTest, ChainedPassdbsParallelConnectionsAndUsersAreTheirOwnAttempts) {
  // Two connections from one address, their chains interleaved; then a second user on the first
  // connection, whose first line is the second passdb's (the first passdb filters it out).
  Line("dovecot", "auth-worker(7): passwd(a@chained.example,192.0.2.40,<S1>): unknown user", 0);
  Line("dovecot", "auth-worker(7): passwd(a@chained.example,192.0.2.40,<S2>): unknown user", 0);
  Line("dovecot", "auth: passwd-file(a@chained.example,192.0.2.40,<S1>): unknown user", 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot", "auth: passwd-file(a@chained.example,192.0.2.40,<S2>): unknown user", 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot", "auth: passwd-file(b@example.org,192.0.2.40,<S1>): Password mismatch", 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  // One passdb, two attempts on one connection: the same passdb again is the next attempt.
  Line("dovecot", "auth: passwd-file(c,192.0.2.41,<S3>): Password mismatch", 0);
  Line("dovecot", "auth: passwd-file(c,192.0.2.41,<S3>): Password mismatch", 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.40"), 3u);
  EXPECT_EQ(Counted("192.0.2.41"), 2u);
}

// --- SMTP AUTH through Postfix with chained passdbs (docs/parsers.md, "Chained passdbs") ------
// Postfix's requests to Dovecot's auth socket carry no session ("AUTH\t%u\t%s\tservice=%s\t
// nologin\tlip=%s\trip=%s", src/xsasl/xsasl_dovecot_server.c), so Dovecot's passdb lines for them
// have none either. The lines below are what Debian 12's Postfix 3.7 and Dovecot 2.3.19.1 wrote
// in tests/integration/real_mail_servers.py's smtp_chained_* scenarios (log_path = syslog), in
// the order they arrived; tests/data/parsers/{dovecot,postfix}.jsonl hold them by table row.
constexpr const char* kSmtpWorker =
    "auth-worker(30684): conn unix:auth-worker (pid=30666,uid=106): auth-worker<1>: "
    "passwd(carol@chained.example,198.51.100.25): unknown user";
constexpr const char* kSmtpFile =
    "auth: passwd-file(carol@chained.example,198.51.100.25): Password mismatch";
constexpr const char* kSmtpWarning =
    "warning: unknown[198.51.100.25]: SASL PLAIN authentication failed: (reason unavailable), "
    "sasl_username=carol@chained.example";
constexpr const char* kSmtpDisconnectFailed =
    "disconnect from unknown[198.51.100.25] ehlo=1 auth=0/1 quit=1 commands=2/3";
// The same as Dovecot's log_path file writes them (with "Info: ").
constexpr const char* kSmtpWorkerInfo =
    "auth-worker(29029): Info: conn unix:auth-worker (pid=29014,uid=106): auth-worker<2>: "
    "passwd(carol@chained.example,198.51.100.25): unknown user";
constexpr const char* kSmtpFileInfo =
    "auth: Info: passwd-file(carol@chained.example,198.51.100.25): Password mismatch";

TEST_F(OneAttemptOneCountTest, SmtpAuthChainedPassdbsThenPostfixCountsOnceOnPostfixsLine) {
  Line("dovecot", kSmtpWorker, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  EXPECT_EQ(event_.get(Field::kSession), "");
  EXPECT_EQ(event_.get(Field::kPassdb), "passwd");
  Line("dovecot", kSmtpFile, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);  // the same attempt
  Line("postfix/smtpd", kSmtpWarning, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  EXPECT_EQ(event_.weight, 1u);
  Line("postfix/smtpd", kSmtpDisconnectFailed, 0);
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);  // well past the hold
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.25"), 1u);
  EXPECT_EQ(services_, std::vector<std::string>{"smtpd"});  // postfix-sasl's service
  EXPECT_EQ(released_events_, 0);
}

TEST_F(OneAttemptOneCountTest, SmtpAuthPostfixThenChainedPassdbsCountsOnce) {
  // Postfix's line first (a relay reordered them, or Dovecot's file is read later).
  Line("postfix/smtpd", kSmtpWarning, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  Line("dovecot", kSmtpWorkerInfo, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);  // met by credit
  Line("dovecot", kSmtpFileInfo, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);  // the same attempt
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.25"), 1u);
  EXPECT_EQ(released_events_, 0);
}

TEST_F(OneAttemptOneCountTest, SmtpAuthChainedPassdbsAloneCountOnceWhenReleased) {
  // Postfix logs elsewhere: the two passdb lines of the attempt are one attempt, released.
  Line("dovecot", kSmtpWorkerInfo, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  EXPECT_EQ(extractor_->last_outcome().pattern->name,
            "passdb_worker_info_conn_nosession_unknown_user_fast");
  Line("dovecot", kSmtpFileInfo, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("postfix/qmgr", "ABCDEF0003: removed", 30);
  EXPECT_EQ(Counted("198.51.100.25"), 1u);
  EXPECT_EQ(released_events_, 1);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.25"), 1u);
}

TEST_F(OneAttemptOneCountTest, SmtpAuthPostfixsLineAloneCountsOnce) {
  Line("postfix/smtpd", kSmtpWarning, 0);
  Line("postfix/smtpd", kSmtpDisconnectFailed, 0);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.25"), 1u);
}

// The unknown user of smtp_chained_many: 2 connections x 3 attempts, 12 passdb lines and 6 SASL
// warnings, in the order syslog delivered them (the first connection's second passdb pair came
// after its first warning). With Postfix's lines: 6. Without them (Postfix logging elsewhere): 6
// released.
const std::vector<std::pair<const char*, const char*>> kSmtpManyUnknown = [] {
  constexpr const char* w =
      "auth-worker(30680): conn unix:auth-worker (pid=30666,uid=106): auth-worker<1>: "
      "passwd(ghost@chained.example,198.51.100.26): unknown user";
  constexpr const char* f = "auth: passwd-file(ghost@chained.example,198.51.100.26): unknown user";
  constexpr const char* s =
      "warning: unknown[198.51.100.26]: SASL LOGIN authentication failed: (reason unavailable), "
      "sasl_username=ghost@chained.example";
  constexpr const char* d =
      "disconnect from unknown[198.51.100.26] ehlo=1 auth=0/3 quit=1 commands=2/5";
  constexpr const char* c = "connect from unknown[198.51.100.26]";
  return std::vector<std::pair<const char*, const char*>>{
      {"postfix/smtpd", c}, {"dovecot", w},       {"dovecot", f},       {"postfix/smtpd", s},
      {"dovecot", w},       {"dovecot", f},       {"postfix/smtpd", s}, {"dovecot", w},
      {"dovecot", f},       {"postfix/smtpd", s}, {"postfix/smtpd", d}, {"postfix/smtpd", c},
      {"dovecot", w},       {"dovecot", f},       {"postfix/smtpd", s}, {"dovecot", w},
      {"dovecot", f},       {"postfix/smtpd", s}, {"dovecot", w},       {"dovecot", f},
      {"postfix/smtpd", s}, {"postfix/smtpd", d}};
}();

TEST_F(OneAttemptOneCountTest, SmtpAuthChainedPassdbsSixAttemptsOnTwoConnectionsCountSix) {
  int second = 0;
  for (const auto& [program, message] : kSmtpManyUnknown) Line(program, message, second++ / 4);
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.26"), 6u);
  EXPECT_EQ(released_events_, 0);
  EXPECT_EQ(extractor_->stats().held, 6u);  // one held line per attempt, the other folded
}

TEST_F(OneAttemptOneCountTest, SmtpAuthChainedPassdbsSixAttemptsWithoutPostfixCountSix) {
  int second = 0;
  for (const auto& [program, message] : kSmtpManyUnknown) {
    if (std::string_view(program) == "dovecot") Line(program, message, second++ / 4);
  }
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.26"), 6u);
}

TEST_F(OneAttemptOneCountTest, SmtpAuthParallelAttemptsOfOneUserCountApart) {
  // Two connections from one address for one user, their chains interleaved (no session tells
  // them apart): each passdb-file line continues the attempt its passdb has not logged.
  const char* p1 = "auth-worker(7): passwd(a@chained.example,192.0.2.42): unknown user";
  const char* p2 = "auth: passwd-file(a@chained.example,192.0.2.42): unknown user";
  Line("dovecot", p1, 0);
  Line("dovecot", p1, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);  // a second attempt
  Line("dovecot", p2, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot", p2, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  // Past the hold, a line is a new request even if its passdb had not logged the old one.
  Line("dovecot", p2, 40);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  // An empty session "<>" is no session.
  Line("dovecot", "auth-worker(7): passwd(a@chained.example,192.0.2.43,<>): unknown user", 40);
  Line("dovecot", "auth: passwd-file(a@chained.example,192.0.2.43,<>): unknown user", 40);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.42"), 3u);
  EXPECT_EQ(Counted("192.0.2.43"), 1u);
}

TEST_F(OneAttemptOneCountTest, SmtpAuthSuccessThroughTheChainIsNotCounted) {
  // smtp_chained_success: the first passdb refuses carol, the second accepts her; Postfix
  // writes no line for the success but its disconnect line says auth=1.
  Line("postfix/smtpd", "connect from unknown[198.51.100.27]", 0);
  Line("dovecot",
       "auth-worker(30685): conn unix:auth-worker (pid=30666,uid=106): auth-worker<1>: "
       "passwd(carol@chained.example,198.51.100.27): unknown user",
       1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("postfix/smtpd", "disconnect from unknown[198.51.100.27] ehlo=1 auth=1 quit=1 commands=3",
       1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kNoEvent);
  EXPECT_EQ(extractor_->last_outcome().pattern->name, "disconnect_auth_succeeded");
  // One failure, then a success on one connection (auth=1/2): the failure's two lines are one
  // attempt its warning settles; the success's line (the first passdb again) is held, then
  // dropped.
  Line("dovecot", "auth-worker(7): passwd(dave@chained.example,192.0.2.50): unknown user", 2);
  Line("dovecot", "auth: passwd-file(dave@chained.example,192.0.2.50): Password mismatch", 2);
  Line("postfix/smtpd",
       "warning: unknown[192.0.2.50]: SASL LOGIN authentication failed: (reason unavailable), "
       "sasl_username=dave@chained.example",
       2);
  Line("dovecot", "auth-worker(7): passwd(dave@chained.example,192.0.2.50): unknown user", 3);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("postfix/smtpd",
       "disconnect from unknown[192.0.2.50]:40012 ehlo=1 auth=1/2 quit=1 commands=3/4", 3);
  EXPECT_EQ(extractor_->last_outcome().pattern->name, "disconnect_auth_succeeded_after_failures");
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.27"), 0u);
  EXPECT_EQ(Counted("192.0.2.50"), 1u);
  EXPECT_EQ(released_events_, 0);
}

TEST_F(OneAttemptOneCountTest, SmtpAuthSuccessNeverDropsASessionsAttempt) {
  // An IMAP attempt's passdb line (with a session) held at the address of an SMTP success whose
  // chain logged nothing: the success drops nothing (the login line may be in another file).
  Line("dovecot", kChainedWorker, 0);
  Line("postfix/smtpd", "disconnect from unknown[198.51.100.24] ehlo=1 auth=1 quit=1 commands=3",
       0);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.24"), 1u);
}

// --- IMAP/POP3 logins through the chain (issue 14) ------------------------------------------
// Debian 12's Dovecot 2.3.19.1 (tests/integration/real_mail_servers.py, log_path): carol is
// refused by passdb passwd and accepted by passdb passwd-file; the login process then writes
// "Login: ... session=<S>" and no line of the accepting passdb.
constexpr const char* kCarolPasswdImap =
    "auth-worker(28650): Info: conn unix:auth-worker (pid=28636,uid=106): auth-worker<15>: "
    "passwd(carol@chained.example,198.51.100.28,<chW7ORBi4cXGM2Qc>): unknown user";
constexpr const char* kCarolLoginImap =
    "imap-login: Info: Login: user=<carol@chained.example>, method=PLAIN, rip=198.51.100.28, "
    "lip=192.0.2.1, mpid=29025, session=<chW7ORBi4cXGM2Qc>";
// One wrong password, then the right one, on one POP3 connection.
constexpr const char* kCarolPasswdPop3 =
    "auth-worker(28650): Info: conn unix:auth-worker (pid=28636,uid=106): auth-worker<16>: "
    "passwd(carol@chained.example,198.51.100.31,<grG7ORBitePGM2Qf>): unknown user";
constexpr const char* kCarolMismatchPop3 =
    "auth: Info: passwd-file(carol@chained.example,198.51.100.31,<grG7ORBitePGM2Qf>): Password "
    "mismatch";
constexpr const char* kCarolLoginPop3 =
    "pop3-login: Info: Login: user=<carol@chained.example>, method=PLAIN, rip=198.51.100.31, "
    "lip=192.0.2.1, mpid=29027, session=<grG7ORBitePGM2Qf>";

TEST_F(OneAttemptOneCountTest, ChainedLoginAfterTheFirstPassdbRefusedIsNotCounted) {
  // The chain refused an attempt once (passwd, then passwd-file, one session): passwd chains on.
  Line("dovecot", kChainedWorker, 0);
  Line("dovecot", kChainedFile, 0);
  Line("dovecot", kCarolPasswdImap, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("dovecot", kCarolLoginImap, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  EXPECT_EQ(extractor_->last_outcome().pattern->name, "login_success");
  EXPECT_EQ(event_.type, EventType::kAuthSuccess);
  EXPECT_EQ(event_.get(Field::kSession), "chW7ORBi4cXGM2Qc");
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);  // past every hold
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.28"), 0u);
  EXPECT_EQ(Counted("198.51.100.24"), 1u);  // the refused attempt, released
  EXPECT_EQ(released_events_, 1);
}

TEST_F(OneAttemptOneCountTest, ChainedFailureThenLoginOnOneConnectionCountsTheFailureOnce) {
  // The failure's two lines are one attempt (and teach that passwd chains on); the success's
  // passwd line starts the next attempt, the login drops it; the failure is released.
  Line("dovecot", kCarolPasswdPop3, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("dovecot", kCarolMismatchPop3, 0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot", kCarolPasswdPop3, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("dovecot", kCarolLoginPop3, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  EXPECT_EQ(event_.get(Field::kService), "pop3");
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.31"), 1u);
  EXPECT_EQ(released_events_, 1);
}

TEST_F(OneAttemptOneCountTest, LoginTheFirstPassdbAcceptedAfterAChainedFailureCountsTheFailure) {
  // The failure went through the whole chain; the login that follows was accepted by passwd at
  // once (no line): the session's last attempt stopped at the chain's end, it is not dropped.
  Line("dovecot", kCarolPasswdPop3, 0);
  Line("dovecot", kCarolMismatchPop3, 0);
  Line("dovecot", kCarolLoginPop3, 1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.31"), 1u);
}

TEST_F(OneAttemptOneCountTest, LoginOfAnotherSessionDropsNothing) {
  Line("dovecot", kChainedWorker, 0);
  Line("dovecot", kChainedFile, 0);  // passwd chains on
  Line("dovecot", kCarolPasswdImap, 1);
  // The same address, another connection: its login says nothing about this session's attempt.
  Line("dovecot",
       "imap-login: Info: Login: user=<carol@chained.example>, method=PLAIN, rip=198.51.100.28, "
       "lip=192.0.2.1, mpid=29030, session=<d0W7ORBi4cXGM2Qc>",
       1);
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.28"), 1u);
}

TEST_F(OneAttemptOneCountTest, ChainedLoginOfDovecot24IsNotCounted) {
  // 2.4's shapes (auth-request.c get_log_prefix: "auth(user,ip,sasl:mech)<session>: ", the
  // worker's "<pid><session>: request [N]: "; client-common-auth.c: "Logged in"), the session's
  // text as Debian's 2.3 writes it. A refused attempt through the chain, then a login passwd-file
  // accepted after passwd refused.
  Line("dovecot",
       "auth-worker(ghost@chained.example,192.0.2.60,sasl:plain)<4242><AazzFg1it5XGM2QY>: "
       "request [1]: Info: passwd: unknown user",
       0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("dovecot",
       "auth(ghost@chained.example,192.0.2.60,sasl:plain)<AazzFg1it5XGM2QY>: Info: passwd-file: "
       "unknown user",
       0);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  Line("dovecot",
       "auth-worker(carol@chained.example,192.0.2.61,sasl:plain)<4242><chW7ORBi4cXGM2Qc>: "
       "request [2]: Info: passwd: unknown user",
       1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kHeld);
  Line("dovecot",
       "imap-login: Info: Logged in: user=<carol@chained.example>, method=PLAIN, "
       "rip=192.0.2.61, lip=192.0.2.1, mpid=4243, TLS, session=<chW7ORBi4cXGM2Qc>",
       1);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kEvent);
  EXPECT_EQ(extractor_->last_outcome().pattern->name, "login_success_logged_in");
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("192.0.2.60"), 1u);
  EXPECT_EQ(Counted("192.0.2.61"), 0u);
}

TEST_F(OneAttemptOneCountTest, ChainedLoginBeforeAnyRefusalThroughTheChainIsCountedOnce) {
  // The limit (docs/parsers.md): until the extractor has seen the chain refuse one attempt with
  // both passdbs, it cannot tell a refusal that the next passdb follows from the chain's last:
  // the login's refusal counts once, as before.
  Line("dovecot", kCarolPasswdImap, 0);
  Line("dovecot", kCarolLoginImap, 0);
  Line("postfix/qmgr", "ABCDEF0003: removed", 60);
  Shutdown();
  EXPECT_EQ(Counted("198.51.100.28"), 1u);
}

TEST_F(EventExtractorTest, WebmailLoginFromLoopbackCountsOnlyRoundcubesLine) {
  ASSERT_TRUE(Feed("roundcube",
                   "<8r1pu4bh> IMAP Error: Login failed for bob against localhost from "
                   "198.51.100.7. AUTHENTICATE PLAIN: Authentication failed. in "
                   "/r/program/lib/Roundcube/rcube_imap.php on line 211 (POST "
                   "/?_task=login&_action=login)"));
  EXPECT_EQ(event_.client_ip.ToString(), "198.51.100.7");
  EXPECT_EQ(event_.get(Field::kService), "webmail");
  EXPECT_FALSE(Feed("dovecot",
                    "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
                    "method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, session=<b>"));
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kFolded);
  EXPECT_FALSE(Feed("dovecot",
                    "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
                    "method=PLAIN, rip=::1, lip=::1, session=<c>"));
  // log_logins: the userlogins line repeats the same attempt.
  EXPECT_FALSE(
      Feed("roundcube", "Failed login for bob from 198.51.100.7 in session abc (error: 0)"));
  EXPECT_EQ(extractor_->stats().events, 1u);
}

TEST_F(EventExtractorTest, SubmissionUserAndClientFollowTheMessage) {
  ASSERT_TRUE(Feed("postfix/submission/smtpd",
                   "4Xz1Ab2CdEz: client=unknown[203.0.113.50], sasl_method=PLAIN, "
                   "sasl_username=alice@example.org"));
  EXPECT_EQ(event_.type, EventType::kMessageSubmitted);
  ASSERT_TRUE(Feed("postfix/qmgr",
                   "4Xz1Ab2CdEz: from=<alice@example.org>, size=2345, nrcpt=2 (queue active)"));
  EXPECT_EQ(event_.get(Field::kSaslUser), "alice@example.org");
  EXPECT_EQ(event_.client_ip.ToString(), "203.0.113.50");
  ASSERT_TRUE(Feed("rspamd",
                   "<a1>; task; rspamd_task_write_log: id: <m@x>, qid: <4Xz1Ab2CdEz>, ip: "
                   "127.0.0.1, from: <alice@example.org>, (default: T (soft reject): "
                   "[3.20/15.00] [RATELIMITED(0.00){user;}]), len: 2345, time: 12ms, dt: 1ms, "
                   "dns req: 1, digest: <ab>, rcpts: <bob@example.net>"));
  EXPECT_EQ(event_.type, EventType::kRateLimited);
  EXPECT_EQ(event_.get(Field::kSaslUser), "alice@example.org");
  EXPECT_EQ(event_.client_ip.ToString(), "203.0.113.50");  // not the milter's loopback
  ASSERT_TRUE(Feed("postfix/smtp",
                   "4Xz1Ab2CdEz: to=<bob@example.net>, relay=mx.example.net[192.0.2.25]:25, "
                   "delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK)"));
  EXPECT_EQ(event_.type, EventType::kDelivery);
  EXPECT_EQ(event_.get(Field::kSaslUser), "alice@example.org");
  EXPECT_EQ(event_.get(Field::kSenderDomain), "example.org");
  EXPECT_EQ(event_.client_ip.ToString(), "203.0.113.50");
  EXPECT_EQ(event_.get(Field::kRecipientDomain), "example.net");
  EXPECT_EQ(extractor_->stats().queue_ids, 1u);
  EXPECT_FALSE(Feed("postfix/qmgr", "4Xz1Ab2CdEz: removed"));
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kNoEvent);
  EXPECT_EQ(extractor_->stats().queue_ids, 0u);
  ASSERT_TRUE(Feed("postfix/smtp",
                   "4Xz1Ab2CdEz: to=<bob@example.net>, relay=none, delay=1, delays=1/0/0/0, "
                   "dsn=4.4.1, status=deferred (x)"));
  EXPECT_FALSE(event_.has(Field::kSaslUser));
}

// Issue 21, point 7: a reused queue id must not count a stranger's mail against an account.
TEST_F(EventExtractorTest, AReusedQueueIdStartsAFreshMessage) {
  ASSERT_TRUE(Feed("postfix/submission/smtpd",
                   "4Xz1Ab2CdEz: client=unknown[203.0.113.50], sasl_method=PLAIN, "
                   "sasl_username=alice@example.org"));
  // An admin deletes it (postsuper -d): the entry goes.
  EXPECT_FALSE(Feed("postfix/postsuper", "4Xz1Ab2CdEz: removed"));
  EXPECT_EQ(extractor_->stats().queue_ids, 0u);
  ASSERT_TRUE(Feed("postfix/submission/smtpd",
                   "4Xz1Ab2CdEz: client=unknown[203.0.113.50], sasl_method=PLAIN, "
                   "sasl_username=alice@example.org"));
  // No "removed" line reached us, and the id is reused by an unauthenticated client.
  ASSERT_TRUE(Feed("postfix/smtpd", "4Xz1Ab2CdEz: client=mail.example.net[198.51.100.9]"));
  ASSERT_TRUE(Feed("postfix/qmgr",
                   "4Xz1Ab2CdEz: from=<news@example.net>, size=999, nrcpt=1 (queue active)"));
  EXPECT_FALSE(event_.has(Field::kSaslUser));
  EXPECT_EQ(event_.client_ip.ToString(), "198.51.100.9");
  EXPECT_EQ(extractor_->stats().queue_ids, 1u);
}

// OpenDKIM's verdict with its domain is LogResults' per-signature line; the message's own
// verdict lines name no domain on a pass and are recognised without an event (issue 22).
TEST_F(EventExtractorTest, DkimResultIsOpendkimsPerSignatureLineWithTheClient) {
  ASSERT_TRUE(Feed("postfix/smtpd", "ABCDEF0009: client=mail.example.com[198.51.100.80]"));
  EXPECT_FALSE(Feed("opendkim", "ABCDEF0009: s=sel1 d=example.com SSL error:0409:bad signature"));
  ASSERT_TRUE(Feed("opendkim",
                   "ABCDEF0009: signature=Ab1 domain=example.com selector=sel1 "
                   "result=\"signature verification failed\""));
  EXPECT_EQ(event_.type, EventType::kDkimVerify);
  EXPECT_EQ(event_.get(Field::kDkimResult), "fail");
  EXPECT_EQ(event_.get(Field::kDkimDomain), "example.com");
  EXPECT_EQ(event_.client_ip.ToString(), "198.51.100.80");
  EXPECT_FALSE(Feed("opendkim", "ABCDEF0009: bad signature data"));
  EXPECT_FALSE(Feed("opendkim", "ABCDEF0010: DKIM verification successful"));
  ASSERT_TRUE(Feed("amavis",
                   "(123-01) Passed CLEAN {RelayedInbound}, [127.0.0.1]:41234 <a@example.com> "
                   "-> <b@example.org>, Queue-ID: ABCDEF0009, Message-ID: <x@y>, mail_id: q, "
                   "Hits: 2.5, size: 3456, 12 ms"));
  EXPECT_EQ(event_.type, EventType::kSpamVerdict);
  EXPECT_DOUBLE_EQ(event_.spam_score, 2.5);
  EXPECT_EQ(event_.client_ip.ToString(), "198.51.100.80");
  EXPECT_EQ(event_.get(Field::kDkimResult), "fail");
}

TEST_F(EventExtractorTest, CorrelationTableIsBounded) {
  EventExtractorOptions opts;
  opts.queue_id_capacity = 100;
  extractor_ = EventExtractor::Create(pack_, opts);
  for (int i = 0; i < 1000; ++i) {
    const std::string line = "Q" + std::to_string(100000 + i) + ": client=unknown[192.0.2.1]";
    ASSERT_TRUE(Feed("postfix/smtpd", line, i));
  }
  EXPECT_EQ(extractor_->stats().queue_ids, 100u);
  EXPECT_EQ(extractor_->stats().queue_id_evictions, 900u);
}

TEST_F(EventExtractorTest, UnmatchedIsCounted) {
  EXPECT_FALSE(Feed("postfix/smtpd", "something no pattern knows from unknown[192.0.2.1]"));
  EXPECT_FALSE(Feed("sshd", "Failed password for root from 192.0.2.1 port 22 ssh2"));
  EXPECT_EQ(extractor_->stats().unmatched, 2u);
  EXPECT_EQ(extractor_->last_outcome().kind, ExtractOutcome::kUnmatched);
  EXPECT_EQ(extractor_->last_outcome().pattern, nullptr);
}

}  // namespace
}  // namespace mxward
