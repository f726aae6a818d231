#include "mxward/action_dispatcher.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "actions/dispatch/action_valve.h"
#include "mxward/incident_store.h"
#include "support/eventually.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

using mxward::testing::Eventually;

namespace mxward {
namespace {

using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

// What a fake executor saw, shared with the test (the dispatcher owns the executor).
struct Journal {
  std::mutex mu;
  std::vector<std::int64_t> applied;  // action ids, in call order
  std::vector<std::int64_t> reverted;
  std::map<std::int64_t, int> calls;  // per action id
  int starts = 0;
  int stops = 0;
  // Scripted results per action id, consumed in order; empty: OK.
  std::map<std::int64_t, std::vector<Status>> script;
  // Blocks Apply until released (a receiver that never answers).
  bool block = false;
  std::condition_variable cv;
  int blocked_now = 0;
  // Maintain(): calls so far, scripted failures (consumed in order), and calls that overlapped
  // an Apply/Revert of the same executor (must stay 0).
  int maintains = 0;
  std::vector<Status> maintain_script;
  int maintain_during_apply = 0;

  void Release() {
    std::lock_guard<std::mutex> lk(mu);
    block = false;
    cv.notify_all();
  }
  std::size_t Applied() {
    std::lock_guard<std::mutex> lk(mu);
    return applied.size();
  }
};

class FakeExecutor final : public ActionExecutor {
 public:
  FakeExecutor(std::set<std::string> types, std::shared_ptr<Journal> journal)
      : types_(std::move(types)), j_(std::move(journal)) {}
  bool Handles(std::string_view type) const override { return types_.count(std::string(type)); }
  Status Start() override {
    std::lock_guard<std::mutex> lk(j_->mu);
    ++j_->starts;
    return Status::Ok();
  }
  Status Apply(const ActionRecord& a) override { return Run(a, &j_->applied); }
  Status Revert(const ActionRecord& a) override { return Run(a, &j_->reverted); }
  Result<bool> Check(const ActionRecord&) override { return true; }
  void Stop() override {
    std::lock_guard<std::mutex> lk(j_->mu);
    ++j_->stops;
  }
  Status Maintain() override {
    std::lock_guard<std::mutex> lk(j_->mu);
    ++j_->maintains;
    if (in_apply_) ++j_->maintain_during_apply;
    if (!j_->maintain_script.empty()) {
      Status st = j_->maintain_script.front();
      j_->maintain_script.erase(j_->maintain_script.begin());
      return st;
    }
    return Status::Ok();
  }

 private:
  Status Run(const ActionRecord& a, std::vector<std::int64_t>* into) {
    std::unique_lock<std::mutex> lk(j_->mu);
    in_apply_ = true;
    struct Done {
      bool* flag;
      ~Done() { *flag = false; }
    } done{&in_apply_};
    ++j_->blocked_now;
    j_->cv.wait(lk, [&] { return !j_->block; });
    --j_->blocked_now;
    ++j_->calls[a.id];
    auto& s = j_->script[a.id];
    if (!s.empty()) {
      Status st = s.front();
      s.erase(s.begin());
      if (!st.ok()) return st;
    }
    into->push_back(a.id);
    return Status::Ok();
  }
  std::set<std::string> types_;
  std::shared_ptr<Journal> j_;
  bool in_apply_ = false;  // guarded by j_->mu
};

class ActionDispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(db());
    ASSERT_OK(s);
    store_ = std::move(*s);
    options_.base_backoff_ms = 1000;
    options_.max_backoff_ms = 60'000;
    options_.max_attempts = 3;
    options_.poll_interval_ms = 20;
  }
  std::string db() const { return dir_.file("state.db"); }

  std::int64_t Enqueue(const std::string& type, nlohmann::json params, std::int64_t incident = 1,
                       bool revert = false) {
    auto id = store_->EnqueueAction(incident, ActionRequest{type, std::move(params), false}, revert,
                                    clock_.Now());
    EXPECT_OK(id);
    return *id;
  }
  ActionRecord Get(std::int64_t id) {
    auto a = store_->GetAction(id);
    EXPECT_OK(a);
    return *a;
  }
  std::vector<std::unique_ptr<ActionExecutor>> One(std::set<std::string> types) {
    std::vector<std::unique_ptr<ActionExecutor>> v;
    v.push_back(std::make_unique<FakeExecutor>(std::move(types), journal_));
    return v;
  }

  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
  ManualClock clock_{kT0};
  DispatcherOptions options_;
  std::shared_ptr<Journal> journal_ = std::make_shared<Journal>();
};

// --- pure parts ----------------------------------------------------------------------------------

