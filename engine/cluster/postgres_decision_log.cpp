#include "engine/cluster/postgres_decision_log.h"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace mxward {
namespace {

// One advisory lock key for the migration: nodes that start together migrate one after another.
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(7340110018)";

// v1: the counter row whose lock orders publishers, and the log itself. scope is the canonical
// text of an address or prefix; ports is a scope word of the per-ban port issue ("mail" = the
// configured mail ports); expires_at is computed with the database's now(), so node clocks do
// not matter; NULL with permanent = false means "the node's default duration".
constexpr const char* kV1 = R"sql(
CREATE TABLE mxward_decision_counter (
  id integer PRIMARY KEY CHECK (id = 1),
  last bigint NOT NULL
);
INSERT INTO mxward_decision_counter VALUES (1, 0);
CREATE TABLE mxward_decisions (
  seq bigint PRIMARY KEY,
  uuid uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('ban', 'unban', 'extension')),
  scope text NOT NULL,
  ports text NOT NULL DEFAULT 'mail',
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  permanent boolean NOT NULL DEFAULT false,
  playbook text NOT NULL DEFAULT '',
  node text NOT NULL,
  incident_id bigint NOT NULL DEFAULT 0,
  origin_action_id bigint NOT NULL,
  UNIQUE (node, origin_action_id)
);
CREATE INDEX mxward_decisions_by_scope ON mxward_decisions (scope, seq);
)sql";

// v2: one row per node (its heartbeat): which nodes there are, how far each has read, for
// `mxward status` and for pruning only what every live node has read.
constexpr const char* kV2 = R"sql(
CREATE TABLE mxward_nodes (
  node text PRIMARY KEY,
  role text NOT NULL,
  cursor bigint NOT NULL DEFAULT 0,
  connected_at timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mxward_decisions_by_created ON mxward_decisions (created_at);
)sql";

// v3: runtime allowlist entries travel too (issue 18): kinds allow / unallow, and their note.
// A node of an older mxward refuses this log (a newer schema) rather than read an allow row as
// a ban.
constexpr const char* kV3 = R"sql(
ALTER TABLE mxward_decisions DROP CONSTRAINT mxward_decisions_kind_check;
ALTER TABLE mxward_decisions ADD CONSTRAINT mxward_decisions_kind_check
  CHECK (kind IN ('ban', 'unban', 'extension', 'allow', 'unallow'));
ALTER TABLE mxward_decisions ADD COLUMN note text NOT NULL DEFAULT '';
)sql";

// v4: shared windows (docs/cluster.md). mxward_window_events holds the counted events of shared
// playbooks, typed (playbook, key, event time, weight, node), numbered by the one row of
// mxward_window_counter exactly as decisions are (commit order; a bigserial could let a reader
// skip a row); the primary key serves "rows after id X", created_at the pruning.
// mxward_window_claims: one row per (playbook, key) whose lease says which node opened the
// incident of the attack in progress.
constexpr const char* kV4 = R"sql(
CREATE TABLE mxward_window_counter (
  id integer PRIMARY KEY CHECK (id = 1),
  last bigint NOT NULL
);
INSERT INTO mxward_window_counter VALUES (1, 0);
CREATE TABLE mxward_window_events (
  id bigint PRIMARY KEY,
  playbook text NOT NULL,
  key text NOT NULL,
  event_time_us bigint NOT NULL,
  weight integer NOT NULL DEFAULT 1,
  node text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mxward_window_events_by_created ON mxward_window_events (created_at);
CREATE TABLE mxward_window_claims (
  playbook text NOT NULL,
  key text NOT NULL,
  node text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  until timestamptz NOT NULL,
  PRIMARY KEY (playbook, key)
);
)sql";

// v5: cluster-wide incidents (cluster_incidents.h). mxward_incidents: each node's incidents as it
// last published them, one row per (node, id in its store), replaced at every change: the owner's
// store stays the truth. Evidence, actions (with their outcomes) and notes are jsonb arrays (an
// incident is read whole; the evidence is the store's own bounded set). Times are the node's
// microseconds, as in its store. mxward_incident_requests: ack / resolve asked of the owner by
// any node; the owner's link applies them to its own store and records done_at, ok and outcome.
// A bigserial id is fine here: requests are found by "not done", never by a cursor.
constexpr const char* kV5 = R"sql(
CREATE TABLE mxward_incidents (
  node text NOT NULL,
  local_id bigint NOT NULL,
  uuid uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  playbook text NOT NULL,
  description text NOT NULL DEFAULT '',
  severity text NOT NULL,
  mode text NOT NULL,
  key_kind text NOT NULL,
  key text NOT NULL,
  trigger text NOT NULL DEFAULT '',
  status text NOT NULL,
  first_seen_us bigint NOT NULL,
  last_seen_us bigint NOT NULL,
  count bigint NOT NULL,
  triggers bigint NOT NULL DEFAULT 1,
  window_seconds bigint NOT NULL DEFAULT 0,
  evidence jsonb NOT NULL DEFAULT '[]',
  actions jsonb NOT NULL DEFAULT '[]',
  notes jsonb NOT NULL DEFAULT '[]',
  published_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node, local_id)
);
CREATE INDEX mxward_incidents_by_last_seen ON mxward_incidents (last_seen_us);
CREATE TABLE mxward_incident_requests (
  id bigserial PRIMARY KEY,
  node text NOT NULL,
  local_id bigint NOT NULL,
  kind text NOT NULL CHECK (kind IN ('ack', 'resolve')),
  revert boolean NOT NULL DEFAULT false,
  note text NOT NULL DEFAULT '',
  requested_by text NOT NULL,
  requested_user text NOT NULL DEFAULT '',
  requested_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz,
  ok boolean,
  outcome text NOT NULL DEFAULT ''
);
CREATE INDEX mxward_incident_requests_pending ON mxward_incident_requests (node, id)
  WHERE done_at IS NULL;
)sql";

