#include "engine/cluster/mariadb_decision_log.h"

// The cluster floor includes libmariadb's headers through their directory: its include path is
// not on every target that compiles this floor.
#include <mariadb/mysql.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "engine/base/mariadb_statement.h"

namespace mxward {
namespace {

constexpr const char* kUnimplemented =
    "not available with [cluster] engine = \"mariadb\": shared windows and cluster-wide "
    "incidents need engine = \"postgresql\" (docs/cluster.md)";

// v1: PostgreSQL's v1 to v3 decision tables in MariaDB's words. Times are DATETIME(6) in UTC,
// always written and compared with the server's UTC_TIMESTAMP(6) (node clocks and the server's
// time zone do not matter). utf8mb4_bin: scopes and names compare byte for byte, as in
// PostgreSQL. DDL commits by itself in MariaDB, so every statement can run again after a crash
// half-way (IF NOT EXISTS, INSERT IGNORE); the version row is written last.
constexpr std::array<const char*, 4> kV1 = {
    "CREATE TABLE IF NOT EXISTS mxward_decision_counter ("
    " id INT NOT NULL PRIMARY KEY CHECK (id = 1),"
    " last BIGINT NOT NULL"
    ") ENGINE=InnoDB",
    "INSERT IGNORE INTO mxward_decision_counter VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS mxward_decisions ("
    " seq BIGINT NOT NULL PRIMARY KEY,"
    " uuid CHAR(36) NOT NULL,"
    " kind VARCHAR(16) NOT NULL"
    "  CHECK (kind IN ('ban', 'unban', 'extension', 'allow', 'unallow')),"
    " scope VARCHAR(64) NOT NULL,"
    " ports VARCHAR(255) NOT NULL DEFAULT 'mail',"
    " created_at DATETIME(6) NOT NULL,"
    " expires_at DATETIME(6) NULL,"
    " permanent BOOLEAN NOT NULL DEFAULT FALSE,"
    " playbook VARCHAR(255) NOT NULL DEFAULT '',"
    " node VARCHAR(64) NOT NULL,"
    " incident_id BIGINT NOT NULL DEFAULT 0,"
    " origin_action_id BIGINT NOT NULL,"
    " note TEXT NOT NULL DEFAULT '',"
    " UNIQUE KEY mxward_decisions_uuid (uuid),"
    " UNIQUE KEY mxward_decisions_origin (node, origin_action_id),"
    " KEY mxward_decisions_by_scope (scope, seq),"
    " KEY mxward_decisions_by_created (created_at)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS mxward_nodes ("
    " node VARCHAR(64) NOT NULL PRIMARY KEY,"
    " role VARCHAR(16) NOT NULL,"
    " `cursor` BIGINT NOT NULL DEFAULT 0,"
    " connected_at DATETIME(6) NOT NULL,"
    " last_seen DATETIME(6) NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
};

constexpr const char* kSchemaTableSql =
    "CREATE TABLE IF NOT EXISTS mxward_cluster_schema ("
    " version INT NOT NULL PRIMARY KEY,"
    " applied_at DATETIME(6) NOT NULL"
    ") ENGINE=InnoDB";
constexpr const char* kSchemaVersionSql =
    "SELECT COALESCE(MAX(version), 0) FROM mxward_cluster_schema";
constexpr const char* kSchemaRecordSql =
    "INSERT IGNORE INTO mxward_cluster_schema VALUES (?, UTC_TIMESTAMP(6))";
// Nodes that start together migrate one after another; 30 s is longer than any migration.
constexpr const char* kMigrationLockSql = "SELECT GET_LOCK('mxward_cluster_migration', 30)";
constexpr const char* kMigrationUnlockSql = "SELECT RELEASE_LOCK('mxward_cluster_migration')";

// The counter row, locked to this transaction's COMMIT: publishers take their numbers one after
// another, in commit order.
constexpr const char* kLockCounterSql =
    "SELECT last FROM mxward_decision_counter WHERE id = 1 FOR UPDATE";
constexpr const char* kAdvanceCounterSql =
    "UPDATE mxward_decision_counter SET last = last + ? WHERE id = 1";
// Whether an unexpired ban of the scope, not removed since, is in the log: a ban is then an
// extension. Read under the counter lock, so no other publication can change the answer.
constexpr const char* kBanInForceSql =
    "SELECT EXISTS (SELECT 1 FROM mxward_decisions d"
    " WHERE d.scope = ? AND d.kind IN ('ban', 'extension')"
    "   AND (d.permanent OR d.expires_at IS NULL OR d.expires_at > UTC_TIMESTAMP(6))"
    "   AND NOT EXISTS (SELECT 1 FROM mxward_decisions u"
    "                   WHERE u.scope = d.scope AND u.kind = 'unban' AND u.seq > d.seq))";
// A second publication of (node, origin_action_id) changes nothing (its number stays unused).
constexpr const char* kInsertSql =
    "INSERT INTO mxward_decisions (seq, uuid, kind, scope, ports, created_at, expires_at,"
    " permanent, playbook, node, incident_id, origin_action_id, note)"
    " VALUES (?, UUID(), ?, ?, ?, UTC_TIMESTAMP(6),"
    " IF(? > 0, UTC_TIMESTAMP(6) + INTERVAL ? SECOND, NULL), ? = 0, ?, ?, ?, ?, ?)"
    " ON DUPLICATE KEY UPDATE seq = seq";

constexpr const char* kReadSql =
    "SELECT seq, uuid, kind, scope, ports, expires_at IS NOT NULL, permanent,"
    " IF(expires_at IS NULL, 0, GREATEST(0, CEIL(TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6),"
    " expires_at) / 1000000))),"
    " playbook, node, incident_id, note"
    " FROM mxward_decisions WHERE seq > ? ORDER BY seq LIMIT ?";

constexpr const char* kHeartbeatSql =
    "INSERT INTO mxward_nodes (node, role, `cursor`, connected_at, last_seen)"
    " VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
    " ON DUPLICATE KEY UPDATE role = VALUES(role), `cursor` = VALUES(`cursor`),"
    " last_seen = UTC_TIMESTAMP(6), connected_at = IF(?, UTC_TIMESTAMP(6), connected_at)";

constexpr const char* kHeadSql =
    "SELECT (SELECT last FROM mxward_decision_counter WHERE id = 1),"
    " (SELECT COUNT(*) FROM mxward_decisions)";
constexpr const char* kNodesSql =
    "SELECT node, role, `cursor`,"
    " FLOOR(TIMESTAMPDIFF(MICROSECOND, last_seen, UTC_TIMESTAMP(6)) / 1000000),"
    " FLOOR(TIMESTAMPDIFF(MICROSECOND, connected_at, UTC_TIMESTAMP(6)) / 1000000)"
    " FROM mxward_nodes ORDER BY node";

// One node prunes at a time; the others skip (timeout 0).
constexpr const char* kPruneLockSql = "SELECT GET_LOCK('mxward_cluster_prune', 0)";
constexpr const char* kPruneUnlockSql = "SELECT RELEASE_LOCK('mxward_cluster_prune')";
// Rows at or below the floor: what every node seen within the retention has read.
constexpr const char* kPruneFloorSql =
    "SELECT COALESCE(MIN(`cursor`), 0) FROM mxward_nodes"
    " WHERE last_seen > UTC_TIMESTAMP(6) - INTERVAL ? SECOND";
// As PostgreSQL's (postgres_decision_log.cpp): entries of kinds ? (FIND_IN_SET lists) that ended,
// or were superseded by a later row of the other kinds, more than the retention ago. MariaDB
// (10.3.1 and later) lets a DELETE's subquery read the table it deletes from.
constexpr const char* kPruneEndedSql =
    "DELETE FROM mxward_decisions"
    " WHERE FIND_IN_SET(kind, ?) AND seq <= ?"
    "  AND ((NOT permanent AND expires_at IS NOT NULL"
    "        AND expires_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND)"
    "       OR EXISTS (SELECT 1 FROM mxward_decisions u"
    "                  WHERE u.scope = mxward_decisions.scope AND FIND_IN_SET(u.kind, ?)"
    "                    AND u.seq > mxward_decisions.seq AND u.seq <= ?"
    "                    AND (u.ports = mxward_decisions.ports OR u.ports = '*')"
    "                    AND u.created_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND))";
constexpr const char* kPruneRemovalsSql =
    "DELETE FROM mxward_decisions"
    " WHERE kind = ? AND seq <= ?"
    "  AND created_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND"
    "  AND NOT EXISTS (SELECT 1 FROM mxward_decisions d"
    "                  WHERE d.scope = mxward_decisions.scope AND FIND_IN_SET(d.kind, ?)"
    "                    AND d.seq < mxward_decisions.seq)";

std::int64_t Int(const std::string& s) { return std::strtoll(s.c_str(), nullptr, 10); }

}  // namespace

MariadbDecisionLog::MariadbDecisionLog(Target target, std::string node)
    : target_(std::move(target)), node_(std::move(node)) {}

MariadbDecisionLog::~MariadbDecisionLog() { Disconnect(); }

void MariadbDecisionLog::Disconnect() {
  for (auto& [sql, stmt] : statements_) mysql_stmt_close(stmt);
  statements_.clear();
  if (mysql_ != nullptr) mysql_close(mysql_);
  mysql_ = nullptr;
}

Status MariadbDecisionLog::Fail(unsigned int code, const char* message, std::string_view doing) {
  // Any failure leaves the connection in doubt (an open transaction, an unread result): start
  // over on a new one.
  Disconnect();
  return MariadbStatus(code, message, doing);
}

Status MariadbDecisionLog::Simple(const char* sql) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  if (mysql_query(mysql_, sql) != 0) return Fail(mysql_errno(mysql_), mysql_error(mysql_), sql);
  return Status::Ok();
}

