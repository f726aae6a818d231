// TLS peer authorisation for the `tls` input (RFC 5425 section 5.2): who a verified client
// certificate names, and whether the input's allow list admits it. Pure functions over the
// certificate's parsed fields, so the rules are unit-tested without a handshake.
//
// The certificate has already been verified against the input's CA (chain, validity) by OpenSSL;
// this decides authorisation only. Names are compared case-insensitively. A certificate's own
// names are taken literally: a certificate naming "*.example.net" does not match anything but the
// identical allow-list entry's literal text, which the config reader refuses to contain except as
// a pattern, so a wildcard certificate matches nothing. The CN is used only when the certificate
// has no SAN dNSName at all, and only when there is exactly one CN.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/input_config.h"

typedef struct x509_st X509;

namespace mxward {

struct PeerCertificate {
  std::vector<std::string> dns_names;  // SAN dNSName entries, lower-case
  std::vector<std::string> common_names;
  std::string sha256;  // of the DER encoding, 64 lower-case hex digits
};

// Reads the fields above from an OpenSSL certificate.
PeerCertificate DescribeCertificate(X509* cert);

// "*.example.net" matches "mx1.example.net" (exactly one left-most label), a name without '*'
// matches itself. Both lower-case.
bool PeerNameMatches(std::string_view pattern, std::string_view name);

// The identity the input records for an authorised peer: the certificate name that matched an
// allowed_peers entry, or "sha256:" and the first 16 hex digits of a pinned fingerprint.
// nullopt when neither list admits the certificate.
std::optional<std::string> AuthorisePeer(const PeerCertificate& cert, const TlsSettings& tls);

// "dNSName mx9.example.net, sha256 0a1b2c3d..." for the log line of a refused peer.
std::string DescribePeer(const PeerCertificate& cert);

}  // namespace mxward
