// [allow] own_addresses (a forged line naming the server's own address must not make it ban
// itself): the daemon allowlists the host's interface addresses unless the file turns that off.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "mxward/config.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

// The host's non-loopback interface addresses, read here independently of the code under test.
std::vector<IpAddress> HostAddresses() {
  std::vector<IpAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text,
                sizeof text);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, text,
                sizeof text);
    } else {
      continue;
    }
    IpAddress a;
    if (IpAddress::Parse(text, &a) && std::string(text) != "127.0.0.1" &&
        std::string(text) != "::1") {
      out.push_back(a);
    }
  }
  freeifaddrs(list);
  return out;
}

bool Allowed(const Config& c, const IpAddress& a) {
  return std::any_of(c.allow_addresses.begin(), c.allow_addresses.end(),
                     [&](const IpPrefix& p) { return p.Contains(a); });
}

Result<Config> LoadText(const testing::TempDir& dir, const std::string& text,
                        std::vector<Diagnostic>* diags) {
  const std::string path = dir.file("mxward.toml");
  std::ofstream(path) << text;
  return Config::Load(path, diags);
}

TEST(OwnAddressesTest, TheDaemonAllowlistsTheHostsInterfaceAddressesUnlessTurnedOff) {
  const std::vector<IpAddress> host = HostAddresses();
  if (host.empty()) GTEST_SKIP() << "this host has no address besides loopback";
  testing::TempDir dir;
  std::vector<Diagnostic> diags;

  // Defaults() and Load are the same on every host (replay and explain read other hosts' logs);
  // serve adds the host's addresses with AllowOwnAddresses: to the embedded defaults, to a file
  // without [allow], and to a file that lists its own addresses.
  Config defaults = Config::Defaults();
  auto plain = LoadText(dir, "dry_run = true\n", &diags);
  ASSERT_OK(plain);
  auto listed = LoadText(dir, "[allow]\naddresses = [\"203.0.113.0/24\"]\n", &diags);
  ASSERT_OK(listed);
  auto off =
      LoadText(dir, "[allow]\naddresses = [\"203.0.113.0/24\"]\nown_addresses = false\n", &diags);
  ASSERT_OK(off);
  const IpPrefix listed_prefix = listed->allow_addresses.at(0);
  for (const IpAddress& a : host) {
    if (listed_prefix.Contains(a)) continue;  // listed anyway
    EXPECT_FALSE(Allowed(defaults, a)) << a.ToString();
    EXPECT_FALSE(Allowed(*plain, a)) << a.ToString();
  }
  AllowOwnAddresses(&defaults);
  AllowOwnAddresses(&*plain);
  AllowOwnAddresses(&*listed);
  AllowOwnAddresses(&*off);
  for (const IpAddress& a : host) {
    EXPECT_TRUE(Allowed(defaults, a)) << a.ToString();
    EXPECT_TRUE(Allowed(*plain, a)) << a.ToString();
    EXPECT_TRUE(Allowed(*listed, a)) << a.ToString();
    if (!listed_prefix.Contains(a)) {
      EXPECT_FALSE(Allowed(*off, a)) << a.ToString();
    }
  }
  IpAddress doc;
  ASSERT_TRUE(IpAddress::Parse("203.0.113.77", &doc));
  EXPECT_TRUE(Allowed(*listed, doc));
  ASSERT_EQ(off->allow_addresses.size(), 1u);
  EXPECT_TRUE(diags.empty());
}

}  // namespace
}  // namespace mxward
