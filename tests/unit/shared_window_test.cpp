// Shared windows (issue 18, docs/cluster.md "Shared windows"): the loader's `shared = true` and
// its refusals, the engine's publication of counted events and its folding of other nodes'
// events, and the bounded batch between the engine's thread and the cluster link. The PostgreSQL
// half (publication, claims, three nodes) runs in tests/integration/cluster_postgres_test.cpp.
#include <atomic>
#include <deque>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "engine/cluster/shared_windows.h"
#include "mxward/playbook_engine.h"

namespace mxward {
namespace {

constexpr UnixMicros kSec = kMicrosPerSecond;
constexpr UnixMicros kT0 = 1'795'000'000 * kSec;

constexpr char kSharedSasl[] = R"(
description = "SASL brute force, counted across the cluster"
key = "client_ip"
shared = true
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 20
window = "10m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

// The same playbook, not shared: the control.
constexpr char kLocalSasl[] = R"(
key = "client_ip"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 20
window = "10m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

struct Published {
  std::string playbook, key;
  UnixMicros time;
  std::uint32_t weight;
  bool reset = false;
};
struct Publisher : SharedWindowSink {
  std::vector<Published> events;
  void OnSharedCount(std::string_view playbook, std::string_view key, UnixMicros time,
                     std::uint32_t weight) override {
    events.push_back({std::string(playbook), std::string(key), time, weight});
  }
  void OnSharedReset(std::string_view playbook, std::string_view key, UnixMicros time) override {
    events.push_back({std::string(playbook), std::string(key), time, 0, true});
  }
};

// A shared playbook whose window a message submitted from the address (the client logged in)
// resets.
constexpr char kSharedWithReset[] = R"(
key = "client_ip"
shared = true
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 5
window = "10m"
[trigger.reset]
events = ["message_submitted"]
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

std::string Render(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const auto& d : diags) out += d.ToString() + "\n";
  return out;
}

Result<Playbook> Compile(const std::string& text, std::vector<Diagnostic>* diags) {
  return CompilePlaybookText(text, "rules.d/shared.toml", diags);
}

class SharedWindowEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<Playbook> pbs;
    for (const auto& [name, text] :
         {std::pair{"shared-sasl", kSharedSasl}, std::pair{"local-sasl", kLocalSasl}}) {
      std::vector<Diagnostic> diags;
      auto pb = CompilePlaybookText(text, std::string("rules.d/") + name + ".toml", &diags);
      ASSERT_TRUE(pb.ok()) << Render(diags);
      pbs.push_back(std::move(*pb));
    }
    Config config = Config::Defaults();
    config.allow_addresses.push_back(IpPrefix());
    ASSERT_TRUE(IpPrefix::Parse("192.0.2.0/24", &config.allow_addresses.back()));
    PlaybookEngineOptions o;
    o.hash_seed = 7;
    engine_ = PlaybookEngine::Create(std::move(pbs), config, o);
    engine_->UseSharedWindowSink(&publisher_);
  }

  void Fail(const std::string& ip, UnixMicros t) {
    Event e;
    e.type = EventType::kAuthFailure;
    e.time = t;
    e.verified = true;
    ASSERT_TRUE(IpAddress::Parse(ip, &e.client_ip));
    lines_.push_back("auth failed from " + ip);
    e.line = lines_.back();
    engine_->OnEvent(e, &sink_);
  }

  std::unique_ptr<PlaybookEngine> engine_;
  Publisher publisher_;
  Collect sink_;
  std::deque<std::string> lines_;
};

TEST(SharedWindowLoaderTest, SharedIsReadAndPartOfTheCountingIdentity) {
  std::vector<Diagnostic> diags;
  auto shared = Compile(kSharedSasl, &diags);
  ASSERT_TRUE(shared.ok()) << Render(diags);
  EXPECT_TRUE(shared->shared);
  EXPECT_EQ(shared->shared_line, 4);
  EXPECT_EQ(shared->shared_column, 10);  // the value
  auto local = Compile(kLocalSasl, &diags);
  ASSERT_TRUE(local.ok()) << Render(diags);
  EXPECT_FALSE(local->shared);
  // A reload that turns sharing on or off starts the playbook's windows over, like a new key.
  std::string off = kSharedSasl;
  off.replace(off.find("shared = true"), 13, "shared = false");
  auto unshared = Compile(off, &diags);
  ASSERT_TRUE(unshared.ok()) << Render(diags);
  EXPECT_NE(shared->identity, unshared->identity);
}

