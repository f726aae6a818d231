#include "engine/cluster/mariadb_decision_log.h"

// The cluster floor includes libmariadb's headers through their directory: its include path is
// not on every target that compiles this floor.
#include <mariadb/mysql.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "engine/base/mariadb_statement.h"

namespace mxward {
namespace {

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

// v2: PostgreSQL's v4 and v5 (shared windows, cluster-wide incidents) in MariaDB's words, InnoDB
// and utf8mb4_bin like v1. Window events are numbered by the one row of mxward_window_counter
// exactly as decisions are by mxward_decision_counter (TakeNumbers: the row's lock held to
// COMMIT orders the ids by commit). A claim's primary key is (playbook, SHA-256 of the key): a
// key is what a client sent and may be longer than an index can hold, its hash never is; the
// key itself is kept for people. Keys (and an incident's description and trigger, which can
// quote one) are MEDIUMTEXT: TEXT's 64 KiB is a length a log line can reach, and one row too
// long for its column would fail its whole batch or transaction again at every retry. Evidence,
// actions and notes are MariaDB's JSON (LONGTEXT with a JSON_VALID check).
// mxward_incident_requests' AUTO_INCREMENT is fine, as PostgreSQL's bigserial: requests are found
// by "not done", never by a cursor.
constexpr std::array<const char*, 6> kV2 = {
    "CREATE TABLE IF NOT EXISTS mxward_window_counter ("
    " id INT NOT NULL PRIMARY KEY CHECK (id = 1),"
    " last BIGINT NOT NULL"
    ") ENGINE=InnoDB",
    "INSERT IGNORE INTO mxward_window_counter VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS mxward_window_events ("
    " id BIGINT NOT NULL PRIMARY KEY,"
    " playbook TEXT NOT NULL,"
    " `key` MEDIUMTEXT NOT NULL,"
    " event_time_us BIGINT NOT NULL,"
    " weight INT NOT NULL DEFAULT 1,"
    " node VARCHAR(64) NOT NULL,"
    " created_at DATETIME(6) NOT NULL,"
    " KEY mxward_window_events_by_created (created_at)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS mxward_window_claims ("
    " playbook VARCHAR(255) NOT NULL,"
    " key_sha256 BINARY(32) NOT NULL,"
    " `key` MEDIUMTEXT NOT NULL,"
    " node VARCHAR(64) NOT NULL,"
    " claimed_at DATETIME(6) NOT NULL,"
    " `until` DATETIME(6) NOT NULL,"
    " PRIMARY KEY (playbook, key_sha256)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS mxward_incidents ("
    " node VARCHAR(64) NOT NULL,"
    " local_id BIGINT NOT NULL,"
    " uuid CHAR(36) NOT NULL,"
    " playbook TEXT NOT NULL,"
    " description MEDIUMTEXT NOT NULL DEFAULT '',"
    " severity VARCHAR(16) NOT NULL,"
    " mode VARCHAR(16) NOT NULL,"
    " key_kind TEXT NOT NULL,"
    " `key` MEDIUMTEXT NOT NULL,"
    " `trigger` MEDIUMTEXT NOT NULL DEFAULT '',"
    " status VARCHAR(16) NOT NULL,"
    " first_seen_us BIGINT NOT NULL,"
    " last_seen_us BIGINT NOT NULL,"
    " `count` BIGINT NOT NULL,"
    " triggers BIGINT NOT NULL DEFAULT 1,"
    " window_seconds BIGINT NOT NULL DEFAULT 0,"
    " evidence JSON NOT NULL,"
    " actions JSON NOT NULL,"
    " notes JSON NOT NULL,"
    " published_at DATETIME(6) NOT NULL,"
    " PRIMARY KEY (node, local_id),"
    " UNIQUE KEY mxward_incidents_uuid (uuid),"
    " KEY mxward_incidents_by_last_seen (last_seen_us)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS mxward_incident_requests ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL,"
    " local_id BIGINT NOT NULL,"
    " kind VARCHAR(16) NOT NULL CHECK (kind IN ('ack', 'resolve')),"
    " revert BOOLEAN NOT NULL DEFAULT FALSE,"
    " note TEXT NOT NULL DEFAULT '',"
    " requested_by VARCHAR(64) NOT NULL,"
    " requested_user TEXT NOT NULL DEFAULT '',"
    " requested_at DATETIME(6) NOT NULL,"
    " done_at DATETIME(6) NULL,"
    " ok BOOLEAN NULL,"
    " outcome TEXT NOT NULL DEFAULT '',"
    " KEY mxward_incident_requests_pending (node, done_at, id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
};

constexpr const char* kSchemaTableSql =
    "CREATE TABLE IF NOT EXISTS mxward_cluster_schema ("
    " version INT NOT NULL PRIMARY KEY,"
    " applied_at DATETIME(6) NOT NULL"
    ") ENGINE=InnoDB";
// v3: PostgreSQL's v6 (shared resets): a window event is a count or a reset of the key's window
// at its event time. IF NOT EXISTS: a migration cut short (the column added, its version row
// not) runs again in full.
constexpr std::array<const char*, 1> kV3 = {
    "ALTER TABLE mxward_window_events ADD COLUMN IF NOT EXISTS"
    " kind VARCHAR(8) NOT NULL DEFAULT 'count' CHECK (kind IN ('count', 'reset'))",
};

constexpr const char* kSchemaVersionSql =
    "SELECT COALESCE(MAX(version), 0) FROM mxward_cluster_schema";
constexpr const char* kSchemaRecordSql =
    "INSERT IGNORE INTO mxward_cluster_schema VALUES (?, UTC_TIMESTAMP(6))";
// Nodes that start together migrate one after another; 30 s is longer than any migration.
constexpr const char* kMigrationLockSql = "SELECT GET_LOCK('mxward_cluster_migration', 30)";
constexpr const char* kMigrationUnlockSql = "SELECT RELEASE_LOCK('mxward_cluster_migration')";

// The counter rows, each locked to its transaction's COMMIT: publishers take their numbers one
// after another, in commit order (TakeNumbers). One for decisions, one for window events.
constexpr MariadbDecisionLog::Counter kDecisionCounter = {
    "SELECT last FROM mxward_decision_counter WHERE id = 1 FOR UPDATE",
    "UPDATE mxward_decision_counter SET last = last + ? WHERE id = 1", "mxward_decision_counter"};
constexpr MariadbDecisionLog::Counter kWindowCounter = {
    "SELECT last FROM mxward_window_counter WHERE id = 1 FOR UPDATE",
    "UPDATE mxward_window_counter SET last = last + ? WHERE id = 1", "mxward_window_counter"};
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

MariadbParam I(std::int64_t v) { return MariadbParam::Int(v); }
MariadbParam T(std::string_view v) { return MariadbParam::Text(v); }
// A column read: NULL reads as "" and 0 (the columns read here are NOT NULL or COALESCEd).
std::int64_t Int(const std::optional<std::string>& v) {
  return v ? std::strtoll(v->c_str(), nullptr, 10) : 0;
}
bool Bool(const std::optional<std::string>& v) { return v && *v == "1"; }
std::string Take(std::optional<std::string>& v) { return v ? std::move(*v) : std::string(); }

// Schema v2's statements: shared windows' events and claims, then cluster-wide incidents.

// A batch of window events is written rows at a time in multi-row INSERTs of these sizes (the
// largest that fits first, each prepared once): a full batch of 4,096 is 8 statements, and no
// batch needs more than 8 + 7 + 7 + 7.
constexpr std::array<int, 4> kWindowInsertRows = {512, 64, 8, 1};

const char* InsertWindowEventsSql(std::size_t size_index) {
  static const std::array<std::string, kWindowInsertRows.size()> sql = [] {
    std::array<std::string, kWindowInsertRows.size()> out;
    for (std::size_t k = 0; k < kWindowInsertRows.size(); ++k) {
      out[k] =
          "INSERT INTO mxward_window_events (id, playbook, `key`, event_time_us, weight, node,"
          " kind, created_at) VALUES ";
      for (int r = 0; r < kWindowInsertRows[k]; ++r) {
        out[k] += r == 0 ? "" : ", ";
        out[k] += "(?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))";
      }
    }
    return out;
  }();
  return sql[size_index].c_str();
}

constexpr const char* kReadWindowEventsSql =
    "SELECT id, node, playbook, `key`, event_time_us, weight, kind FROM mxward_window_events"
    " WHERE id > ? AND (node <> ? OR ? = 1) AND created_at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND"
    " ORDER BY id LIMIT ?";

// A claim: a new row wins; an existing one is taken over only once its lease ended (the UPDATE
// reads the row's latest version under its lock, so of two nodes taking over one wins); else
// the holder is read. MariaDB has no INSERT ... ON CONFLICT ... WHERE ... RETURNING, whose one
// statement PostgreSQL uses.
constexpr const char* kClaimInsertSql =
    "INSERT IGNORE INTO mxward_window_claims (playbook, key_sha256, `key`, node, claimed_at,"
    " `until`) VALUES (?, UNHEX(SHA2(?, 256)), ?, ?, UTC_TIMESTAMP(6),"
    " UTC_TIMESTAMP(6) + INTERVAL ? SECOND)";
constexpr const char* kClaimTakeOverSql =
    "UPDATE mxward_window_claims SET node = ?, claimed_at = UTC_TIMESTAMP(6),"
    " `until` = UTC_TIMESTAMP(6) + INTERVAL ? SECOND"
    " WHERE playbook = ? AND key_sha256 = UNHEX(SHA2(?, 256)) AND `until` <= UTC_TIMESTAMP(6)";
constexpr const char* kClaimHolderSql =
    "SELECT node FROM mxward_window_claims WHERE playbook = ? AND key_sha256 = UNHEX(SHA2(?, 256))";
constexpr const char* kPruneWindowEventsSql =
    "DELETE FROM mxward_window_events WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND";
constexpr const char* kPruneClaimsSql =
    "DELETE FROM mxward_window_claims WHERE `until` < UTC_TIMESTAMP(6) - INTERVAL ? SECOND";

// The longest playbook name a claim's key holds (VARCHAR(255)); names come from mxward.toml's
// rule files, never from a log line.
constexpr std::size_t kMaxPlaybookBytes = 255;

constexpr const char* kUpsertIncidentSql =
    "INSERT INTO mxward_incidents (node, local_id, uuid, playbook, description, severity, mode,"
    " key_kind, `key`, `trigger`, status, first_seen_us, last_seen_us, `count`, triggers,"
    " window_seconds, evidence, actions, notes, published_at)"
    " VALUES (?, ?, UUID(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))"
    " ON DUPLICATE KEY UPDATE playbook = VALUES(playbook), description = VALUES(description),"
    " severity = VALUES(severity), mode = VALUES(mode), key_kind = VALUES(key_kind),"
    " `key` = VALUES(`key`), `trigger` = VALUES(`trigger`), status = VALUES(status),"
    " first_seen_us = VALUES(first_seen_us), last_seen_us = VALUES(last_seen_us),"
    " `count` = VALUES(`count`), triggers = VALUES(triggers),"
    " window_seconds = VALUES(window_seconds), evidence = VALUES(evidence),"
    " actions = VALUES(actions), notes = VALUES(notes), published_at = VALUES(published_at)";

// The columns ReadIncidentRow reads, in its order; evidence and notes last (GetIncident only).
#define MXWARD_INCIDENT_COLUMNS                                                                  \
  "SELECT node, local_id, uuid, playbook, description, severity, mode, key_kind, `key`,"         \
  " `trigger`, status, first_seen_us, last_seen_us, `count`, triggers, window_seconds, actions," \
  " GREATEST(0, FLOOR(TIMESTAMPDIFF(MICROSECOND, published_at, UTC_TIMESTAMP(6)) / 1000000))"
constexpr const char* kListIncidentsSql = MXWARD_INCIDENT_COLUMNS
    " FROM mxward_incidents WHERE (? = '' OR node = ?) AND (? = '' OR status = ?)"
    " AND (? = '' OR playbook = ?) AND (? = '' OR `key` = ?) AND last_seen_us >= ?"
    " ORDER BY last_seen_us DESC, node, local_id DESC LIMIT ?";
constexpr const char* kGetIncidentSql = MXWARD_INCIDENT_COLUMNS
    ", evidence, notes FROM mxward_incidents WHERE node = ? AND local_id = ?";
#undef MXWARD_INCIDENT_COLUMNS

#define MXWARD_REQUEST_COLUMNS                                                              \
  "SELECT id, node, local_id, kind, revert, note, requested_by, requested_user, done_at IS" \
  " NOT NULL, COALESCE(ok, FALSE), outcome FROM mxward_incident_requests"
constexpr const char* kPendingRequestsSql =
    MXWARD_REQUEST_COLUMNS " WHERE node = ? AND done_at IS NULL ORDER BY id LIMIT ?";
constexpr const char* kReadRequestSql = MXWARD_REQUEST_COLUMNS " WHERE id = ?";
#undef MXWARD_REQUEST_COLUMNS
constexpr const char* kInsertRequestSql =
    "INSERT INTO mxward_incident_requests (node, local_id, kind, revert, note, requested_by,"
    " requested_user, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))";
constexpr const char* kLastInsertIdSql = "SELECT LAST_INSERT_ID()";
constexpr const char* kFinishRequestSql =
    "UPDATE mxward_incident_requests SET done_at = UTC_TIMESTAMP(6), ok = ?, outcome = ?"
    " WHERE id = ?";
constexpr const char* kPruneIncidentsSql =
    "DELETE FROM mxward_incidents WHERE status = 'resolved'"
    " AND published_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND";
constexpr const char* kPruneRequestsSql =
    "DELETE FROM mxward_incident_requests WHERE done_at IS NOT NULL"
    " AND done_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND";

SharedIncident ReadIncidentRow(MariadbRow& row) {
  SharedIncident s;
  s.node = Take(row[0]);
  Incident& inc = s.incident;
  inc.id = Int(row[1]);
  s.uuid = Take(row[2]);
  inc.playbook = Take(row[3]);
  inc.description = Take(row[4]);
  ParseSeverity(row[5].value_or(""), &inc.severity);
  ParsePlaybookMode(row[6].value_or(""), &inc.mode);
  inc.key_kind = Take(row[7]);
  inc.key = Take(row[8]);
  inc.trigger = Take(row[9]);
  ParseIncidentStatus(row[10].value_or(""), &inc.status);
  inc.first_seen = Int(row[11]);
  inc.last_seen = Int(row[12]);
  inc.count = static_cast<std::uint64_t>(std::max<std::int64_t>(0, Int(row[13])));
  inc.triggers = static_cast<std::uint64_t>(std::max<std::int64_t>(1, Int(row[14])));
  inc.window_seconds = Int(row[15]);
  s.actions = ActionsFromColumn(row[16].value_or("[]"));
  s.published_ago_s = Int(row[17]);
  return s;
}

IncidentRequest ReadRequestRow(MariadbRow& row) {
  IncidentRequest r;
  r.id = Int(row[0]);
  r.node = Take(row[1]);
  r.incident_id = Int(row[2]);
  r.kind = Take(row[3]);
  r.revert = Bool(row[4]);
  r.note = Take(row[5]);
  r.requested_by = Take(row[6]);
  r.requested_user = Take(row[7]);
  r.done = Bool(row[8]);
  r.ok = Bool(row[9]);
  r.outcome = Take(row[10]);
  return r;
}

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
  // over on a new one. The status first: `message` is mysql_error()'s or mysql_stmt_error()'s
  // buffer, which Disconnect() frees (ASan caught the read after it when MariaDB went away).
  Status status = MariadbStatus(code, message, doing);
  Disconnect();
  return status;
}

Status MariadbDecisionLog::Simple(const char* sql) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  if (mysql_query(mysql_, sql) != 0) return Fail(mysql_errno(mysql_), mysql_error(mysql_), sql);
  return Status::Ok();
}

