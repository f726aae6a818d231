#include "actions/nftables/wide_address.h"

namespace mxward {

Wide ToWide(const IpAddress& a) {
  Wide w;
  const auto& b = a.bytes();
  if (a.is_v4()) {
    w.lo = (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) | (std::uint64_t{b[2]} << 8) |
           b[3];
    return w;
  }
  for (int i = 0; i < 8; ++i) w.hi = (w.hi << 8) | b[i];
  for (int i = 8; i < 16; ++i) w.lo = (w.lo << 8) | b[i];
  return w;
}

Wide HostMask(int host_bits) {
  Wide m;
  m.lo = host_bits >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << host_bits) - 1;
  if (host_bits > 64) {
    m.hi = host_bits >= 128 ? ~std::uint64_t{0} : (std::uint64_t{1} << (host_bits - 64)) - 1;
  }
  return m;
}

Wide LastOf(const IpPrefix& p) {
  Wide w = ToWide(p.address());
  const Wide mask = HostMask(p.address().bits() - p.length());
  w.hi |= mask.hi;
  w.lo |= mask.lo;
  return w;
}

bool Next(Wide w, bool v4, Wide* out) {
  if (v4 ? w.lo == 0xffffffffu : (w.hi == ~std::uint64_t{0} && w.lo == ~std::uint64_t{0})) {
    return false;
  }
  if (++w.lo == 0) ++w.hi;
  *out = w;
  return true;
}

}  // namespace mxward
