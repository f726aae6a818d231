// ActionValve: the dispatcher's safety valve against a flood of incidents. Owned by the
// dispatcher's claimer (called under its mutex); no threads, no I/O.
//
// It limits how many incident actions start per minute in buckets, never system-wide (issue 21,
// point 2: 700 addresses of one /64 filled a per-type cap, and the next real attacker's ban was
// refused):
//  - per (type, playbook): `per_minute_cap` (overrides by type in `per_minute_caps`), so one
//    playbook's flood never holds up another's;
//  - per (type, source network) for actions aimed at an address: `per_prefix_cap` per IPv4 /24 or
//    IPv6 /48 around the target (a wider target is its own network), so a flood from one network
//    never holds up an attacker elsewhere.
// An action over a bucket is deferred, never refused: Admit says when the fullest bucket has room
// again and the dispatcher leaves the action pending until then. 0 switches a bucket kind off.
#ifndef MXWARD_ACTIONS_DISPATCH_ACTION_VALVE_H_
#define MXWARD_ACTIONS_DISPATCH_ACTION_VALVE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mxward/time.h"

namespace mxward {

struct ValveLimits {
  int default_per_minute = 600;           // per (type, playbook); 0 = no cap
  std::map<std::string, int> per_minute;  // overrides by type
  int per_prefix_per_minute = 60;         // per (type, /24 or /48 of the target); 0 = none
};

struct ValveVerdict {
  bool admitted = true;
  UnixMicros retry_at = 0;  // when not admitted: the earliest time the action could start
  std::string reason;       // when not admitted: which bucket, for the action's note and the log
};

class ActionValve {
 public:
  explicit ActionValve(ValveLimits limits);

  // Whether one more action of `type`, from `playbook`'s incident, aimed at `target` (an address or
  // prefix as text; empty or not an address: no network bucket), may start at `now`; when it may,
  // it is counted in its buckets.
  ValveVerdict Admit(std::string_view type, std::string_view playbook, std::string_view target,
                     UnixMicros now);

  int CapFor(std::string_view type) const;
  std::size_t bucket_count() const { return buckets_.size(); }

  // The network bucket of a target: its /24 (IPv4) or /48 (IPv6) as text, or the target's own
  // prefix when it is wider. Empty when the target is not an address.
  static std::string NetworkOf(std::string_view target);

 private:
  // Start times within the last minute, oldest first.
  using Starts = std::deque<UnixMicros>;
  // Drops starts older than a minute; true when the bucket is then empty.
  static bool Expire(Starts& starts, UnixMicros now);
  void Sweep(UnixMicros now);

  ValveLimits limits_;
  std::unordered_map<std::string, Starts> buckets_;
  std::uint32_t admits_since_sweep_ = 0;
};

}  // namespace mxward

#endif  // MXWARD_ACTIONS_DISPATCH_ACTION_VALVE_H_
