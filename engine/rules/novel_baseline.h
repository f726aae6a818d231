// NovelBaseline: what one `novel` playbook has learned per key, and the judgement "never used".
//
// What: for each key (an account, an address, ...) the values it has used (recipient domains,
// client addresses, ...), each with when it was first and last seen. A value is *known* to a key
// once it was first used at least a window ago and has been used within the ttl since; anything
// else is *novel*. Nothing is novel while the baseline is warming up: for `warmup` after the first
// event it judges (or after the oldest entry imported from the store), it only learns.
//
// Who owns it: the PlaybookEngine, one per novel playbook (handed on at a reload when the playbook
// is unchanged). Warm-up is judged twice: the install (learning_since) and each key (since it was
// first learned), so a new account is cold too; the engine decides what a cold key is judged by
// (the playbook's [trigger.fallback], when it has one). Used only on the engine's thread (the
// pipeline's), which also exports it: the store writer receives plain BaselineEntry values
// (baseline.h), so no lock is needed.
//
// Why it exists: the learning rules (ttl, warm-up, the bounds) are policy worth reading and
// testing on their own, apart from the engine's routing and windows. Keys and values are the
// engine's seeded 64-bit hashes; their text, which is what is exported, is asked for through
// EntryText only when a key or value is stored for the first time, so judging an event whose
// value is already held costs no string and no allocation.
//
// Bounds: at most max_keys keys (a value for a further key is not learned and is counted in
// overflow()) and max_values values per key (a new value forgets the one unused the longest).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxward/baseline.h"
#include "mxward/playbook.h"
#include "mxward/time.h"

namespace mxward {

class NovelBaseline {
 public:
  // The text of the key and value being learned, built on demand.
  class EntryText {
   public:
    virtual std::string Key() const = 0;
    virtual std::string Value() const = 0;

   protected:
    ~EntryText() = default;
  };

  NovelBaseline(const BaselineSettings& settings, std::int64_t window_seconds);

  // Judges the value against what the key has learned before t, then learns it at t. True when
  // the value is novel and the baseline is past its warm-up.
  bool JudgeAndLearn(std::uint64_t key_hash, std::uint64_t value_hash, UnixMicros t,
                     const EntryText& text);
  // Adds an entry from the store: known at once (as if first used a window before last_seen),
  // not dirty, and the warm-ups (install and key) count from the oldest entry imported (its
  // first_seen when known, else its last_seen).
  void Import(std::uint64_t key_hash, std::uint64_t value_hash, UnixMicros first_seen,
              UnixMicros last_seen, const EntryText& text);
  // True when the install has learned for the warm-up by t.
  bool InstallWarm(UnixMicros t) const;
  // True when the install is warm and the key was first learned at least the warm-up before t.
  // A key not held is cold.
  bool KeyWarm(std::uint64_t key_hash, UnixMicros t) const;
  // When the key was first learned (0: not held).
  UnixMicros KeyLearningSince(std::uint64_t key_hash) const;
  std::int64_t warmup_seconds() const { return settings_.warmup_seconds; }
  // Appends to *out the entries learned, or used again at least an hour after they were last
  // exported, since the previous call, and marks them exported.
  void TakeDirty(std::vector<BaselineEntry>* out);

  std::size_t values_held() const { return values_held_; }  // (key, value) pairs, all keys
  std::size_t keys_held() const { return keys_.size(); }
  std::uint64_t overflow() const { return overflow_; }  // values not learned: max_keys reached
  UnixMicros learning_since() const { return learning_since_; }  // 0: nothing seen yet

 private:
  struct Value {
    std::string text;
    UnixMicros first_seen = 0;
    UnixMicros last_seen = 0;
    UnixMicros exported = 0;  // last_seen when last handed out; 0 = never
  };
  struct Key {
    std::string text;
    UnixMicros learning_since = 0;  // first learned
    std::unordered_map<std::uint64_t, Value> values;
  };

  // Records the value as used at t; nullptr when the key could not be added (max_keys).
  Value* Learn(std::uint64_t key_hash, std::uint64_t value_hash, UnixMicros t,
               const EntryText& text);

  BaselineSettings settings_;
  UnixMicros window_us_;
  std::unordered_map<std::uint64_t, Key> keys_;
  std::size_t values_held_ = 0;
  std::uint64_t overflow_ = 0;
  UnixMicros learning_since_ = 0;
};

}  // namespace mxward
