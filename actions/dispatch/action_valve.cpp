#include "actions/dispatch/action_valve.h"

#include <fmt/format.h>

#include <iterator>
#include <utility>

#include "mxward/ip_address.h"

namespace mxward {
namespace {

constexpr UnixMicros kMinute = 60 * kMicrosPerSecond;
constexpr int kNetworkV4 = 24;
constexpr int kNetworkV6 = 48;
// Emptied buckets are dropped every this many admissions, so a flood of distinct networks costs
// memory for at most a minute of them.
constexpr std::uint32_t kSweepEvery = 4096;

}  // namespace

ActionValve::ActionValve(ValveLimits limits) : limits_(std::move(limits)) {}

int ActionValve::CapFor(std::string_view type) const {
  for (const auto& [t, cap] : limits_.per_minute) {
    if (t == type) return cap;
  }
  return limits_.default_per_minute;
}

std::string ActionValve::NetworkOf(std::string_view target) {
  IpPrefix p;
  if (target.empty() || !IpPrefix::Parse(target, &p)) return {};
  const int network = p.address().is_v4() ? kNetworkV4 : kNetworkV6;
  if (p.length() <= network) return p.ToString();
  return IpPrefix(p.address(), network).ToString();
}

bool ActionValve::Expire(Starts& starts, UnixMicros now) {
  while (!starts.empty() && starts.front() <= now - kMinute) starts.pop_front();
  return starts.empty();
}

void ActionValve::Sweep(UnixMicros now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    it = Expire(it->second, now) ? buckets_.erase(it) : std::next(it);
  }
}

ValveVerdict ActionValve::Admit(std::string_view type, std::string_view playbook,
                                std::string_view target, UnixMicros now) {
  if (++admits_since_sweep_ >= kSweepEvery) {
    admits_since_sweep_ = 0;
    Sweep(now);
  }
  struct Bucket {
    std::string key;
    int cap;
    std::string what;
  };
  Bucket checks[2];
  int n = 0;
  if (const int cap = CapFor(type); cap > 0) {
    checks[n++] = {fmt::format("p\x1f{}\x1f{}", type, playbook), cap,
                   fmt::format("more than {} '{}' actions of playbook '{}' in one minute "
                               "([dispatcher] per_minute_cap)",
                               cap, type, playbook)};
  }
  if (limits_.per_prefix_per_minute > 0) {
    if (std::string network = NetworkOf(target); !network.empty()) {
      checks[n++] = {fmt::format("n\x1f{}\x1f{}", type, network), limits_.per_prefix_per_minute,
                     fmt::format("more than {} '{}' actions aimed inside {} in one minute "
                                 "([dispatcher] per_prefix_cap)",
                                 limits_.per_prefix_per_minute, type, network)};
    }
  }
  ValveVerdict verdict;
  for (int i = 0; i < n; ++i) {
    auto it = buckets_.find(checks[i].key);
    if (it == buckets_.end()) continue;
    Expire(it->second, now);
    if (it->second.size() >= static_cast<std::size_t>(checks[i].cap)) {
      // Full: the oldest start leaves the minute first.
      const UnixMicros open = it->second.front() + kMinute;
      if (verdict.admitted || open > verdict.retry_at) {
        verdict.admitted = false;
        verdict.retry_at = open;
        verdict.reason = checks[i].what;
      }
    }
  }
  if (!verdict.admitted) return verdict;
  for (int i = 0; i < n; ++i) buckets_[checks[i].key].push_back(now);
  return verdict;
}

}  // namespace mxward
