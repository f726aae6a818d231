#include "mxward/rate_limited_log.h"

#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

namespace mxward {
namespace {

using ::testing::HasSubstr;

// A logger writing "level message" lines into a string, and a clock the test moves.
class RateLimitedLogTest : public ::testing::Test {
 protected:
  RateLimitedLogTest() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%l %v");
    logger_ = std::make_shared<spdlog::logger>("test", sink);
    logger_->set_level(spdlog::level::info);
  }

  std::vector<std::string> Lines() {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
    return lines;
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> logger_;
  ManualClock clock_{1'000 * kMicrosPerSecond};
};

TEST_F(RateLimitedLogTest, FirstMessagePassesRepeatsAreCountedAndSummarisedLater) {
  RateLimitedLog log({.interval_seconds = 60, .burst = 1}, logger_, &clock_);
  for (int i = 0; i < 5; ++i) log.Warn("input.udp.drop", "udp: dropped {} datagrams", i);
  EXPECT_EQ(Lines(), std::vector<std::string>{"warning udp: dropped 0 datagrams"});
  EXPECT_EQ(log.suppressed_total(), 4u);

  clock_.Advance(59 * kMicrosPerSecond);
  log.Warn("input.udp.drop", "udp: dropped {} datagrams", 5);
  EXPECT_EQ(Lines().size(), 1u);  // still inside the interval

  clock_.Advance(1 * kMicrosPerSecond);
  log.Warn("input.udp.drop", "udp: dropped {} datagrams", 6);
  EXPECT_EQ(Lines(), (std::vector<std::string>{
                         "warning udp: dropped 0 datagrams",
                         "warning input.udp.drop: 5 similar messages suppressed in the last 1m",
                         "warning udp: dropped 6 datagrams"}));
}

TEST_F(RateLimitedLogTest, KeysAreIndependentAndBurstIsHonoured) {
  RateLimitedLog log({.interval_seconds = 10, .burst = 2}, logger_, &clock_);
  log.Warn("a", "a1");
  log.Warn("b", "b1");
  log.Warn("a", "a2");
  log.Warn("a", "a3");
  log.Error("b", "b2");
  EXPECT_EQ(Lines(),
            (std::vector<std::string>{"warning a1", "warning b1", "warning a2", "error b2"}));
  EXPECT_EQ(log.suppressed_total(), 1u);
}

TEST_F(RateLimitedLogTest, FlushReportsABurstThatStopped) {
  RateLimitedLog log({.interval_seconds = 30, .burst = 1}, logger_, &clock_);
  log.Warn("webhook.ops", "webhook ops: HTTP 500");
  log.Warn("webhook.ops", "webhook ops: HTTP 500");
  log.Flush();  // interval not over: nothing yet
  EXPECT_EQ(Lines().size(), 1u);
  clock_.Advance(31 * kMicrosPerSecond);
  log.Flush();
  EXPECT_THAT(Lines().back(), "warning webhook.ops: 1 similar message suppressed in the last 31s");
  log.Flush(true);  // nothing pending: no new line
  EXPECT_EQ(Lines().size(), 2u);
}

TEST_F(RateLimitedLogTest, ForcedFlushReportsEverythingPending) {
  RateLimitedLog log({.interval_seconds = 3600, .burst = 1}, logger_, &clock_);
  log.Warn("k", "m");
  log.Warn("k", "m");
  log.Warn("k", "m");
  clock_.Advance(5 * kMicrosPerSecond);
  log.Flush(true);
  EXPECT_EQ(Lines().back(), "warning k: 2 similar messages suppressed in the last 5s");
}

TEST_F(RateLimitedLogTest, KeyTableIsBoundedAndOverflowKeysShareABudget) {
  RateLimitedLog log({.interval_seconds = 60, .burst = 1, .max_keys = 2}, logger_, &clock_);
  log.Warn("k1", "one");
  log.Warn("k2", "two");
  log.Warn("k3", "three");  // third key: goes to the shared overflow bucket
  log.Warn("k4", "four");   // same bucket: suppressed
  EXPECT_EQ(Lines(), (std::vector<std::string>{"warning one", "warning two", "warning three"}));
  clock_.Advance(60 * kMicrosPerSecond);
  log.Flush();
  EXPECT_THAT(out_.str(), HasSubstr("(other): 1 similar message suppressed"));
}

TEST_F(RateLimitedLogTest, MessagesBelowTheLoggerLevelAreNeitherLoggedNorCounted) {
  logger_->set_level(spdlog::level::err);
  RateLimitedLog log({}, logger_, &clock_);
  log.Warn("k", "hidden");
  log.Warn("k", "hidden");
  EXPECT_TRUE(Lines().empty());
  EXPECT_EQ(log.suppressed_total(), 0u);
}

TEST_F(RateLimitedLogTest, ConcurrentWritersLoseNoCount) {
  RateLimitedLog log({.interval_seconds = 3600, .burst = 1}, logger_, &clock_);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log] {
      for (int i = 0; i < 1000; ++i) log.Warn("shared", "x");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Lines().size(), 1u);
  EXPECT_EQ(log.suppressed_total(), 3999u);
}

}  // namespace
}  // namespace mxward
