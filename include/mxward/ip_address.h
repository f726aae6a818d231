// IpAddress and IpPrefix: client addresses in binary form.
//
// Every address that reaches a key, an allowlist check or nftables is parsed into this form and
// re-printed from it, so text an attacker wrote is never passed on. IPv4-mapped IPv6
// (::ffff:1.2.3.4) is normalised to IPv4. Plain values, no allocation.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "mxward/status.h"

namespace mxward {

class IpAddress {
 public:
  enum class Family : std::uint8_t { kNone = 0, kV4 = 4, kV6 = 6 };

  IpAddress() = default;
  // Parses dotted-quad IPv4 or any RFC 4291 IPv6 text (with an optional %zone, which is dropped).
  // Returns false, leaving *out unchanged, on anything else, including surrounding spaces.
  static bool Parse(std::string_view text, IpAddress* out);
  static IpAddress V4(std::uint32_t host_order);

  Family family() const { return family_; }
  bool valid() const { return family_ != Family::kNone; }
  bool is_v4() const { return family_ == Family::kV4; }
  bool is_v6() const { return family_ == Family::kV6; }
  int bits() const { return is_v4() ? 32 : 128; }
  // Network-order bytes; IPv4 uses the first 4.
  const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }

  // The address with all bits after the first prefix_len cleared (prefix_len clamped to bits()).
  IpAddress Masked(int prefix_len) const;
  // The address with all bits after the first prefix_len set: the highest of the prefix.
  IpAddress Filled(int prefix_len) const;
  bool IsLoopback() const;

  std::string ToString() const;
  // Writes the canonical text into buf (at least 46 bytes) and returns its length.
  std::size_t Format(char* buf) const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) {
    return a.family_ == b.family_ && a.bytes_ == b.bytes_;
  }
  friend bool operator<(const IpAddress& a, const IpAddress& b) {
    if (a.family_ != b.family_) return a.family_ < b.family_;
    return a.bytes_ < b.bytes_;
  }
  std::size_t Hash() const;

 private:
  Family family_ = Family::kNone;
  std::array<std::uint8_t, 16> bytes_{};
};

// An address with a prefix length: 192.0.2.0/24, 2001:db8::/64, or a single host (/32, /128).
class IpPrefix {
 public:
  IpPrefix() = default;
  IpPrefix(IpAddress addr, int len);  // masks addr to len
  // "192.0.2.0/24", "2001:db8::/64", or a bare address (host prefix). Rejects host bits set
  // after the prefix only when strict is true.
  static bool Parse(std::string_view text, IpPrefix* out, bool strict = false);

  const IpAddress& address() const { return addr_; }
  int length() const { return len_; }
  bool IsHost() const { return len_ == addr_.bits(); }
  bool Contains(const IpAddress& a) const;
  std::string ToString() const;  // host prefixes print without "/32" or "/128"

  friend bool operator==(const IpPrefix& a, const IpPrefix& b) {
    return a.len_ == b.len_ && a.addr_ == b.addr_;
  }

 private:
  IpAddress addr_;
  int len_ = 0;
};

// "127.0.0.1:9580", "[::1]:9580" -> the address (canonical text) and port of a listening socket
// (the metrics endpoint, the policy servers). InvalidArgument with a readable message.
Status ParseListenAddress(std::string_view text, std::string* address, std::uint16_t* port);

}  // namespace mxward

template <>
struct std::hash<mxward::IpAddress> {
  std::size_t operator()(const mxward::IpAddress& a) const noexcept { return a.Hash(); }
};