TEST(BackoffTest, DoublesUpToTheCeiling) {
  DispatcherOptions o;
  o.base_backoff_ms = 1000;
  o.max_backoff_ms = 10'000;
  EXPECT_EQ(BackoffCeilingMs(o, 1), 1000);
  EXPECT_EQ(BackoffCeilingMs(o, 2), 2000);
  EXPECT_EQ(BackoffCeilingMs(o, 4), 8000);
  EXPECT_EQ(BackoffCeilingMs(o, 5), 10'000);
  EXPECT_EQ(BackoffCeilingMs(o, 1000), 10'000);  // no overflow at large attempt counts
}

TEST(BackoffTest, FullJitterSpansZeroToTheCeiling) {
  DispatcherOptions o;
  o.base_backoff_ms = 1000;
  o.max_backoff_ms = 600'000;
  EXPECT_EQ(JitteredBackoffMs(o, 3, 0.0), 0);
  EXPECT_EQ(JitteredBackoffMs(o, 3, 0.5), 2000);
  EXPECT_LE(JitteredBackoffMs(o, 3, 0.999999), 4000);
  EXPECT_GE(JitteredBackoffMs(o, 3, 0.999999), 3999);
}

TEST(ActionValveTest, EachPlaybookHasItsOwnBucketAndAFullOneSaysWhenItOpens) {
  ActionValve valve(ValveLimits{3, {{"webhook", 1}, {"exec", 0}}, 0});
  EXPECT_TRUE(valve.Admit("ban", "postfix", "192.0.2.1", kT0).admitted);
  EXPECT_TRUE(valve.Admit("ban", "postfix", "198.51.100.1", kT0 + 1).admitted);
  EXPECT_TRUE(valve.Admit("ban", "postfix", "203.0.113.1", kT0 + 2).admitted);
  const ValveVerdict full = valve.Admit("ban", "postfix", "203.0.113.9", kT0 + 3);
  EXPECT_FALSE(full.admitted);
  EXPECT_EQ(full.retry_at, kT0 + 60 * kMicrosPerSecond);  // when the first start leaves the minute
  EXPECT_NE(full.reason.find("playbook 'postfix'"), std::string::npos) << full.reason;
  // Another playbook's flood is not this one's: its bucket is empty.
  EXPECT_TRUE(valve.Admit("ban", "dovecot-auth", "203.0.113.9", kT0 + 3).admitted);
  EXPECT_TRUE(valve.Admit("ban", "postfix", "203.0.113.9", kT0 + 60 * kMicrosPerSecond).admitted);
  EXPECT_FALSE(valve.Admit("ban", "postfix", "203.0.113.9", kT0 + 60 * kMicrosPerSecond).admitted);
  EXPECT_TRUE(valve.Admit("webhook", "postfix", "", kT0).admitted);
  EXPECT_FALSE(valve.Admit("webhook", "postfix", "", kT0).admitted);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(valve.Admit("exec", "x", "", kT0).admitted);  // 0: off
  EXPECT_EQ(valve.CapFor("mail"), 3);
}

TEST(ActionValveTest, ANetworkFloodFillsOnlyItsOwnNetworksBucket) {
  ActionValve valve(ValveLimits{0, {}, 2});
  // Three /64s of one /48: the third waits; an address of another /48 does not.
  EXPECT_TRUE(valve.Admit("ban", "p", "2001:db8:1:1::/64", kT0).admitted);
  EXPECT_TRUE(valve.Admit("ban", "p", "2001:db8:1:2::/64", kT0).admitted);
  const ValveVerdict held = valve.Admit("ban", "p", "2001:db8:1:3::/64", kT0);
  EXPECT_FALSE(held.admitted);
  EXPECT_NE(held.reason.find("inside 2001:db8:1::/48"), std::string::npos) << held.reason;
  EXPECT_TRUE(valve.Admit("ban", "p", "2001:db8:2:1::/64", kT0).admitted);
  // IPv4 by /24; a target wider than that is its own network.
  EXPECT_TRUE(valve.Admit("ban", "p", "192.0.2.1", kT0).admitted);
  EXPECT_TRUE(valve.Admit("ban", "p", "192.0.2.2", kT0).admitted);
  EXPECT_FALSE(valve.Admit("ban", "p", "192.0.2.3", kT0).admitted);
  EXPECT_TRUE(valve.Admit("ban", "p", "192.0.3.1", kT0).admitted);
  EXPECT_EQ(ActionValve::NetworkOf("10.0.0.0/8"), "10.0.0.0/8");
  EXPECT_EQ(ActionValve::NetworkOf("192.0.2.77"), "192.0.2.0/24");
  EXPECT_EQ(ActionValve::NetworkOf("not an address"), "");
  // Targets that are not addresses (a webhook) have no network bucket.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(valve.Admit("webhook", "p", "", kT0).admitted);
}

TEST(ActionOrderKeyTest, SameTypeAndSubject) {
  ActionRecord a, b, c;
  a.type = b.type = c.type = "ban";
  a.params = {{"address", "192.0.2.7"}, {"duration_s", 60}};
  b.params = {{"address", "192.0.2.7"}};
  b.revert = true;
  c.params = {{"address", "192.0.2.8"}};
  EXPECT_EQ(ActionOrderKey(a), ActionOrderKey(b));  // ban then undo ban: one queue
  EXPECT_NE(ActionOrderKey(a), ActionOrderKey(c));
  ActionRecord w;
  w.type = "webhook";
  w.params = {{"target", "ops"}, {"address", "x"}};
  EXPECT_EQ(ActionOrderKey(w), std::string("webhook\x1fops"));
}

TEST(AllowlistRefusalTest, RefusesAllowlistedAddressesAndUsersButNotUndo) {
  DispatcherOptions o;
  IpPrefix p;
  ASSERT_TRUE(IpPrefix::Parse("192.0.2.0/24", &p));
  o.allow_addresses.push_back(p);
  o.allow_users = {"Postmaster@example.org"};
  o.allow_domains = {"partner.example"};
  ActionRecord a;
  a.type = "ban";
  a.params = {{"address", "192.0.2.7"}};
  EXPECT_TRUE(AllowlistRefusal(o, a).has_value());
  a.params = {{"address", "192.0.0.0/16"}};  // a prefix covering allowlisted space
  EXPECT_TRUE(AllowlistRefusal(o, a).has_value());
  a.params = {{"address", "198.51.100.1"}};
  EXPECT_FALSE(AllowlistRefusal(o, a).has_value());
  a.params = {{"address", "192.0.2.7"}};
  a.revert = true;
  EXPECT_FALSE(AllowlistRefusal(o, a).has_value());
  ActionRecord u;
  u.type = "suspend";
  u.params = {{"user", "postmaster@EXAMPLE.org"}};
  EXPECT_TRUE(AllowlistRefusal(o, u).has_value());
  u.params = {{"user", "bob@partner.example"}};
  EXPECT_TRUE(AllowlistRefusal(o, u).has_value());
  u.params = {{"user", "bob@example.org"}};
  EXPECT_FALSE(AllowlistRefusal(o, u).has_value());
}

TEST(DispatcherOptionsTest, ReadsDispatcherSectionWithLocatedErrors) {
  TempDir dir;
  const std::string path = dir.file("mxward.toml");
  {
    std::ofstream f(path);
    f << "[dispatcher]\nmax_attempts = 5\nbackoff_base = \"2s\"\nbackoff_max = \"5m\"\n"
         "per_minute_cap = 100\nper_minute_caps = { ban = 20, webhook = 5 }\n"
         "per_prefix_cap = 7\nmaintain_interval = \"3s\"\n";
  }
  std::vector<Diagnostic> diags;
  auto config = Config::Load(path, &diags);
  ASSERT_OK(config);
  auto o = DispatcherOptions::FromConfig(*config, &diags);
  ASSERT_OK(o);
  EXPECT_EQ(o->max_attempts, 5);
  EXPECT_EQ(o->base_backoff_ms, 2000);
  EXPECT_EQ(o->max_backoff_ms, 300'000);
  EXPECT_EQ(o->maintain_interval_ms, 3000);
  EXPECT_EQ(o->default_per_minute_cap, 100);
  EXPECT_EQ(o->per_minute_cap.at("ban"), 20);
  EXPECT_EQ(o->per_minute_cap.at("webhook"), 5);
  EXPECT_EQ(o->per_prefix_cap, 7);

  {
    std::ofstream f(path);
    f << "[dispatcher]\nmax_attemps = 5\nper_minute_caps = { bann = 1 }\n";
  }
  diags.clear();
  config = Config::Load(path, &diags);
  ASSERT_OK(config);
  o = DispatcherOptions::FromConfig(*config, &diags);
  EXPECT_FALSE(o.ok());
  ASSERT_EQ(diags.size(), 2u);
  EXPECT_EQ(diags[0].line, 2);
  EXPECT_NE(diags[0].message.find("max_attemps"), std::string::npos);
  EXPECT_EQ(diags[1].line, 3);
  EXPECT_NE(diags[1].message.find("bann"), std::string::npos);
}

// --- RunDueOnce: outcomes, retries, routing
// -------------------------------------------------------

TEST_F(ActionDispatcherTest, AppliesAndRecordsDone) {
  const auto id = Enqueue("ban", {{"address", "192.0.2.7"}});
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  ActionRecord a = Get(id);
  EXPECT_EQ(a.status, ActionStatus::kDone);
  EXPECT_EQ(a.attempts, 1);
  EXPECT_EQ(journal_->applied, std::vector<std::int64_t>{id});
  EXPECT_EQ(journal_->starts, 1);
  EXPECT_EQ(d.stats().applied, 1u);
  // Nothing is due any more: a second pass runs nothing.
  ASSERT_OK(d.RunDueOnce());
  EXPECT_EQ(journal_->calls[id], 1);
}

TEST_F(ActionDispatcherTest, TransientFailureRetriesWithBackoffThenSucceeds) {
  const auto id = Enqueue("ban", {{"address", "192.0.2.7"}});
  journal_->script[id] = {Status::Unavailable("nft busy")};
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  ActionRecord a = Get(id);
  EXPECT_EQ(a.status, ActionStatus::kPending);
  EXPECT_EQ(a.attempts, 1);
  EXPECT_NE(a.last_error.find("nft busy"), std::string::npos);
  EXPECT_GE(a.next_attempt_at, kT0);
  EXPECT_LE(a.next_attempt_at, kT0 + 1000 * 1000);  // within the first ceiling (1 s)
  clock_.Set(a.next_attempt_at);
  ASSERT_OK(d.RunDueOnce());
  a = Get(id);
  EXPECT_EQ(a.status, ActionStatus::kDone);
  EXPECT_EQ(a.attempts, 2);
  EXPECT_EQ(d.stats().retried, 1u);
}

TEST_F(ActionDispatcherTest, GivesUpAfterMaxAttemptsAndFailsPermanentErrorsAtOnce) {
  const auto flaky = Enqueue("ban", {{"address", "192.0.2.7"}});
  const auto bad = Enqueue("ban", {{"address", "192.0.2.8"}});
  journal_->script[flaky] = {Status::Unavailable("down"), Status::Unavailable("down"),
                             Status::Unavailable("down"), Status::Unavailable("down")};
  journal_->script[bad] = {Status::InvalidArgument("no such set")};
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(d.RunDueOnce());
    clock_.Advance(120 * kMicrosPerSecond);
  }
  ActionRecord a = Get(flaky);
  EXPECT_EQ(a.status, ActionStatus::kFailed);
  EXPECT_EQ(a.attempts, 3);
  EXPECT_NE(a.last_error.find("gave up after 3 attempts"), std::string::npos) << a.last_error;
  EXPECT_EQ(journal_->calls[flaky], 3);
  ActionRecord b = Get(bad);
  EXPECT_EQ(b.status, ActionStatus::kFailed);
  EXPECT_EQ(b.attempts, 1);
  EXPECT_EQ(journal_->calls[bad], 1);
  EXPECT_EQ(d.stats().failed, 2u);
}

TEST_F(ActionDispatcherTest, RoutesByTypeAndRevertCallsRevert) {
  auto other = std::make_shared<Journal>();
  std::vector<std::unique_ptr<ActionExecutor>> execs;
  execs.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"ban"}, journal_));
  execs.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"suspend"}, other));
  const auto ban = Enqueue("ban", {{"address", "192.0.2.7"}});
  const auto unban = Enqueue("ban", {{"address", "192.0.2.7"}}, 0, /*revert=*/true);
  const auto suspend = Enqueue("suspend", {{"user", "bob@example.org"}});
  const auto unknown = Enqueue("teleport", {{"user", "bob@example.org"}});
  ActionDispatcher d(db(), std::move(execs), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  EXPECT_EQ(journal_->applied, std::vector<std::int64_t>{ban});
  EXPECT_EQ(journal_->reverted, std::vector<std::int64_t>{unban});
  EXPECT_EQ(other->applied, std::vector<std::int64_t>{suspend});
  EXPECT_EQ(Get(unban).status, ActionStatus::kDone);
  EXPECT_EQ(d.stats().reverted, 1u);
  ActionRecord u = Get(unknown);
  EXPECT_EQ(u.status, ActionStatus::kFailed);
  EXPECT_NE(u.last_error.find("no executor handles 'teleport'"), std::string::npos);
}