TEST(SharedWindowLoaderTest, RefusesWhatCannotBeFoldedWithItsPlace) {
  std::vector<Diagnostic> diags;
  auto distinct = Compile(R"(
key = "client_ip"
shared = true
[match]
events = ["auth_failure"]
[trigger]
type = "distinct"
field = "sasl_user"
threshold = 5
window = "10m"
)",
                          &diags);
  EXPECT_FALSE(distinct.ok());
  EXPECT_NE(
      Render(diags).find("rules.d/shared.toml:3:10: error: 'shared = true' needs a count trigger "
                         "(this one is distinct)"),
      std::string::npos)
      << Render(diags);

  diags.clear();
  auto consecutive = Compile(R"(
key = "sasl_user"
shared = true
[match]
events = ["auth_failure"]
[trigger]
type = "consecutive"
threshold = 5
)",
                             &diags);
  EXPECT_FALSE(consecutive.ok());
  EXPECT_NE(Render(diags).find("3:10: error: 'shared = true' needs a count trigger (this one is "
                               "consecutive)"),
            std::string::npos)
      << Render(diags);

  diags.clear();
  auto network = Compile(R"(
key = "client_ip/24"
shared = true
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 50
window = "10m"
min_addresses = 3
)",
                         &diags);
  EXPECT_FALSE(network.ok());
  EXPECT_NE(Render(diags).find(
                "3:10: error: 'shared = true' cannot be used with [trigger] min_addresses"),
            std::string::npos)
      << Render(diags);

  // An action that needs a field other nodes' events do not carry.
  diags.clear();
  auto user_field = Compile(R"(
key = "client_ip"
shared = true
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 20
window = "10m"
[[action]]
type = "mail"
to = "postmaster@example.org"
subject = "{client_ip} tried {sasl_user}"
)",
                            &diags);
  EXPECT_FALSE(user_field.ok());
  EXPECT_NE(
      Render(diags).find("rules.d/shared.toml:10:1: error: 'subject' of this mail action uses "
                         "{sasl_user}, which is not part of the key"),
      std::string::npos)
      << Render(diags);
}

TEST_F(SharedWindowEngineTest, CountedEventsArePublishedOnlyForSharedPlaybooks) {
  Fail("203.0.113.7", kT0);
  Fail("203.0.113.7", kT0 + kSec);
  Fail("192.0.2.9", kT0 + 2 * kSec);        // allowlisted: not counted, not published
  ASSERT_EQ(publisher_.events.size(), 2u);  // the local playbook counted them too, unpublished
  EXPECT_EQ(publisher_.events[0].playbook, "shared-sasl");
  EXPECT_EQ(publisher_.events[0].key, "203.0.113.7");
  EXPECT_EQ(publisher_.events[0].time, kT0);
  EXPECT_EQ(publisher_.events[0].weight, 1u);
  EXPECT_EQ(publisher_.events[1].time, kT0 + kSec);
}

TEST_F(SharedWindowEngineTest, FoldedEventsCountTowardsTheThresholdWithoutEvidenceOrRepublishing) {
  // 7 here, 13 from two other nodes: the cluster's total reaches 20.
  for (int i = 0; i < 7; ++i) Fail("203.0.113.7", kT0 + i * 10 * kSec);
  ASSERT_EQ(publisher_.events.size(), 7u);
  for (int i = 0; i < 12; ++i) {
    EXPECT_TRUE(engine_->FoldRemoteCount("shared-sasl", "203.0.113.7", kT0 + (i * 10 + 5) * kSec, 1,
                                         i % 2 ? "b" : "c", &sink_));
  }
  EXPECT_TRUE(sink_.incidents.empty());
  ASSERT_TRUE(
      engine_->FoldRemoteCount("shared-sasl", "203.0.113.7", kT0 + 200 * kSec, 1, "c", &sink_));
  ASSERT_EQ(sink_.incidents.size(), 1u);
  const Incident& inc = sink_.incidents[0];
  EXPECT_EQ(inc.playbook, "shared-sasl");
  EXPECT_EQ(inc.key, "203.0.113.7");
  EXPECT_EQ(inc.count, 20u);
  EXPECT_NE(inc.trigger.find("shared window: counted across the cluster, the last event from node "
                             "c"),
            std::string::npos)
      << inc.trigger;
  // Only this node's lines are evidence.
  ASSERT_EQ(inc.evidence.size(), 7u);
  for (const auto& line : inc.evidence) EXPECT_EQ(line.text, "auth failed from 203.0.113.7");
  // The ban's address is rebuilt from the key.
  ASSERT_EQ(inc.actions.size(), 1u);
  EXPECT_EQ(inc.actions[0].params["address"], "203.0.113.7");
  // Nothing folded was published again.
  EXPECT_EQ(publisher_.events.size(), 7u);
  EXPECT_EQ(engine_->stats().folded, 13u);
  // The unshared playbook saw 7 and stays below its threshold: its count is this node's.
  EXPECT_EQ(engine_->stats().triggers, 1u);
}

