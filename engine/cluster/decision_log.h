// DecisionLog: this node's connection to the cluster's decision log in PostgreSQL
// (docs/cluster.md). It creates and migrates the log's tables (versioned, under an advisory lock
// so nodes starting together migrate once), publishes decisions with commit-ordered sequence
// numbers, reads the decisions after a cursor, and LISTENs for the doorbell NOTIFY that carries
// only the newest sequence number.
//
// Sequence numbers follow commit order: a publishing transaction first increments the one row of
// mxward_decision_counter, whose row lock it then holds until it commits, so a transaction that
// got a higher number committed after every transaction with a lower one, and a reader that sees
// sequence n sees everything below n. (A bigserial would not: its values are taken at insert and
// an earlier value can commit later, so a reader past it would skip it forever.)
//
// The same connection holds the cluster's other tables: shared windows' events and claims
// (schema v4), and cluster-wide incidents with the requests other nodes make of an incident's
// owner (schema v5, cluster_incidents.h); the CLI opens one for `incidents list --cluster` and
// NODE:ID references.
//
// Every statement is text with bound parameters ($1...); no value is ever spliced into SQL.
// Blocking libpq calls: the ClusterLink's own thread owns one DecisionLog and is its only user.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/cluster/cluster_incidents.h"
#include "mxward/status.h"

typedef struct pg_conn PGconn;

namespace mxward {

// A decision of this node to write to the log.
struct DecisionToPublish {
  // "ban" (written as "extension" when a ban of the scope is in force), "unban", or a runtime
  // allowlist entry added ("allow") or removed ("unallow", `mxward allow add|remove`).
  std::string kind = "ban";
  std::string scope;  // canonical address or prefix (IpPrefix::ToString())
  std::string ports = "mail";
  std::int64_t duration_s = -1;  // > 0: expires that long after the database's now(); 0:
                                 // permanent; -1: each node's [nftables] default_duration
  std::string playbook;
  std::int64_t incident_id = 0;
  // With the node, unique: publishing twice writes one row. An action's id for bans; for the
  // allowlist, -(2 * row id) for an entry added, -(2 * row id + 1) for its removal.
  std::int64_t origin_action_id = 0;
  std::string note;  // allow: the entry's note
};

// A row of the log, as a node reads it.
struct DecisionRow {
  std::int64_t seq = 0;
  std::string uuid;
  std::string kind;  // ban | unban | extension | allow | unallow
  std::string scope;
  std::string ports;
  bool has_expiry = false;  // false: permanent or the node's default duration
  bool permanent = false;
  std::int64_t remaining_s = 0;  // with has_expiry: seconds left on the database's clock (>= 0)
  std::string playbook;
  std::string node;
  std::int64_t incident_id = 0;
  std::string note;
};

// A counted event of a shared playbook (docs/cluster.md, "Shared windows"): typed fields, never
// the log line. The ingest thread fills these in a bounded batch (shared_windows.h).
struct WindowEvent {
  std::string playbook;
  std::string key;           // as incidents name it: "203.0.113.7", "alice@example.org"
  std::int64_t time_us = 0;  // event time, µs since the epoch
  std::uint32_t weight = 1;
};

// Another node's window event as read from the log.
struct RemoteWindowEvent {
  std::int64_t id = 0;
  std::string node;
  WindowEvent event;
};

// The outcome of a claim on (playbook, key): won (this node opens the incident) or held by
// `holder`, which claimed it first and whose claim has not ended.
struct WindowClaim {
  bool won = false;
  std::string holder;
};

// A node as the log's node table has it (its last heartbeat).
struct ClusterNodeRow {
  std::string node;
  std::string role;
  std::int64_t cursor = 0;      // the last sequence number it had queued at its last heartbeat
  std::int64_t seen_ago_s = 0;  // since its last heartbeat, on the database's clock
  std::int64_t up_s = 0;        // since it last connected
};

// What the log holds, for `mxward status`.
struct ClusterView {
  std::int64_t head = 0;  // the last sequence number taken
  std::int64_t rows = 0;  // rows in the log
  std::vector<ClusterNodeRow> nodes;
};

// Whether s can be a PostgreSQL text value in a UTF-8 database: valid UTF-8 without NUL. Keys
// come from log lines (a SASL user name is what the client typed), and one that is not would make
// the server refuse the whole statement.
bool FitsPostgresText(std::string_view s);

class DecisionLog {
 public:
  static constexpr int kSchemaVersion = 5;
  static constexpr const char* kChannel = "mxward_decisions";
  static constexpr const char* kWindowChannel = "mxward_window_events";
  // Rung with the owner's node name when a request for one of its incidents is written.
  static constexpr const char* kRequestChannel = "mxward_incident_requests";

  // conninfo: a libpq connection string or URI; password: "" to let libpq find none or its own.
  DecisionLog(std::string conninfo, std::string password, std::string node);
  ~DecisionLog();
  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;

