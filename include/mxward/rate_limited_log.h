// RateLimitedLog: spdlog warnings that cannot flood the journal.
//
// A mail server under attack produces the same problem thousands of times a second (a UDP input
// dropping datagrams, a webhook receiver down, a malformed sender). Logging each would fill the
// disk and bury the one line that matters. RateLimitedLog lets through at most `burst` messages
// per key per `interval` and counts the rest; the first message for that key after the interval
// (or Flush()) is preceded by "<key>: N similar messages suppressed in the last Ns".
//
// Keys are chosen by the code, never taken from log text ("input.udp.drop", "webhook.ops.5xx"),
// so an attacker cannot create keys; still, at most max_keys keys are tracked and further ones
// share one overflow bucket, so memory stays bounded whatever happens. Thread-safe (one mutex);
// a suppressed message costs a lock and a map lookup, and is never formatted.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mxward/time.h"

namespace mxward {

struct RateLimitedLogOptions {
  std::int64_t interval_seconds = 60;
  int burst = 1;                // messages per key per interval that get through
  std::size_t max_keys = 1024;  // distinct keys tracked; the rest share "(other)"
};

class RateLimitedLog {
 public:
  // logger and clock must outlive this object; null means spdlog's default logger / SystemClock.
  explicit RateLimitedLog(RateLimitedLogOptions options = {},
                          std::shared_ptr<spdlog::logger> logger = nullptr,
                          const Clock* clock = nullptr);

  // Logs at `level` unless `key` is over its budget, in which case the message is counted only.
  template <typename... Args>
  void Log(spdlog::level::level_enum level, std::string_view key,
           fmt::format_string<Args...> format, Args&&... args) {
    if (!Admit(level, key)) return;
    logger()->log(level, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void Warn(std::string_view key, fmt::format_string<Args...> format, Args&&... args) {
    Log(spdlog::level::warn, key, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Error(std::string_view key, fmt::format_string<Args...> format, Args&&... args) {
    Log(spdlog::level::err, key, format, std::forward<Args>(args)...);
  }

  // Writes the pending "suppressed" summaries of keys whose interval has passed (a periodic
  // timer in the daemon) or of every key (force, at shutdown), so a burst that stopped is still
  // reported.
  void Flush(bool force = false);

  // Messages suppressed so far, all keys (for tests and a metric).
  std::uint64_t suppressed_total() const;

 private:
  struct KeyState {
    UnixMicros window_start = 0;
    int logged = 0;                // in the current window
    std::uint64_t suppressed = 0;  // in the current window, not yet reported
    spdlog::level::level_enum level = spdlog::level::warn;
  };

  // True when the message may be logged; writes the key's pending summary first if needed.
  bool Admit(spdlog::level::level_enum level, std::string_view key);
  void Report(std::string_view key, KeyState& state, UnixMicros now);
  spdlog::logger* logger() const;

  RateLimitedLogOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  const Clock* clock_;
  mutable std::mutex mu_;
  std::map<std::string, KeyState, std::less<>> keys_;
  std::uint64_t suppressed_total_ = 0;
};

}  // namespace mxward