// v6: shared resets (docs/cluster.md "Resets"). A window event is a count or a reset of the
// key's window at its event time ([trigger.reset], e.g. a login success); the nodes fold a reset
// as one. A node of an older mxward refuses this log (a newer schema) rather than count a reset
// as a failure.
constexpr const char* kV6 = R"sql(
ALTER TABLE mxward_window_events
  ADD COLUMN kind text NOT NULL DEFAULT 'count' CHECK (kind IN ('count', 'reset'));
)sql";

constexpr std::array<const char*, 6> kMigrations = {kV1, kV2, kV3, kV4, kV5, kV6};
static_assert(kMigrations.size() == DecisionLog::kSchemaVersion);

// A ban while an unexpired ban of the scope (not removed since) is in the log is an extension.
constexpr const char* kInsertSql = R"sql(
INSERT INTO mxward_decisions (seq, kind, scope, ports, expires_at, permanent, playbook, node,
                              incident_id, origin_action_id, note)
VALUES ($1::bigint,
        CASE WHEN $2 = 'ban' AND EXISTS (
               SELECT 1 FROM mxward_decisions d
               WHERE d.scope = $3 AND d.kind IN ('ban', 'extension')
                 AND (d.permanent OR d.expires_at IS NULL OR d.expires_at > now())
                 AND NOT EXISTS (SELECT 1 FROM mxward_decisions u
                                 WHERE u.scope = $3 AND u.kind = 'unban' AND u.seq > d.seq))
             THEN 'extension' ELSE $2 END,
        $3, $4,
        CASE WHEN $5::bigint > 0 THEN now() + make_interval(secs => $5::bigint::double precision)
        END,
        $5::bigint = 0, $6, $7, $8::bigint, $9::bigint, $10)
ON CONFLICT (node, origin_action_id) DO NOTHING
)sql";

constexpr const char* kReadSql = R"sql(
SELECT seq, uuid::text, kind, scope, ports, expires_at IS NOT NULL, permanent,
       CASE WHEN expires_at IS NULL THEN 0
            ELSE greatest(0, ceil(extract(epoch FROM expires_at - now())))::bigint END,
       playbook, node, incident_id, note
FROM mxward_decisions WHERE seq > $1::bigint ORDER BY seq LIMIT $2::integer
)sql";

constexpr const char* kHeartbeatSql = R"sql(
INSERT INTO mxward_nodes (node, role, cursor) VALUES ($1, $2, $3::bigint)
ON CONFLICT (node) DO UPDATE SET role = $2, cursor = $3::bigint, last_seen = now(),
  connected_at = CASE WHEN $4 = 't' THEN now() ELSE mxward_nodes.connected_at END
)sql";

// Rows at or below the floor: what every node seen within the retention has read.
constexpr const char* kPruneFloorSql = R"sql(
SELECT coalesce(min(cursor), 0) FROM mxward_nodes
WHERE last_seen > now() - make_interval(secs => $1::bigint::double precision)
)sql";

// Entries of kinds $3 (bans and extensions; allowlist entries) that ended, or were superseded by
// a later row of kinds $4 (a removal of their ports, or of every port, '*'; an allowlist removal
// or a newer entry of the prefix), more than the retention ago. A ban with the node's default
// duration (no expires_at) ends only by a removal: its length is each node's own setting.
constexpr const char* kPruneEndedSql = R"sql(
DELETE FROM mxward_decisions d
WHERE d.kind = ANY($3::text[]) AND d.seq <= $2::bigint
  AND ((NOT d.permanent AND d.expires_at IS NOT NULL
        AND d.expires_at < now() - make_interval(secs => $1::bigint::double precision))
       OR EXISTS (SELECT 1 FROM mxward_decisions u
                  WHERE u.scope = d.scope AND u.kind = ANY($4::text[]) AND u.seq > d.seq
                    AND u.seq <= $2::bigint AND (u.ports = d.ports OR u.ports = '*')
                    AND u.created_at < now() - make_interval(secs => $1::bigint::double precision)))
)sql";

