#include "engine/store/store_migrations.h"

#include <array>

namespace mxward::store {
namespace {

// Times are UnixMicros (INTEGER). Statuses are the names from incident.h, so `sqlite3 mxward.db`
// is readable without mxward. Child rows carry no FOREIGN KEY: actions may belong to no incident
// (incident_id 0, by hand), and PruneResolved deletes children explicitly in one transaction.
constexpr const char* kV1 = R"sql(
CREATE TABLE incidents (
  id INTEGER PRIMARY KEY,
  playbook TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  severity TEXT NOT NULL,
  mode TEXT NOT NULL,
  key_kind TEXT NOT NULL,
  key TEXT NOT NULL,
  trigger TEXT NOT NULL DEFAULT '',
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  count INTEGER NOT NULL,
  window_seconds INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL DEFAULT 'open',
  evidence_count INTEGER NOT NULL DEFAULT 0,
  action_count INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX incidents_by_last_seen ON incidents(last_seen);
CREATE INDEX incidents_by_first_seen ON incidents(first_seen);
CREATE INDEX incidents_by_key ON incidents(key, last_seen);
CREATE INDEX incidents_by_status ON incidents(status, last_seen);

CREATE TABLE evidence (
  incident_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  time INTEGER NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (incident_id, seq)
) WITHOUT ROWID;

CREATE TABLE notes (
  id INTEGER PRIMARY KEY,
  incident_id INTEGER NOT NULL,
  time INTEGER NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL
);
CREATE INDEX notes_by_incident ON notes(incident_id);

CREATE TABLE actions (
  id INTEGER PRIMARY KEY,
  incident_id INTEGER NOT NULL DEFAULT 0,
  type TEXT NOT NULL,
  params TEXT NOT NULL,
  status TEXT NOT NULL,
  revert INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX actions_by_incident ON actions(incident_id);
CREATE INDEX actions_outbox ON actions(next_attempt_at, id) WHERE status = 'pending';

CREATE TABLE bans (
  prefix TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  until INTEGER NOT NULL DEFAULT 0,
  incident_id INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT ''
);

CREATE TABLE suspensions (
  user TEXT NOT NULL,
  kind TEXT NOT NULL,
  previous TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  until INTEGER NOT NULL DEFAULT 0,
  incident_id INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user, kind)
);

CREATE TABLE baselines (
  playbook TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  last_seen INTEGER NOT NULL,
  PRIMARY KEY (playbook, key, value)
) WITHOUT ROWID;
CREATE INDEX baselines_by_last_seen ON baselines(playbook, last_seen);

CREATE TABLE event_counts (
  hour INTEGER NOT NULL,
  type TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (hour, type)
) WITHOUT ROWID;
)sql";

// v2: crash recovery and timed suspensions.
// actions.claimed_by: the owner token of the dispatcher that claimed a pending action (0: none).
//   A claim whose owner is dead (its lock is free, see action_dispatcher.h) is handed back at
//   once instead of after the lease.
// suspensions.revert_action_id: the revert action queued when `until` passed (0: none yet), so
//   the expiry is queued exactly once, also across restarts.
constexpr const char* kV2 = R"sql(
ALTER TABLE actions ADD COLUMN claimed_by INTEGER NOT NULL DEFAULT 0;
ALTER TABLE suspensions ADD COLUMN revert_action_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX suspensions_by_until ON suspensions(until) WHERE until > 0;
)sql";

// v3: where each journal input is in the journal (journal_follower.h). Written in the transaction
//   that records the incidents of the lines before it (IncidentRecorder::SaveInputCursor), so a
//   restart resumes exactly after what the store already reflects.
constexpr const char* kV3 = R"sql(
CREATE TABLE input_cursors (
  input TEXT PRIMARY KEY,
  cursor TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

// v4: the cluster link (engine/cluster/, docs/cluster.md).
// cluster_state: named integers of the link: "publish_floor" (every ban action at or below it is
//   settled and, if done, published) and "cursor" (the last decision-log sequence number whose
//   decisions are in this outbox).
// cluster_published: ban actions above the floor already in the decision log.
// cluster_applied: the uuid of every decision of another node queued here: a decision read twice
//   is queued once.
constexpr const char* kV4 = R"sql(
CREATE TABLE cluster_state (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE cluster_published (action_id INTEGER PRIMARY KEY);
CREATE TABLE cluster_applied (
  uuid TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  applied_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

// v5: replays that do not pollute live state, and how long a baseline has learned.
// incidents.origin: 'live' or 'replay' (IncidentOrigin). Escalation never counts a replayed one.
// incidents.replay_identity: for a replayed incident, playbook, key and its first evidence line
//   (time and a hash of its text), unique: replaying a file twice records each incident once.
// baselines.first_seen: when the key first used the value (0: unknown, learned before v5), so an
//   account's warm-up survives a restart and `mxward learn` can warm it up from old logs.
constexpr const char* kV5 = R"sql(
ALTER TABLE incidents ADD COLUMN origin TEXT NOT NULL DEFAULT 'live';
ALTER TABLE incidents ADD COLUMN replay_identity TEXT;
CREATE UNIQUE INDEX incidents_by_replay_identity ON incidents(replay_identity)
  WHERE replay_identity IS NOT NULL;
ALTER TABLE baselines ADD COLUMN first_seen INTEGER NOT NULL DEFAULT 0;
)sql";

// v6: a ban's port scope (issue 15): "mail" (what every earlier ban covered), "web", "all", another
//   [nftables] port group, or an explicit port list ("80,443,8080"). One row per (prefix, ports):
//   an address banned for web and for mail holds two bans, each with its own end. SQLite cannot
//   change a primary key in place, so the table is rebuilt; every earlier ban becomes "mail".
constexpr const char* kV6 = R"sql(
CREATE TABLE bans_v4 (
  prefix TEXT NOT NULL,
  ports TEXT NOT NULL DEFAULT 'mail',
  created_at INTEGER NOT NULL,
  until INTEGER NOT NULL DEFAULT 0,
  incident_id INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (prefix, ports)
);
INSERT INTO bans_v4 (prefix, ports, created_at, until, incident_id, reason)
  SELECT prefix, 'mail', created_at, until, incident_id, reason FROM bans;
DROP TABLE bans;
ALTER TABLE bans_v4 RENAME TO bans;
)sql";

// v7: the store's identity (issue 16): a random id written once, when the schema reaches v7, so
//   the daemon can say on its control socket which store it serves and the CLI can refuse to send
//   a change meant for one store to a daemon that serves another (a copy keeps the id: it is the
//   same history).
constexpr const char* kV7 = R"sql(
CREATE TABLE store_identity (
  id TEXT NOT NULL
);
INSERT INTO store_identity (id) VALUES (lower(hex(randomblob(16))));
)sql";

// v8: the runtime allowlist (`mxward allow add|remove|list`, issue 16): addresses and prefixes
//   an admin exempted while the daemon runs. prefix is the canonical text (IpPrefix::ToString),
//   family/first/last its binary range (4 or 16 network-order bytes) for range queries such as
//   "which bans does it cover"; expires_at NULL is permanent; created_by is the user the control
//   socket's peer credentials (or the CLI's own uid, acting directly) named, never a client string.
//   A removed entry keeps its row (removed_at set), so `allow list --all` shows the history; at
//   most one row per prefix is not removed.
constexpr const char* kV8 = R"sql(
CREATE TABLE allowlist (
  id INTEGER PRIMARY KEY,
  prefix TEXT NOT NULL,
  family INTEGER NOT NULL,
  first BLOB NOT NULL,
  last BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  note TEXT NOT NULL DEFAULT '',
  created_by TEXT NOT NULL DEFAULT '',
  removed_at INTEGER,
  removed_by TEXT
);
CREATE UNIQUE INDEX allowlist_current ON allowlist(prefix) WHERE removed_at IS NULL;
)sql";

