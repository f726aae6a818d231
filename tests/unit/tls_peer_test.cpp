#include "engine/ingest/tls_peer.h"

#include <gtest/gtest.h>

namespace mxward {
namespace {

TEST(TlsPeerTest, WildcardMatchesExactlyOneLeftMostLabel) {
  EXPECT_TRUE(PeerNameMatches("*.example.net", "mx1.example.net"));
  EXPECT_FALSE(PeerNameMatches("*.example.net", "a.mx1.example.net"));
  EXPECT_FALSE(PeerNameMatches("*.example.net", "example.net"));
  EXPECT_FALSE(PeerNameMatches("*.example.net", ".example.net"));
  EXPECT_FALSE(PeerNameMatches("*.example.net", "mx1.example.net.evil"));
  EXPECT_FALSE(PeerNameMatches("*.example.net", "mx1example.net"));
  EXPECT_TRUE(PeerNameMatches("mx1.example.net", "mx1.example.net"));
  EXPECT_FALSE(PeerNameMatches("mx1.example.net", "mx2.example.net"));
}

TEST(TlsPeerTest, CertificateNamesAreTakenLiterally) {
  // A wildcard or odd bytes in the certificate never match anything.
  EXPECT_FALSE(PeerNameMatches("*.example.net", "*.example.net"));
  EXPECT_FALSE(PeerNameMatches("mx1.example.net", "*.example.net"));
  EXPECT_FALSE(PeerNameMatches("*.example.net", std::string("mx1\0.example.net", 16)));
  EXPECT_FALSE(PeerNameMatches("*.example.net", "mx 1.example.net"));
}

TEST(TlsPeerTest, SanFirstCnOnlyWithoutSan) {
  TlsSettings tls;
  tls.allowed_peers = {"mx1.example.net"};
  PeerCertificate c;
  c.common_names = {"mx1.example.net"};
  c.sha256 = std::string(64, 'a');
  EXPECT_EQ(AuthorisePeer(c, tls).value_or("-"), "mx1.example.net");  // CN fallback
  c.dns_names = {"other.example.net"};
  EXPECT_FALSE(AuthorisePeer(c, tls).has_value());  // a SAN exists: the CN is not looked at
  c.dns_names = {"other.example.net", "mx1.example.net"};
  EXPECT_EQ(AuthorisePeer(c, tls).value_or("-"), "mx1.example.net");
  PeerCertificate two_cns;
  two_cns.common_names = {"mx1.example.net", "evil.example.org"};
  EXPECT_FALSE(AuthorisePeer(two_cns, tls).has_value());  // ambiguous subject
}

TEST(TlsPeerTest, PinnedFingerprint) {
  TlsSettings tls;
  tls.allowed_fingerprints = {std::string(63, 'a') + "b"};
  PeerCertificate c;
  c.dns_names = {"anything.example"};
  c.sha256 = std::string(63, 'a') + "b";
  EXPECT_EQ(AuthorisePeer(c, tls).value_or("-"), "sha256:aaaaaaaaaaaaaaaa");
  c.sha256 = std::string(64, 'a');
  EXPECT_FALSE(AuthorisePeer(c, tls).has_value());
  EXPECT_FALSE(AuthorisePeer(PeerCertificate{}, tls).has_value());
}

TEST(TlsPeerTest, DescribePeerIsPrintable) {
  PeerCertificate c;
  c.dns_names = {std::string("mx\n1.example\x01", 13)};
  c.sha256 = "ab";
  const std::string d = DescribePeer(c);
  EXPECT_EQ(d, "dNSName mx?1.example?, sha256 ab");
}

}  // namespace
}  // namespace mxward
