#include "mxward/ip_address.h"

#include <arpa/inet.h>

#include <charconv>

#include <fmt/format.h>

namespace mxward {

bool IpAddress::Parse(std::string_view text, IpAddress* out) {
  if (text.empty() || text.size() > 63) return false;
  // inet_pton stops at a NUL: "192.0.2.1\0; anything" must not parse as 192.0.2.1.
  if (text.find('\0') != std::string_view::npos) return false;
  if (auto pct = text.find('%'); pct != std::string_view::npos) text = text.substr(0, pct);
  char buf[64];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, a.bytes_.data()) != 1) return false;
    a.family_ = Family::kV4;
  } else {
    if (inet_pton(AF_INET6, buf, a.bytes_.data()) != 1) return false;
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes_.data(), kMapped, 12) == 0) {
      std::memmove(a.bytes_.data(), a.bytes_.data() + 12, 4);
      std::memset(a.bytes_.data() + 4, 0, 12);
      a.family_ = Family::kV4;
    } else {
      a.family_ = Family::kV6;
    }
  }
  *out = a;
  return true;
}

IpAddress IpAddress::V4(std::uint32_t host_order) {
  IpAddress a;
  a.family_ = Family::kV4;
  a.bytes_[0] = static_cast<std::uint8_t>(host_order >> 24);
  a.bytes_[1] = static_cast<std::uint8_t>(host_order >> 16);
  a.bytes_[2] = static_cast<std::uint8_t>(host_order >> 8);
  a.bytes_[3] = static_cast<std::uint8_t>(host_order);
  return a;
}

IpAddress IpAddress::Masked(int prefix_len) const {
  IpAddress r = *this;
  if (!valid()) return r;
  if (prefix_len < 0) prefix_len = 0;
  if (prefix_len >= bits()) return r;
  const int nbytes = bits() / 8;
  for (int i = 0; i < nbytes; ++i) {
    const int keep = prefix_len - i * 8;
    if (keep >= 8) continue;
    if (keep <= 0) {
      r.bytes_[i] = 0;
    } else {
      r.bytes_[i] &= static_cast<std::uint8_t>(0xff << (8 - keep));
    }
  }
  return r;
}

IpAddress IpAddress::Filled(int prefix_len) const {
  if (!valid()) return *this;
  IpAddress mask = *this;  // the prefix's mask: ones, then Masked clears the host bits
  mask.bytes_.fill(0xff);
  mask = mask.Masked(prefix_len);
  IpAddress r = *this;
  for (int i = 0; i < bits() / 8; ++i) r.bytes_[i] |= static_cast<std::uint8_t>(~mask.bytes_[i]);
  return r;
}

bool IpAddress::IsLoopback() const {
  if (is_v4()) return bytes_[0] == 127;
  if (is_v6()) {
    for (int i = 0; i < 15; ++i)
      if (bytes_[i] != 0) return false;
    return bytes_[15] == 1;
  }
  return false;
}

std::size_t IpAddress::Format(char* buf) const {
  if (!valid()) {
    buf[0] = '\0';
    return 0;
  }
  if (!inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, 46)) {
    buf[0] = '\0';
    return 0;
  }
  return std::strlen(buf);
}

std::string IpAddress::ToString() const {
  char buf[64];
  const std::size_t n = Format(buf);
  return std::string(buf, n);
}

std::size_t IpAddress::Hash() const {
  // FNV-1a over the significant bytes; cheap and good enough for hash tables keyed by address.
  std::uint64_t h = 1469598103934665603ULL ^ static_cast<std::uint64_t>(family_);
  const int n = is_v4() ? 4 : 16;
  for (int i = 0; i < n; ++i) {
    h ^= bytes_[i];
    h *= 1099511628211ULL;
  }
  return static_cast<std::size_t>(h);
}

IpPrefix::IpPrefix(IpAddress addr, int len) {
  if (len < 0) len = 0;
  if (addr.valid() && len > addr.bits()) len = addr.bits();
  addr_ = addr.Masked(len);
  len_ = len;
}

bool IpPrefix::Parse(std::string_view text, IpPrefix* out, bool strict) {
  IpAddress a;
  const auto slash = text.find('/');
  if (!IpAddress::Parse(text.substr(0, slash), &a)) return false;
  int len = a.bits();
  if (slash != std::string_view::npos) {
    std::string_view l = text.substr(slash + 1);
    if (l.empty() || l.size() > 3) return false;
    auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), len);
    if (ec != std::errc() || p != l.data() + l.size()) return false;
    // An IPv4-mapped address given with an IPv6 prefix length: shift it to IPv4's.
    if (a.is_v4() && text.substr(0, slash).find(':') != std::string_view::npos) len -= 96;
    if (len < 0 || len > a.bits()) return false;
  }
  if (strict && !(a.Masked(len) == a)) return false;
  *out = IpPrefix(a, len);
  return true;
}

bool IpPrefix::Contains(const IpAddress& a) const {
  return a.family() == addr_.family() && a.Masked(len_) == addr_;
}

std::string IpPrefix::ToString() const {
  if (IsHost()) return addr_.ToString();
  return addr_.ToString() + "/" + std::to_string(len_);
}

Status ParseListenAddress(std::string_view text, std::string* address, std::uint16_t* port) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format(
        "listen address '{}' {}: write \"127.0.0.1:9580\" or \"[::1]:9580\"", text, why));
  };
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("has no ]:PORT after the IPv6 address");
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("has no :PORT");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("needs [brackets] around IPv6");
  }
  IpAddress ip;
  if (!IpAddress::Parse(host, &ip)) return bad("does not start with an IP address");
  if (port_text.empty() || port_text.size() > 5) return bad("has no valid port");
  unsigned value = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return bad("has no valid port");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return bad("has a port above 65535");
  *address = ip.ToString();
  *port = static_cast<std::uint16_t>(value);
  return Status::Ok();
}

}  // namespace mxward
