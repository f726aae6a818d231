// The compiled address allowlist (allow_set.h): containment of v4 and v6 prefixes, nesting,
// expiry by the lookup's time, overlap with a ban's prefix, the empty set, and the handle swap.
#include "mxward/allow_set.h"

#include <gtest/gtest.h>

#include <thread>

namespace mxward {
namespace {

IpPrefix P(const char* text) {
  IpPrefix p;
  EXPECT_TRUE(IpPrefix::Parse(text, &p)) << text;
  return p;
}

IpAddress A(const char* text) {
  IpAddress a;
  EXPECT_TRUE(IpAddress::Parse(text, &a)) << text;
  return a;
}

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

TEST(AllowSet, EmptyCoversNothing) {
  AllowSet s;
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.Contains(A("192.0.2.7"), kT0));
  EXPECT_FALSE(s.Contains(A("2001:db8::1"), kT0));
  EXPECT_EQ(s.FindOverlap(P("0.0.0.0/0"), kT0), nullptr);
  EXPECT_FALSE(AllowSet::Compile({}).Contains(IpAddress(), kT0));
}

TEST(AllowSet, V4PrefixesAndHosts) {
  AllowSet s = AllowSet::Compile({P("198.51.100.0/24"), P("192.0.2.7"), P("10.0.0.0/8")}, {});
  EXPECT_EQ(s.size(), 3u);
  EXPECT_TRUE(s.Contains(A("198.51.100.0"), kT0));
  EXPECT_TRUE(s.Contains(A("198.51.100.255"), kT0));
  EXPECT_FALSE(s.Contains(A("198.51.101.0"), kT0));
  EXPECT_FALSE(s.Contains(A("198.51.99.255"), kT0));
  EXPECT_TRUE(s.Contains(A("192.0.2.7"), kT0));
  EXPECT_FALSE(s.Contains(A("192.0.2.6"), kT0));
  EXPECT_FALSE(s.Contains(A("192.0.2.8"), kT0));
  EXPECT_TRUE(s.Contains(A("10.255.255.255"), kT0));
  EXPECT_FALSE(s.Contains(A("11.0.0.0"), kT0));
  // Families never mix: ::ffff:0:0/96-style v6 text is not the v4 entry.
  EXPECT_FALSE(s.Contains(A("2001:db8::c000:207"), kT0));
}

TEST(AllowSet, V6AndNestingReportTheMostSpecific) {
  AllowSet s = AllowSet::Compile({P("2001:db8::/32"), P("2001:db8:1::/48")},
                                 {{P("2001:db8:1:2::7"), 0, true}});
  const AllowEntry* e = s.Find(A("2001:db8:1:2::7"), kT0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->prefix.ToString(), "2001:db8:1:2::7");
  EXPECT_TRUE(e->runtime);
  e = s.Find(A("2001:db8:1:ffff::1"), kT0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->prefix.length(), 48);
  e = s.Find(A("2001:db8:ffff::1"), kT0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->prefix.length(), 32);
  EXPECT_FALSE(s.Contains(A("2001:db9::1"), kT0));
  EXPECT_FALSE(s.Contains(A("192.0.2.7"), kT0));
  EXPECT_EQ(s.runtime_count(), 1u);
}

TEST(AllowSet, AWideEntryBeforeManySmallOnesStillCovers) {
  // The running reach: 10.0.0.0/8 starts first and ends after the small ranges inside it.
  std::vector<AllowEntry> entries = {{P("10.0.0.0/8"), 0, true}};
  for (int i = 1; i < 50; ++i) {
    entries.push_back({IpPrefix(IpAddress::V4(0x0a000000u + (i << 16)), 24), 0, true});
  }
  AllowSet s = AllowSet::Compile(std::move(entries));
  EXPECT_TRUE(s.Contains(A("10.200.0.1"), kT0));
  EXPECT_TRUE(s.Contains(A("10.3.0.1"), kT0));
  EXPECT_EQ(s.Find(A("10.3.0.1"), kT0)->prefix.length(), 24);
  EXPECT_EQ(s.Find(A("10.3.1.1"), kT0)->prefix.length(), 8);
}

TEST(AllowSet, AnExpiredEntryIsNotConsulted) {
  AllowSet s = AllowSet::Compile({{P("203.0.113.0/24"), kT0 + 60 * kMicrosPerSecond, true}});
  EXPECT_TRUE(s.Contains(A("203.0.113.9"), kT0));
  EXPECT_TRUE(s.Contains(A("203.0.113.9"), kT0 + 60 * kMicrosPerSecond - 1));
  EXPECT_FALSE(s.Contains(A("203.0.113.9"), kT0 + 60 * kMicrosPerSecond));
  EXPECT_EQ(s.FindOverlap(P("203.0.113.9"), kT0 + 61 * kMicrosPerSecond), nullptr);
  // A permanent wider entry still covers once the narrower one expired.
  AllowSet t =
      AllowSet::Compile({P("203.0.0.0/16")}, {{P("203.0.113.0/24"), kT0 + kMicrosPerSecond, true}});
  const AllowEntry* e = t.Find(A("203.0.113.9"), kT0 + 2 * kMicrosPerSecond);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->prefix.length(), 16);
}

TEST(AllowSet, OverlapBothWays) {
  AllowSet s = AllowSet::Compile({P("198.51.100.7"), P("192.0.2.0/24")}, {});
  EXPECT_NE(s.FindOverlap(P("198.51.100.0/24"), kT0), nullptr);  // a ban over an allowed host
  EXPECT_NE(s.FindOverlap(P("192.0.2.9"), kT0), nullptr);        // a ban inside an allowed net
  EXPECT_EQ(s.FindOverlap(P("198.51.101.0/24"), kT0), nullptr);
  EXPECT_EQ(s.FindOverlap(P("2001:db8::/32"), kT0), nullptr);
}

TEST(AllowSetHandle, SwapsWhileReadersHoldTheOldSet) {
  AllowSetHandle h;
  const auto before = h.version();
  auto old = h.Get();
  h.Set(AllowSet::Compile({P("192.0.2.7")}, {}));
  EXPECT_NE(h.version(), before);
  EXPECT_FALSE(old->Contains(A("192.0.2.7"), kT0));
  EXPECT_TRUE(h.Get()->Contains(A("192.0.2.7"), kT0));
  // A reader thread and a writer thread (run under TSan by `make test-tsan`).
  std::thread writer([&h] {
    for (int i = 0; i < 200; ++i) h.Set(AllowSet::Compile({P("192.0.2.7")}, {}));
  });
  int seen = 0;
  for (int i = 0; i < 200; ++i) seen += h.Get()->Contains(A("192.0.2.7"), kT0) ? 1 : 0;
  writer.join();
  EXPECT_EQ(seen, 200);
}

}  // namespace
}  // namespace mxward
