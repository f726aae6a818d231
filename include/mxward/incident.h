// Incident: what a playbook opens when its trigger fires, with the evidence and the actions it asks
// for. Built by the playbook engine, persisted by IncidentStore, acted on by the ActionDispatcher.
// Owns all its data (unlike Event), because it outlives the log line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxward/time.h"

namespace mxward {

enum class Severity : std::uint8_t { kLow, kMedium, kHigh, kCritical };
enum class PlaybookMode : std::uint8_t { kEnforce, kDryRun };
enum class IncidentStatus : std::uint8_t { kOpen, kAcknowledged, kResolved };
// live: opened by the daemon from logs as they came; replay: opened by `mxward replay` from old
// logs. A replayed incident is shown as such and never counts as an earlier offence.
enum class IncidentOrigin : std::uint8_t { kLive, kReplay };
// pending: in the outbox; done: applied; failed: gave up after retries; reverted: undone;
// dry_run: recorded but never run (playbook or action in dry-run); refused: safety valve or
// allowlist stopped it.
enum class ActionStatus : std::uint8_t { kPending, kDone, kFailed, kReverted, kDryRun, kRefused };

std::string_view SeverityName(Severity s);  // "low" | "medium" | "high" | "critical"
bool ParseSeverity(std::string_view name, Severity* out);
std::string_view PlaybookModeName(PlaybookMode m);  // "enforce" | "dry-run"
bool ParsePlaybookMode(std::string_view name, PlaybookMode* out);
std::string_view IncidentStatusName(IncidentStatus s);  // "open" | "acknowledged" | "resolved"
bool ParseIncidentStatus(std::string_view name, IncidentStatus* out);
std::string_view IncidentOriginName(IncidentOrigin o);  // "live" | "replay"
bool ParseIncidentOrigin(std::string_view name, IncidentOrigin* out);
std::string_view ActionStatusName(ActionStatus s);  // "pending" | "done" | ... | "dry_run"
bool ParseActionStatus(std::string_view name, ActionStatus* out);

struct EvidenceLine {
  UnixMicros time = 0;
  std::string text;
};

// One action an incident asks for, with its parameters already expanded from the playbook's
// templates. Parameters are data (JSON), never a command line: executors read typed values.
//
// The types and their parameters are the catalogue in action_types.h (and docs/actions.md).
struct ActionRequest {
  std::string type;
  nlohmann::json params = nlohmann::json::object();
  bool dry_run = false;
};

// One row of the actions table; pending rows are the outbox.
struct ActionRecord {
  std::int64_t id = 0;
  std::int64_t incident_id = 0;  // 0 for actions an admin asked for by hand (bans add, ...)
  std::string type;
  nlohmann::json params = nlohmann::json::object();
  ActionStatus status = ActionStatus::kPending;
  bool revert = false;  // true: undo the action (bans remove, accounts restore, expiry)
  int attempts = 0;
  std::string last_error;
  std::string idempotency_key;  // stable across retries and restarts: "mxward-<id>"
  UnixMicros created_at = 0;
  UnixMicros updated_at = 0;
  UnixMicros next_attempt_at = 0;
  std::int64_t claimed_by = 0;  // owner token of the dispatcher that claimed it; 0: none
};

struct Incident {
  std::int64_t id = 0;  // assigned by IncidentStore::RecordIncident
  std::string playbook;
  std::string description;
  Severity severity = Severity::kMedium;
  PlaybookMode mode = PlaybookMode::kEnforce;
  std::string key_kind;  // "client_ip", "sasl_user", "sender_domain", "client_ip/24", ...
  std::string key;       // "192.0.2.7", "alice@example.org", "198.51.100.0/24"
  std::string trigger;   // why it fired, for people: "20 auth_failure in 10m (count >= 20)"
  UnixMicros first_seen = 0;
  UnixMicros last_seen = 0;
  std::uint64_t count = 0;
  std::int64_t window_seconds = 0;
  IncidentStatus status = IncidentStatus::kOpen;
  IncidentOrigin origin = IncidentOrigin::kLive;
  std::vector<EvidenceLine> evidence;  // bounded by the engine: first and last few lines
  std::vector<ActionRequest> actions;
  // Times the trigger fired for this incident: 1, plus each repeat it absorbed (below).
  std::uint64_t triggers = 1;
  // The incident's life (event time): until then a new trigger of the same playbook and key
  // updates this incident instead of opening another, as long as it is not resolved: the end of
  // its longest action (a ban's duration) or of the key's cooldown, whichever is later, fixed
  // when it opened (repeats do not extend it). 0: never updated (replayed, or from elsewhere).
  UnixMicros open_until = 0;
  // Set by IncidentStore::RecordIncidents when this trigger updated an open incident (id is that
  // incident's; its actions were not queued again) instead of opening a new one.
  bool merged = false;
};

// Where the playbook engine hands the incidents it opens (the IncidentRecorder in the daemon,
// a collecting vector in tests). Called on the engine's thread; must not block for long.
class IncidentSink {
 public:
  virtual ~IncidentSink() = default;
  virtual void OnIncident(Incident incident) = 0;
};

}  // namespace mxward