// v9: repeated triggers update the key's open incident (issue 21, point 3): a flood costs rows per
//   key, not per trigger. triggers: how often the trigger fired for it (1 + repeats absorbed);
//   open_until: the incident's life in event time (its longest action or cooldown), 0 for
//   incidents that never absorb repeats (replayed, opened before v9). The partial index finds the
//   open incident of a key without reading the others.
constexpr const char* kV9 = R"sql(
ALTER TABLE incidents ADD COLUMN triggers INTEGER NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN open_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX incidents_open_by_key ON incidents(key, playbook, open_until) WHERE open_until > 0;
)sql";

// v10: cluster-wide incidents (issue 18, engine/cluster/, docs/cluster.md "Cluster-wide
//   incidents"). cluster_incident_changes: the incidents changed since the cluster link last
//   published them, with a version that moves at every change, so the link forgets an entry only
//   when nothing changed it again while it was being published. Written by triggers, in the
//   transaction of the change itself, so no path that changes an incident (recording, a repeat
//   merged, ack, resolve, an action queued or settled, a note) can be missed and a crash loses
//   nothing: the table is the durable outbox of publication. Only once the link has started
//   (cluster_state 'incidents_shared'): a node that is not in a cluster records nothing. Only
//   live incidents: `mxward replay`'s stay on the node.
constexpr const char* kV10 = R"sql(
CREATE TABLE cluster_incident_changes (
  incident_id INTEGER PRIMARY KEY,
  version INTEGER NOT NULL
);
CREATE TRIGGER cluster_incident_opened AFTER INSERT ON incidents
  WHEN NEW.origin = 'live' AND EXISTS (SELECT 1 FROM cluster_state WHERE name = 'incidents_shared')
