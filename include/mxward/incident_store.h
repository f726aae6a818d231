// IncidentStore: the SQLite file that holds incidents, their evidence and actions, the action
// outbox, active bans, account suspensions, learned baselines and hourly event counts.
//
// One IncidentStore is one SQLite connection: use it from one thread at a time. The daemon's store
// writer, the action dispatcher and the CLI each open their own; WAL mode lets readers run while
// the daemon writes. The schema is versioned; Open() applies migrations and refuses a file written
// by a newer mxward. Every multi-row change is one transaction, so a crash leaves a consistent
// file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxward/baseline.h"
#include "mxward/event.h"
#include "mxward/incident.h"
#include "mxward/status.h"
#include "mxward/time.h"

struct sqlite3;
struct sqlite3_stmt;

namespace mxward {

class WalCheckpointer;

struct StoreOptions {
  bool read_only = false;
  int busy_timeout_ms = 5000;
};

struct IncidentQuery {
  std::optional<IncidentStatus> status;
  std::string playbook;  // exact name, empty for all
  std::string key;       // exact key, empty for all
  UnixMicros since = 0;  // last_seen >= since
  int limit = 100;
};

struct BanRecord {
  std::string prefix;  // canonical text from IpPrefix::ToString()
  UnixMicros created_at = 0;
  UnixMicros until = 0;  // 0 = permanent
  std::int64_t incident_id = 0;
  std::string reason;
  // The ports the ban covers: "mail" (the default, and every ban of an mxward before port
  // scopes), "web", "all", another [nftables] port group, or a sorted port list "80,443,8080"
  // (nftables_blocker.h, BanScope). One ban per (prefix, ports).
  std::string ports = "mail";
  // A ban received from another cluster node (schema v11): the decision's uuid, the node that
  // decided it and its playbook. Empty for this node's own bans.
  std::string decision_uuid{};
  std::string origin_node{};
  std::string playbook{};
};

// One runtime allowlist entry (`mxward allow add`), current or (for `allow list --all`) past.
struct AllowRecord {
  std::int64_t id = 0;
  std::string prefix;  // canonical text from IpPrefix::ToString()
  UnixMicros created_at = 0;
  UnixMicros expires_at = 0;  // 0 = permanent
  std::string note;
  std::string created_by;     // user name (or uid) from the peer's credentials
  UnixMicros removed_at = 0;  // 0 = not removed
  std::string removed_by;
};

struct SuspensionRecord {
  std::string user;
  std::string kind;  // suspend_sending | suspend | require_password_change
  nlohmann::json previous = nlohmann::json::object();  // the values we overwrote, to restore
  UnixMicros created_at = 0;
  UnixMicros until = 0;  // 0 = until restored by hand
  std::int64_t incident_id = 0;
  std::int64_t revert_action_id = 0;  // the revert queued when `until` passed; 0: not yet
};

// A note an admin left on an incident (incidents ack --note, resolve).
struct IncidentNote {
  UnixMicros time = 0;
  std::string kind;  // "ack" | "resolve" | "note"
  std::string text;
};

// A name with a number, for `mxward stats` (incidents per playbook, top offenders).
struct NamedCount {
  std::string name;
  std::int64_t count = 0;
};

// What one claimer asks of the outbox (IncidentStore::ClaimDueActions).
struct ClaimRequest {
  UnixMicros now = 0;
  UnixMicros lease_until = 0;  // a claimed action is invisible to other claimers until then
  int limit = 64;
  std::vector<std::string> skip_types;  // types whose worker queue is full
  std::vector<std::int64_t> skip_ids;   // ids the claimer already holds or handled
  // ActionSubjectKey -> id of the action of that subject waiting for its retry: later actions of
  // the subject are not candidates (order within a subject). A head that is no longer pending
  // holds nothing back and is reported in ClaimOutcome::stale_heads.
  std::map<std::string, std::int64_t> blocked_subjects;
  // Recorded as claimed_by on each claimed row: lets a later dispatcher tell a claim whose owner
  // died (hand it back now) from one a live dispatcher holds (leave it). 0: no owner.
  std::int64_t owner = 0;
};

// The claimer's verdict on one candidate, made inside the claim transaction.
struct ClaimVerdict {
  enum class Kind {
    kClaim,        // take it
    kSkipSubject,  // leave it and every later candidate of its subject pending (queue full)
    kSettle,       // never runs: record `status` (refused, failed) with `note`, now
    kDefer,        // not yet: stays pending, due at `not_before`, `note` as its last error; its
                   // subject's later candidates stay behind it
  };
  Kind kind = Kind::kClaim;
  ActionStatus status = ActionStatus::kFailed;
  std::string note;
  UnixMicros not_before = 0;  // kDefer
};

struct ClaimOutcome {
  std::vector<ActionRecord> claimed;      // oldest first
  std::vector<std::int64_t> stale_heads;  // ids from blocked_subjects no longer pending
};

// What orders actions: the type and the subject (the first string of the parameters target,
// address, user, to). Actions with one key run in id order. ClaimDueActions computes the same key
// in SQL.
std::string ActionSubjectKey(const ActionRecord& action);

// A decision of another cluster node, to be queued here (IncidentStore::QueueClusterDecisions).
struct ClusterDecision {
  std::string uuid;       // the decision log's uuid: queued at most once per store
  std::int64_t seq = 0;   // its sequence number in the decision log
  ActionRequest request;  // a "ban" (revert = false) or its removal (revert = true)
  bool revert = false;
};

// A decision of another cluster node applied in bulk (IncidentStore::ApplyClusterBatch): a ban
// (or an extension) or a ban removal, already checked by the link.
struct ReceivedDecision {
  std::string uuid;  // the decision log's uuid: applied at most once per store
  std::int64_t seq = 0;
  std::string node;      // the deciding node
  std::string playbook;  // may be empty (a ban by hand)
  bool remove = false;
  std::string prefix;  // canonical IpPrefix text
  // The canonical scope (ResolveBanScope); for a removal "*" lifts every scope of the prefix.
  std::string ports = "mail";
  UnixMicros until = 0;  // a ban's end, 0 = permanent
  std::string reason;    // the bans row's reason ("cluster: a postfix-sasl")
  // Not applied: why (allowlisted, a port group this node does not define). Recorded in the
  // batch's action, and its uuid remembered like an applied one.
  std::string refusal;
  // Whether a `bans` row of (prefix, ports) was there before: ApplyClusterBatch sets it on its
  // copy (NetClusterOps: a ban that was not is a new kernel element, added without a refresh).
  bool was_banned = true;
};

// One kernel change of a batch (cluster_batch_ops), in the order the executor applies them.
struct ClusterBatchOp {
  bool remove = false;
  std::string prefix;
  std::string ports;  // a canonical scope, or "*" for a removal of every scope
  UnixMicros until = 0;
  bool refresh = true;  // a ban that may be in the kernel already (NftBan::refresh)
};

// The kernel changes with the same end state as applying `decisions` (refused ones left out)
// one after the other, as every removal followed by the bans no later removal undid: what one
// nftables removal and one add can do for a whole batch. A ban after a removal of its prefix
// stays a ban; a removal after a ban stays a removal; of two bans of one (prefix, scope) the
// later one's end holds (an extension).
std::vector<ClusterBatchOp> NetClusterOps(const std::vector<ReceivedDecision>& decisions);

// What ApplyClusterBatch did: the batch's action (0 when nothing was new) and its counts.
struct ClusterBatchOutcome {
  std::int64_t action_id = 0;
  std::int64_t bans = 0;      // bans and extensions applied to the bans table
  std::int64_t removals = 0;  // removals applied
  std::int64_t refused = 0;
  std::int64_t repeated = 0;  // uuids applied before (a batch read again after a crash)
};

// Ban actions of this node that the decision log does not have yet (UnpublishedBanActions).
struct UnpublishedBans {
  std::vector<ActionRecord> actions;  // done, not from the cluster, not yet published; by id
  std::int64_t floor = 0;             // the publish floor to save once these are published
};

// An incident changed since the cluster link published it (IncidentStore::ChangedIncidents).
struct IncidentChange {
  std::int64_t incident_id = 0;
  std::int64_t version = 0;  // moves at every change
};
struct IncidentChanges {
  std::vector<IncidentChange> changes;
  std::int64_t total = 0;  // marked in all (more than changes.size() when limited)
};

// What makes two replayed incidents the same one: playbook, key kind, key, and the first evidence
// line (its time and an FNV-1a hash of its text; first_seen when it has none). Replaying the same
// lines again opens an incident with the same identity.
std::string ReplayIdentity(const Incident& incident);

// What `mxward actions list` asks of the outbox (IncidentStore::ListActions).
struct ActionQuery {
  std::optional<std::int64_t> incident_id;  // 0: actions queued by hand
  std::optional<ActionStatus> status;
  int limit = 100;  // newest first
};

struct OutboxStats {
  std::int64_t pending = 0;
  UnixMicros oldest_created_at = 0;  // 0 when empty
};

class IncidentStore {
 public:
  static constexpr int kSchemaVersion = 11;
  // Evidence kept per incident: the first and the last kMaxEvidence / 2 lines.
  static constexpr std::size_t kMaxEvidence = 50;
  // Evidence lines a repeated trigger appends to the open incident it updates (its last ones).
  static constexpr std::size_t kRepeatEvidence = 5;
  // Baselines kept per playbook; SaveBaselines drops the least recently seen beyond this.
  static constexpr std::int64_t kMaxBaselinesPerPlaybook = 200'000;