Result<std::int64_t> MariadbDecisionLog::Run(const char* sql,
                                             const std::vector<MariadbParam>& params,
                                             std::vector<MariadbRow>* rows) {
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
  auto n = RunMariadbStatement(stmt, params, rows);
  if (!n.ok()) Disconnect();  // the connection is in doubt: start over on a new one
  return n;
}

Result<std::int64_t> MariadbDecisionLog::TakeNumbers(const Counter& counter, std::int64_t n) {
  std::vector<MariadbRow> rows;
  auto locked = Run(counter.lock_sql, {}, &rows);
  if (!locked.ok()) return locked.status();
  if (rows.size() != 1) {
    (void)Simple("ROLLBACK");
    return Status::Internal(fmt::format("MariaDB: {} has no row", counter.table));
  }
  const std::int64_t before = Int(rows[0][0]);
  auto advanced = Run(counter.advance_sql, {I(n)});
  if (!advanced.ok()) return advanced.status();
  return before;
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
  std::vector<MariadbRow> rows;
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
    std::vector<MariadbRow> version_rows;
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
    // Each version's statements, then its row: a migration cut short runs again in full.
    const auto apply = [&](std::int64_t to, const auto& statements) -> Status {
      if (version >= to) return Status::Ok();
      for (const char* sql : statements) MXWARD_RETURN_IF_ERROR(Simple(sql));
      auto recorded = Run(kSchemaRecordSql, {I(to)});
      return recorded.ok() ? Status::Ok() : recorded.status();
    };
    MXWARD_RETURN_IF_ERROR(apply(1, kV1));
    MXWARD_RETURN_IF_ERROR(apply(2, kV2));
    return apply(3, kV3);
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
  const auto n = static_cast<std::int64_t>(decisions.size());
  auto before = TakeNumbers(kDecisionCounter, n);
  if (!before.ok()) return before.status();
  std::int64_t seq = *before;
  std::vector<MariadbRow> in_force;
  for (const DecisionToPublish& d : decisions) {
    ++seq;
    std::string_view kind = d.kind;
    if (kind == "ban") {
      in_force.clear();
      auto read = Run(kBanInForceSql, {T(d.scope)}, &in_force);
      if (!read.ok()) return read.status();
      if (!in_force.empty() && in_force[0][0] == "1") kind = "extension";
    }
    auto inserted = Run(kInsertSql, {I(seq), T(kind), T(d.scope), T(d.ports), I(d.duration_s),
                                     I(d.duration_s), I(d.duration_s), T(d.playbook), T(node_),
                                     I(d.incident_id), I(d.origin_action_id), T(d.note)});
    if (!inserted.ok()) return inserted.status();
  }
  MXWARD_RETURN_IF_ERROR(Simple("COMMIT"));
  return seq;
}