TEST_F(SharedWindowEngineTest, IncidentOfThisNodesEventsSaysItWasCountedAcrossTheCluster) {
  for (int i = 0; i < 20; ++i) Fail("203.0.113.9", kT0 + i * kSec);
  ASSERT_EQ(sink_.incidents.size(), 2u);  // the shared playbook and the local one, both here
  for (const Incident& inc : sink_.incidents) {
    const bool says =
        inc.trigger.find("; shared window: counted across the cluster") != std::string::npos;
    EXPECT_EQ(says, inc.playbook == "shared-sasl") << inc.trigger;
    EXPECT_EQ(inc.evidence.size(), 10u);  // first five and last five
  }
}

TEST_F(SharedWindowEngineTest, FoldRefusesUnsharedPlaybooksBadKeysAllowlistedAndCoolingKeys) {
  EXPECT_FALSE(engine_->FoldRemoteCount("local-sasl", "203.0.113.7", kT0, 1, "b", &sink_));
  EXPECT_FALSE(engine_->FoldRemoteCount("no-such", "203.0.113.7", kT0, 1, "b", &sink_));
  EXPECT_FALSE(engine_->FoldRemoteCount("shared-sasl", "not an address", kT0, 1, "b", &sink_));
  EXPECT_FALSE(engine_->FoldRemoteCount("shared-sasl", "192.0.2.9", kT0, 1, "b", &sink_));
  EXPECT_EQ(engine_->stats().fold_refused, 4u);
  // A weighted event from another node (Dovecot's "3 attempts") counts its weight.
  EXPECT_TRUE(engine_->FoldRemoteCount("shared-sasl", "198.51.100.4", kT0, 20, "b", &sink_));
  ASSERT_EQ(sink_.incidents.size(), 1u);
  // In its cooldown the key counts nothing more, folded or not.
  EXPECT_FALSE(engine_->FoldRemoteCount("shared-sasl", "198.51.100.4", kT0 + kSec, 1, "b", &sink_));
  EXPECT_EQ(sink_.incidents.size(), 1u);
  EXPECT_TRUE(engine_->IsShared("shared-sasl"));
  EXPECT_FALSE(engine_->IsShared("local-sasl"));
  EXPECT_EQ(engine_->LongestSharedWindowSeconds(), 600);
}

// Shared resets (docs/cluster.md "Resets"): a reset is a window event at its event time. Here:
// what was counted up to it goes, what is newer (another node's event folded before it) stays,
// and an event older than it arriving later is not counted; another node's reset the same.
class SharedResetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<Diagnostic> diags;
    auto pb = CompilePlaybookText(kSharedWithReset, "rules.d/shared-reset.toml", &diags);
    ASSERT_TRUE(pb.ok()) << Render(diags);
    std::vector<Playbook> pbs;
    pbs.push_back(std::move(*pb));
    PlaybookEngineOptions o;
    o.hash_seed = 7;
    engine_ = PlaybookEngine::Create(std::move(pbs), Config::Defaults(), o);
    engine_->UseSharedWindowSink(&publisher_);
  }

  void Line(EventType type, const std::string& ip, UnixMicros t) {
    Event e;
    e.type = type;
    e.time = t;
    e.verified = true;
    ASSERT_TRUE(IpAddress::Parse(ip, &e.client_ip));
    lines_.push_back("a line from " + ip);
    e.line = lines_.back();
    engine_->OnEvent(e, &sink_);
  }
  void Fail(const std::string& ip, UnixMicros t) { Line(EventType::kAuthFailure, ip, t); }
  void LogIn(const std::string& ip, UnixMicros t) { Line(EventType::kMessageSubmitted, ip, t); }

  std::unique_ptr<PlaybookEngine> engine_;
  Publisher publisher_;
  Collect sink_;
  std::deque<std::string> lines_;
};