TEST_F(ActionDispatcherTest, DryRunExecutorRecordsDryRunWithTheReason) {
  std::vector<std::unique_ptr<ActionExecutor>> execs;
  execs.push_back(std::make_unique<DryRunExecutor>(
      std::map<std::string, std::string, std::less<>>{{"ban", "dry-run: no [nftables]"}}));
  const auto id = Enqueue("ban", {{"address", "192.0.2.7"}});
  ActionDispatcher d(db(), std::move(execs), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  ActionRecord a = Get(id);
  EXPECT_EQ(a.status, ActionStatus::kDryRun);
  EXPECT_EQ(a.last_error, "dry-run: no [nftables]");
  EXPECT_EQ(d.stats().dry_run, 1u);
}

TEST_F(ActionDispatcherTest, LaterActionsOfOneSubjectWaitBehindARetry) {
  const auto first = Enqueue("webhook", {{"target", "ops"}});
  const auto second = Enqueue("webhook", {{"target", "ops"}});
  const auto other = Enqueue("webhook", {{"target", "chat"}});
  journal_->script[first] = {Status::Unavailable("HTTP 503")};
  ActionDispatcher d(db(), One({"webhook"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  EXPECT_EQ(Get(first).status, ActionStatus::kPending);
  EXPECT_EQ(Get(second).status, ActionStatus::kPending);  // behind `first`, not run
  EXPECT_EQ(journal_->calls.count(second), 0u);
  EXPECT_EQ(Get(other).status, ActionStatus::kDone);  // another receiver is not held up
  // A fresh dispatcher (a restart) keeps the order too.
  ActionDispatcher restarted(db(), One({"webhook"}), options_, &clock_);
  ASSERT_OK(restarted.RunDueOnce());
  EXPECT_EQ(journal_->calls.count(second), 0u);
  clock_.Advance(2 * kMicrosPerSecond);
  ASSERT_OK(restarted.RunDueOnce());
  EXPECT_EQ(journal_->applied, (std::vector<std::int64_t>{other, first, second}));
}

TEST_F(ActionDispatcherTest, ASubjectIsReleasedWhenAnotherProcessRanItsHead) {
  const auto first = Enqueue("webhook", {{"target", "ops"}});
  const auto second = Enqueue("webhook", {{"target", "ops"}});
  journal_->script[first] = {Status::Unavailable("HTTP 503")};
  ActionDispatcher daemon(db(), One({"webhook"}), options_, &clock_);
  ASSERT_OK(daemon.RunDueOnce());
  EXPECT_EQ(Get(first).status, ActionStatus::kPending);
  // Another process (the CLI) runs the head once it is due.
  clock_.Advance(2 * kMicrosPerSecond);
  ASSERT_TRUE(store_->MarkActionDone(first, clock_.Now()).ok());
  // The daemon's memory of the head must not hold `second` back for ever.
  ASSERT_OK(daemon.RunDueOnce());
  EXPECT_EQ(Get(second).status, ActionStatus::kDone);
}

TEST_F(ActionDispatcherTest, SafetyValveDefersBeyondTheCapButNotUndoOrManualActions) {
  options_.per_minute_cap["ban"] = 2;
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 4; ++i)
    ids.push_back(Enqueue("ban", {{"address", fmt::format("192.0.{}.1", i)}}));
  const auto manual = Enqueue("ban", {{"address", "198.51.100.1"}}, /*incident=*/0);
  const auto undo = Enqueue("ban", {{"address", "198.51.100.2"}}, 1, /*revert=*/true);
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  EXPECT_EQ(Get(ids[0]).status, ActionStatus::kDone);
  EXPECT_EQ(Get(ids[1]).status, ActionStatus::kDone);
  // Held back, not refused: pending, due when the minute has room, with the reason.
  ActionRecord r = Get(ids[2]);
  EXPECT_EQ(r.status, ActionStatus::kPending);
  EXPECT_EQ(r.next_attempt_at, kT0 + 60 * kMicrosPerSecond);
  EXPECT_NE(r.last_error.find("safety valve"), std::string::npos) << r.last_error;
  EXPECT_EQ(Get(ids[3]).status, ActionStatus::kPending);
  EXPECT_EQ(Get(manual).status, ActionStatus::kDone);
  EXPECT_EQ(Get(undo).status, ActionStatus::kDone);
  EXPECT_EQ(d.stats().refused, 0u);
  EXPECT_EQ(d.stats().deferred, 2u);
  EXPECT_EQ(d.stats().last_deferred_at, kT0);
  EXPECT_EQ(journal_->calls.count(ids[2]), 0u);
  // A minute later both run: nothing a flood held back is lost.
  clock_.Advance(60 * kMicrosPerSecond);
  ASSERT_OK(d.RunDueOnce());
  EXPECT_EQ(Get(ids[2]).status, ActionStatus::kDone);
  EXPECT_EQ(Get(ids[3]).status, ActionStatus::kDone);
}

// Issue 21, point 2: a flood of bans inside one network must not hold up a ban elsewhere, and a
// ban's removal queued behind a held-back ban waits for it (order per subject).
TEST_F(ActionDispatcherTest, ANetworksFloodNeverHoldsUpABanElsewhere) {
  options_.per_prefix_cap = 5;
  std::vector<std::int64_t> flood;
  for (int i = 0; i < 40; ++i) {
    flood.push_back(Enqueue("ban", {{"address", fmt::format("2001:db8:77:{:x}::/64", i)}}));
  }
  const auto lifted = Enqueue("ban", {{"address", "2001:db8:77:27::/64"}}, 1, /*revert=*/true);
  const auto attacker = Enqueue("ban", {{"address", "203.0.113.50"}});
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  EXPECT_EQ(Get(attacker).status, ActionStatus::kDone);
  int done = 0;
  for (auto id : flood) done += Get(id).status == ActionStatus::kDone;
  EXPECT_EQ(done, 5);
  EXPECT_EQ(Get(lifted).status, ActionStatus::kPending);  // behind its held-back ban
  EXPECT_EQ(journal_->calls.count(lifted), 0u);
  // Eight minutes drain the flood, five a minute; the removal runs after its ban.
  for (int minute = 1; minute <= 9; ++minute) {
    clock_.Advance(60 * kMicrosPerSecond);
    ASSERT_OK(d.RunDueOnce());
  }
  for (auto id : flood) EXPECT_EQ(Get(id).status, ActionStatus::kDone) << id;
  EXPECT_EQ(Get(lifted).status, ActionStatus::kDone);
  EXPECT_EQ(d.stats().refused, 0u);
}

TEST_F(ActionDispatcherTest, AllowlistedTargetsAreRefused) {
  IpPrefix p;
  ASSERT_TRUE(IpPrefix::Parse("192.0.2.0/24", &p));
  options_.allow_addresses.push_back(p);
  const auto id = Enqueue("ban", {{"address", "192.0.2.7"}});
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());
  ActionRecord a = Get(id);
  EXPECT_EQ(a.status, ActionStatus::kRefused);
  EXPECT_NE(a.last_error.find("allowlisted"), std::string::npos);
  EXPECT_TRUE(journal_->applied.empty());
}

// --- workers -------------------------------------------------------------------------------------

// After Start() the lanes belong to the workers (one Stop() detached may still run): a second way
// in on the caller's thread is refused rather than sharing them.
TEST_F(ActionDispatcherTest, RunDueOnceIsRefusedOnceWorkersHaveRun) {
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.Start());
  d.Stop(std::chrono::seconds(5));
  const std::int64_t id = Enqueue("ban", {{"address", "192.0.2.1"}});
  const Status st = d.RunDueOnce();
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << st.ToString();
  EXPECT_EQ(journal_->calls[id], 0);  // left in the outbox for a new dispatcher
  ActionDispatcher fresh(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(fresh.RunDueOnce());
  EXPECT_EQ(journal_->calls[id], 1);
}

TEST_F(ActionDispatcherTest, WorkersRunEverythingExactlyOnce) {
  options_.per_prefix_cap = 0;  // 300 bans in two /24s: the valve is another test's subject
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.Start());
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 300; ++i) {
    ids.push_back(Enqueue("ban", {{"address", fmt::format("10.0.{}.{}", i / 250, i % 250)}}));
    if (i % 50 == 0) d.Notify();
  }
  d.Notify();
  ASSERT_TRUE(Eventually([&] { return journal_->Applied() == ids.size(); }));
  d.Stop(std::chrono::seconds(5));
  for (auto id : ids) EXPECT_EQ(journal_->calls[id], 1) << id;
  EXPECT_EQ(journal_->stops, 1);
  auto stats = store_->GetOutboxStats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->pending, 0);
}