Result<std::vector<DecisionRow>> MariadbDecisionLog::ReadAfter(std::int64_t cursor, int limit) {
  std::vector<MariadbRow> rows;
  auto read = Run(kReadSql, {I(cursor), I(limit)}, &rows);
  if (!read.ok()) return read.status();
  std::vector<DecisionRow> out;
  out.reserve(rows.size());
  for (MariadbRow& row : rows) {
    DecisionRow r;
    r.seq = Int(row[0]);
    r.uuid = Take(row[1]);
    r.kind = Take(row[2]);
    r.scope = Take(row[3]);
    r.ports = Take(row[4]);
    r.has_expiry = Bool(row[5]);
    r.permanent = Bool(row[6]);
    r.remaining_s = Int(row[7]);
    r.playbook = Take(row[8]);
    r.node = Take(row[9]);
    r.incident_id = Int(row[10]);
    r.note = Take(row[11]);
    out.push_back(std::move(r));
  }
  return out;
}

Status MariadbDecisionLog::Heartbeat(std::int64_t cursor, std::string_view role, bool connected) {
  auto r = Run(kHeartbeatSql, {T(node_), T(role), I(cursor), I(connected ? 1 : 0)});
  return r.ok() ? Status::Ok() : r.status();
}

Result<ClusterView> MariadbDecisionLog::ReadView() {
  ClusterView view;
  std::vector<MariadbRow> rows;
  auto head = Run(kHeadSql, {}, &rows);
  if (!head.ok()) return head.status();
  if (rows.size() == 1) {
    view.head = Int(rows[0][0]);
    view.rows = Int(rows[0][1]);
  }
  rows.clear();
  auto nodes = Run(kNodesSql, {}, &rows);
  if (!nodes.ok()) return nodes.status();
  for (MariadbRow& row : rows) {
    view.nodes.push_back({Take(row[0]), Take(row[1]), Int(row[2]), Int(row[3]), Int(row[4])});
  }
  return view;
}