// Removals of kind $3 that no longer lift anything in the log: no earlier row of kinds $4 of
// their scope is left.
constexpr const char* kPruneRemovalsSql = R"sql(
DELETE FROM mxward_decisions u
WHERE u.kind = $3 AND u.seq <= $2::bigint
  AND u.created_at < now() - make_interval(secs => $1::bigint::double precision)
  AND NOT EXISTS (SELECT 1 FROM mxward_decisions d
                  WHERE d.scope = u.scope AND d.kind = ANY($4::text[]) AND d.seq < u.seq)
)sql";

// One statement for a batch: the counter row's lock (held to the end of this autocommitted
// statement) orders the ids by commit; the arrays carry the batch's columns.
constexpr const char* kInsertWindowEventsSql = R"sql(
WITH c AS (UPDATE mxward_window_counter SET last = last + $1::bigint WHERE id = 1 RETURNING last),
     ins AS (
       INSERT INTO mxward_window_events (id, playbook, key, event_time_us, weight, node, kind)
       SELECT c.last - $1::bigint + u.ord, u.pb, u.k, u.t, u.w, $6, u.kd
       FROM c, unnest($2::text[], $3::text[], $4::bigint[], $5::integer[], $7::text[])
               WITH ORDINALITY AS u(pb, k, t, w, kd, ord))
SELECT last, pg_notify('mxward_window_events', last::text) FROM c
)sql";

constexpr const char* kReadWindowEventsSql = R"sql(
SELECT id, node, playbook, key, event_time_us, weight, kind FROM mxward_window_events
WHERE id > $1::bigint AND (node <> $2 OR $5::boolean)
  AND created_at > now() - make_interval(secs => $3::bigint::double precision)
ORDER BY id LIMIT $4::integer
)sql";

// Taken when no claim of the pair is held, or the holder's lease ended.
constexpr const char* kClaimSql = R"sql(
INSERT INTO mxward_window_claims AS c (playbook, key, node, until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint::double precision))
ON CONFLICT (playbook, key) DO UPDATE
  SET node = EXCLUDED.node, claimed_at = now(), until = EXCLUDED.until
  WHERE c.until <= now()
RETURNING node
)sql";

// A text[] literal: every element quoted, with " and \ escaped (keys come from log lines; they
// are a bound parameter, never SQL, but must stay one element each).
void AppendArrayElement(std::string* out, std::string_view v) {
  out->push_back('"');
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out->push_back('\\');
    out->push_back(ch);
  }
  out->push_back('"');
}

std::string FirstLine(const char* text) {
  std::string s = text ? text : "";
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s;
}

// Runs sql with text parameters; the result or nullptr.
PGresult* Run(PGconn* conn, const char* sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  return PQexecParams(conn, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                      nullptr, 0);
}

}  // namespace

PostgresDecisionLog::PostgresDecisionLog(std::string conninfo, std::string password,
                                         std::string node)
    : conninfo_(std::move(conninfo)), password_(std::move(password)), node_(std::move(node)) {}

PostgresDecisionLog::~PostgresDecisionLog() { Disconnect(); }

void PostgresDecisionLog::Disconnect() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
}

int PostgresDecisionLog::socket() const { return conn_ ? PQsocket(conn_) : -1; }

Status PostgresDecisionLog::Fail(const char* doing, void* result) {
  auto* res = static_cast<PGresult*>(result);
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg =
      fmt::format("PostgreSQL: {} ({})",
                  FirstLine(res ? PQresultErrorMessage(res) : PQerrorMessage(conn_)), doing);
  if (res) PQclear(res);
  const bool lost = PQstatus(conn_) != CONNECTION_OK;
  const bool transient =
      lost || (state && (std::strncmp(state, "08", 2) == 0 || std::strcmp(state, "40001") == 0 ||
                         std::strcmp(state, "40P01") == 0 || std::strncmp(state, "57P0", 4) == 0 ||
                         std::strcmp(state, "53300") == 0));
  // Any failure leaves the connection in doubt (an open transaction, a half-read result): start
  // over on a new one.
  Disconnect();
  if (transient) return Status::Unavailable(std::move(msg));
  return Status::Internal(std::move(msg));
}

Status PostgresDecisionLog::Exec(const char* sql) {
  PGresult* res = PQexec(conn_, sql);
  const auto st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(sql, res);
  PQclear(res);
  return Status::Ok();
}

