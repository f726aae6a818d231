// Baseline: what a `novel` trigger has learned per key (the recipient domains an account has sent
// to before, ...). A plain value type shared by the playbook engine, which learns and exports it
// (PlaybookEngine::TakeDirtyBaselines / ImportBaselines), and the store, which keeps it
// (IncidentStore::SaveBaselines / LoadBaselines); neither includes the other.
#pragma once

#include <string>
#include <vector>

#include "mxward/time.h"

namespace mxward {

struct BaselineEntry {
  std::string key;
  std::string value;
  UnixMicros last_seen = 0;
  // When the key first used the value, as far as the baseline knows; 0 when unknown (an entry
  // stored before schema 4). Imported, the oldest of a key's entries says how long it has learned.
  UnixMicros first_seen = 0;
};

// The baseline entries of one novel playbook, for IncidentStore::SaveBaselines.
struct BaselineBatch {
  std::string playbook;
  std::vector<BaselineEntry> entries;
};

}  // namespace mxward