Result<std::int64_t> MariadbDecisionLog::Prune(std::int64_t keep_s) {
  std::vector<MariadbRow> rows;
  auto locked = Run(kPruneLockSql, {}, &rows);
  if (!locked.ok()) return locked.status();
  if (rows.empty() || rows[0][0] != "1") return std::int64_t{0};  // another node is pruning now
  auto prune = [&]() -> Result<std::int64_t> {
    std::vector<MariadbRow> floor_rows;
    auto read = Run(kPruneFloorSql, {I(keep_s)}, &floor_rows);
    if (!read.ok()) return read.status();
    const std::int64_t floor = floor_rows.empty() ? 0 : Int(floor_rows[0][0]);
    std::int64_t deleted = 0;
    // Ended entries first, then the removals that no longer lift anything; each statement
    // commits by itself (autocommit), as a later run finishes what an interrupted one began.
    for (const auto& [kinds, others] :
         {std::pair{"ban,extension", "unban"}, std::pair{"allow", "allow,unallow"}}) {
      auto n = Run(kPruneEndedSql, {T(kinds), I(floor), I(keep_s), T(others), I(floor), I(keep_s)});
      if (!n.ok()) return n.status();
      deleted += *n;
    }
    for (const auto& [kind, others] :
         {std::pair{"unban", "ban,extension"}, std::pair{"unallow", "allow"}}) {
      auto n = Run(kPruneRemovalsSql, {T(kind), I(floor), I(keep_s), T(others)});
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

Result<std::int64_t> MariadbDecisionLog::PublishWindowEvents(const std::vector<WindowEvent>& events,
                                                             std::size_t n) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  n = std::min(n, events.size());
  // A key utf8mb4 cannot hold (not UTF-8) would fail its statement in strict mode, and with it
  // the batch: left out, counted by the caller. The same text PostgreSQL can hold.
  std::vector<const WindowEvent*> kept;
  kept.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (FitsPostgresText(events[i].key) && FitsPostgresText(events[i].playbook)) {
      kept.push_back(&events[i]);
    }
  }
  if (kept.empty()) return std::int64_t{0};
  const auto written = static_cast<std::int64_t>(kept.size());
  MXWARD_RETURN_IF_ERROR(Simple("START TRANSACTION"));
  auto before = TakeNumbers(kWindowCounter, written);
  if (!before.ok()) return before.status();
  std::int64_t id = *before;
  std::vector<MariadbParam> params;
  std::size_t next = 0;
  for (std::size_t k = 0; k < kWindowInsertRows.size(); ++k) {
    const auto rows = static_cast<std::size_t>(kWindowInsertRows[k]);
    while (kept.size() - next >= rows) {
      params.clear();
      for (std::size_t r = 0; r < rows; ++r) {
        const WindowEvent& e = *kept[next++];
        params.insert(params.end(), {I(++id), T(e.playbook), T(e.key), I(e.time_us),
                                     I(static_cast<std::int64_t>(e.weight)), T(node_),
                                     T(e.kind == WindowEventKind::kReset ? "reset" : "count")});
      }
      auto inserted = Run(InsertWindowEventsSql(k), params);
      if (!inserted.ok()) return inserted.status();
    }
  }
  MXWARD_RETURN_IF_ERROR(Simple("COMMIT"));
  return written;
}

Result<std::vector<RemoteWindowEvent>> MariadbDecisionLog::ReadWindowEventsAfter(
    std::int64_t cursor, std::int64_t max_age_s, int limit, bool include_own) {
  std::vector<MariadbRow> rows;
  auto read = Run(kReadWindowEventsSql,
                  {I(cursor), T(node_), I(include_own ? 1 : 0),
                   I(std::max<std::int64_t>(max_age_s, 1)), I(limit)},
                  &rows);
  if (!read.ok()) return read.status();
  std::vector<RemoteWindowEvent> out;
  out.reserve(rows.size());
  for (MariadbRow& row : rows) {
    RemoteWindowEvent r;
    r.id = Int(row[0]);
    r.node = Take(row[1]);
    r.event.playbook = Take(row[2]);
    r.event.key = Take(row[3]);
    r.event.time_us = Int(row[4]);
    r.event.weight = static_cast<std::uint32_t>(std::clamp<std::int64_t>(Int(row[5]), 1, 65535));
    r.event.kind = row[6] && *row[6] == "reset" ? WindowEventKind::kReset : WindowEventKind::kCount;
    out.push_back(std::move(r));
  }
  return out;
}

Result<WindowClaim> MariadbDecisionLog::ClaimWindow(std::string_view playbook, std::string_view key,
                                                    std::int64_t lease_s) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  if (!FitsPostgresText(playbook) || !FitsPostgresText(key) ||
      playbook.size() > kMaxPlaybookBytes) {
    return Status::InvalidArgument("the key is not text MariaDB's utf8mb4 can hold (not UTF-8)");
  }
  const std::int64_t lease = std::max<std::int64_t>(lease_s, 1);
  WindowClaim claim;
  auto inserted = Run(kClaimInsertSql, {T(playbook), T(key), T(key), T(node_), I(lease)});
  if (!inserted.ok()) return inserted.status();
  claim.won = *inserted == 1;
  if (!claim.won) {
    auto taken = Run(kClaimTakeOverSql, {T(node_), I(lease), T(playbook), T(key)});
    if (!taken.ok()) return taken.status();
    claim.won = *taken == 1;
  }
  if (!claim.won) {
    std::vector<MariadbRow> rows;
    auto read = Run(kClaimHolderSql, {T(playbook), T(key)}, &rows);
    if (!read.ok()) return read.status();
    if (rows.size() == 1) claim.holder = Take(rows[0][0]);
  }
  return claim;
}