TEST_F(SharedResetTest, ALocalResetIsPublishedAndKeepsOnlyWhatIsNewer) {
  const std::string ip = "203.0.113.20";
  Fail(ip, kT0);
  Fail(ip, kT0 + kSec);
  Fail(ip, kT0 + 2 * kSec);
  // Another node's failure at +10 s, folded before this node's login line at +5 s was read.
  ASSERT_TRUE(engine_->FoldRemoteCount("shared-reset", ip, kT0 + 10 * kSec, 1, "b", &sink_));
  LogIn(ip, kT0 + 5 * kSec);
  ASSERT_EQ(publisher_.events.size(), 4u);
  const Published& reset = publisher_.events.back();
  EXPECT_TRUE(reset.reset);
  EXPECT_EQ(reset.playbook, "shared-reset");
  EXPECT_EQ(reset.key, ip);
  EXPECT_EQ(reset.time, kT0 + 5 * kSec);
  // Another node's row older than the reset, arriving after it: that reset wiped it.
  EXPECT_FALSE(engine_->FoldRemoteCount("shared-reset", ip, kT0 + 4 * kSec, 1, "c", &sink_));
  EXPECT_EQ(engine_->stats().before_reset, 1u);
  // The failure at +10 s stayed: 1 + 3 is below 5, the 4th makes 5.
  for (int i = 0; i < 3; ++i) Fail(ip, kT0 + (11 + i) * kSec);
  EXPECT_TRUE(sink_.incidents.empty());
  Fail(ip, kT0 + 14 * kSec);
  ASSERT_EQ(sink_.incidents.size(), 1u);
  EXPECT_EQ(sink_.incidents[0].count, 5u);
  // Only the lines after the reset are its evidence.
  EXPECT_EQ(sink_.incidents[0].evidence.size(), 4u);
  // A login of an address this node does not hold publishes nothing (no node counted it).
  const std::size_t before = publisher_.events.size();
  LogIn("198.51.100.30", kT0 + 20 * kSec);
  EXPECT_EQ(publisher_.events.size(), before);
}

TEST_F(SharedResetTest, AnotherNodesResetIsFoldedAtItsTimeAndNotPublishedAgain) {
  const std::string ip = "203.0.113.21";
  for (int i = 0; i < 4; ++i) Fail(ip, kT0 + i * kSec);
  ASSERT_EQ(publisher_.events.size(), 4u);
  // b's reset at +2 s: the failures at 0, 1 and 2 s go, the one at 3 s stays.
  EXPECT_TRUE(engine_->FoldRemoteReset("shared-reset", ip, kT0 + 2 * kSec, "b"));
  EXPECT_EQ(engine_->stats().resets_folded, 1u);
  // A line of this node older than the reset, read late (another input): not counted.
  Fail(ip, kT0 + kSec);
  EXPECT_EQ(engine_->stats().before_reset, 1u);
  for (int i = 0; i < 3; ++i) Fail(ip, kT0 + (4 + i) * kSec);
  EXPECT_TRUE(sink_.incidents.empty());  // 1 + 3: without the reset, 8 would have opened it
  Fail(ip, kT0 + 7 * kSec);
  ASSERT_EQ(sink_.incidents.size(), 1u);
  EXPECT_EQ(sink_.incidents[0].count, 5u);
  // The folded reset was not published again (only this node's counted failures were).
  for (const Published& p : publisher_.events) EXPECT_FALSE(p.reset);
  // A key not held here: nothing to reset. Unshared or unknown playbooks, bad keys: refused.
  EXPECT_TRUE(engine_->FoldRemoteReset("shared-reset", "198.51.100.31", kT0, "b"));
  EXPECT_FALSE(engine_->FoldRemoteReset("no-such", ip, kT0, "b"));
  EXPECT_FALSE(engine_->FoldRemoteReset("shared-reset", "not an address", kT0, "b"));
}