Status PostgresDecisionLog::Connect() {
  Disconnect();
  // dbname first with expand_dbname: the connection string's settings, then ours on top.
  std::vector<const char*> keys = {"dbname", "application_name", "connect_timeout"};
  std::vector<const char*> values = {conninfo_.c_str(), "mxward", "5"};
  if (!password_.empty()) {
    keys.push_back("password");
    values.push_back(password_.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: out of memory connecting");
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg =
        fmt::format("PostgreSQL: cannot connect: {}", FirstLine(PQerrorMessage(conn_)));
    Disconnect();
    return Status::Unavailable(std::move(msg));
  }
  // Server notices ("relation ... already exists, skipping" from the migration's IF NOT EXISTS)
  // would go to stderr unformatted; none of them is something to act on.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  MXWARD_RETURN_IF_ERROR(Migrate());
  MXWARD_RETURN_IF_ERROR(Exec("LISTEN mxward_decisions"));
  MXWARD_RETURN_IF_ERROR(Exec("LISTEN mxward_incident_requests"));
  return Exec("LISTEN mxward_window_events");
}

Status PostgresDecisionLog::Migrate() {
  MXWARD_RETURN_IF_ERROR(Exec("BEGIN"));
  MXWARD_RETURN_IF_ERROR(Exec(kMigrationLock));
  MXWARD_RETURN_IF_ERROR(
      Exec("CREATE TABLE IF NOT EXISTS mxward_cluster_schema (version integer PRIMARY KEY, "
           "applied_at timestamptz NOT NULL DEFAULT now())"));
  PGresult* res = PQexec(conn_, "SELECT coalesce(max(version), 0) FROM mxward_cluster_schema");
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading the schema version", res);
  const int version = std::atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  if (version > kSchemaVersion) {
    (void)Exec("ROLLBACK");
    Disconnect();
    return Status::Internal(
        fmt::format("the decision log has schema version {}, this mxward knows up to {}: "
                    "upgrade mxward on this node",
                    version, kSchemaVersion));
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    MXWARD_RETURN_IF_ERROR(Exec(kMigrations[static_cast<std::size_t>(v)]));
    PGresult* ins = Run(conn_, "INSERT INTO mxward_cluster_schema (version) VALUES ($1::integer)",
                        {std::to_string(v + 1)});
    if (PQresultStatus(ins) != PGRES_COMMAND_OK) return Fail("recording the schema version", ins);
    PQclear(ins);
  }
  return Exec("COMMIT");
}

Result<int> PostgresDecisionLog::ConsumeNotifications() {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  if (PQconsumeInput(conn_) == 0) return Fail("reading notifications", nullptr);
  int rang = 0;
  while (PGnotify* n = PQnotifies(conn_)) {
    if (std::strcmp(n->relname, kWindowChannel) == 0) {
      rang |= kWindowsRang;
    } else if (std::strcmp(n->relname, kRequestChannel) == 0) {
      // Every node hears every request's doorbell; only the owner has something to do.
      if (n->extra != nullptr && node_ == n->extra) rang |= kRequestsRang;
    } else {
      rang |= kDecisionsRang;
    }
    PQfreemem(n);
  }
  return rang;
}

Result<std::int64_t> PostgresDecisionLog::Publish(const std::vector<DecisionToPublish>& decisions) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  if (decisions.empty()) return std::int64_t{0};
  MXWARD_RETURN_IF_ERROR(Exec("BEGIN"));
  // The row lock taken here is held until COMMIT: publishers take their numbers one after
  // another, in commit order.
  PGresult* res = Run(conn_,
                      "UPDATE mxward_decision_counter SET last = last + $1::bigint "
                      "WHERE id = 1 RETURNING last",
                      {std::to_string(decisions.size())});
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    return Fail("taking sequence numbers", res);
  }
  const std::int64_t last = std::strtoll(PQgetvalue(res, 0, 0), nullptr, 10);
  PQclear(res);
  std::int64_t seq = last - static_cast<std::int64_t>(decisions.size());
  for (const DecisionToPublish& d : decisions) {
    ++seq;
    PGresult* ins = Run(
        conn_, kInsertSql,
        {std::to_string(seq), d.kind, d.scope, d.ports, std::to_string(d.duration_s), d.playbook,
         node_, std::to_string(d.incident_id), std::to_string(d.origin_action_id), d.note});
    if (PQresultStatus(ins) != PGRES_COMMAND_OK) return Fail("writing a decision", ins);
    PQclear(ins);
  }
  // The doorbell: delivered to listeners at commit, carrying only the number.
  PGresult* note = Run(conn_, "SELECT pg_notify('mxward_decisions', $1)", {std::to_string(last)});
  if (PQresultStatus(note) != PGRES_TUPLES_OK) return Fail("notifying", note);
  PQclear(note);
  MXWARD_RETURN_IF_ERROR(Exec("COMMIT"));
  return last;
}