Result<std::int64_t> MariadbDecisionLog::PruneWindowEvents(std::int64_t keep_s) {
  return RunPrunes({kPruneWindowEventsSql, kPruneClaimsSql}, keep_s);
}

Result<std::int64_t> MariadbDecisionLog::RunPrunes(std::initializer_list<const char*> statements,
                                                   std::int64_t keep_s) {
  std::int64_t deleted = 0;
  for (const char* sql : statements) {
    auto n = Run(sql, {I(std::max<std::int64_t>(keep_s, 1))});
    if (!n.ok()) return n.status();
    deleted += *n;
  }
  return deleted;
}

Status MariadbDecisionLog::PublishIncidents(const std::vector<SharedIncident>& incidents) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  if (incidents.empty()) return Status::Ok();
  MXWARD_RETURN_IF_ERROR(Simple("START TRANSACTION"));
  for (const SharedIncident& s : incidents) {
    const Incident& inc = s.incident;
    // Text a client chose becomes valid UTF-8 (utf8mb4 and JSON refuse anything else), as for
    // PostgreSQL: the copy is for people to read.
    auto upserted =
        Run(kUpsertIncidentSql,
            {T(node_), I(inc.id), T(PostgresSafeText(inc.playbook)),
             T(PostgresSafeText(inc.description)), T(SeverityName(inc.severity)),
             T(PlaybookModeName(inc.mode)), T(PostgresSafeText(inc.key_kind)),
             T(PostgresSafeText(inc.key)), T(PostgresSafeText(inc.trigger)),
             T(IncidentStatusName(inc.status)), I(inc.first_seen), I(inc.last_seen),
             I(static_cast<std::int64_t>(inc.count)), I(static_cast<std::int64_t>(inc.triggers)),
             I(inc.window_seconds), T(EvidenceColumn(inc.evidence)), T(ActionsColumn(s.actions)),
             T(NotesColumn(s.notes))});
    if (!upserted.ok()) return upserted.status();
  }
  return Simple("COMMIT");
}