  // Read-write (the default) fails with PermissionDenied when this user can only read the file,
  // rather than returning a connection that can never write.
  static Result<std::unique_ptr<IncidentStore>> Open(const std::string& path,
                                                     const StoreOptions& options = {});
  ~IncidentStore();
  IncidentStore(const IncidentStore&) = delete;
  IncidentStore& operator=(const IncidentStore&) = delete;

  const std::string& path() const { return path_; }

  // --- incidents -------------------------------------------------------------------------------
  // Writes the incidents, their evidence and actions in one transaction and assigns ids.
  // Actions with dry_run become ActionStatus::kDryRun; the others are pending (in the outbox).
  // A replayed incident (IncidentOrigin::kReplay) already in the store, by ReplayIdentity, is
  // not written again: it keeps the id it has (and its actions are not queued twice).
  // A live incident whose playbook and key (and key kind) have an incident that is not resolved
  // and whose open_until is after this one's last_seen is a repeat: it updates that incident
  // (triggers + 1, count added, last_seen, up to kRepeatEvidence of its last evidence lines
  // appended, the evidence kept at kMaxEvidence by dropping lines from its middle), takes its
  // id, is marked `merged`, and its actions are not queued: the ban of the open incident is still
  // in force. Resolving the incident lets the next trigger open a new one with its actions, and
  // an open incident whose actions were all dry-run never absorbs a trigger whose actions run.
  Status RecordIncidents(std::vector<Incident>* incidents, UnixMicros now);
  Result<std::vector<Incident>> ListIncidents(const IncidentQuery& query);  // no evidence
  // Live incidents not resolved whose life (Incident::open_until) has not ended at `now`: those a
  // new trigger of their playbook and key would update (RecordIncidents). Oldest first, no
  // evidence. For the engine's start (PlaybookEngine::ImportOpenIncidents).
  Result<std::vector<Incident>> IncidentsInTheirLife(UnixMicros now, int limit);
  Result<Incident> GetIncident(std::int64_t id);  // with evidence
  // The playbook of an incident (the dispatcher's safety valve counts per playbook); NotFound.
  Result<std::string> IncidentPlaybook(std::int64_t id);
  Result<std::vector<ActionRecord>> ActionsForIncident(std::int64_t id);
  Status AcknowledgeIncident(std::int64_t id, std::string_view note);
  Status ResolveIncident(std::int64_t id, std::string_view note);
  Result<std::vector<IncidentNote>> NotesForIncident(std::int64_t id);
  // Deletes resolved incidents (and their evidence and actions) last seen before cutoff.
  Result<std::int64_t> PruneResolved(UnixMicros cutoff);

