// Test support: a private CA made with OpenSSL for tests of the tls input, written as PEM files.
// Keys are EC P-256 (fast to generate). Header-only ("support/test_ca.h").
//
//   TestCa ca(dir);                                    // dir/ca.crt, dir/ca.key
//   ca.Issue("server", {"mxward.example.net"});        // dir/server.crt, dir/server.key
//   ca.Issue("expired", {"mx1.example.net"}, -10, -1); // valid from 10 days ago to yesterday
//   TestCa::SelfSigned(dir, "rogue", {"mx1.example.net"});
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <string>
#include <vector>

namespace mxward::testing {

class TestCa {
 public:
  explicit TestCa(std::string dir) : dir_(std::move(dir)) {
    key_ = NewKey();
    cert_ = X509_new();
    Fill(cert_, "mxward test CA", {}, 0, 3650, 1);
    X509_set_issuer_name(cert_, X509_get_subject_name(cert_));
    X509_set_pubkey(cert_, key_);
    AddExt(cert_, cert_, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert_, cert_, NID_key_usage, "critical,keyCertSign,cRLSign");
    AddExt(cert_, cert_, NID_subject_key_identifier, "hash");
    X509_sign(cert_, key_, EVP_sha256());
    Write("ca", cert_, key_);
  }
  ~TestCa() {
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  std::string path(const std::string& name, const char* ext) const {
    return dir_ + "/" + name + "." + ext;
  }

  // A leaf certificate for `names` (SAN dNSName; the first is also the CN), valid from
  // days_from to days_to relative to now. An empty names list gives a CN-only certificate `cn`.
  void Issue(const std::string& name, const std::vector<std::string>& names, long days_from = -1,
             long days_to = 365, const std::string& cn = "") {
    EVP_PKEY* key = NewKey();
    X509* c = X509_new();
    Fill(c, names.empty() ? cn : names.front(), names, days_from, days_to, ++serial_);
    X509_set_issuer_name(c, X509_get_subject_name(cert_));
    X509_set_pubkey(c, key);
    AddExt(cert_, c, NID_basic_constraints, "critical,CA:FALSE");
    AddExt(cert_, c, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    AddExt(cert_, c, NID_ext_key_usage, "serverAuth,clientAuth");
    X509_sign(c, key_, EVP_sha256());
    Write(name, c, key);
    X509_free(c);
    EVP_PKEY_free(key);
  }

  // A self-signed leaf with the same kind of names: not from the CA.
  void SelfSigned(const std::string& name, const std::vector<std::string>& names) {
    EVP_PKEY* key = NewKey();
    X509* c = X509_new();
    Fill(c, names.front(), names, -1, 365, 4242);
    X509_set_issuer_name(c, X509_get_subject_name(c));
    X509_set_pubkey(c, key);
    AddExt(c, c, NID_ext_key_usage, "serverAuth,clientAuth");
    X509_sign(c, key, EVP_sha256());
    Write(name, c, key);
    X509_free(c);
    EVP_PKEY_free(key);
  }

  // "ab12..." (64 hex digits): the SHA-256 fingerprint of name.crt.
  std::string Fingerprint(const std::string& name) const {
    FILE* f = std::fopen(path(name, "crt").c_str(), "r");
    if (f == nullptr) return {};
    X509* c = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    X509_digest(c, EVP_sha256(), md, &len);
    X509_free(c);
    std::string out;
    char hex[3];
    for (unsigned i = 0; i < len; ++i) {
      std::snprintf(hex, sizeof hex, "%02x", md[i]);
      out += hex;
    }
    return out;
  }

 private:
  static EVP_PKEY* NewKey() { return EVP_EC_gen("P-256"); }

  static void Fill(X509* c, const std::string& cn, const std::vector<std::string>& names,
                   long days_from, long days_to, long serial) {
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), days_from * 86400);
    X509_gmtime_adj(X509_getm_notAfter(c), days_to * 86400);
    X509_NAME* n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("mxward tests"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    if (!names.empty()) {
      std::string san;
      for (const auto& d : names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
      AddExt(c, c, NID_subject_alt_name, san);
    }
  }

  static void AddExt(X509* issuer, X509* c, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, c, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext != nullptr) {
      X509_add_ext(c, ext, -1);
      X509_EXTENSION_free(ext);
    }
  }

  void Write(const std::string& name, X509* c, EVP_PKEY* key) const {
    if (FILE* f = std::fopen(path(name, "crt").c_str(), "w")) {
      PEM_write_X509(f, c);
      std::fclose(f);
    }
    if (FILE* f = std::fopen(path(name, "key").c_str(), "w")) {
      PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
      std::fclose(f);
    }
  }

  std::string dir_;
  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
  long serial_ = 100;
};

}  // namespace mxward::testing