// An executor that applies queued actions together (as nftables does: one transaction for a
// burst of bans): each action still gets its own outcome, recorded as if applied alone.
class BatchingExecutor final : public ActionExecutor, public BatchApplier {
 public:
  explicit BatchingExecutor(std::set<std::int64_t> failing) : failing_(std::move(failing)) {}
  bool Handles(std::string_view type) const override { return type == "ban"; }
  Status Start() override { return Status::Ok(); }
  Status Apply(const ActionRecord& a) override { return ApplyMany({&a}).front(); }
  Status Revert(const ActionRecord&) override { return Status::Ok(); }
  Result<bool> Check(const ActionRecord&) override { return true; }
  void Stop() override {}
  std::vector<Status> ApplyMany(const std::vector<const ActionRecord*>& actions) override {
    std::lock_guard<std::mutex> lk(mu);
    sizes.push_back(actions.size());
    std::vector<Status> out;
    for (const ActionRecord* a : actions) {
      ++calls[a->id];
      out.push_back(failing_.count(a->id) ? Status::InvalidArgument("refused") : Status::Ok());
    }
    return out;
  }
  std::mutex mu;
  std::vector<std::size_t> sizes;     // guarded by mu
  std::map<std::int64_t, int> calls;  // guarded by mu

 private:
  std::set<std::int64_t> failing_;
};

