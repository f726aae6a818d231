// KernelBanAudit: which of the store's unexpired bans the kernel's sets no longer hold.
//
// Why it exists: NftablesBlocker::Maintain() notices, once a second, a missing table, set or drop
// rule from a listing without set elements, which costs the same at any set size. An element
// deleted one by one (`nft delete element inet mxward banned_v4 { 192.0.2.7 }`, a script that
// flushed one set, a tool that "cleans up" sets) leaves the table intact, so the address was free
// while `mxward bans list` still showed it (issue 21, point 4). Seeing that needs the elements
// themselves: listing 100,000 of them is about a second of netlink and JSON (nft 1.0.6, measured
// in docs/benchmarks.md), far too long to hold the ban lane, whose bans must reach the kernel in
// milliseconds. So the audit is split in two:
//   - FindMissingBans() compares a store snapshot with a JSON listing of the table. It is a pure
//     function; NftablesBlocker runs it on a thread of its own, with its own libnftables context
//     and its own store connection, every [nftables] verify_interval.
//   - The lane (NftablesBlocker::Maintain) repairs what was found, after dropping every ban it
//     added, refreshed or removed since the snapshot was taken (the snapshot may be older than
//     what the lane did since), with plain `add element`, which leaves an element that is there
//     with its own timeout.
// Host and IPv6 /64 bans are compared element by element. Prefix bans live in the interval sets
// as the ranges of their union; a prefix is missing when some address of it is in no range, and
// its whole (scope, family) interval set is then rewritten from the lane's own record.
// Bans that end within kSoonSeconds are not reported: their kernel element may already have
// timed out a moment before the store's end (timeouts are whole seconds).
#pragma once

#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actions/nftables/nftables_blocker.h"
#include "mxward/incident_store.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

struct MissingBans {
  UnixMicros store_read_at = 0;  // when the store was read, before the kernel was listed
  // Host and /64 bans absent from their hash set; timeout_s is what was left at store_read_at
  // (0 = permanent).
  std::vector<NftBan> hosts;
  // (scope, 4 or 6) whose interval set does not cover one of its prefix bans.
  std::set<std::pair<std::string, int>> nets;
  std::size_t compared = 0;  // store bans compared with a set that is in the table
};

inline constexpr std::int64_t kSoonSeconds = 5;

// The name of the set that holds `prefix` for ban scope `scope`, or "" when the scope cannot be
// resolved (a port group no longer configured).
using SetOfBan = std::function<std::string(const std::string& scope, const IpPrefix& prefix)>;

// `bans`: the store's active bans read at `now`; `listing`: nft's JSON output of `list table`
// for mxward's table. Sets that are not in the listing are skipped (a missing set is
// Maintain()'s damage, repaired by a rebuild). InvalidArgument when `listing` is not nft's JSON.
Result<MissingBans> FindMissingBans(const std::vector<BanRecord>& bans, std::string_view listing,
                                    const SetOfBan& set_of, UnixMicros now);

// What both of two findings from the same store snapshot report missing (store_read_at and
// compared are the first's). Two listings, because one dump of a large hash set is not a
// snapshot of it (NftablesBlocker::AuditElements says why).
MissingBans ConfirmedMissingBans(MissingBans first, const MissingBans& second);

}  // namespace mxward
