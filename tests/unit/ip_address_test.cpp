#include "mxward/ip_address.h"

#include <gtest/gtest.h>

namespace mxward {
namespace {

TEST(IpAddressTest, ParsesV4AndV6) {
  IpAddress a;
  ASSERT_TRUE(IpAddress::Parse("192.0.2.7", &a));
  EXPECT_TRUE(a.is_v4());
  EXPECT_EQ(a.ToString(), "192.0.2.7");
  ASSERT_TRUE(IpAddress::Parse("2001:DB8::1", &a));
  EXPECT_TRUE(a.is_v6());
  EXPECT_EQ(a.ToString(), "2001:db8::1");
}

TEST(IpAddressTest, NormalisesV4MappedV6) {
  IpAddress a;
  ASSERT_TRUE(IpAddress::Parse("::ffff:1.2.3.4", &a));
  EXPECT_TRUE(a.is_v4());
  EXPECT_EQ(a.ToString(), "1.2.3.4");
}

TEST(IpAddressTest, RejectsTextThatIsNotExactlyAnAddress) {
  IpAddress a;
  EXPECT_FALSE(IpAddress::Parse("", &a));
  EXPECT_FALSE(IpAddress::Parse(" 1.2.3.4", &a));
  EXPECT_FALSE(IpAddress::Parse("1.2.3.4 ", &a));
  EXPECT_FALSE(IpAddress::Parse("1.2.3", &a));
  EXPECT_FALSE(IpAddress::Parse("1.2.3.256", &a));
  EXPECT_FALSE(IpAddress::Parse("unknown", &a));
  EXPECT_FALSE(IpAddress::Parse("1.2.3.4;rm -rf /", &a));
  EXPECT_FALSE(IpAddress::Parse(std::string_view("192.0.2.1\0; x", 13), &a));
  EXPECT_FALSE(IpAddress::Parse(std::string_view("2001:db8::1\0", 12), &a));
  IpPrefix p;
  EXPECT_FALSE(IpPrefix::Parse(std::string_view("192.0.2.0\0/24", 13), &p));
  EXPECT_FALSE(a.valid());
}

TEST(IpAddressTest, MasksToPrefix) {
  IpAddress a;
  ASSERT_TRUE(IpAddress::Parse("198.51.100.77", &a));
  EXPECT_EQ(a.Masked(24).ToString(), "198.51.100.0");
  EXPECT_EQ(a.Masked(20).ToString(), "198.51.96.0");
  ASSERT_TRUE(IpAddress::Parse("2001:db8:1:2:3:4:5:6", &a));
  EXPECT_EQ(a.Masked(64).ToString(), "2001:db8:1:2::");
}

TEST(IpPrefixTest, ContainsOnlyItsOwnFamilyAndRange) {
  IpPrefix p;
  ASSERT_TRUE(IpPrefix::Parse("127.0.0.0/8", &p));
  IpAddress a;
  ASSERT_TRUE(IpAddress::Parse("127.1.2.3", &a));
  EXPECT_TRUE(p.Contains(a));
  ASSERT_TRUE(IpAddress::Parse("128.0.0.1", &a));
  EXPECT_FALSE(p.Contains(a));
  ASSERT_TRUE(IpAddress::Parse("::1", &a));
  EXPECT_FALSE(p.Contains(a));
  EXPECT_FALSE(IpPrefix::Parse("10.0.0.0/33", &p));
  EXPECT_FALSE(IpPrefix::Parse("10.0.0.1/8", &p, /*strict=*/true));
  ASSERT_TRUE(IpPrefix::Parse("2001:db8::/64", &p));
  EXPECT_EQ(p.ToString(), "2001:db8::/64");
  ASSERT_TRUE(IpPrefix::Parse("192.0.2.1", &p));
  EXPECT_TRUE(p.IsHost());
  EXPECT_EQ(p.ToString(), "192.0.2.1");
}

}  // namespace
}  // namespace mxward