Result<std::vector<DecisionRow>> PostgresDecisionLog::ReadAfter(std::int64_t cursor, int limit) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  PGresult* res = Run(conn_, kReadSql, {std::to_string(cursor), std::to_string(limit)});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading decisions", res);
  std::vector<DecisionRow> rows;
  const int n = PQntuples(res);
  rows.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    DecisionRow r;
    r.seq = std::strtoll(PQgetvalue(res, i, 0), nullptr, 10);
    r.uuid = PQgetvalue(res, i, 1);
    r.kind = PQgetvalue(res, i, 2);
    r.scope = PQgetvalue(res, i, 3);
    r.ports = PQgetvalue(res, i, 4);
    r.has_expiry = PQgetvalue(res, i, 5)[0] == 't';
    r.permanent = PQgetvalue(res, i, 6)[0] == 't';
    r.remaining_s = std::strtoll(PQgetvalue(res, i, 7), nullptr, 10);
    r.playbook = PQgetvalue(res, i, 8);
    r.node = PQgetvalue(res, i, 9);
    r.incident_id = std::strtoll(PQgetvalue(res, i, 10), nullptr, 10);
    r.note = PQgetvalue(res, i, 11);
    rows.push_back(std::move(r));
  }
  PQclear(res);
  return rows;
}

Status PostgresDecisionLog::Heartbeat(std::int64_t cursor, std::string_view role, bool connected) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  PGresult* res = Run(conn_, kHeartbeatSql,
                      {node_, std::string(role), std::to_string(cursor), connected ? "t" : "f"});
  if (PQresultStatus(res) != PGRES_COMMAND_OK) return Fail("recording this node", res);
  PQclear(res);
  return Status::Ok();
}

Result<ClusterView> PostgresDecisionLog::ReadView() {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  ClusterView view;
  PGresult* res = PQexec(conn_,
                         "SELECT (SELECT last FROM mxward_decision_counter WHERE id = 1), "
                         "(SELECT count(*) FROM mxward_decisions)");
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    return Fail("reading the log's head", res);
  }
  view.head = std::strtoll(PQgetvalue(res, 0, 0), nullptr, 10);
  view.rows = std::strtoll(PQgetvalue(res, 0, 1), nullptr, 10);
  PQclear(res);
  res = PQexec(conn_,
               "SELECT node, role, cursor, floor(extract(epoch FROM now() - last_seen))::bigint, "
               "floor(extract(epoch FROM now() - connected_at))::bigint "
               "FROM mxward_nodes ORDER BY node");
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading the nodes", res);
  for (int i = 0; i < PQntuples(res); ++i) {
    view.nodes.push_back({PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                          std::strtoll(PQgetvalue(res, i, 2), nullptr, 10),
                          std::strtoll(PQgetvalue(res, i, 3), nullptr, 10),
                          std::strtoll(PQgetvalue(res, i, 4), nullptr, 10)});
  }
  PQclear(res);
  return view;
}

Result<std::int64_t> PostgresDecisionLog::Prune(std::int64_t keep_s) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  MXWARD_RETURN_IF_ERROR(Exec("BEGIN"));
  PGresult* res = PQexec(conn_, "SELECT pg_try_advisory_xact_lock(7340110019)");
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("locking for pruning", res);
  const bool mine = PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  if (!mine) {  // another node is pruning now
    MXWARD_RETURN_IF_ERROR(Exec("COMMIT"));
    return std::int64_t{0};
  }
  const std::string keep = std::to_string(keep_s);
  res = Run(conn_, kPruneFloorSql, {keep});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading the nodes' cursors", res);
  const std::string floor = PQgetvalue(res, 0, 0);
  PQclear(res);
  std::int64_t deleted = 0;
  // Ended entries first, then the removals that no longer lift anything.
  const std::array<std::array<const char*, 3>, 4> steps = {{
      {kPruneEndedSql, "{ban,extension}", "{unban}"},
      {kPruneRemovalsSql, "unban", "{ban,extension}"},
      {kPruneEndedSql, "{allow}", "{allow,unallow}"},
      {kPruneRemovalsSql, "unallow", "{allow}"},
  }};
  for (const auto& [sql, kinds, others] : steps) {
    res = Run(conn_, sql, {keep, floor, kinds, others});
    if (PQresultStatus(res) != PGRES_COMMAND_OK) return Fail("pruning the decision log", res);
    deleted += std::strtoll(PQcmdTuples(res), nullptr, 10);
    PQclear(res);
  }
  MXWARD_RETURN_IF_ERROR(Exec("COMMIT"));
  return deleted;
}

}  // namespace mxward

namespace mxward {

Result<std::int64_t> PostgresDecisionLog::PublishWindowEvents(
    const std::vector<WindowEvent>& events, std::size_t n) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  n = std::min(n, events.size());
  std::string playbooks = "{", keys = "{", times = "{", weights = "{", kinds = "{";
  std::size_t written = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const WindowEvent& e = events[i];
    // A key PostgreSQL's text cannot hold would fail the whole statement (and with it every
    // other event of the batch): left out, counted by the caller.
    if (!FitsPostgresText(e.key) || !FitsPostgresText(e.playbook)) continue;
    if (written++ > 0) {
      playbooks += ',';
      keys += ',';
      times += ',';
      weights += ',';
      kinds += ',';
    }
    AppendArrayElement(&playbooks, e.playbook);
    AppendArrayElement(&keys, e.key);
    times += std::to_string(e.time_us);
    weights += std::to_string(e.weight);
    kinds += e.kind == WindowEventKind::kReset ? "reset" : "count";
  }
  if (written == 0) return std::int64_t{0};
  playbooks += '}';
  keys += '}';
  times += '}';
  weights += '}';
  kinds += '}';
  PGresult* res = Run(conn_, kInsertWindowEventsSql,
                      {std::to_string(written), playbooks, keys, times, weights, node_, kinds});
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    return Fail("writing window events", res);
  }
  PQclear(res);
  return static_cast<std::int64_t>(written);
}