TEST_F(ActionDispatcherTest, QueuedBansGoToABatchApplierTogetherWithAnOutcomeEach) {
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 40; ++i) {
    ids.push_back(Enqueue("ban", {{"address", fmt::format("10.9.0.{}", i)}}));
  }
  const std::int64_t undo = Enqueue("ban", {{"address", "10.9.1.1"}}, 1, /*revert=*/true);
  auto owned = std::make_unique<BatchingExecutor>(std::set<std::int64_t>{ids[7]});
  BatchingExecutor* executor = owned.get();
  std::vector<std::unique_ptr<ActionExecutor>> execs;
  execs.push_back(std::move(owned));
  ActionDispatcher d(db(), std::move(execs), options_, &clock_);
  ASSERT_OK(d.Start());
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(executor->mu);
    return executor->calls.size() == ids.size();
  }));
  ASSERT_TRUE(Eventually([&] { return Get(undo).status != ActionStatus::kPending; }));
  d.Stop(std::chrono::seconds(5));
  std::size_t largest = 0;
  for (std::size_t n : executor->sizes) largest = std::max(largest, n);
  EXPECT_GT(largest, 1u) << "the 40 queued bans were applied one at a time";
  for (std::int64_t id : ids) {
    EXPECT_EQ(executor->calls[id], 1) << id;
    EXPECT_EQ(Get(id).status, id == ids[7] ? ActionStatus::kFailed : ActionStatus::kDone) << id;
  }
  EXPECT_EQ(executor->calls.count(undo), 0u) << "a revert is never part of a batch";
}

