#include "mxward/allow_set.h"

#include <algorithm>

namespace mxward {

AllowSet AllowSet::Compile(std::vector<AllowEntry> entries) {
  AllowSet s;
  s.ranges_.reserve(entries.size());
  for (AllowEntry& e : entries) {
    if (!e.prefix.address().valid()) continue;
    if (e.runtime) ++s.runtime_count_;
    Range r;
    r.first = e.prefix.address();
    r.last = e.prefix.address().Filled(e.prefix.length());
    r.entry = std::move(e);
    s.ranges_.push_back(std::move(r));
  }
  // Among ranges that start at the same address, the widest first: walking back from the
  // rightmost candidate then meets the most specific entry first.
  std::sort(s.ranges_.begin(), s.ranges_.end(), [](const Range& a, const Range& b) {
    if (!(a.first == b.first)) return a.first < b.first;
    return a.entry.prefix.length() < b.entry.prefix.length();
  });
  for (std::size_t i = 0; i < s.ranges_.size(); ++i) {
    Range& r = s.ranges_[i];
    r.reach = r.last;
    if (i > 0 && r.reach < s.ranges_[i - 1].reach) r.reach = s.ranges_[i - 1].reach;
  }
  return s;
}

AllowSet AllowSet::Compile(const std::vector<IpPrefix>& static_prefixes,
                           std::vector<AllowEntry> runtime_entries) {
  for (const IpPrefix& p : static_prefixes) runtime_entries.push_back({p, 0, false});
  return Compile(std::move(runtime_entries));
}

namespace {
bool InForce(const AllowEntry& e, UnixMicros now) {
  return e.expires_at == 0 || now < e.expires_at;
}
}  // namespace

const AllowEntry* AllowSet::Find(const IpAddress& address, UnixMicros now) const {
  if (!address.valid() || ranges_.empty()) return nullptr;
  // The ranges that start at or before address; of those, only ones whose reach (the highest
  // end so far) is at or after it can still cover it.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address,
                             [](const IpAddress& a, const Range& r) { return a < r.first; });
  const AllowEntry* best = nullptr;
  while (it != ranges_.begin()) {
    --it;
    if (it->reach < address) break;
    if (address < it->last || address == it->last) {
      if (InForce(it->entry, now) &&
          (best == nullptr || it->entry.prefix.length() > best->prefix.length())) {
        best = &it->entry;
      }
    }
  }
  return best;
}

const AllowEntry* AllowSet::FindOverlap(const IpPrefix& prefix, UnixMicros now) const {
  if (!prefix.address().valid()) return nullptr;
  const IpAddress first = prefix.address();
  const IpAddress last = first.Filled(prefix.length());
  // Ranges that start inside the prefix.
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), first,
                             [](const Range& r, const IpAddress& a) { return r.first < a; });
  for (auto j = it; j != ranges_.end() && (j->first < last || j->first == last); ++j) {
    if (InForce(j->entry, now)) return &j->entry;
  }
  // Ranges that start before it and cover its first address.
  return Find(first, now);
}

}  // namespace mxward