BEGIN
  INSERT INTO cluster_incident_changes (incident_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (incident_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER cluster_incident_updated AFTER UPDATE ON incidents
  WHEN NEW.origin = 'live' AND EXISTS (SELECT 1 FROM cluster_state WHERE name = 'incidents_shared')
BEGIN
  INSERT INTO cluster_incident_changes (incident_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (incident_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER cluster_incident_action_queued AFTER INSERT ON actions
  WHEN NEW.incident_id <> 0
   AND EXISTS (SELECT 1 FROM cluster_state WHERE name = 'incidents_shared')
   AND (SELECT origin FROM incidents WHERE id = NEW.incident_id) = 'live'
BEGIN
  INSERT INTO cluster_incident_changes (incident_id, version) VALUES (NEW.incident_id, 1)
    ON CONFLICT (incident_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER cluster_incident_action_settled AFTER UPDATE OF status ON actions
  WHEN NEW.incident_id <> 0 AND NEW.status <> OLD.status
   AND EXISTS (SELECT 1 FROM cluster_state WHERE name = 'incidents_shared')
   AND (SELECT origin FROM incidents WHERE id = NEW.incident_id) = 'live'
BEGIN
  INSERT INTO cluster_incident_changes (incident_id, version) VALUES (NEW.incident_id, 1)
    ON CONFLICT (incident_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER cluster_incident_noted AFTER INSERT ON notes
  WHEN EXISTS (SELECT 1 FROM cluster_state WHERE name = 'incidents_shared')
   AND (SELECT origin FROM incidents WHERE id = NEW.incident_id) = 'live'
BEGIN
  INSERT INTO cluster_incident_changes (incident_id, version) VALUES (NEW.incident_id, 1)
    ON CONFLICT (incident_id) DO UPDATE SET version = version + 1;
END;
)sql";

// v11: received cluster decisions applied in bulk (issue 18, docs/cluster.md "Catching up").
// bans.decision_uuid / origin_node / playbook: a ban received from another node says which
//   decision of which node (and playbook) it is; NULL for this node's own bans.
// cluster_applied.scope / outcome: what a decision applied in bulk was about and what became of
//   it ('ban', 'unban', 'refused'), as its outbox action said before; NULL for those queued one
//   action each.
// cluster_batch_ops: the kernel work of one `cluster_batch` outbox action (the one record of a
//   batch of received decisions), written in the link's transaction with the bans rows and the
//   cursor, in the order to apply: every removal, then every ban that no later removal undid
//   (NetClusterOps). The nftables executor reads them when it runs the action and deletes them
//   once they are in the kernel. ports: a canonical scope, or '*' (a removal of every scope);
//   until: UnixMicros, 0 = permanent; refresh: 0 for a ban with no `bans` row before it (a new
//   kernel element: one add, no delete and add again).
constexpr const char* kV11 = R"sql(
ALTER TABLE bans ADD COLUMN decision_uuid TEXT;
ALTER TABLE bans ADD COLUMN origin_node TEXT;
ALTER TABLE bans ADD COLUMN playbook TEXT;
ALTER TABLE cluster_applied ADD COLUMN scope TEXT;
ALTER TABLE cluster_applied ADD COLUMN outcome TEXT;
CREATE TABLE cluster_batch_ops (
  action_id INTEGER NOT NULL,
  pos INTEGER NOT NULL,
  remove INTEGER NOT NULL,
  prefix TEXT NOT NULL,
  ports TEXT NOT NULL,
  until INTEGER NOT NULL DEFAULT 0,
  refresh INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (action_id, pos)
) WITHOUT ROWID;
)sql";

constexpr std::array<const char*, 11> kMigrations = {kV1, kV2, kV3, kV4,  kV5, kV6,
                                                     kV7, kV8, kV9, kV10, kV11};

}  // namespace

std::span<const char* const> Migrations() { return kMigrations; }

}  // namespace mxward::store
