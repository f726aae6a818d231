// ClusterLink: shares this node's ban decisions with the other mxward nodes of a cluster through
// the decision log (decision_log.h, docs/cluster.md: PostgreSQL, or MariaDB polled), and applies
// theirs here.
//
// Local first. A ban is decided and applied from this node's own outbox as without a cluster; the
// link then finds the ban action done in the store (a durable record: the store is the outbox of
// publication too) and publishes it. With the database down detection and local bans go on;
// publication waits, retried with backoff, and happens once when it is back, also across a
// restart (the store's publish floor and cluster_published say what is in the log already, and
// the log's (node, action) key makes a repeated publication one row).
//
// Applying. One connection LISTENs (an engine without doorbells, MariaDB, is read every
// [cluster] poll_interval instead); on every notification, on every (re)connect and on a slow
// safety tick the link reads every row after its cursor, 2,000 at a time. With the bulk path
// (SetBulkApply: a real nftables kernel here) each read batch becomes, in the store transaction
// that saves the new cursor, the other nodes' `bans` rows, their uuids, and ONE `cluster_batch`
// outbox action that the dispatcher hands to the nftables executor (its lane's thread: nothing
// else calls nft), which applies the batch's removals and bans in one transaction each
// (IncidentStore::ApplyClusterBatch). Without it (no kernel: dry-run; aggregation on) each
// decision is an ordinary ban / ban-removal action. Either way a decision read twice (a crash
// between reading and saving) is applied once: its uuid is remembered.
//
// Runtime allowlist. `mxward allow add|remove` on a node is published as an "allow" / "unallow"
// row (prefix, expiry on the database's clock, note); the other nodes write it to their store's
// allowlist as made by "cluster:<node>" (a name no local user can have: ':' is not allowed in
// user names), which is also how the link knows not to publish it back. An entry replaced by a
// newer one of the same prefix travels as the newer one only.
//
// Heartbeat. The log keeps a row per node (role, cursor, last seen); the link writes it at each
// connect, each safety tick and when its cursor moved (at most every 2 s), reads the log's head
// and the node rows back for `mxward status`, and once an hour prunes what every node seen within
// [cluster] log_retention has read and what ended longer ago than that (DecisionLog::Prune).
//
// Shared windows (EnableSharedWindows, docs/cluster.md "Shared windows"): the link takes the
// engine's batch of counted events of shared playbooks (shared_windows.h) every publish poll and
// writes it in one statement (MariaDB: one transaction); it reads the other nodes' events after
// its window-event cursor on their doorbell (without doorbells: every poll_interval while a
// playbook shares), on (re)connect and on the safety tick, and hands them to the daemon, which
// folds them into the engine on the engine's thread; and it claims (playbook, key) for an
// incident of a shared playbook, so one node in the cluster opens it. With the database down the
// batch is dropped (counted) and a claim is decided alone: detection never waits for it. At a
// clean stop the daemon waits (bounded) until every claim queued so far is settled
// (FlushClaims), so a window that reached its threshold just before the stop opens its incident.
//
// Incidents (docs/cluster.md "Cluster-wide incidents", cluster_incidents.h): the store marks every
// change of a live incident in cluster_incident_changes (triggers, in the change's own
// transaction); the link publishes each marked incident whole (state, evidence, actions' outcomes,
// notes) into mxward_incidents and forgets the marks that did not move meanwhile, so nothing is
// lost while the database is down and a republication replaces one row. Requests of other nodes
// (ack, resolve [--revert]) for this node's incidents arrive on their own doorbell (without
// doorbells they are looked for every poll_interval; with either, at each (re)connect and safety
// tick); the link applies them to this node's store through
// the daemon's handler and records the outcome. A revert queues ban removals here, which are
// published as any local removal: every node lifts the ban.
//
// Threads: the link owns one thread that does all of its blocking work (libpq, its own SQLite
// connection), so the daemon's Asio loop never waits on the database. Start/Stop/Notify are
// called from the daemon's thread; counters() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "engine/cluster/cluster_incidents.h"
#include "engine/cluster/cluster_options.h"
#include "engine/cluster/decision_log.h"
#include "engine/cluster/shared_windows.h"
#include "mxward/incident.h"
#include "mxward/incident_store.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"
#include "mxward/thread_annotations.h"