// Records every ban and removal in the order the kernel would see them.
class OrderRecordingBatchExecutor final : public ActionExecutor, public BatchApplier {
 public:
  bool Handles(std::string_view type) const override { return type == "ban"; }
  Status Start() override { return Status::Ok(); }
  Status Apply(const ActionRecord& a) override { return ApplyMany({&a}).front(); }
  Status Revert(const ActionRecord& a) override {
    std::lock_guard<std::mutex> lk(mu);
    order.push_back("unban " + a.params.value("address", ""));
    return Status::Ok();
  }
  Result<bool> Check(const ActionRecord&) override { return true; }
  void Stop() override {}
  std::vector<Status> ApplyMany(const std::vector<const ActionRecord*>& actions) override {
    std::lock_guard<std::mutex> lk(mu);
    sizes.push_back(actions.size());
    for (const ActionRecord* a : actions) order.push_back("ban " + a->params.value("address", ""));
    return std::vector<Status>(actions.size(), Status::Ok());
  }
  std::mutex mu;
  std::vector<std::size_t> sizes;  // guarded by mu
  std::vector<std::string> order;  // guarded by mu
};

// The bulk path a cluster catch-up takes (docs/cluster.md): thousands of received decisions
// (no incident: never held by the per-playbook valve) are applied in batches larger than a
// claim, each recorded done; a ban and a later removal of the same address are applied in that
// order (the address ends unbanned), a ban after the removal after it; an allowlisted address is
// refused and recorded so.
TEST_F(ActionDispatcherTest, ABurstOfReceivedDecisionsIsAppliedInLargeBatchesInOrder) {
  IpPrefix allowed;
  ASSERT_TRUE(IpPrefix::Parse("10.20.0.77/32", &allowed));
  options_.allow_addresses.push_back(allowed);
  options_.default_per_minute_cap = 10;  // a valve that would hold almost all of them
  std::vector<std::int64_t> bans;
  for (int i = 0; i < 3000; ++i) {
    bans.push_back(
        Enqueue("ban", {{"address", fmt::format("10.20.{}.{}", i >> 8, i & 255)}}, /*incident=*/0));
  }
  const std::int64_t unban = Enqueue("ban", {{"address", "10.20.0.5"}}, 0, /*revert=*/true);
  const std::int64_t again = Enqueue("ban", {{"address", "10.21.0.6"}}, 0);
  const std::int64_t unban_again = Enqueue("ban", {{"address", "10.21.0.6"}}, 0, true);
  const std::int64_t ban_last = Enqueue("ban", {{"address", "10.21.0.6"}}, 0);
  auto owned = std::make_unique<OrderRecordingBatchExecutor>();
  OrderRecordingBatchExecutor* executor = owned.get();
  std::vector<std::unique_ptr<ActionExecutor>> execs;
  execs.push_back(std::move(owned));
  ActionDispatcher d(db(), std::move(execs), options_, &clock_);
  ASSERT_OK(d.Start());
  ASSERT_TRUE(Eventually([&] { return Get(ban_last).status != ActionStatus::kPending; },
                         std::chrono::seconds(60)));
  d.Stop(std::chrono::seconds(5));

  for (std::int64_t id : bans) {
    EXPECT_EQ(Get(id).status, id == bans[77] ? ActionStatus::kRefused : ActionStatus::kDone) << id;
  }
  EXPECT_EQ(Get(unban).status, ActionStatus::kDone);
  EXPECT_EQ(Get(again).status, ActionStatus::kDone);
  EXPECT_EQ(Get(unban_again).status, ActionStatus::kDone);
  EXPECT_EQ(Get(ban_last).status, ActionStatus::kDone);
  std::lock_guard<std::mutex> lk(executor->mu);
  std::size_t largest = 0;
  for (std::size_t n : executor->sizes) largest = std::max(largest, n);
  EXPECT_GT(largest, static_cast<std::size_t>(options_.claim_batch))
      << "the burst was applied in batches no larger than one claim";
  auto pos = [&](const std::string& what, std::size_t from = 0) {
    auto it = std::find(executor->order.begin() + static_cast<std::ptrdiff_t>(from),
                        executor->order.end(), what);
    return static_cast<std::size_t>(it - executor->order.begin());
  };
  EXPECT_EQ(std::count(executor->order.begin(), executor->order.end(), "ban 10.20.0.77"), 0);
  EXPECT_LT(pos("ban 10.20.0.5"), pos("unban 10.20.0.5"));
  EXPECT_LT(pos("unban 10.20.0.5"), executor->order.size());
  const std::size_t first = pos("ban 10.21.0.6");
  const std::size_t removal = pos("unban 10.21.0.6");
  ASSERT_LT(removal, executor->order.size());
  EXPECT_LT(first, removal);
  EXPECT_LT(removal, pos("ban 10.21.0.6", first + 1)) << "the last ban ran before the removal";
  EXPECT_LT(pos("ban 10.21.0.6", first + 1), executor->order.size());
  EXPECT_EQ(executor->order.size(), 3000u - 1 + 4);
}

