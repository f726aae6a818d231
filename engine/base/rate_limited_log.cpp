#include "mxward/rate_limited_log.h"

namespace mxward {

namespace {
constexpr std::string_view kOverflowKey = "(other)";
}  // namespace

RateLimitedLog::RateLimitedLog(RateLimitedLogOptions options,
                               std::shared_ptr<spdlog::logger> logger, const Clock* clock)
    : options_(options),
      logger_(std::move(logger)),
      clock_(clock != nullptr ? clock : SystemClock::Instance()) {
  if (options_.burst < 1) options_.burst = 1;
  if (options_.interval_seconds < 1) options_.interval_seconds = 1;
  if (options_.max_keys < 1) options_.max_keys = 1;
}

spdlog::logger* RateLimitedLog::logger() const {
  return logger_ ? logger_.get() : spdlog::default_logger_raw();
}

void RateLimitedLog::Report(std::string_view key, KeyState& state, UnixMicros now) {
  const std::int64_t secs = (now - state.window_start + kMicrosPerSecond - 1) / kMicrosPerSecond;
  logger()->log(state.level, "{}: {} similar message{} suppressed in the last {}", key,
                state.suppressed, state.suppressed == 1 ? "" : "s",
                FormatDurationSeconds(secs < 1 ? 1 : secs));
  state.suppressed = 0;
}

bool RateLimitedLog::Admit(spdlog::level::level_enum level, std::string_view key) {
  if (!logger()->should_log(level)) return false;
  std::lock_guard lock(mu_);
  const UnixMicros now = clock_->Now();
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    if (keys_.size() >= options_.max_keys) key = kOverflowKey;
    it = keys_.try_emplace(std::string(key)).first;
    it->second.window_start = now;
  }
  KeyState& s = it->second;
  s.level = level;
  if (now - s.window_start >= options_.interval_seconds * kMicrosPerSecond) {
    if (s.suppressed > 0) Report(it->first, s, now);
    s.window_start = now;
    s.logged = 0;
  }
  if (s.logged < options_.burst) {
    ++s.logged;
    return true;
  }
  ++s.suppressed;
  ++suppressed_total_;
  return false;
}

void RateLimitedLog::Flush(bool force) {
  std::lock_guard lock(mu_);
  const UnixMicros now = clock_->Now();
  const UnixMicros interval = options_.interval_seconds * kMicrosPerSecond;
  for (auto it = keys_.begin(); it != keys_.end();) {
    KeyState& s = it->second;
    const bool expired = now - s.window_start >= interval;
    if (s.suppressed > 0 && (force || expired)) {
      Report(it->first, s, now);
      s.window_start = now;
      s.logged = 0;
      ++it;
    } else if (expired && s.suppressed == 0) {
      it = keys_.erase(it);  // quiet key: forget it, so the table holds only recent keys
    } else {
      ++it;
    }
  }
}

std::uint64_t RateLimitedLog::suppressed_total() const {
  std::lock_guard lock(mu_);
  return suppressed_total_;
}

}  // namespace mxward