namespace mxward {

struct ClusterLinkCounters {
  std::atomic<std::int64_t> connected{0};  // 1 while the decision log connection is up
  std::atomic<std::int64_t> connects{0};
  std::atomic<std::int64_t> connect_failures{0};
  std::atomic<std::int64_t> published{0};         // decisions written to the log
  std::atomic<std::int64_t> publish_failures{0};  // publications that failed and wait for a retry
  std::atomic<std::int64_t> notifications{0};
  std::atomic<std::int64_t> rows_read{0};
  std::atomic<std::int64_t> queued{0};       // other nodes' decisions queued into the local outbox
  std::atomic<std::int64_t> refused{0};      // received bans refused here (allowlisted, ...)
  std::atomic<std::int64_t> invalid{0};      // rows skipped: a scope that is not an address/prefix
  std::atomic<std::int64_t> cursor{0};       // the last sequence number whose decisions are queued
  std::atomic<std::int64_t> unpublished{0};  // done local bans waiting for publication
  std::atomic<std::int64_t> pruned{0};       // rows this node pruned from the log
  // Shared windows.
  std::atomic<std::int64_t> window_events_published{0};  // this node's events written
  // Events taken from the batch but not written (database down or the write failed): lost, as
  // each node then decides alone.
  std::atomic<std::int64_t> window_events_unpublished{0};
  std::atomic<std::int64_t> window_events_received{0};  // other nodes' events read
  // This node's own events of before its start, read back at start (not in _received).
  std::atomic<std::int64_t> window_events_read_back{0};
  std::atomic<std::int64_t> window_events_pruned{0};  // events and claims pruned
  std::atomic<std::int64_t> claims_won{0};            // incidents this node opened
  std::atomic<std::int64_t> claims_lost{0};           // held by another node: not opened here
  std::atomic<std::int64_t> claims_alone{0};          // decided without the database: opened here
  // Cluster-wide incidents.
  std::atomic<std::int64_t> incidents_published{0};    // publications of this node's incidents
  std::atomic<std::int64_t> incidents_unpublished{0};  // incidents changed, not published yet
  std::atomic<std::int64_t> incident_requests{0};      // other nodes' ack/resolve applied here
};

// Applies another node's request (ack, resolve [--revert]) to this node's store, as a local
// admin's command would (the daemon's ExecuteControlRequest), and wakes whoever runs what it
// queued. Called on the link's thread with the link's own store connection.
using IncidentRequestHandler =
    std::function<IncidentRequestOutcome(IncidentStore& store, const IncidentRequest& request)>;

// What the daemon gives the link when a playbook shares its windows.
struct SharedWindowHooks {
  WindowEventBatch* batch = nullptr;  // filled by the engine's thread; outlives the link
  // Other nodes' events, in log order (called on the link's thread; the daemon posts them to
  // the engine's thread).
  std::function<void(std::vector<RemoteWindowEvent>)> on_remote;
  // A claimed incident and whether to open it here (the claim won, or the database could not be
  // asked); holder: the node that holds it when not. Called on the link's thread.
  std::function<void(Incident, bool open, const std::string& holder)> on_claimed;
};

// The bulk path's view of this node's firewall (SetBulkApply), given by the daemon. Called on
// the link's thread.
struct BulkApplyHooks {
  // The canonical scope of a decision's `ports` text against this node's [nftables]
  // (ResolveBanScope); an error refuses the decision.
  std::function<Result<std::string>(std::string_view ports)> resolve_scope;
  // Why a ban of this prefix must be refused here (the [allow] addresses and `mxward allow`
  // entries in force at `now`), or nullopt.
  std::function<std::optional<std::string>(const IpPrefix& prefix, UnixMicros now)> refusal;
  // A ban published without an end ("the node's default"): this node's [nftables] default.
  std::int64_t default_duration_s = 3600;
};

class ClusterLink {
 public:
  // on_queued: called on the link's thread after decisions were queued into the outbox (the
  // daemon wakes its dispatcher); on_allow_changed: after other nodes' allowlist entries were
  // written to the store (the daemon compiles its allow set again).
  ClusterLink(ClusterOptions options, std::string store_path, std::function<void()> on_queued,
              std::function<void()> on_allow_changed = {});
  ~ClusterLink();
  ClusterLink(const ClusterLink&) = delete;
  ClusterLink& operator=(const ClusterLink&) = delete;