Result<std::int64_t> MariadbDecisionLog::Run(const char* sql, const std::vector<Param>& params,
                                             std::vector<Row>* rows) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  MYSQL_STMT* stmt = nullptr;
  if (auto it = statements_.find(sql); it != statements_.end()) {
    stmt = it->second;
  } else {
    stmt = mysql_stmt_init(mysql_);
    if (stmt == nullptr) return Fail(mysql_errno(mysql_), mysql_error(mysql_), "preparing");
    if (mysql_stmt_prepare(stmt, sql, std::strlen(sql)) != 0) {
      const unsigned int code = mysql_stmt_errno(stmt);
      const std::string message = mysql_stmt_error(stmt);
      mysql_stmt_close(stmt);
      return Fail(code, message.c_str(), "preparing");
    }
    statements_.emplace(sql, stmt);
  }
  std::vector<MariadbParam> bound;
  bound.reserve(params.size());
  for (const Param& p : params) {
    bound.push_back(p.is_int ? MariadbParam::Int(p.i) : MariadbParam::Text(p.s));
  }
  std::vector<MariadbRow> read;
  auto n = RunMariadbStatement(stmt, bound, rows == nullptr ? nullptr : &read);
  if (!n.ok()) {
    Disconnect();  // the connection is in doubt: start over on a new one
    return n.status();
  }
  if (rows != nullptr) {
    for (MariadbRow& r : read) {
      Row row;
      row.reserve(r.size());
      for (auto& v : r) row.push_back(v ? std::move(*v) : std::string());
      rows->push_back(std::move(row));
    }
  }
  return n;
}