  // Connects, creates or migrates the tables (refusing a log written by a newer mxward) and
  // LISTENs. Unavailable when the server cannot be reached.
  Status Connect();
  void Disconnect();
  bool connected() const { return conn_ != nullptr; }
  // The connection's socket, for poll(); -1 when not connected.
  int socket() const;
  // Reads what arrived on the socket: which doorbells rang (kDecisionsRang | kWindowsRang |
  // kRequestsRang, 0 for none; a request doorbell counts only when it names this node). An error
  // (the connection is lost) disconnects.
  static constexpr int kDecisionsRang = 1;
  static constexpr int kWindowsRang = 2;
  static constexpr int kRequestsRang = 4;
  Result<int> ConsumeNotifications();
  // Writes the decisions in one transaction, notifies, commits. Returns the last sequence
  // number taken. Transient errors disconnect (the caller reconnects and publishes again; the
  // (node, origin_action_id) key keeps a second publication to one row).
  Result<std::int64_t> Publish(const std::vector<DecisionToPublish>& decisions);
  // Up to limit rows with seq > cursor, in sequence order, with their remaining lifetime.
  Result<std::vector<DecisionRow>> ReadAfter(std::int64_t cursor, int limit);
  // This node's row of the node table: its role and cursor, last seen now (and, when
  // `connected`, up since now).
  Status Heartbeat(std::int64_t cursor, std::string_view role, bool connected);
  Result<ClusterView> ReadView();
  // Deletes the rows no node needs any more (docs/cluster.md, "Pruning"): bans that expired,
  // and bans lifted by a removal, more than keep_s ago; then removals with no earlier ban of
  // their scope left. Only rows every node seen within keep_s has read (its heartbeat's cursor)
  // are touched; one node prunes at a time (an advisory lock; the others skip). The number of
  // rows deleted.
  Result<std::int64_t> Prune(std::int64_t keep_s);

  // --- shared windows (schema v4) -----------------------------------------------------------
  // Writes events[0, n) in one INSERT statement with ids from a commit-ordered counter (as the
  // decision log's: a reader past id i has seen every row below it) and rings the
  // mxward_window_events doorbell. Events whose key is not text PostgreSQL can hold
  // (FitsPostgresText) are left out, so one such key cannot fail the batch. How many were
  // written.
  Result<std::int64_t> PublishWindowEvents(const std::vector<WindowEvent>& events, std::size_t n);
  // Up to limit rows of other nodes with id > cursor written within the last max_age_s seconds
  // (older ones cannot be in any window), in id order.
  Result<std::vector<RemoteWindowEvent>> ReadWindowEventsAfter(std::int64_t cursor,
                                                               std::int64_t max_age_s, int limit);
  // InvalidArgument, without asking, for a key FitsPostgresText refuses.
  // Claims (playbook, key) for lease_s seconds on the database's clock: one row per pair, taken
  // over only once the holder's lease ended, so of the nodes whose windows reach the threshold
  // for the same attack exactly one wins.
  Result<WindowClaim> ClaimWindow(std::string_view playbook, std::string_view key,
                                  std::int64_t lease_s);
  // Deletes window events written more than keep_s ago and claims that ended more than keep_s
  // ago. The number of rows deleted.
  Result<std::int64_t> PruneWindowEvents(std::int64_t keep_s);

  // --- cluster-wide incidents (schema v5, cluster_incidents.h) -------------------------------
  // Writes this node's incidents (their current state, evidence, actions and notes) in one
  // transaction: a row per (node, id in its store), replaced at each publication.
  Status PublishIncidents(const std::vector<SharedIncident>& incidents);
  // Every node's incidents matching the query, last seen first, without evidence and notes.
  Result<std::vector<SharedIncident>> ListIncidents(const SharedIncidentQuery& query);
  // One incident with its evidence and notes; NotFound when the node never published it.
  Result<SharedIncident> GetIncident(std::string_view node, std::int64_t id);
  // Writes a request for the owner (request.node) and rings its doorbell; the request's id.
  Result<std::int64_t> RequestIncidentChange(const IncidentRequest& request);
  // Requests for this node's incidents not done yet, oldest first.
  Result<std::vector<IncidentRequest>> PendingIncidentRequests(int limit);
  // Records what this node made of a request.
  Status FinishIncidentRequest(std::int64_t id, const IncidentRequestOutcome& outcome);
  // A request as it stands now (done, ok, outcome once its owner applied it); NotFound.
  Result<IncidentRequest> ReadIncidentRequest(std::int64_t id);
  // Deletes resolved incidents not published again for keep_s, and requests done keep_s ago.
  Result<std::int64_t> PruneIncidents(std::int64_t keep_s);

 private:
  Status Exec(const char* sql);
  Status Migrate();
  // A Status for a failed result; disconnects when the connection is gone.
  Status Fail(const char* doing, void* result);

  std::string conninfo_;
  std::string password_;
  std::string node_;
  PGconn* conn_ = nullptr;
};

}  // namespace mxward
