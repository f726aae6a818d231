#include "engine/rules/novel_baseline.h"

#include <algorithm>

namespace mxward {

namespace {

// An entry used again is exported again only when its last use moved by at least this much, so a
// value used all day is written to the store hourly, not at every flush.
constexpr UnixMicros kReexportAfter = 3600 * kMicrosPerSecond;

}  // namespace

NovelBaseline::NovelBaseline(const BaselineSettings& settings, std::int64_t window_seconds)
    : settings_(settings), window_us_(window_seconds * kMicrosPerSecond) {}

bool NovelBaseline::JudgeAndLearn(std::uint64_t key_hash, std::uint64_t value_hash, UnixMicros t,
                                  const EntryText& text) {
  if (learning_since_ == 0) learning_since_ = t;
  bool known = false;
  if (auto k = keys_.find(key_hash); k != keys_.end()) {
    if (auto v = k->second.values.find(value_hash); v != k->second.values.end()) {
      // Known: first used at least a window ago, and not forgotten since.
      known = v->second.first_seen <= t - window_us_ &&
              v->second.last_seen >= t - settings_.ttl_seconds * kMicrosPerSecond;
    }
  }
  const bool warm = t - learning_since_ >= settings_.warmup_seconds * kMicrosPerSecond;
  Learn(key_hash, value_hash, t, text);
  return warm && !known;
}

void NovelBaseline::Import(std::uint64_t key_hash, std::uint64_t value_hash, UnixMicros first_seen,
                           UnixMicros last_seen, const EntryText& text) {
  // Stored values are old enough to be known at once.
  const UnixMicros learned = first_seen > 0 ? std::min(first_seen, last_seen) : last_seen;
  const UnixMicros first = std::min(last_seen - window_us_, learned);
  const bool new_key = !keys_.contains(key_hash);
  if (Value* v = Learn(key_hash, value_hash, first, text)) {
    v->last_seen = std::max(v->last_seen, last_seen);
    v->first_seen = std::min(v->first_seen, first);
    v->exported = v->last_seen;
    // Learn() dated the key at `first`, a window early so the value is known at once; the key
    // has learned since its oldest real use.
    Key& key = keys_.at(key_hash);
    key.learning_since = new_key ? learned : std::min(key.learning_since, learned);
  }
  if (learning_since_ == 0 || learned < learning_since_) learning_since_ = learned;
}

bool NovelBaseline::InstallWarm(UnixMicros t) const {
  return learning_since_ != 0 && t - learning_since_ >= settings_.warmup_seconds * kMicrosPerSecond;
}

bool NovelBaseline::KeyWarm(std::uint64_t key_hash, UnixMicros t) const {
  const UnixMicros since = KeyLearningSince(key_hash);
  return InstallWarm(t) && since != 0 && t - since >= settings_.warmup_seconds * kMicrosPerSecond;
}

UnixMicros NovelBaseline::KeyLearningSince(std::uint64_t key_hash) const {
  const auto k = keys_.find(key_hash);
  return k == keys_.end() ? 0 : k->second.learning_since;
}

void NovelBaseline::TakeDirty(std::vector<BaselineEntry>* out) {
  for (auto& [kh, key] : keys_) {
    for (auto& [vh, v] : key.values) {
      if (v.exported != 0 && v.last_seen - v.exported < kReexportAfter) continue;
      v.exported = v.last_seen;
      out->push_back(BaselineEntry{key.text, v.text, v.last_seen, v.first_seen});
    }
  }
}

NovelBaseline::Value* NovelBaseline::Learn(std::uint64_t key_hash, std::uint64_t value_hash,
                                           UnixMicros t, const EntryText& text) {
  auto it = keys_.find(key_hash);
  if (it == keys_.end()) {
    if (keys_.size() >= settings_.max_keys) {
      ++overflow_;
      return nullptr;
    }
    it = keys_.emplace(key_hash, Key{text.Key(), t, {}}).first;
  }
  if (t < it->second.learning_since) it->second.learning_since = t;
  auto& values = it->second.values;
  if (auto v = values.find(value_hash); v != values.end()) {
    Value& known = v->second;
    if (t - known.last_seen > settings_.ttl_seconds * kMicrosPerSecond) {
      known.first_seen = t;  // forgotten and used again: new again
    }
    known.last_seen = std::max(known.last_seen, t);
    return &known;
  }
  if (values.size() >= settings_.max_values) {
    // Forget the value unused the longest.
    auto oldest = values.begin();
    for (auto i = values.begin(); i != values.end(); ++i) {
      if (i->second.last_seen < oldest->second.last_seen) oldest = i;
    }
    values.erase(oldest);
    --values_held_;
  }
  ++values_held_;
  Value added;
  added.text = text.Value();
  added.first_seen = t;
  added.last_seen = t;
  return &values.emplace(value_hash, std::move(added)).first->second;
}

}  // namespace mxward