  // Opens the link's store connection and starts its thread (which connects to the database on
  // its own, retrying: a database that is down does not stop the daemon).
  Status Start();
  // Wakes the thread to look for bans to publish now.
  void Notify();
  // Before Start: apply received decisions in bulk (see the header comment).
  void SetBulkApply(BulkApplyHooks hooks) { bulk_ = std::move(hooks); }
  // Before Start: share windows (see the header comment).
  void EnableSharedWindows(SharedWindowHooks hooks);
  // Before Start: how requests for this node's incidents are applied (without one they wait).
  void SetIncidentRequestHandler(IncidentRequestHandler handler) {
    incident_requests_ = std::move(handler);
  }
  // The longest window of the shared playbooks (rows older than it plus a margin are neither
  // read nor kept). Any thread; a reload sets it again.
  void SetLongestSharedWindow(std::int64_t seconds) { longest_shared_window_s_ = seconds; }
  // An incident of a shared playbook to claim; answered through SharedWindowHooks::on_claimed.
  // Any thread.
  void Claim(Incident incident) EXCLUDES(claims_mu_);
  // At a clean stop, before the recorder stops (docs/cluster.md "Claims at a stop"): waits until
  // every claim queued so far was settled (asked of the database; decided alone when it cannot
  // be asked), so an incident whose window reached the threshold just before the stop is opened
  // by exactly one node, not by none. At most `timeout`: claims the link has not taken by then
  // are taken back and opened here alone (SharedWindowHooks::on_claimed, on this thread, as
  // claims_alone). Returns how many were still in a statement that had not come back (lost).
  std::size_t FlushClaims(std::chrono::milliseconds timeout) EXCLUDES(claims_mu_);
  void Stop();

  const ClusterLinkCounters& counters() const { return counters_; }
  const ClusterOptions& options() const { return options_; }
  // The log and its nodes as the link last read them (at each connect and safety tick, and
  // after its cursor moved); `read` is false until the first read. Any thread.
  struct View {
    bool read = false;
    ClusterView log;
  };
  View view() const EXCLUDES(view_mu_);

 private:
  struct State;
  void Run();

  ClusterOptions options_;
  std::string store_path_;
  std::function<void()> on_queued_;
  std::function<void()> on_allow_changed_;
  ClusterLinkCounters counters_;
  std::unique_ptr<State> state_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable Mutex view_mu_;
  View view_ GUARDED_BY(view_mu_);
  SharedWindowHooks shared_;
  BulkApplyHooks bulk_;  // the bulk path when resolve_scope is set
  IncidentRequestHandler incident_requests_;
  std::atomic<std::int64_t> longest_shared_window_s_{0};
  Mutex claims_mu_;
  std::vector<Incident> claims_ GUARDED_BY(claims_mu_);
  // Claims queued (Claim) and settled (the link's settle_claims, or FlushClaims's own) since the
  // start, for FlushClaims; the link notifies claims_settled_cv_ as it settles.
  std::uint64_t claims_queued_ GUARDED_BY(claims_mu_) = 0;
  std::uint64_t claims_settled_ GUARDED_BY(claims_mu_) = 0;
  std::condition_variable_any claims_settled_cv_;
};

}  // namespace mxward
