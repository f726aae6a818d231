#include "engine/cli/baseline_report.h"

#include <algorithm>

#include <fmt/format.h>

namespace mxward::cli {

namespace {

std::int64_t LearnedSeconds(UnixMicros since, UnixMicros now) {
  return since > 0 && now > since ? (now - since) / kMicrosPerSecond : 0;
}

}  // namespace

bool BaselineWarmth::warm() const {
  return key_since > 0 && install_since > 0 && LearnedSeconds(key_since, now) >= warmup_seconds &&
         LearnedSeconds(install_since, now) >= warmup_seconds;
}

std::string BaselineWarmth::Describe(const Trigger& trigger) const {
  const std::string learned =
      fmt::format("learned {} of {}", FormatDurationSeconds(LearnedSeconds(key_since, now)),
                  FormatDurationSeconds(warmup_seconds));
  if (warm()) return fmt::format("warm ({})", learned);
  std::string install;
  if (LearnedSeconds(install_since, now) < warmup_seconds) {
    install = fmt::format("; the install has learned {}",
                          FormatDurationSeconds(LearnedSeconds(install_since, now)));
  }
  const std::string judged =
      trigger.fallback.enabled
          ? fmt::format("judged by the warm-up fallback: more than {} distinct {} in {}",
                        trigger.fallback.over, FieldName(trigger.fallback.field.field),
                        FormatDurationSeconds(trigger.fallback.window_seconds))
      : LearnedSeconds(install_since, now) >= warmup_seconds
          ? std::string("no warm-up fallback: every value counts as never used")
          : std::string("no warm-up fallback: nothing is judged yet");
  return fmt::format("warming up ({}{}; {})", learned, install, judged);
}

}  // namespace mxward::cli