Result<std::vector<RemoteWindowEvent>> PostgresDecisionLog::ReadWindowEventsAfter(
    std::int64_t cursor, std::int64_t max_age_s, int limit, bool include_own) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  PGresult* res =
      Run(conn_, kReadWindowEventsSql,
          {std::to_string(cursor), node_, std::to_string(std::max<std::int64_t>(max_age_s, 1)),
           std::to_string(limit), include_own ? "t" : "f"});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading window events", res);
  std::vector<RemoteWindowEvent> rows;
  const int count = PQntuples(res);
  rows.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    RemoteWindowEvent r;
    r.id = std::strtoll(PQgetvalue(res, i, 0), nullptr, 10);
    r.node = PQgetvalue(res, i, 1);
    r.event.playbook = PQgetvalue(res, i, 2);
    r.event.key = PQgetvalue(res, i, 3);
    r.event.time_us = std::strtoll(PQgetvalue(res, i, 4), nullptr, 10);
    r.event.weight = static_cast<std::uint32_t>(
        std::clamp<long long>(std::strtoll(PQgetvalue(res, i, 5), nullptr, 10), 1, 65535));
    r.event.kind = std::strcmp(PQgetvalue(res, i, 6), "reset") == 0 ? WindowEventKind::kReset
                                                                    : WindowEventKind::kCount;
    rows.push_back(std::move(r));
  }
  PQclear(res);
  return rows;
}

Result<WindowClaim> PostgresDecisionLog::ClaimWindow(std::string_view playbook,
                                                     std::string_view key, std::int64_t lease_s) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  if (!FitsPostgresText(playbook) || !FitsPostgresText(key)) {
    return Status::InvalidArgument("the key is not text PostgreSQL can hold (not UTF-8)");
  }
  PGresult* res = Run(conn_, kClaimSql,
                      {std::string(playbook), std::string(key), node_,
                       std::to_string(std::max<std::int64_t>(lease_s, 1))});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("claiming a shared window", res);
  WindowClaim claim;
  claim.won = PQntuples(res) == 1;
  PQclear(res);
  if (!claim.won) {
    res = Run(conn_, "SELECT node FROM mxward_window_claims WHERE playbook = $1 AND key = $2",
              {std::string(playbook), std::string(key)});
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading a window claim", res);
    if (PQntuples(res) == 1) claim.holder = PQgetvalue(res, 0, 0);
    PQclear(res);
  }
  return claim;
}

Result<std::int64_t> PostgresDecisionLog::PruneWindowEvents(std::int64_t keep_s) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  std::int64_t deleted = 0;
  for (const char* sql :
       {"DELETE FROM mxward_window_events "
        "WHERE created_at < now() - make_interval(secs => $1::bigint::double precision)",
        "DELETE FROM mxward_window_claims "
        "WHERE until < now() - make_interval(secs => $1::bigint::double precision)"}) {
    PGresult* res = Run(conn_, sql, {std::to_string(std::max<std::int64_t>(keep_s, 1))});
    if (PQresultStatus(res) != PGRES_COMMAND_OK) return Fail("pruning window events", res);
    deleted += std::strtoll(PQcmdTuples(res), nullptr, 10);
    PQclear(res);
  }
  return deleted;
}

}  // namespace mxward

