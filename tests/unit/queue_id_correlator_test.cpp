// QueueIdCorrelator: joining, loopback handling, capacity eviction and TTL expiry.
#include "engine/parse/queue_id_correlator.h"

#include <gtest/gtest.h>

#include <string>

namespace mxward {
namespace {

constexpr UnixMicros kT0 = 1'700'000'000 * kMicrosPerSecond;

Event Submitted(std::string_view qid, std::string_view ip, std::string_view user, UnixMicros t) {
  Event e;
  e.type = EventType::kMessageSubmitted;
  e.time = t;
  e.set(Field::kQueueId, qid);
  e.set(Field::kClientIp, ip);
  EXPECT_TRUE(IpAddress::Parse(ip, &e.client_ip));
  e.set(Field::kSaslUser, user);
  return e;
}

Event Delivery(std::string_view qid, UnixMicros t) {
  Event e;
  e.type = EventType::kDelivery;
  e.time = t;
  e.set(Field::kQueueId, qid);
  e.set(Field::kStatus, "sent");
  return e;
}

TEST(QueueIdCorrelatorTest, DeliveryCarriesSubmissionUserAndClient) {
  QueueIdCorrelator c(10, 3600);
  std::string qid = "4Xz1Ab2CdEz", ip = "203.0.113.50", user = "alice@example.org";
  Event s = Submitted(qid, ip, user, kT0);
  c.Correlate(&s, true);
  // The line buffer is reused for the next line: the table must hold its own copies.
  qid.assign("4Xz1Ab2CdEz");
  ip.assign(13, 'x');
  user.assign(17, 'y');
  Event d = Delivery("4Xz1Ab2CdEz", kT0 + 5);
  c.Correlate(&d, false);
  EXPECT_EQ(d.get(Field::kSaslUser), "alice@example.org");
  EXPECT_EQ(d.get(Field::kClientIp), "203.0.113.50");
  EXPECT_EQ(d.client_ip.ToString(), "203.0.113.50");
  EXPECT_EQ(d.get(Field::kStatus), "sent");
  EXPECT_EQ(c.size(), 1u);
}

// A verified line that takes its user from an unverified one is unverified: a forged `client=`
// line with a real message's queue id must not lend its sasl_username to Postfix's own lines.
// Lines that draw only from verified ones stay verified.
TEST(QueueIdCorrelatorTest, ALineDrawingFromAnUnverifiedLineIsUnverified) {
  QueueIdCorrelator c(10, 3600);
  Event forged = Submitted("4Xz1Ab2CdEz", "203.0.113.50", "ceo@example.org", kT0);
  forged.verified = false;
  c.Correlate(&forged, true);
  Event d = Delivery("4Xz1Ab2CdEz", kT0 + 5);
  d.verified = true;
  c.Correlate(&d, false);
  EXPECT_EQ(d.get(Field::kSaslUser), "ceo@example.org");
  EXPECT_FALSE(d.verified);

  Event real = Submitted("5Ab", "203.0.113.51", "alice@example.org", kT0);
  real.verified = true;
  c.Correlate(&real, true);
  Event d2 = Delivery("5Ab", kT0 + 5);
  d2.verified = true;
  c.Correlate(&d2, false);
  EXPECT_EQ(d2.get(Field::kSaslUser), "alice@example.org");
  EXPECT_TRUE(d2.verified);

  // An unverified line that only reads (it carries nothing new) leaves the entry verified.
  Event probe = Delivery("5Ab", kT0 + 6);
  probe.verified = false;
  c.Correlate(&probe, false);
  Event d3 = Delivery("5Ab", kT0 + 7);
  d3.verified = true;
  c.Correlate(&d3, false);
  EXPECT_TRUE(d3.verified);

  // One that stores a field taints the entry for the lines after it.
  Event tainting = Delivery("5Ab", kT0 + 8);
  tainting.verified = false;
  tainting.set(Field::kDkimResult, "fail");
  c.Correlate(&tainting, false);
  Event d4 = Delivery("5Ab", kT0 + 9);
  d4.verified = true;
  c.Correlate(&d4, false);
  EXPECT_FALSE(d4.verified);
}

// A value longer than its protocol allows is not carried: the table's bytes stay bounded.
TEST(QueueIdCorrelatorTest, OverlongValuesAreNotCarried) {
  QueueIdCorrelator c(10, 3600);
  Event s = Submitted("ABCDEF", "203.0.113.50", "alice@example.org", kT0);
  const std::string huge_domain(8192, 'd');
  s.set(Field::kDkimDomain, huge_domain);
  s.set(Field::kSender, "bob@example.org");
  c.Correlate(&s, true);
  Event d = Delivery("ABCDEF", kT0 + 1);
  c.Correlate(&d, false);
  EXPECT_FALSE(d.has(Field::kDkimDomain));
  EXPECT_EQ(d.get(Field::kSender), "bob@example.org");
  EXPECT_EQ(d.get(Field::kSaslUser), "alice@example.org");
}

TEST(QueueIdCorrelatorTest, LookupOnlyDoesNotCreate) {
  QueueIdCorrelator c(10, 3600);
  Event d = Delivery("ABCDEF", kT0);
  c.Correlate(&d, false);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_FALSE(d.has(Field::kSaslUser));
}

TEST(QueueIdCorrelatorTest, LoopbackNeverReplacesTheRealClient) {
  QueueIdCorrelator c(10, 3600);
  Event s = Submitted("Q1", "203.0.113.50", "alice", kT0);
  c.Correlate(&s, true);
  Event amavis;  // content filter line: client 127.0.0.1
  amavis.type = EventType::kSpamVerdict;
  amavis.time = kT0 + 1;
  amavis.set(Field::kQueueId, "Q1");
  amavis.set(Field::kClientIp, "127.0.0.1");
  ASSERT_TRUE(IpAddress::Parse("127.0.0.1", &amavis.client_ip));
  c.Correlate(&amavis, false);
  EXPECT_EQ(amavis.client_ip.ToString(), "203.0.113.50");
  EXPECT_EQ(amavis.get(Field::kSaslUser), "alice");
  Event d = Delivery("Q1", kT0 + 2);
  c.Correlate(&d, false);
  EXPECT_EQ(d.client_ip.ToString(), "203.0.113.50");
}

TEST(QueueIdCorrelatorTest, DkimDomainJoinsTheResultLine) {
  QueueIdCorrelator c(10, 3600);
  Event info;
  info.time = kT0;
  info.set(Field::kQueueId, "Q2");
  info.set(Field::kDkimDomain, "example.com");
  c.Correlate(&info, true);
  Event result;
  result.type = EventType::kDkimVerify;
  result.time = kT0;
  result.set(Field::kQueueId, "Q2");
  result.set(Field::kDkimResult, "fail");
  c.Correlate(&result, true);
  EXPECT_EQ(result.get(Field::kDkimDomain), "example.com");
  EXPECT_EQ(result.get(Field::kDkimResult), "fail");
}

TEST(QueueIdCorrelatorTest, CapacityEvictsLeastRecentlyTouchedAndCounts) {
  QueueIdCorrelator c(3, 3600);
  for (int i = 0; i < 3; ++i) {
    const std::string q = "Q" + std::to_string(i);
    const std::string ip = "192.0.2." + std::to_string(i + 1);
    const std::string user = "u" + std::to_string(i);
    Event s = Submitted(q, ip, user, kT0 + i);
    c.Correlate(&s, true);
  }
  Event touch = Delivery("Q0", kT0 + 10);  // Q0 is now the most recent
  c.Correlate(&touch, false);
  Event s = Submitted("Q3", "192.0.2.9", "u3", kT0 + 11);
  c.Correlate(&s, true);
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.evictions(), 1u);
  Event d1 = Delivery("Q1", kT0 + 12);  // evicted
  c.Correlate(&d1, false);
  EXPECT_FALSE(d1.has(Field::kSaslUser));
  Event d0 = Delivery("Q0", kT0 + 12);
  c.Correlate(&d0, false);
  EXPECT_EQ(d0.get(Field::kSaslUser), "u0");
}

TEST(QueueIdCorrelatorTest, TtlExpiresByEventTimeAndForgetRemoves) {
  QueueIdCorrelator c(100, 60);
  Event a = Submitted("QA", "192.0.2.1", "a", kT0);
  c.Correlate(&a, true);
  Event b = Submitted("QB", "192.0.2.2", "b", kT0 + 50 * kMicrosPerSecond);
  c.Correlate(&b, true);
  c.Expire(kT0 + 61 * kMicrosPerSecond);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.expirations(), 1u);
  c.Forget("QB");
  EXPECT_EQ(c.size(), 0u);
  // Slots are reused after removal.
  for (int i = 0; i < 1000; ++i) {
    const std::string q = "R" + std::to_string(i % 7);
    Event s = Submitted(q, "192.0.2.3", "r", kT0 + i);
    c.Correlate(&s, true);
    c.Forget(s.get(Field::kQueueId));
  }
  EXPECT_EQ(c.size(), 0u);
}

}  // namespace
}  // namespace mxward