  // --- outbox ----------------------------------------------------------------------------------
  Result<std::int64_t> EnqueueAction(std::int64_t incident_id, const ActionRequest& request,
                                     bool revert, UnixMicros now);
  // Pending actions whose next_attempt_at <= now, oldest first.
  Result<std::vector<ActionRecord>> DueActions(UnixMicros now, int limit);
  Status MarkActionDone(std::int64_t id, UnixMicros now);
  // MarkActionDone for each id, in one transaction (all or none): the dispatcher's record of a
  // batch the nftables executor applied together.
  Status MarkActionsDone(const std::vector<std::int64_t>& ids, UnixMicros now);
  Status MarkActionRetry(std::int64_t id, std::string_view error, UnixMicros next_attempt,
                         UnixMicros now);
  Status MarkActionFinal(std::int64_t id, ActionStatus status, std::string_view error,
                         UnixMicros now);
  Result<OutboxStats> GetOutboxStats();
  // The claim protocol of the action dispatcher, one BEGIN IMMEDIATE transaction: picks up to
  // request.limit due, pending, unclaimed actions (oldest first, without skipped types and ids,
  // without subjects blocked behind a retry), asks `decide` about each and moves next_attempt_at
  // of those it claims to lease_until, so no other claimer (another thread, the CLI's
  // RunDueOnce, another process) can take them; a row another claimer took in between is left
  // out. `decide` runs inside the transaction and must not use this store.
  Result<ClaimOutcome> ClaimDueActions(
      const ClaimRequest& request, const std::function<ClaimVerdict(const ActionRecord&)>& decide);
  // Hands claimed actions that never ran back to the outbox, due at `now`.
  Status ReleaseActions(const std::vector<std::int64_t>& ids, UnixMicros now);
  // Owner tokens (non-zero) holding unexpired claims on pending actions at `now`.
  Result<std::vector<std::int64_t>> ClaimOwners(UnixMicros now);
  // Hands back, due at `now`, every pending action claimed by `owner` (a dispatcher that died).
  // Returns how many.
  Result<std::int64_t> ReleaseClaimsOf(std::int64_t owner, UnixMicros now);

