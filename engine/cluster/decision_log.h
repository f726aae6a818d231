// DecisionLog: this node's connection to the cluster's decision log (docs/cluster.md), the one
// interface the cluster link and the CLI use whichever database holds the log, and the rows that
// cross it. It creates and migrates the log's tables (versioned, under a lock so nodes starting
// together migrate once), publishes decisions with commit-ordered sequence numbers, and reads the
// decisions after a cursor, and holds shared windows and cluster-wide incidents. PostgreSQL
// (postgres_decision_log.h) rings doorbells (LISTEN/NOTIFY); MariaDB (mariadb_decision_log.h) has
// none, so the link polls it every poll_interval for what a doorbell would announce.
//
// Sequence numbers follow commit order: a publishing transaction first increments the one row of
// mxward_decision_counter, whose row lock it then holds until it commits, so a transaction that
// got a higher number committed after every transaction with a lower one, and a reader that sees
// sequence n sees everything below n. (A bigserial or AUTO_INCREMENT would not: its values are
// taken at insert and an earlier value can commit later, so a reader past it would skip it
// forever.)
//
// Every statement has bound parameters; no value is ever spliced into SQL.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/cluster/cluster_incidents.h"
#include "engine/cluster/cluster_options.h"
#include "mxward/status.h"

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

// What a window event says: a counted event, or a reset of the key's window at time_us (the
// playbook's [trigger.reset], e.g. a login success; weight unused).
enum class WindowEventKind : std::uint8_t { kCount, kReset };

// A counted event (or a reset) of a shared playbook (docs/cluster.md, "Shared windows"): typed
// fields, never the log line. The ingest thread fills these in a bounded batch
// (shared_windows.h).
struct WindowEvent {
  std::string playbook;
  std::string key;           // as incidents name it: "203.0.113.7", "alice@example.org"
  std::int64_t time_us = 0;  // event time, µs since the epoch
  std::uint32_t weight = 1;
  WindowEventKind kind = WindowEventKind::kCount;
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

// The decision log as the link and the CLI use it, whichever database holds it. Two engines:
// PostgresDecisionLog (postgres_decision_log.h: LISTEN/NOTIFY doorbells) and MariadbDecisionLog
// (mariadb_decision_log.h: the same tables, polled). Blocking calls; one user thread per object.
class DecisionLog {
 public:
  static constexpr int kSchemaVersion = 6;  // PostgreSQL's; MariaDB has its own
  // Doorbells ConsumeNotifications reports.
  static constexpr int kDecisionsRang = 1;
  static constexpr int kWindowsRang = 2;
  static constexpr int kRequestsRang = 4;

  virtual ~DecisionLog() = default;

  // Connects, creates or migrates the tables (refusing a log written by a newer mxward) and,
  // with doorbells, listens. Unavailable when the server cannot be reached.
  virtual Status Connect() = 0;
  virtual void Disconnect() = 0;
  virtual bool connected() const = 0;
  // Whether the engine rings doorbells: without them the link reads every poll_interval.
  virtual bool has_doorbells() const = 0;
  // The connection's socket, for poll(); -1 when not connected or without doorbells.
  virtual int socket() const = 0;
  // Reads what arrived on the socket: which doorbells rang (kDecisionsRang | kWindowsRang |
  // kRequestsRang, 0 for none; a request doorbell counts only when it names this node). An error
  // (the connection is lost) disconnects. Always 0 without doorbells.
  virtual Result<int> ConsumeNotifications() = 0;
  // Writes the decisions in one transaction (and rings). Returns the last sequence number
  // taken. Transient errors disconnect (the caller reconnects and publishes again; the
  // (node, origin_action_id) key keeps a second publication to one row).
  virtual Result<std::int64_t> Publish(const std::vector<DecisionToPublish>& decisions) = 0;
  // Up to limit rows with seq > cursor, in sequence order, with their remaining lifetime.
  virtual Result<std::vector<DecisionRow>> ReadAfter(std::int64_t cursor, int limit) = 0;
  // This node's row of the node table: its role and cursor, last seen now (and, when
  // `connected`, up since now).
  virtual Status Heartbeat(std::int64_t cursor, std::string_view role, bool connected) = 0;
  virtual Result<ClusterView> ReadView() = 0;
  // Deletes the rows no node needs any more (docs/cluster.md, "Pruning"): bans that expired,
  // and bans lifted by a removal, more than keep_s ago; then removals with no earlier ban of
  // their scope left. Only rows every node seen within keep_s has read (its heartbeat's cursor)
  // are touched; one node prunes at a time (the others skip). The number of rows deleted.
  virtual Result<std::int64_t> Prune(std::int64_t keep_s) = 0;

