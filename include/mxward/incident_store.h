// IncidentStore: the SQLite file that holds incidents, their evidence and actions, the action
// outbox, active bans, account suspensions, learned baselines and hourly event counts.
//
// One IncidentStore is one SQLite connection: use it from one thread at a time. The daemon's store
// writer, the action dispatcher and the CLI each open their own; WAL mode lets readers run while
// the daemon writes. The schema is versioned; Open() applies migrations and refuses a file written
// by a newer mxward. Every multi-row change is one transaction, so a crash leaves a consistent file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxward/event.h"
#include "mxward/incident.h"
#include "mxward/status.h"
#include "mxward/time.h"

struct sqlite3;

namespace mxward {

struct StoreOptions {
  bool read_only = false;
  int busy_timeout_ms = 5000;
};

struct IncidentQuery {
  std::optional<IncidentStatus> status;
  std::string playbook;    // exact name, empty for all
  std::string key;         // exact key, empty for all
  UnixMicros since = 0;    // last_seen >= since
  int limit = 100;
};

// One row of the actions table; pending rows are the outbox.
struct ActionRecord {
  std::int64_t id = 0;
  std::int64_t incident_id = 0;  // 0 for actions an admin asked for by hand (bans add, ...)
  std::string type;
  nlohmann::json params = nlohmann::json::object();
  ActionStatus status = ActionStatus::kPending;
  bool revert = false;           // true: undo the action (bans remove, accounts restore, expiry)
  int attempts = 0;
  std::string last_error;
  std::string idempotency_key;   // stable across retries and restarts: "mxward-<id>"
  UnixMicros created_at = 0;
  UnixMicros updated_at = 0;
  UnixMicros next_attempt_at = 0;
};

struct BanRecord {
  std::string prefix;          // canonical text from IpPrefix::ToString()
  UnixMicros created_at = 0;
  UnixMicros until = 0;        // 0 = permanent
  std::int64_t incident_id = 0;
  std::string reason;
};

struct SuspensionRecord {
  std::string user;
  std::string kind;            // suspend_sending | suspend | require_password_change
  nlohmann::json previous = nlohmann::json::object();  // the values we overwrote, to restore
  UnixMicros created_at = 0;
  UnixMicros until = 0;        // 0 = until restored by hand
  std::int64_t incident_id = 0;
};

struct BaselineEntry {
  std::string key;
  std::string value;
  UnixMicros last_seen = 0;
};

struct OutboxStats {
  std::int64_t pending = 0;
  UnixMicros oldest_created_at = 0;  // 0 when empty
};

class IncidentStore {
 public:
  static constexpr int kSchemaVersion = 1;

  static Result<std::unique_ptr<IncidentStore>> Open(const std::string& path,
                                                     const StoreOptions& options = {});
  ~IncidentStore();
  IncidentStore(const IncidentStore&) = delete;
  IncidentStore& operator=(const IncidentStore&) = delete;

  const std::string& path() const { return path_; }

  // --- incidents -------------------------------------------------------------------------------
  // Writes the incidents, their evidence and actions in one transaction and assigns ids.
  // Actions with dry_run become ActionStatus::kDryRun; the others are pending (in the outbox).
  Status RecordIncidents(std::vector<Incident>* incidents, UnixMicros now);
  Result<std::vector<Incident>> ListIncidents(const IncidentQuery& query);  // no evidence
  Result<Incident> GetIncident(std::int64_t id);                            // with evidence
  Result<std::vector<ActionRecord>> ActionsForIncident(std::int64_t id);
  Status AcknowledgeIncident(std::int64_t id, std::string_view note);
  Status ResolveIncident(std::int64_t id, std::string_view note);
  // Deletes resolved incidents (and their evidence and actions) last seen before cutoff.
  Result<std::int64_t> PruneResolved(UnixMicros cutoff);

  // --- outbox ----------------------------------------------------------------------------------
  Result<std::int64_t> EnqueueAction(std::int64_t incident_id, const ActionRequest& request,
                                     bool revert, UnixMicros now);
  // Pending actions whose next_attempt_at <= now, oldest first.
  Result<std::vector<ActionRecord>> DueActions(UnixMicros now, int limit);
  Status MarkActionDone(std::int64_t id, UnixMicros now);
  Status MarkActionRetry(std::int64_t id, std::string_view error, UnixMicros next_attempt,
                         UnixMicros now);
  Status MarkActionFinal(std::int64_t id, ActionStatus status, std::string_view error,
                         UnixMicros now);
  Result<OutboxStats> GetOutboxStats();

  // --- bans and suspensions --------------------------------------------------------------------
  Status UpsertBan(const BanRecord& ban);
  Status RemoveBan(std::string_view prefix);
  Result<std::vector<BanRecord>> ActiveBans(UnixMicros now);
  Status UpsertSuspension(const SuspensionRecord& s);
  Status RemoveSuspension(std::string_view user, std::string_view kind);
  Result<std::vector<SuspensionRecord>> ActiveSuspensions();

  // --- learned baselines (the `novel` trigger) -------------------------------------------------
  Status SaveBaselines(std::string_view playbook, const std::vector<BaselineEntry>& entries);
  Result<std::vector<BaselineEntry>> LoadBaselines(std::string_view playbook,
                                                   UnixMicros newer_than);
  Result<std::int64_t> PruneBaselines(UnixMicros older_than);

  // --- hourly event counts (for `mxward stats`) ------------------------------------------------
  Status AddEventCounts(UnixMicros hour, const std::vector<std::pair<std::string, std::int64_t>>&
                                             counts_by_type);
  Result<std::vector<std::pair<std::string, std::int64_t>>> EventCountsSince(UnixMicros since);

  // Runs fn inside BEGIN IMMEDIATE ... COMMIT; rolls back when fn returns an error.
  template <typename Fn>
  Status InTransaction(Fn&& fn) {
    MXWARD_RETURN_IF_ERROR(Begin());
    Status s = fn();
    if (!s.ok()) {
      Rollback();
      return s;
    }
    return Commit();
  }

  sqlite3* db() { return db_; }  // for tests and migrations

 private:
  IncidentStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Status Begin();
  Status Commit();
  void Rollback();

  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace mxward