  // --- bans and suspensions --------------------------------------------------------------------
  Status UpsertBan(const BanRecord& ban);
  // Removes the prefix's ban of every scope (ports empty) or of that scope only.
  Status RemoveBan(std::string_view prefix, std::string_view ports = {});
  Result<std::vector<BanRecord>> ActiveBans(UnixMicros now);
  Result<std::int64_t> CountActiveBans(UnixMicros now);

  // --- runtime allowlist (`mxward allow`) -------------------------------------------------------
  // Adds the entry (prefix must be canonical IpPrefix text); an entry for the same prefix still
  // on the list is replaced (its row is marked removed by the same user). Returns the row id.
  Result<std::int64_t> AddAllow(const AllowRecord& entry);
  // Marks the prefix's current entry removed at `now`. NotFound when none is in force (never
  // added, removed already, or expired by now).
  Status RemoveAllow(std::string_view prefix, UnixMicros now, std::string_view removed_by);
  // Entries in force at `now` (not removed, not expired), by prefix; with `all`, every row,
  // newest first.
  Result<std::vector<AllowRecord>> ListAllow(UnixMicros now, bool all = false);
  Status UpsertSuspension(const SuspensionRecord& s);
  Status RemoveSuspension(std::string_view user, std::string_view kind);
  Result<std::vector<SuspensionRecord>> ActiveSuspensions();
  // For every suspension whose `until` (non-zero) is <= now and that has no revert queued yet:
  // queues one revert action (type = the suspension's kind, params {user, "expired": true}) and
  // records its id on the suspension, in one transaction, so the expiry is queued exactly once
  // whoever calls this and however often (also across restarts). Returns the new action ids.
  Result<std::vector<std::int64_t>> QueueExpiredSuspensionReverts(UnixMicros now);

  // --- learned baselines (the `novel` trigger) -------------------------------------------------
  Status SaveBaselines(std::string_view playbook, const std::vector<BaselineEntry>& entries);
  Result<std::vector<BaselineEntry>> LoadBaselines(std::string_view playbook,
                                                   UnixMicros newer_than);
  Result<std::int64_t> PruneBaselines(UnixMicros older_than);
  // The entries one key holds in a playbook's baseline, by value (`mxward accounts baseline`).
  Result<std::vector<BaselineEntry>> BaselineOfKey(std::string_view playbook, std::string_view key);
  // When a playbook's baseline started learning: the earliest use it holds (first_seen, or
  // last_seen where that is unknown); 0 when it holds nothing.
  Result<UnixMicros> BaselineLearningSince(std::string_view playbook);

