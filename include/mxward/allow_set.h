// AllowSet: the compiled address allowlist every part of the daemon asks ("is this address, or
// does this prefix overlap, something we must never act on?"): the static [allow] addresses of
// mxward.toml (and the host's own addresses) plus the runtime entries an admin added with
// `mxward allow add` (stored in the IncidentStore's allowlist table).
//
// Compiled once per change into ranges [first, last] sorted by first, with a running maximum of
// `last`, so a lookup is a binary search plus a short walk back over the ranges that nest around
// the address: no allocation and no per-entry loop on the event path. An entry may carry an
// expiry; a lookup passes its time and an entry whose expiry has come is not consulted (the set
// needs no timer: an expired entry stops applying at its time, whoever asks).
//
// An AllowSet is immutable after Compile(). AllowSetHandle shares the current one between
// threads: the engine, control server and policy servers on the io thread, the dispatcher's
// claimer on its own; Set() swaps it under a mutex, Get() hands out a shared_ptr (the old set
// lives until its last reader drops it), and version() lets a hot reader (the playbook engine)
// keep its snapshot until the set changes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mxward/ip_address.h"
#include "mxward/thread_annotations.h"
#include "mxward/time.h"

namespace mxward {

struct AllowEntry {
  IpPrefix prefix;
  UnixMicros expires_at = 0;  // 0: permanent
  bool runtime = false;       // from `mxward allow add`, not from mxward.toml
};

class AllowSet {
 public:
  AllowSet() = default;
  static AllowSet Compile(std::vector<AllowEntry> entries);
  // The static prefixes with the runtime entries (what the daemon compiles).
  static AllowSet Compile(const std::vector<IpPrefix>& static_prefixes,
                          std::vector<AllowEntry> runtime_entries);

  // The entry covering address at `now` (the most specific when several nest), or nullptr.
  const AllowEntry* Find(const IpAddress& address, UnixMicros now) const;
  bool Contains(const IpAddress& address, UnixMicros now) const {
    return Find(address, now) != nullptr;
  }
  // An entry in force at `now` that overlaps prefix (covers it or lies inside it), or nullptr:
  // a ban of 198.51.100.0/24 must not be placed over an allowlisted 198.51.100.7.
  const AllowEntry* FindOverlap(const IpPrefix& prefix, UnixMicros now) const;

  std::size_t size() const { return ranges_.size(); }
  bool empty() const { return ranges_.empty(); }
  std::size_t runtime_count() const { return runtime_count_; }

 private:
  struct Range {
    IpAddress first;  // the prefix's address
    IpAddress last;   // its highest address
    IpAddress reach;  // the highest `last` of this range and every range before it
    AllowEntry entry;
  };
  std::vector<Range> ranges_;  // by first, then longest prefix first
  std::size_t runtime_count_ = 0;
};

class AllowSetHandle {
 public:
  AllowSetHandle() : set_(std::make_shared<const AllowSet>()) {}
  std::shared_ptr<const AllowSet> Get() const {
    MutexLock lock(mu_);
    return set_;
  }
  void Set(AllowSet set) {
    auto fresh = std::make_shared<const AllowSet>(std::move(set));
    MutexLock lock(mu_);
    set_ = std::move(fresh);
    version_.fetch_add(1, std::memory_order_release);
  }
  // Changes at every Set(); a reader holding the set of an older version asks Get() again.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  mutable Mutex mu_;
  std::shared_ptr<const AllowSet> set_ GUARDED_BY(mu_);
  std::atomic<std::uint64_t> version_{1};
};

}  // namespace mxward