TEST(WindowEventBatchTest, BoundedSwappedAndCountedWhenFull) {
  int woken = 0;
  WindowEventBatch batch(4, [&] { ++woken; });
  EXPECT_TRUE(batch.Add("p", "203.0.113.1", kT0, 1));
  EXPECT_TRUE(batch.Add("p", "203.0.113.2", kT0, 1));
  EXPECT_EQ(woken, 1);  // at half the cap: the link is woken early
  EXPECT_TRUE(batch.Add("p", "203.0.113.3", kT0, 1));
  EXPECT_TRUE(batch.Add("p", "203.0.113.4", kT0, 2));
  EXPECT_FALSE(batch.Add("p", "203.0.113.5", kT0, 1));  // full: dropped, never waited for
  EXPECT_EQ(batch.dropped(), 1);
  std::vector<WindowEvent> spent;
  ASSERT_EQ(batch.Take(&spent), 4u);
  EXPECT_EQ(spent[0].key, "203.0.113.1");
  EXPECT_EQ(spent[3].weight, 2u);
  EXPECT_EQ(batch.Take(&spent), 0u);
  EXPECT_TRUE(batch.Add("p", "203.0.113.6", kT0, 1));  // room again after the take
  std::vector<WindowEvent> next;
  ASSERT_EQ(batch.Take(&next), 1u);
  EXPECT_EQ(next[0].key, "203.0.113.6");
  EXPECT_EQ(batch.added(), 5);
}

// The engine's thread adds while the link's thread takes, as in serve (also under TSan: this
// file is one of MXWARD_THREAD_TESTS). The adder offers each event again while the batch is
// full, so every one crosses: each is taken exactly once and intact, over thousands of swaps,
// and every refusal is counted as a drop.
TEST(WindowEventBatchTest, AnAdderAndATakerOnTwoThreadsLoseAndRepeatNothing) {
  constexpr int kEvents = 100'000;
  std::atomic<bool> done{false};
  std::int64_t refused = 0;  // the adder's thread until joined
  WindowEventBatch batch(64);
  std::thread adder([&] {
    for (int i = 0; i < kEvents; ++i) {
      while (!batch.Add("p", std::to_string(i), kT0 + i, static_cast<std::uint32_t>(i % 7 + 1))) {
        ++refused;
        std::this_thread::yield();
      }
    }
    done.store(true);
  });
  std::vector<bool> seen(kEvents, false);
  std::int64_t taken = 0, repeated = 0, damaged = 0, swaps = 0;
  std::vector<WindowEvent> spent;
  for (bool last = false; !last;) {
    last = done.load();  // one more take after the adder finished
    const std::size_t n = batch.Take(&spent);
    swaps += n > 0;
    for (std::size_t k = 0; k < n; ++k) {
      const int i = std::stoi(spent[k].key);
      if (spent[k].time_us != kT0 + i || spent[k].weight != static_cast<std::uint32_t>(i % 7 + 1) ||
          spent[k].playbook != "p") {
        ++damaged;
      }
      if (seen[static_cast<std::size_t>(i)]) ++repeated;
      seen[static_cast<std::size_t>(i)] = true;
      ++taken;
    }
    if (n == 0) std::this_thread::yield();
  }
  adder.join();
  EXPECT_EQ(taken, kEvents);
  EXPECT_EQ(repeated, 0);
  EXPECT_EQ(damaged, 0);
  EXPECT_EQ(batch.added(), kEvents);
  EXPECT_EQ(batch.dropped(), refused);
  std::cout << "swaps " << swaps << ", refusals at the cap " << refused << "\n";
}

TEST(WindowEventBatchTest, ClaimLeaseCoversTheIncidentsLifeAndAtLeastTheWindow) {
  Incident inc;
  inc.window_seconds = 600;
  inc.last_seen = kT0;
  inc.open_until = kT0 + 3600 * kSec;
  EXPECT_EQ(ClaimLeaseSeconds(inc), 3600);
  inc.open_until = kT0 + 60 * kSec;
  EXPECT_EQ(ClaimLeaseSeconds(inc), 600);
}

}  // namespace
}  // namespace mxward