  // --- hourly event counts (for `mxward stats`) ------------------------------------------------
  Status AddEventCounts(UnixMicros hour,
                        const std::vector<std::pair<std::string, std::int64_t>>& counts_by_type);
  Result<std::vector<std::pair<std::string, std::int64_t>>> EventCountsSince(UnixMicros since);

  // --- input positions (journal cursors, by input name) ---------------------------------------
  Status SaveInputCursor(std::string_view input, std::string_view cursor, UnixMicros now);
  // nullopt when the input has none yet (a first run).
  Result<std::optional<std::string>> LoadInputCursor(std::string_view input);

  // --- the cluster link (engine/cluster/) ----------------------------------------------------
  // A named integer of the link ("cursor", "publish_floor"); nullopt when never saved.
  Result<std::optional<std::int64_t>> LoadClusterValue(std::string_view name);
  Status SaveClusterValue(std::string_view name, std::int64_t value);
  // The highest action id in the store (0 when none): the publish floor of a node that joins a
  // cluster, so its past bans are not published.
  Result<std::int64_t> MaxActionId();
  // Ban actions (and ban removals) with id > floor that ran (status done), were not queued from
  // the cluster (no cluster_uuid parameter) and are not in cluster_published, oldest first, at
  // most limit; and the new floor: below the oldest pending ban action, at most the last action
  // returned when there were more. The floor is computed before the rows are read, so an action
  // that settles in between is above it or among them.
  Result<UnpublishedBans> UnpublishedBanActions(std::int64_t floor, int limit);
  // Records ids as published and saves the floor (forgetting published ids at or below it), in
  // one transaction.
  Status MarkBansPublished(const std::vector<std::int64_t>& ids, std::int64_t floor);
  // Queues the decisions whose uuid this store has not queued before (with cluster_uuid in their
  // parameters) and saves `cursor` as the link's cursor, in one transaction: a crash leaves
  // either both or neither. Returns the ids of the queued actions.
  // Pending actions in the outbox (received decisions and any other), counted from the outbox
  // index: the link reads no more of the log while this is high, so a node catching up keeps its
  // outbox (and each claim) short.
  Result<std::int64_t> CountPendingClusterActions();
  // Forgets the uuids of applied decisions that can never be read again: at or below the link's
  // cursor (rows come in commit order, and the cursor is saved in the transaction that queued
  // them) and applied before `before`. Without it cluster_applied grew by one row per decision
  // of every other node, forever. Returns how many rows went.
  Result<std::int64_t> PruneClusterApplied(UnixMicros before);
  Result<std::vector<std::int64_t>> QueueClusterDecisions(
      const std::vector<ClusterDecision>& decisions, std::int64_t cursor, UnixMicros now);
  // The bulk path (docs/cluster.md "Catching up"), in ONE transaction with the link's cursor:
  // for each decision whose uuid is new here, in log order, its `bans` row (upsert or removal)
  // and its uuid in cluster_applied; then ONE `cluster_batch` outbox action, the batch's record
  // for `mxward actions list` ("1998 bans, 2 removals from nodes a,b, seq 11..2010", refusals
  // listed in its params), pending with its kernel work in cluster_batch_ops (NetClusterOps), or
  // settled `refused` when all it holds is refusals. The nftables executor applies the action
  // (ClusterBatchOps). A crash after this commit and before the kernel has them: the next
  // start's restore from `bans` puts them in the kernel, and the action runs again.
  Result<ClusterBatchOutcome> ApplyClusterBatch(const std::vector<ReceivedDecision>& decisions,
                                                std::int64_t cursor, UnixMicros now);
  // The kernel work of a cluster_batch action, in order, without the bans whose `bans` row is
  // gone (lifted here since the batch was written); ForgetClusterBatchOps drops it once applied.
  Result<std::vector<ClusterBatchOp>> ClusterBatchOps(std::int64_t action_id);
  Status ForgetClusterBatchOps(std::int64_t action_id);
  // Pending cluster_batch actions: the link reads no further ahead of the kernel than a few.
  Result<std::int64_t> CountPendingClusterBatches();
  // Cluster-wide incidents (schema v10): once StartRecordingIncidentChanges ran, every change of
  // a live incident (opened, merged, ack, resolve, an action queued or settled, a note) marks it
  // in cluster_incident_changes, in the change's own transaction. The link reads the marks,
  // publishes those incidents and forgets each mark whose version did not move meanwhile.
  Status StartRecordingIncidentChanges();
  // Up to limit marked incidents, lowest id first, and how many are marked in all.
  Result<IncidentChanges> ChangedIncidents(int limit);
  // Forgets the marks that still have the version read (one changed again stays), one transaction.
  Status ForgetIncidentChanges(const std::vector<IncidentChange>& published);