namespace mxward {
namespace {

constexpr const char* kUpsertIncidentSql = R"sql(
INSERT INTO mxward_incidents AS i (node, local_id, playbook, description, severity, mode, key_kind,
                                   key, trigger, status, first_seen_us, last_seen_us, count,
                                   triggers, window_seconds, evidence, actions, notes)
VALUES ($1, $2::bigint, $3, $4, $5, $6, $7, $8, $9, $10, $11::bigint, $12::bigint, $13::bigint,
        $14::bigint, $15::bigint, $16::jsonb, $17::jsonb, $18::jsonb)
ON CONFLICT (node, local_id) DO UPDATE SET
  playbook = EXCLUDED.playbook, description = EXCLUDED.description,
  severity = EXCLUDED.severity, mode = EXCLUDED.mode, key_kind = EXCLUDED.key_kind,
  key = EXCLUDED.key, trigger = EXCLUDED.trigger, status = EXCLUDED.status,
  first_seen_us = EXCLUDED.first_seen_us, last_seen_us = EXCLUDED.last_seen_us,
  count = EXCLUDED.count, triggers = EXCLUDED.triggers, window_seconds = EXCLUDED.window_seconds,
  evidence = EXCLUDED.evidence, actions = EXCLUDED.actions, notes = EXCLUDED.notes,
  published_at = now()
)sql";

// The columns ReadIncidentRow reads, in its order; evidence and notes last (GetIncident only).
constexpr const char* kIncidentColumns =
    "node, local_id, uuid::text, playbook, description, severity, mode, key_kind, key, trigger, "
    "status, first_seen_us, last_seen_us, count, triggers, window_seconds, actions::text, "
    "greatest(0, floor(extract(epoch FROM now() - published_at)))::bigint";

std::int64_t Int(PGresult* res, int row, int col) {
  return std::strtoll(PQgetvalue(res, row, col), nullptr, 10);
}

SharedIncident ReadIncidentRow(PGresult* res, int row) {
  SharedIncident s;
  s.node = PQgetvalue(res, row, 0);
  Incident& inc = s.incident;
  inc.id = Int(res, row, 1);
  s.uuid = PQgetvalue(res, row, 2);
  inc.playbook = PQgetvalue(res, row, 3);
  inc.description = PQgetvalue(res, row, 4);
  ParseSeverity(PQgetvalue(res, row, 5), &inc.severity);
  ParsePlaybookMode(PQgetvalue(res, row, 6), &inc.mode);
  inc.key_kind = PQgetvalue(res, row, 7);
  inc.key = PQgetvalue(res, row, 8);
  inc.trigger = PQgetvalue(res, row, 9);
  ParseIncidentStatus(PQgetvalue(res, row, 10), &inc.status);
  inc.first_seen = Int(res, row, 11);
  inc.last_seen = Int(res, row, 12);
  inc.count = static_cast<std::uint64_t>(std::max<std::int64_t>(0, Int(res, row, 13)));
  inc.triggers = static_cast<std::uint64_t>(std::max<std::int64_t>(1, Int(res, row, 14)));
  inc.window_seconds = Int(res, row, 15);
  s.actions = ActionsFromColumn(PQgetvalue(res, row, 16));
  s.published_ago_s = Int(res, row, 17);
  return s;
}

IncidentRequest ReadRequestRow(PGresult* res, int row) {
  IncidentRequest r;
  r.id = Int(res, row, 0);
  r.node = PQgetvalue(res, row, 1);
  r.incident_id = Int(res, row, 2);
  r.kind = PQgetvalue(res, row, 3);
  r.revert = PQgetvalue(res, row, 4)[0] == 't';
  r.note = PQgetvalue(res, row, 5);
  r.requested_by = PQgetvalue(res, row, 6);
  r.requested_user = PQgetvalue(res, row, 7);
  r.done = PQgetvalue(res, row, 8)[0] == 't';
  r.ok = PQgetvalue(res, row, 9)[0] == 't';
  r.outcome = PQgetvalue(res, row, 10);
  return r;
}

constexpr const char* kRequestColumns =
    "id, node, local_id, kind, revert, note, requested_by, requested_user, done_at IS NOT NULL, "
    "coalesce(ok, false), outcome";

}  // namespace

Status PostgresDecisionLog::PublishIncidents(const std::vector<SharedIncident>& incidents) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  if (incidents.empty()) return Status::Ok();
  MXWARD_RETURN_IF_ERROR(Exec("BEGIN"));
  for (const SharedIncident& s : incidents) {
    const Incident& inc = s.incident;
    PGresult* res =
        Run(conn_, kUpsertIncidentSql,
            {node_, std::to_string(inc.id), PostgresSafeText(inc.playbook),
             PostgresSafeText(inc.description), std::string(SeverityName(inc.severity)),
             std::string(PlaybookModeName(inc.mode)), PostgresSafeText(inc.key_kind),
             PostgresSafeText(inc.key), PostgresSafeText(inc.trigger),
             std::string(IncidentStatusName(inc.status)), std::to_string(inc.first_seen),
             std::to_string(inc.last_seen), std::to_string(inc.count), std::to_string(inc.triggers),
             std::to_string(inc.window_seconds), EvidenceColumn(inc.evidence),
             ActionsColumn(s.actions), NotesColumn(s.notes)});
    if (PQresultStatus(res) != PGRES_COMMAND_OK) return Fail("publishing an incident", res);
    PQclear(res);
  }
  return Exec("COMMIT");
}

Result<std::vector<SharedIncident>> PostgresDecisionLog::ListIncidents(
    const SharedIncidentQuery& q) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  const std::string sql = fmt::format(
      "SELECT {} FROM mxward_incidents WHERE ($1 = '' OR node = $1) AND ($2 = '' OR status = $2) "
      "AND ($3 = '' OR playbook = $3) AND ($4 = '' OR key = $4) AND last_seen_us >= $5::bigint "
      "ORDER BY last_seen_us DESC, node, local_id DESC LIMIT $6::integer",
      kIncidentColumns);
  PGresult* res = Run(conn_, sql.c_str(),
                      {q.node, q.status, PostgresSafeText(q.playbook), PostgresSafeText(q.key),
                       std::to_string(q.since), std::to_string(std::max(q.limit, 1))});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("listing the cluster's incidents", res);
  std::vector<SharedIncident> out;
  for (int i = 0; i < PQntuples(res); ++i) out.push_back(ReadIncidentRow(res, i));
  PQclear(res);
  return out;
}