Result<std::vector<SharedIncident>> MariadbDecisionLog::ListIncidents(
    const SharedIncidentQuery& q) {
  std::vector<MariadbRow> rows;
  const std::string playbook = PostgresSafeText(q.playbook);
  const std::string key = PostgresSafeText(q.key);
  auto read = Run(kListIncidentsSql,
                  {T(q.node), T(q.node), T(q.status), T(q.status), T(playbook), T(playbook), T(key),
                   T(key), I(q.since), I(std::max(q.limit, 1))},
                  &rows);
  if (!read.ok()) return read.status();
  std::vector<SharedIncident> out;
  out.reserve(rows.size());
  for (MariadbRow& row : rows) out.push_back(ReadIncidentRow(row));
  return out;
}

Result<SharedIncident> MariadbDecisionLog::GetIncident(std::string_view node, std::int64_t id) {
  std::vector<MariadbRow> rows;
  const std::string safe_node = PostgresSafeText(node);
  auto read = Run(kGetIncidentSql, {T(safe_node), I(id)}, &rows);
  if (!read.ok()) return read.status();
  if (rows.size() != 1) {
    return Status::NotFound(fmt::format(
        "no incident {}:{} in the cluster (node {} has not published it)", node, id, node));
  }
  SharedIncident s = ReadIncidentRow(rows[0]);
  s.incident.evidence = EvidenceFromColumn(rows[0][18].value_or("[]"));
  s.notes = NotesFromColumn(rows[0][19].value_or("[]"));
  return s;
}

