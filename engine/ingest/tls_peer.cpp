#include "engine/ingest/tls_peer.h"

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include "engine/base/ascii_lower.h"

namespace mxward {

namespace {

// A host name as it may appear in a certificate we match: labels of [a-z0-9-_], no '*', no
// empty label, no NUL (ASN.1 strings may contain one).
bool PlainHostName(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.') return false;
  if (s.find("..") != std::string_view::npos) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::string AsnString(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<std::size_t>(ASN1_STRING_length(s)));
}

}  // namespace

PeerCertificate DescribeCertificate(X509* cert) {
  PeerCertificate out;
  if (cert == nullptr) return out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
      if (n->type == GEN_DNS) out.dns_names.push_back(AsciiLower(AsnString(n->d.dNSName)));
    }
    GENERAL_NAMES_free(names);
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    out.common_names.push_back(
        AsciiLower(AsnString(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)))));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) == 1) {
    for (unsigned int i = 0; i < len; ++i) out.sha256 += fmt::format("{:02x}", md[i]);
  }
  return out;
}

bool PeerNameMatches(std::string_view pattern, std::string_view name) {
  if (!PlainHostName(name)) return false;
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".example.net"
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) return false;
    const std::string_view label = name.substr(0, name.size() - suffix.size());
    return !label.empty() && label.find('.') == std::string_view::npos;
  }
  return pattern == name;
}

std::optional<std::string> AuthorisePeer(const PeerCertificate& cert, const TlsSettings& tls) {
  // RFC 6125: the CN is a fallback only for certificates without any dNSName.
  std::vector<std::string> names = cert.dns_names;
  if (names.empty() && cert.common_names.size() == 1) names = cert.common_names;
  for (const auto& pattern : tls.allowed_peers) {
    for (const auto& name : names) {
      if (PeerNameMatches(pattern, name)) return name;
    }
  }
  if (cert.sha256.size() == 64) {
    for (const auto& pinned : tls.allowed_fingerprints) {
      if (pinned == cert.sha256) return "sha256:" + cert.sha256.substr(0, 16);
    }
  }
  return std::nullopt;
}

std::string DescribePeer(const PeerCertificate& cert) {
  std::string out;
  for (const auto& n : cert.dns_names) {
    if (!out.empty()) out += ", ";
    out += "dNSName " + n;
  }
  if (cert.dns_names.empty()) {
    for (const auto& n : cert.common_names) {
      if (!out.empty()) out += ", ";
      out += "CN " + n;
    }
  }
  if (!out.empty()) out += ", ";
  out += "sha256 " + cert.sha256;
  // Certificate text is the peer's: keep only printable ASCII in the log.
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return out;
}

}  // namespace mxward