  // --- summaries (for `mxward stats`), incidents by first_seen >= since ------------------------
  Result<std::vector<NamedCount>> IncidentsPerPlaybook(UnixMicros since);
  // Keys with the most incidents ("client_ip 203.0.113.7"), most first.
  Result<std::vector<NamedCount>> TopOffenders(UnixMicros since, int limit);
  // Incidents per hour (hour start, count), oldest first; hours without incidents are omitted.
  Result<std::vector<std::pair<UnixMicros, std::int64_t>>> IncidentsPerHour(UnixMicros since);
  Result<ActionRecord> GetAction(std::int64_t id);
  // Actions newest first, filtered by query (`mxward actions list`).
  Result<std::vector<ActionRecord>> ListActions(const ActionQuery& query);

  // The random id written into the store when it was created (schema v7): which store this is,
  // whatever path it is reached by. Stable for the life of the file and its copies.
  Result<std::string> StoreId();

  // Runs fn inside BEGIN IMMEDIATE ... COMMIT; rolls back when fn returns an error.
  template <typename Fn>
  Status InTransaction(Fn&& fn) {
    if (depth_ == 0) flat_ = false;
    MXWARD_RETURN_IF_ERROR(Begin());
    Status s = fn();
    if (!s.ok()) {
      Rollback();
      return s;
    }
    return Commit();
  }
  // InTransaction whose nested transactions (the store's own methods called inside fn) are part
  // of it without SAVEPOINTs: a savepoint copies each page it changes into a statement journal
  // (a temporary file), which made the recorder's one transaction per batch cost more than two.
  // Only for an fn that gives up at the first error (the whole transaction is rolled back, so a
  // nested method's partial work never stays).
  template <typename Fn>
  Status InTransactionNoSavepoints(Fn&& fn) {
    if (depth_ == 0) flat_ = true;  // inside another transaction: savepoints as usual
    if (Status b = Begin(); !b.ok()) {
      if (depth_ == 0) flat_ = false;
      return b;
    }
    Status s = fn();
    if (!s.ok()) {
      Rollback();
      return s;
    }
    return Commit();
  }

  sqlite3* db() { return db_; }  // for tests and migrations
  // The thread that checkpoints this store's WAL (engine/store/wal_checkpointer.h), shared by
  // every read-write store of the path; null for a read-only store or when it could not start
  // (then SQLite checkpoints on the committing thread).
  WalCheckpointer* wal_checkpointer() { return checkpointer_.get(); }

 private:
  IncidentStore(std::string path, sqlite3* db);
  // BEGIN IMMEDIATE at the outermost level, SAVEPOINTs inside: methods that write several rows
  // use a transaction of their own and still compose inside InTransaction().
  Status Begin();
  Status Commit();
  void Rollback();
  // The prepared statement for sql (a string literal), prepared once per connection.
  Result<sqlite3_stmt*> Prepare(const char* sql);
  Status Error(std::string_view doing) const;
  Status ChangeIncidentStatus(std::int64_t id, IncidentStatus status, std::string_view kind,
                              std::string_view note);
  // One outbox row and its idempotency key, inside the caller's transaction: the statements of
  // EnqueueAction and of each QueueClusterDecisions row.
  Result<std::int64_t> InsertAction(std::int64_t incident_id, const std::string& type,
                                    const std::string& params, ActionStatus status, bool revert,
                                    UnixMicros now);

  std::string path_;
  // Declared before db_'s users; outlives the connection (the destructor closes db_ first).
  std::shared_ptr<WalCheckpointer> checkpointer_;
  sqlite3* db_ = nullptr;
  int depth_ = 0;
  bool flat_ = false;  // InTransactionNoSavepoints: nested levels take no savepoint
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

}  // namespace mxward