Status MariadbDecisionLog::Connect() {
  Disconnect();
  mysql_ = mysql_init(nullptr);
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: out of memory connecting");
  // A read or write that hangs longer than this is a lost server: reconnect.
  const unsigned int timeout = 5;
  mysql_options(mysql_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  mysql_options(mysql_, MYSQL_OPT_READ_TIMEOUT, &timeout);
  mysql_options(mysql_, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
  mysql_options(mysql_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  // Never read ~/.my.cnf or /etc/mysql: the connection is exactly what mxward.toml says.
  const char* socket = target_.socket.empty() ? nullptr : target_.socket.c_str();
  const char* host = target_.socket.empty() ? target_.host.c_str() : "localhost";
  // CLIENT_FOUND_ROWS: an upsert that changes nothing still reports its row.
  if (!mysql_real_connect(mysql_, host, target_.user.c_str(), target_.password.c_str(),
                          target_.database.c_str(), static_cast<unsigned int>(target_.port), socket,
                          CLIENT_FOUND_ROWS)) {
    std::string msg = fmt::format("MariaDB: cannot connect to {}: {}",
                                  socket ? target_.socket : target_.host, mysql_error(mysql_));
    Disconnect();
    return Status::Unavailable(std::move(msg));
  }
  // Each statement reads what was committed when it started (the reader's rows after its
  // cursor); the publisher's reads happen under the counter's lock.
  MXWARD_RETURN_IF_ERROR(Simple("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"));
  MXWARD_RETURN_IF_ERROR(Simple("SET SESSION autocommit = 1"));
  return Migrate();
}

Status MariadbDecisionLog::Migrate() {
  std::vector<Row> rows;
  auto locked = Run(kMigrationLockSql, {}, &rows);
  if (!locked.ok()) return locked.status();
  if (rows.empty() || rows[0][0] != "1") {
    Disconnect();
    return Status::Unavailable("MariaDB: another node held the migration lock for 30 s");
  }
  // The lock is the session's: released on every way out (a failure disconnects, which
  // releases it too).
  auto migrate = [&]() -> Status {
    MXWARD_RETURN_IF_ERROR(Simple(kSchemaTableSql));
    std::vector<Row> version_rows;
    auto read = Run(kSchemaVersionSql, {}, &version_rows);
    if (!read.ok()) return read.status();
    const std::int64_t version = version_rows.empty() ? 0 : Int(version_rows[0][0]);
    if (version > kMariadbSchemaVersion) {
      Disconnect();
      return Status::Internal(
          fmt::format("the decision log has MariaDB schema version {}, this mxward knows up to {}: "
                      "upgrade mxward on this node",
                      version, kMariadbSchemaVersion));
    }
    if (version < 1) {
      for (const char* sql : kV1) MXWARD_RETURN_IF_ERROR(Simple(sql));
      auto recorded = Run(kSchemaRecordSql, {std::int64_t{1}});
      if (!recorded.ok()) return recorded.status();
    }
    return Status::Ok();
  };
  Status st = migrate();
  if (connected()) {
    auto unlocked = Run(kMigrationUnlockSql, {}, &rows);
    if (st.ok() && !unlocked.ok()) st = unlocked.status();
  }
  return st;
}

Result<int> MariadbDecisionLog::ConsumeNotifications() {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  return 0;  // no doorbell: the link polls
}

Result<std::int64_t> MariadbDecisionLog::Publish(const std::vector<DecisionToPublish>& decisions) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  if (decisions.empty()) return std::int64_t{0};
  MXWARD_RETURN_IF_ERROR(Simple("START TRANSACTION"));
  std::vector<Row> rows;
  auto locked = Run(kLockCounterSql, {}, &rows);
  if (!locked.ok()) return locked.status();
  if (rows.size() != 1) {
    (void)Simple("ROLLBACK");
    return Status::Internal("MariaDB: mxward_decision_counter has no row");
  }
  const auto n = static_cast<std::int64_t>(decisions.size());
  const std::int64_t last = Int(rows[0][0]) + n;
  auto advanced = Run(kAdvanceCounterSql, {n});
  if (!advanced.ok()) return advanced.status();
  std::int64_t seq = last - n;
  for (const DecisionToPublish& d : decisions) {
    ++seq;
    std::string kind = d.kind;
    if (kind == "ban") {
      std::vector<Row> in_force;
      auto read = Run(kBanInForceSql, {d.scope}, &in_force);
      if (!read.ok()) return read.status();
      if (!in_force.empty() && in_force[0][0] == "1") kind = "extension";
    }
    auto inserted =
        Run(kInsertSql, {seq, kind, d.scope, d.ports, d.duration_s, d.duration_s, d.duration_s,
                         d.playbook, node_, d.incident_id, d.origin_action_id, d.note});
    if (!inserted.ok()) return inserted.status();
  }
  MXWARD_RETURN_IF_ERROR(Simple("COMMIT"));
  return last;
}

Result<std::vector<DecisionRow>> MariadbDecisionLog::ReadAfter(std::int64_t cursor, int limit) {
  std::vector<Row> rows;
  auto read = Run(kReadSql, {cursor, std::int64_t{limit}}, &rows);
  if (!read.ok()) return read.status();
  std::vector<DecisionRow> out;
  out.reserve(rows.size());
  for (Row& row : rows) {
    DecisionRow r;
    r.seq = Int(row[0]);
    r.uuid = std::move(row[1]);
    r.kind = std::move(row[2]);
    r.scope = std::move(row[3]);
    r.ports = std::move(row[4]);
    r.has_expiry = row[5] == "1";
    r.permanent = row[6] == "1";
    r.remaining_s = Int(row[7]);
    r.playbook = std::move(row[8]);
    r.node = std::move(row[9]);
    r.incident_id = Int(row[10]);
    r.note = std::move(row[11]);
    out.push_back(std::move(r));
  }
  return out;
}

Status MariadbDecisionLog::Heartbeat(std::int64_t cursor, std::string_view role, bool connected) {
  auto r = Run(kHeartbeatSql, {node_, role, cursor, std::int64_t{connected ? 1 : 0}});
  return r.ok() ? Status::Ok() : r.status();
}

Result<ClusterView> MariadbDecisionLog::ReadView() {
  ClusterView view;
  std::vector<Row> rows;
  auto head = Run(kHeadSql, {}, &rows);
  if (!head.ok()) return head.status();
  if (rows.size() == 1) {
    view.head = Int(rows[0][0]);
    view.rows = Int(rows[0][1]);
  }
  rows.clear();
  auto nodes = Run(kNodesSql, {}, &rows);
  if (!nodes.ok()) return nodes.status();
  for (Row& row : rows) {
    view.nodes.push_back(
        {std::move(row[0]), std::move(row[1]), Int(row[2]), Int(row[3]), Int(row[4])});
  }
  return view;
}

Result<std::int64_t> MariadbDecisionLog::Prune(std::int64_t keep_s) {
  std::vector<Row> rows;
  auto locked = Run(kPruneLockSql, {}, &rows);
  if (!locked.ok()) return locked.status();
  if (rows.empty() || rows[0][0] != "1") return std::int64_t{0};  // another node is pruning now
  auto prune = [&]() -> Result<std::int64_t> {
    std::vector<Row> floor_rows;
    auto read = Run(kPruneFloorSql, {keep_s}, &floor_rows);
    if (!read.ok()) return read.status();
    const std::int64_t floor = floor_rows.empty() ? 0 : Int(floor_rows[0][0]);
    std::int64_t deleted = 0;
    // Ended entries first, then the removals that no longer lift anything; each statement
    // commits by itself (autocommit), as a later run finishes what an interrupted one began.
    for (const auto& [kinds, others] :
         {std::pair{"ban,extension", "unban"}, std::pair{"allow", "allow,unallow"}}) {
      auto n = Run(kPruneEndedSql, {kinds, floor, keep_s, others, floor, keep_s});
      if (!n.ok()) return n.status();
      deleted += *n;
    }
    for (const auto& [kind, others] :
         {std::pair{"unban", "ban,extension"}, std::pair{"unallow", "allow"}}) {
      auto n = Run(kPruneRemovalsSql, {kind, floor, keep_s, others});
      if (!n.ok()) return n.status();
      deleted += *n;
    }
    return deleted;
  };
  auto deleted = prune();
  if (connected()) {
    auto unlocked = Run(kPruneUnlockSql, {}, &rows);
    if (deleted.ok() && !unlocked.ok()) return unlocked.status();
  }
  return deleted;
}

Result<std::int64_t> MariadbDecisionLog::PublishWindowEvents(const std::vector<WindowEvent>&,
                                                             std::size_t) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<std::vector<RemoteWindowEvent>> MariadbDecisionLog::ReadWindowEventsAfter(std::int64_t,
                                                                                 std::int64_t,
                                                                                 int) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<WindowClaim> MariadbDecisionLog::ClaimWindow(std::string_view, std::string_view,
                                                    std::int64_t) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<std::int64_t> MariadbDecisionLog::PruneWindowEvents(std::int64_t) {
  return Status::InvalidArgument(kUnimplemented);
}
Status MariadbDecisionLog::PublishIncidents(const std::vector<SharedIncident>&) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<std::vector<SharedIncident>> MariadbDecisionLog::ListIncidents(const SharedIncidentQuery&) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<SharedIncident> MariadbDecisionLog::GetIncident(std::string_view, std::int64_t) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<std::int64_t> MariadbDecisionLog::RequestIncidentChange(const IncidentRequest&) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<std::vector<IncidentRequest>> MariadbDecisionLog::PendingIncidentRequests(int) {
  return Status::InvalidArgument(kUnimplemented);
}
Status MariadbDecisionLog::FinishIncidentRequest(std::int64_t, const IncidentRequestOutcome&) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<IncidentRequest> MariadbDecisionLog::ReadIncidentRequest(std::int64_t) {
  return Status::InvalidArgument(kUnimplemented);
}
Result<std::int64_t> MariadbDecisionLog::PruneIncidents(std::int64_t) {
  return Status::InvalidArgument(kUnimplemented);
}

}  // namespace mxward