Result<std::int64_t> MariadbDecisionLog::RequestIncidentChange(const IncidentRequest& r) {
  if (mysql_ == nullptr) return Status::Unavailable("MariaDB: not connected");
  // No doorbell: the owner's link finds the row at its next poll.
  auto inserted = Run(kInsertRequestSql, {T(PostgresSafeText(r.node)), I(r.incident_id), T(r.kind),
                                          I(r.revert ? 1 : 0), T(PostgresSafeText(r.note)),
                                          T(node_), T(PostgresSafeText(r.requested_user))});
  if (!inserted.ok()) return inserted.status();
  std::vector<MariadbRow> rows;
  auto read = Run(kLastInsertIdSql, {}, &rows);
  if (!read.ok()) return read.status();
  if (rows.size() != 1) return Status::Internal("MariaDB: no id for the incident request");
  return Int(rows[0][0]);
}

Result<std::vector<IncidentRequest>> MariadbDecisionLog::PendingIncidentRequests(int limit) {
  std::vector<MariadbRow> rows;
  auto read = Run(kPendingRequestsSql, {T(node_), I(limit)}, &rows);
  if (!read.ok()) return read.status();
  std::vector<IncidentRequest> out;
  out.reserve(rows.size());
  for (MariadbRow& row : rows) out.push_back(ReadRequestRow(row));
  return out;
}

Status MariadbDecisionLog::FinishIncidentRequest(std::int64_t id,
                                                 const IncidentRequestOutcome& outcome) {
  auto done =
      Run(kFinishRequestSql, {I(outcome.ok ? 1 : 0), T(PostgresSafeText(outcome.text)), I(id)});
  return done.ok() ? Status::Ok() : done.status();
}

Result<IncidentRequest> MariadbDecisionLog::ReadIncidentRequest(std::int64_t id) {
  std::vector<MariadbRow> rows;
  auto read = Run(kReadRequestSql, {I(id)}, &rows);
  if (!read.ok()) return read.status();
  if (rows.size() != 1) return Status::NotFound(fmt::format("no incident request {}", id));
  return ReadRequestRow(rows[0]);
}

Result<std::int64_t> MariadbDecisionLog::PruneIncidents(std::int64_t keep_s) {
  return RunPrunes({kPruneIncidentsSql, kPruneRequestsSql}, keep_s);
}

}  // namespace mxward