TEST_F(ActionDispatcherTest, TwoDispatchersOnOneStoreNeverRunTheSameAction) {
  options_.per_prefix_cap = 0;  // 400 bans in two /24s: the valve is another test's subject
  auto j2 = std::make_shared<Journal>();
  std::vector<std::unique_ptr<ActionExecutor>> e2;
  e2.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"ban"}, j2));
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 400; ++i) {
    ids.push_back(Enqueue("ban", {{"address", fmt::format("10.1.{}.{}", i / 250, i % 250)}}));
  }
  options_.claim_batch = 8;
  ActionDispatcher a(db(), One({"ban"}), options_, &clock_);
  ActionDispatcher b(db(), std::move(e2), options_, &clock_);
  ASSERT_OK(a.Start());
  ASSERT_OK(b.Start());
  ASSERT_TRUE(Eventually([&] { return journal_->Applied() + j2->Applied() == ids.size(); }));
  a.Stop(std::chrono::seconds(5));
  b.Stop(std::chrono::seconds(5));
  std::set<std::int64_t> seen;
  for (auto id : journal_->applied) EXPECT_TRUE(seen.insert(id).second) << id;
  for (auto id : j2->applied) EXPECT_TRUE(seen.insert(id).second) << "twice: " << id;
  EXPECT_EQ(seen.size(), ids.size());
}

TEST_F(ActionDispatcherTest, AStuckExecutorDelaysOnlyItsOwnType) {
  auto stuck = std::make_shared<Journal>();
  stuck->block = true;
  std::vector<std::unique_ptr<ActionExecutor>> execs;
  execs.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"webhook"}, stuck));
  execs.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"ban"}, journal_));
  for (int i = 0; i < 5; ++i) Enqueue("webhook", {{"target", "ops"}});
  std::vector<std::int64_t> bans;
  for (int i = 0; i < 20; ++i)
    bans.push_back(Enqueue("ban", {{"address", fmt::format("10.2.0.{}", i)}}));
  ActionDispatcher d(db(), std::move(execs), options_, &clock_);
  ASSERT_OK(d.Start());
  ASSERT_TRUE(Eventually([&] { return journal_->Applied() == bans.size(); }));
  // The webhook worker is waiting on its first webhook, and nothing of it went out.
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(stuck->mu);
    return stuck->blocked_now == 1;
  }));
  EXPECT_EQ(stuck->Applied(), 0u);
  // Stop is bounded although the webhook never answers; the unstarted webhooks go back.
  d.Stop(std::chrono::milliseconds(50));
  stuck->Release();
  ASSERT_TRUE(Eventually([&] { return stuck->Applied() == 1; }));
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(stuck->mu);
    return stuck->stops == 1;
  }));
  auto pending = store_->DueActions(clock_.Now(), 100);
  ASSERT_OK(pending);
  EXPECT_EQ(pending->size(), 4u);  // handed back, due again at once
}

TEST_F(ActionDispatcherTest, RetryInTheBackgroundWhenTheClockMoves) {
  const auto id = Enqueue("mail", {{"to", "admin@example.org"}});
  journal_->script[id] = {Status::Unavailable("451 try later")};
  ActionDispatcher d(db(), One({"mail"}), options_, &clock_);
  ASSERT_OK(d.Start());
  ASSERT_TRUE(Eventually([&] { return Get(id).attempts == 1; }));
  EXPECT_EQ(Get(id).status, ActionStatus::kPending);
  clock_.Advance(5 * kMicrosPerSecond);
  d.Notify();
  ASSERT_TRUE(Eventually([&] { return Get(id).status == ActionStatus::kDone; }));
  d.Stop(std::chrono::seconds(5));
  EXPECT_EQ(journal_->calls[id], 2);
}

// --- Maintain ------------------------------------------------------------------------------------

