// Wide: an IP address as a 128-bit number (IPv4 in the low 32 bits), for the interval
// arithmetic of the nftables layout: the ranges of overlapping prefix bans (NftablesBlocker) and
// whether an interval set still covers a prefix (KernelBanAudit). Plain values, no ownership.
#pragma once

#include <cstdint>

#include "mxward/ip_address.h"

namespace mxward {

struct Wide {
  std::uint64_t hi = 0, lo = 0;
  friend bool operator<(const Wide& a, const Wide& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }
  friend bool operator==(const Wide& a, const Wide& b) { return a.hi == b.hi && a.lo == b.lo; }
};

Wide ToWide(const IpAddress& a);
// The low `host_bits` bits set (0..128).
Wide HostMask(int host_bits);
// The last address of a prefix: its first with every host bit set.
Wide LastOf(const IpPrefix& p);
// w + 1; false when w is the last address of the family (nothing follows it).
bool Next(Wide w, bool v4, Wide* out);

}  // namespace mxward
