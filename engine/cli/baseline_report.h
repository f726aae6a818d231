// BaselineReport: how warm one key's learned baseline is, in words, for `mxward learn` and
// `mxward accounts baseline`.
//
// What: a key is warm when both the install's baseline and the key's own have learned for the
// playbook's warm-up (NovelBaseline::KeyWarm judges the same way in the engine); until then its
// novel trigger judges it by the warm-up fallback, or not at all without one.
//
// Who uses it: the CLI only, on its one thread.
#pragma once

#include <cstdint>
#include <string>

#include "mxward/playbook.h"
#include "mxward/time.h"

namespace mxward::cli {

struct BaselineWarmth {
  UnixMicros key_since = 0;      // the key's earliest learned use; 0: nothing learned
  UnixMicros install_since = 0;  // the playbook's earliest learned use; 0: nothing learned
  std::int64_t warmup_seconds = 0;
  UnixMicros now = 0;

  bool warm() const;
  // "warm (learned 9d of 7d)" or "warming up (learned 2h of 7d; judged by the warm-up fallback:
  // more than 100 distinct recipient_domain in 1h)".
  std::string Describe(const Trigger& trigger) const;
};

}  // namespace mxward::cli