TEST_F(ActionDispatcherTest, MaintainRunsOnEachWorkerAndAStuckApplyElsewhereDoesNotStopIt) {
  auto stuck = std::make_shared<Journal>();
  stuck->block = true;
  // The first two ticks fail: logged and tried again at the next tick.
  journal_->maintain_script = {Status::Unavailable("table gone"), Status::Internal("nft said no")};
  std::vector<std::unique_ptr<ActionExecutor>> execs;
  execs.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"webhook"}, stuck));
  execs.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"ban"}, journal_));
  Enqueue("webhook", {{"target", "ops"}});
  options_.maintain_interval_ms = 5;
  ActionDispatcher d(db(), std::move(execs), options_, &clock_);
  ASSERT_OK(d.Start());
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(stuck->mu);
    return stuck->blocked_now == 1;
  }));
  int stuck_maintains;
  {
    std::lock_guard<std::mutex> lk(stuck->mu);
    stuck_maintains = stuck->maintains;
  }
  // The ban executor keeps being maintained (and started) although the webhook worker hangs.
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(journal_->mu);
    return journal_->maintains >= 5;
  }));
  // Actions still flow between ticks, and no tick overlaps an action.
  const auto ban = Enqueue("ban", {{"address", "192.0.2.9"}});
  d.Notify();
  ASSERT_TRUE(Eventually([&] { return Get(ban).status == ActionStatus::kDone; }));
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(journal_->mu);
    return journal_->maintains >= 8;
  }));
  {
    std::lock_guard<std::mutex> lk(journal_->mu);
    EXPECT_TRUE(journal_->maintain_script.empty());  // the failures did not stop the ticks
    EXPECT_EQ(journal_->maintain_during_apply, 0);
    EXPECT_EQ(journal_->starts, 1);  // started at the first tick, once
  }
  {
    std::lock_guard<std::mutex> lk(stuck->mu);
    // The stuck worker itself cannot tick while its Apply hangs: never concurrently.
    EXPECT_EQ(stuck->maintains, stuck_maintains);
    EXPECT_EQ(stuck->maintain_during_apply, 0);
  }
  EXPECT_GE(d.stats().maintained, 8u);
  d.Stop(std::chrono::milliseconds(50));
  stuck->Release();
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(stuck->mu);
    return stuck->stops == 1;
  }));
}

TEST(DispatcherOptionsTest, MaintainIntervalDefaultsToOneSecond) {
  EXPECT_EQ(DispatcherOptions{}.maintain_interval_ms, 1000);
}

// --- crash recovery ------------------------------------------------------------------------------

TEST_F(ActionDispatcherTest, ClaimsOfADeadOwnerRunAtStartNotAfterTheLease) {
  const auto id = Enqueue("ban", {{"address", "192.0.2.50"}});
  // A dispatcher that died holding the claim: owner token 4242, whose lock nobody holds.
  ClaimRequest r;
  r.now = clock_.Now();
  r.lease_until = clock_.Now() + options_.claim_lease_ms * 1000;
  r.owner = 4242;
  ASSERT_EQ(store_->ClaimDueActions(r, [](const ActionRecord&) { return ClaimVerdict{}; })
                ->claimed.size(),
            1u);
  ActionDispatcher d(db(), One({"ban"}), options_, &clock_);
  ASSERT_OK(d.RunDueOnce());  // the clock has not moved: no lease expired
  EXPECT_EQ(Get(id).status, ActionStatus::kDone);
  EXPECT_EQ(journal_->calls[id], 1);
}

TEST_F(ActionDispatcherTest, ALiveDispatcherInAnotherProcessKeepsItsClaimUntilItIsKilled) {
  const auto id = Enqueue("webhook", {{"target", "ops"}});
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The "daemon": claims the webhook and hangs in Apply (a receiver that never answers).
    close(ready[0]);
    class Hang final : public ActionExecutor {
     public:
      explicit Hang(int fd) : fd_(fd) {}
      bool Handles(std::string_view t) const override { return t == "webhook"; }
      Status Start() override { return Status::Ok(); }
      Status Apply(const ActionRecord&) override {
        if (write(fd_, "x", 1) != 1) _exit(3);
        for (;;) pause();
      }
      Status Revert(const ActionRecord&) override { return Status::Ok(); }
      Result<bool> Check(const ActionRecord&) override { return true; }
      void Stop() override {}

     private:
      int fd_;
    };
    std::vector<std::unique_ptr<ActionExecutor>> e;
    e.push_back(std::make_unique<Hang>(ready[1]));
    ActionDispatcher daemon(db(), std::move(e), options_, &clock_);
    (void)daemon.RunDueOnce();
    _exit(2);
  }
  close(ready[1]);
  pollfd p{ready[0], POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20'000), 1) << "the child never started the action";
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  // The owner is alive: a second dispatcher (the CLI) must not take the action.
  {
    ActionDispatcher cli(db(), One({"webhook"}), options_, &clock_);
    ASSERT_OK(cli.RunDueOnce());
    EXPECT_EQ(journal_->calls.count(id), 0u);
    EXPECT_EQ(Get(id).status, ActionStatus::kPending);
    EXPECT_NE(Get(id).claimed_by, 0);
  }
  // kill -9: the kernel drops the owner's lock; the next start runs the action at once.
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ActionDispatcher restarted(db(), One({"webhook"}), options_, &clock_);
  ASSERT_OK(restarted.Start());
  ASSERT_TRUE(Eventually([&] { return Get(id).status == ActionStatus::kDone; }));
  restarted.Stop(std::chrono::seconds(5));
  EXPECT_EQ(journal_->calls[id], 1);
}

TEST_F(ActionDispatcherTest, TwoLiveDispatchersInOneProcessSeeEachOtherAlive) {
  auto stuck = std::make_shared<Journal>();
  stuck->block = true;
  const auto id = Enqueue("webhook", {{"target", "ops"}});
  std::vector<std::unique_ptr<ActionExecutor>> e;
  e.push_back(std::make_unique<FakeExecutor>(std::set<std::string>{"webhook"}, stuck));
  ActionDispatcher a(db(), std::move(e), options_, &clock_);
  ASSERT_OK(a.Start());
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lk(stuck->mu);
    return stuck->blocked_now == 1;
  }));
  ActionDispatcher b(db(), One({"webhook"}), options_, &clock_);
  ASSERT_OK(b.RunDueOnce());
  EXPECT_EQ(journal_->calls.count(id), 0u);
  stuck->Release();
  ASSERT_TRUE(Eventually([&] { return Get(id).status == ActionStatus::kDone; }));
  a.Stop(std::chrono::seconds(5));
  EXPECT_EQ(stuck->calls[id], 1);
}

}  // namespace
}  // namespace mxward