Result<SharedIncident> PostgresDecisionLog::GetIncident(std::string_view node, std::int64_t id) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  const std::string sql = fmt::format(
      "SELECT {}, evidence::text, notes::text FROM mxward_incidents "
      "WHERE node = $1 AND local_id = $2::bigint",
      kIncidentColumns);
  PGresult* res = Run(conn_, sql.c_str(), {PostgresSafeText(node), std::to_string(id)});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading an incident", res);
  if (PQntuples(res) != 1) {
    PQclear(res);
    return Status::NotFound(fmt::format(
        "no incident {}:{} in the cluster (node {} has not published it)", node, id, node));
  }
  SharedIncident s = ReadIncidentRow(res, 0);
  s.incident.evidence = EvidenceFromColumn(PQgetvalue(res, 0, 18));
  s.notes = NotesFromColumn(PQgetvalue(res, 0, 19));
  PQclear(res);
  return s;
}

Result<std::int64_t> PostgresDecisionLog::RequestIncidentChange(const IncidentRequest& r) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  // One statement: the row and its doorbell (delivered at commit), which names the owner.
  PGresult* res =
      Run(conn_,
          "WITH r AS (INSERT INTO mxward_incident_requests (node, local_id, kind, "
          "revert, note, requested_by, requested_user) VALUES ($1, $2::bigint, $3, "
          "$4::boolean, $5, $6, $7) RETURNING id) "
          "SELECT id, pg_notify('mxward_incident_requests', $1) FROM r",
          {PostgresSafeText(r.node), std::to_string(r.incident_id), r.kind, r.revert ? "t" : "f",
           PostgresSafeText(r.note), node_, PostgresSafeText(r.requested_user)});
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    return Fail("writing an incident request", res);
  }
  const std::int64_t id = Int(res, 0, 0);
  PQclear(res);
  return id;
}

Result<std::vector<IncidentRequest>> PostgresDecisionLog::PendingIncidentRequests(int limit) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  const std::string sql = fmt::format(
      "SELECT {} FROM mxward_incident_requests WHERE node = $1 AND done_at IS NULL ORDER BY id "
      "LIMIT $2::integer",
      kRequestColumns);
  PGresult* res = Run(conn_, sql.c_str(), {node_, std::to_string(limit)});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading incident requests", res);
  std::vector<IncidentRequest> out;
  for (int i = 0; i < PQntuples(res); ++i) out.push_back(ReadRequestRow(res, i));
  PQclear(res);
  return out;
}

Status PostgresDecisionLog::FinishIncidentRequest(std::int64_t id,
                                                  const IncidentRequestOutcome& outcome) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  PGresult* res = Run(conn_,
                      "UPDATE mxward_incident_requests SET done_at = now(), ok = $2::boolean, "
                      "outcome = $3 WHERE id = $1::bigint",
                      {std::to_string(id), outcome.ok ? "t" : "f", PostgresSafeText(outcome.text)});
  if (PQresultStatus(res) != PGRES_COMMAND_OK) return Fail("recording a request's outcome", res);
  PQclear(res);
  return Status::Ok();
}

Result<IncidentRequest> PostgresDecisionLog::ReadIncidentRequest(std::int64_t id) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  const std::string sql =
      fmt::format("SELECT {} FROM mxward_incident_requests WHERE id = $1::bigint", kRequestColumns);
  PGresult* res = Run(conn_, sql.c_str(), {std::to_string(id)});
  if (PQresultStatus(res) != PGRES_TUPLES_OK) return Fail("reading an incident request", res);
  if (PQntuples(res) != 1) {
    PQclear(res);
    return Status::NotFound(fmt::format("no incident request {}", id));
  }
  IncidentRequest r = ReadRequestRow(res, 0);
  PQclear(res);
  return r;
}

Result<std::int64_t> PostgresDecisionLog::PruneIncidents(std::int64_t keep_s) {
  if (conn_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  std::int64_t deleted = 0;
  for (const char* sql :
       {"DELETE FROM mxward_incidents WHERE status = 'resolved' "
        "AND published_at < now() - make_interval(secs => $1::bigint::double precision)",
        "DELETE FROM mxward_incident_requests WHERE done_at IS NOT NULL "
        "AND done_at < now() - make_interval(secs => $1::bigint::double precision)"}) {
    PGresult* res = Run(conn_, sql, {std::to_string(std::max<std::int64_t>(keep_s, 1))});
    if (PQresultStatus(res) != PGRES_COMMAND_OK) return Fail("pruning incidents", res);
    deleted += std::strtoll(PQcmdTuples(res), nullptr, 10);
    PQclear(res);
  }
  return deleted;
}

}  // namespace mxward