  // --- shared windows (PostgreSQL schema v4, MariaDB v2; resets: v6, v3) -----------------------
  // Writes events[0, n) with ids from a commit-ordered counter (a reader past id i has seen
  // every row below it). Events whose key is not text the database can hold are left out, so
  // one such key cannot fail the batch. How many were written.
  virtual Result<std::int64_t> PublishWindowEvents(const std::vector<WindowEvent>& events,
                                                   std::size_t n) = 0;
  // Up to limit rows of other nodes with id > cursor written within the last max_age_s seconds
  // (older ones cannot be in any window), in id order. include_own: this node's rows too (the
  // read at start, which gives a restarted node back its own share of the windows).
  virtual Result<std::vector<RemoteWindowEvent>> ReadWindowEventsAfter(std::int64_t cursor,
                                                                       std::int64_t max_age_s,
                                                                       int limit,
                                                                       bool include_own) = 0;
  // Claims (playbook, key) for lease_s seconds on the database's clock: one row per pair, taken
  // over only once the holder's lease ended, so of the nodes whose windows reach the threshold
  // for the same attack exactly one wins. InvalidArgument, without asking, for a key the
  // database cannot hold.
  virtual Result<WindowClaim> ClaimWindow(std::string_view playbook, std::string_view key,
                                          std::int64_t lease_s) = 0;
  // Deletes window events written more than keep_s ago and claims that ended more than keep_s
  // ago. The number of rows deleted.
  virtual Result<std::int64_t> PruneWindowEvents(std::int64_t keep_s) = 0;

  // --- cluster-wide incidents (PostgreSQL v5, MariaDB v2; cluster_incidents.h) ----------------
  // Writes this node's incidents (their current state, evidence, actions and notes) in one
  // transaction: a row per (node, id in its store), replaced at each publication.
  virtual Status PublishIncidents(const std::vector<SharedIncident>& incidents) = 0;
  // Every node's incidents matching the query, last seen first, without evidence and notes.
  virtual Result<std::vector<SharedIncident>> ListIncidents(const SharedIncidentQuery& query) = 0;
  // One incident with its evidence and notes; NotFound when the node never published it.
  virtual Result<SharedIncident> GetIncident(std::string_view node, std::int64_t id) = 0;
  // Writes a request for the owner (request.node) and rings its doorbell (without doorbells the
  // owner finds it at its next poll); the request's id.
  virtual Result<std::int64_t> RequestIncidentChange(const IncidentRequest& request) = 0;
  // Requests for this node's incidents not done yet, oldest first.
  virtual Result<std::vector<IncidentRequest>> PendingIncidentRequests(int limit) = 0;
  // Records what this node made of a request.
  virtual Status FinishIncidentRequest(std::int64_t id, const IncidentRequestOutcome& outcome) = 0;
  // A request as it stands now (done, ok, outcome once its owner applied it); NotFound.
  virtual Result<IncidentRequest> ReadIncidentRequest(std::int64_t id) = 0;
  // Deletes resolved incidents not published again for keep_s, and requests done keep_s ago.
  virtual Result<std::int64_t> PruneIncidents(std::int64_t keep_s) = 0;
};

// The decision log of options.engine (not connected yet).
std::unique_ptr<DecisionLog> MakeDecisionLog(const ClusterOptions& options);

}  // namespace mxward
