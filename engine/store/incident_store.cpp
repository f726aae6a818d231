#include "mxward/incident_store.h"

#include <unistd.h>

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "engine/base/fnv1a.h"
#include "engine/store/store_migrations.h"
#include "engine/store/wal_checkpointer.h"
#include "mxward/ip_address.h"

namespace mxward {
namespace {

// A cached statement in use: binds by 1-based index, resets and clears on scope exit so the
// next user of the cache finds it clean.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Stmt& BindBlob(int i, const void* data, std::size_t size) {
    sqlite3_bind_blob(s_, i, data, static_cast<int>(size), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& BindTextOrNull(int i, std::string_view v) {
    if (v.empty()) {
      sqlite3_bind_null(s_, i);
      return *this;
    }
    return Bind(i, v);
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(s_); }

  std::int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : "";
  }

 private:
  sqlite3_stmt* s_;
};

template <typename E>
E ParseOr(std::string_view text, bool (*parse)(std::string_view, E*), E fallback) {
  E out = fallback;
  parse(text, &out);
  return out;
}

nlohmann::json ParseJsonOr(const std::string& text, nlohmann::json fallback) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? fallback : j;
}

std::string IdempotencyKey(std::int64_t id) { return fmt::format("mxward-{}", id); }

}  // namespace

// Expands to the Stmt for a SQL literal or returns the preparation error.
#define MXWARD_STMT(var, sql)                               \
  auto var##_prepared = Prepare(sql);                       \
  if (!var##_prepared.ok()) return var##_prepared.status(); \
  Stmt var(*var##_prepared)

IncidentStore::IncidentStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

IncidentStore::~IncidentStore() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Status IncidentStore::Error(std::string_view doing) const {
  const int code = sqlite3_extended_errcode(db_);
  std::string msg = fmt::format("{} ({}): {}", doing, path_, sqlite3_errmsg(db_));
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(msg + " (another process holds the database)");
    case SQLITE_FULL:
    case SQLITE_IOERR:
      return Status::IoError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(msg);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CANTOPEN:
      return Status::PermissionDenied(msg);
    case SQLITE_CONSTRAINT:
      return Status::InvalidArgument(msg);
    default:
      return Status::Internal(msg);
  }
}

Result<sqlite3_stmt*> IncidentStore::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    return Error("preparing a statement");
  }
  statements_.emplace(sql, stmt);
  return stmt;
}

Status IncidentStore::Begin() {
  // A WAL far past its checkpoint mark waits for the checkpoint, so it can start over
  // (wal_checkpointer.h); at once otherwise.
  if (depth_ == 0 && checkpointer_) checkpointer_->WaitWhileBehind();
  if (depth_ > 0 && flat_) {
    ++depth_;
    return Status::Ok();
  }
  const char* sql = depth_ == 0 ? "BEGIN IMMEDIATE" : nullptr;
  std::string savepoint;
  if (!sql) {
    savepoint = fmt::format("SAVEPOINT s{}", depth_);
    sql = savepoint.c_str();
  }
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Error("starting a transaction");
  }
  ++depth_;
  return Status::Ok();
}

Status IncidentStore::Commit() {
  --depth_;
  if (depth_ > 0 && flat_) return Status::Ok();
  if (depth_ == 0) flat_ = false;
  const std::string sql = depth_ == 0 ? "COMMIT" : fmt::format("RELEASE s{}", depth_);
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    Status s = Error("committing");
    ++depth_;
    Rollback();
    return s;
  }
  return Status::Ok();
}

void IncidentStore::Rollback() {
  --depth_;
  if (depth_ > 0 && flat_) return;  // the outermost level rolls everything back
  if (depth_ == 0) flat_ = false;
  const std::string sql =
      depth_ == 0 ? "ROLLBACK" : fmt::format("ROLLBACK TO s{0}; RELEASE s{0}", depth_);
  sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
}

Result<std::unique_ptr<IncidentStore>> IncidentStore::Open(const std::string& path,
                                                           const StoreOptions& options) {
  static_assert(kSchemaVersion >= 1);
  if (store::Migrations().size() != static_cast<std::size_t>(kSchemaVersion)) {
    return Status::Internal("schema migrations do not match kSchemaVersion");
  }
  if (options.read_only) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      return Status::NotFound(fmt::format("no mxward database at {}", path));
    }
  }
  sqlite3* raw = nullptr;
  const int flags =
      (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  std::unique_ptr<IncidentStore> store(new IncidentStore(path, raw));
  if (rc != SQLITE_OK) {
    if (!raw) return Status::ResourceExhausted("cannot allocate an SQLite connection");
    // SQLite says only "unable to open database file"; the usual cause is the directory.
    const std::filesystem::path dir = std::filesystem::path(path).parent_path().empty()
                                          ? std::filesystem::path(".")
                                          : std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      return Status::NotFound(fmt::format(
          "cannot open the mxward database {}: the directory {} does not exist (the package "
          "creates /var/lib/mxward owned by mxward; create it, or name another with --db or "
          "[store] path)",
          path, dir.string()));
    }
    if (!options.read_only && ::access(dir.c_str(), W_OK | X_OK) != 0) {
      return Status::PermissionDenied(fmt::format(
          "cannot open the mxward database {}: the directory {} is not writable by uid {} (SQLite "
          "writes its journal beside the file)",
          path, dir.string(), ::geteuid()));
    }
    return store->Error("cannot open the mxward database");
  }
  // SQLite quietly opens a file this user cannot write read-only even when asked for read-write.
  // Such a connection never heals (fixing the permissions does not reopen it), so a writer that
  // got one would fail every write until restarted. Refused here: whoever opens lazily (the
  // executors, the dispatcher) opens again on its next attempt, and succeeds once fixed.
  if (!options.read_only && sqlite3_db_readonly(raw, "main") == 1) {
    return Status::PermissionDenied(
        fmt::format("{}: SQLite can open it read-only only (this user cannot write it)", path));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);

  auto exec = [&](const char* sql, std::string_view doing) -> Status {
    char* err = nullptr;
    if (sqlite3_exec(raw, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      Status s = store->Error(doing);
      sqlite3_free(err);
      return s;
    }
    return Status::Ok();
  };
  auto user_version = [&]() -> Result<int> {
    auto prepared = store->Prepare("PRAGMA user_version");
    if (!prepared.ok()) return prepared.status();
    Stmt q(*prepared);
    if (q.Step() != SQLITE_ROW) return store->Error("reading the schema version");
    return static_cast<int>(q.Int(0));
  };

  auto version = user_version();
  if (!version.ok()) {
    return version.status().Annotate(
        fmt::format("{} is not an mxward database (or is damaged)", path));
  }
  auto too_new = [&](int v) {
    return Status::InvalidArgument(fmt::format(
        "{} was written by a newer mxward (schema version {}, this mxward knows up to {}); "
        "upgrade mxward, or point --db / [store] path at another file",
        path, v, kSchemaVersion));
  };
  if (*version > kSchemaVersion) return too_new(*version);

  if (options.read_only) {
    if (*version < kSchemaVersion) {
      return Status::InvalidArgument(fmt::format(
          "{} has schema version {} and needs an upgrade to {}: open it once read-write "
          "(run the daemon or any mxward command that changes state)",
          path, *version, kSchemaVersion));
    }
    return store;
  }

  // WAL: the CLI reads while the daemon writes. synchronous=NORMAL is crash-consistent in WAL
  // mode (a power cut can lose the last commits, never corrupt the file).
  MXWARD_RETURN_IF_ERROR(exec("PRAGMA journal_mode=WAL", "switching to WAL"));
  MXWARD_RETURN_IF_ERROR(exec("PRAGMA synchronous=NORMAL", "setting synchronous"));

  if (*version < kSchemaVersion) {
    MXWARD_RETURN_IF_ERROR(store->Begin());
    // Read again under the write lock: another process may have migrated meanwhile.
    auto locked = user_version();
    if (!locked.ok()) {
      store->Rollback();
      return locked.status();
    }
    if (*locked > kSchemaVersion) {
      store->Rollback();
      return too_new(*locked);
    }
    const auto migrations = store::Migrations();
    for (int v = *locked; v < kSchemaVersion; ++v) {
      Status s = exec(migrations[static_cast<std::size_t>(v)],
                      fmt::format("migrating the schema to version {}", v + 1));
      if (!s.ok()) {
        store->Rollback();
        return s;
      }
    }
    const std::string set = fmt::format("PRAGMA user_version={}", kSchemaVersion);
    Status s = exec(set.c_str(), "recording the schema version");
    if (!s.ok()) {
      store->Rollback();
      return s;
    }
    MXWARD_RETURN_IF_ERROR(store->Commit());
  }
  // Checkpoints off the committing thread (wal_checkpointer.h): the hook replaces SQLite's
  // automatic checkpoint on this connection.
  store->checkpointer_ = WalCheckpointer::For(path);
  if (store->checkpointer_->ok()) {
    sqlite3_wal_hook(raw, &WalCheckpointer::Hook, store->checkpointer_.get());
  } else {
    store->checkpointer_.reset();
  }
  return store;
}

// --- incidents -----------------------------------------------------------------------------------

Status IncidentStore::RecordIncidents(std::vector<Incident>* incidents, UnixMicros now) {
  // Ids are assigned only after COMMIT succeeded, so a failed batch can be retried unchanged.
  std::vector<std::int64_t> ids;
  std::vector<bool> merged;
  ids.reserve(incidents->size());
  merged.reserve(incidents->size());
  Status s = InTransaction([&]() -> Status {
    MXWARD_STMT(ins,
                "INSERT OR IGNORE INTO incidents (playbook, description, severity, mode, "
                "key_kind, key, trigger, first_seen, last_seen, count, window_seconds, status, "
                "evidence_count, action_count, created_at, updated_at, origin, replay_identity, "
                "triggers, open_until) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    MXWARD_STMT(existing, "SELECT id FROM incidents WHERE replay_identity = ?");
    // The key's open incident of this playbook whose life the trigger falls in (the newest).
    // `open_until > 0` lets SQLite use the partial index incidents_open_by_key.
    MXWARD_STMT(open,
                "SELECT id, mode = 'enforce' AND EXISTS (SELECT 1 FROM actions a WHERE "
                "a.incident_id = incidents.id AND a.status != 'dry_run') FROM incidents "
                "WHERE key = ?1 AND playbook = ?2 AND key_kind = ?3 "
                "AND open_until > 0 AND open_until > ?4 AND status != 'resolved' "
                "AND origin = 'live' "
                "ORDER BY id DESC LIMIT 1");
    MXWARD_STMT(upd,
                "UPDATE incidents SET triggers = triggers + ?1, count = count + ?2, "
                "last_seen = max(last_seen, ?3), updated_at = ?4 WHERE id = ?5");
    MXWARD_STMT(next_seq,
                "SELECT COALESCE(MAX(seq), -1) + 1, COUNT(*) FROM evidence WHERE incident_id = ?");
    // Keeps the first kMaxEvidence / 2 lines (how it started) and the newest (how it goes on).
    MXWARD_STMT(trim,
                "DELETE FROM evidence WHERE incident_id = ?1 AND seq IN (SELECT seq FROM evidence "
                "WHERE incident_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3)");
    MXWARD_STMT(ev_count,
                "UPDATE incidents SET evidence_count = (SELECT COUNT(*) FROM evidence WHERE "
                "incident_id = ?1) WHERE id = ?1");
    MXWARD_STMT(ev, "INSERT INTO evidence (incident_id, seq, time, text) VALUES (?,?,?,?)");
    MXWARD_STMT(act,
                "INSERT INTO actions (incident_id, type, params, status, revert, created_at, "
                "updated_at, next_attempt_at) VALUES (?,?,?,?,0,?,?,?)");
    MXWARD_STMT(key, "UPDATE actions SET idempotency_key = ? WHERE id = ?");
    for (const Incident& inc : *incidents) {
      const bool replayed = inc.origin == IncidentOrigin::kReplay;
      if (!replayed && inc.open_until > 0) {
        open.Bind(1, inc.key).Bind(2, inc.playbook).Bind(3, inc.key_kind).Bind(4, inc.last_seen);
        const int rc = open.Step();
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("finding a key's open incident");
        const std::int64_t id = rc == SQLITE_ROW ? open.Int(0) : 0;
        const bool open_acts = rc == SQLITE_ROW && open.Int(1) != 0;
        sqlite3_reset(*open_prepared);
        // An open incident whose actions were all dry-run (the playbook or mxward was in dry-run
        // then) does not absorb a trigger that acts: switching to enforce must ban now.
        const bool acts = inc.mode == PlaybookMode::kEnforce &&
                          std::any_of(inc.actions.begin(), inc.actions.end(),
                                      [](const ActionRequest& a) { return !a.dry_run; });
        if (id != 0 && (open_acts || !acts)) {
          // A repeat: the open incident's ban is still in force, so no action is queued again.
          upd.Bind(1, static_cast<std::int64_t>(std::max<std::uint64_t>(inc.triggers, 1)))
              .Bind(2, static_cast<std::int64_t>(inc.count))
              .Bind(3, inc.last_seen)
              .Bind(4, now)
              .Bind(5, id);
          if (upd.Step() != SQLITE_DONE) return Error("updating an open incident");
          sqlite3_reset(*upd_prepared);
          next_seq.Bind(1, id);
          if (next_seq.Step() != SQLITE_ROW) return Error("reading evidence");
          std::int64_t seq = next_seq.Int(0);
          std::int64_t held = next_seq.Int(1);
          sqlite3_reset(*next_seq_prepared);
          const std::size_t n = inc.evidence.size();
          for (std::size_t i = n - std::min(n, kRepeatEvidence); i < n; ++i) {
            ev.Bind(1, id)
                .Bind(2, seq++)
                .Bind(3, inc.evidence[i].time)
                .Bind(4, inc.evidence[i].text);
            if (ev.Step() != SQLITE_DONE) return Error("writing evidence");
            sqlite3_reset(*ev_prepared);
            ++held;
          }
          const auto max = static_cast<std::int64_t>(kMaxEvidence);
          if (held > max) {
            trim.Bind(1, id).Bind(2, held - max).Bind(3, max / 2);
            if (trim.Step() != SQLITE_DONE) return Error("trimming evidence");
            sqlite3_reset(*trim_prepared);
          }
          ev_count.Bind(1, id);
          if (ev_count.Step() != SQLITE_DONE) return Error("counting evidence");
          sqlite3_reset(*ev_count_prepared);
          ids.push_back(id);
          merged.push_back(true);
          continue;
        }
      }
      // Bounded evidence: the first and the last lines tell the story; the middle repeats it.
      std::vector<const EvidenceLine*> kept;
      const std::size_t n = inc.evidence.size();
      for (std::size_t i = 0; i < n; ++i) {
        if (n <= kMaxEvidence || i < kMaxEvidence / 2 || i >= n - kMaxEvidence / 2) {
          kept.push_back(&inc.evidence[i]);
        }
      }
      ins.Bind(1, inc.playbook)
          .Bind(2, inc.description)
          .Bind(3, SeverityName(inc.severity))
          .Bind(4, PlaybookModeName(inc.mode))
          .Bind(5, inc.key_kind)
          .Bind(6, inc.key)
          .Bind(7, inc.trigger)
          .Bind(8, inc.first_seen)
          .Bind(9, inc.last_seen)
          .Bind(10, static_cast<std::int64_t>(inc.count))
          .Bind(11, inc.window_seconds)
          .Bind(12, IncidentStatusName(inc.status))
          .Bind(13, static_cast<std::int64_t>(kept.size()))
          .Bind(14, static_cast<std::int64_t>(inc.actions.size()))
          .Bind(15, now)
          .Bind(16, now)
          .Bind(17, IncidentOriginName(inc.origin))
          .Bind(19, static_cast<std::int64_t>(std::max<std::uint64_t>(inc.triggers, 1)))
          .Bind(20, replayed ? 0 : inc.open_until);
      const std::string identity = replayed ? ReplayIdentity(inc) : std::string();
      if (replayed) {
        ins.Bind(18, identity);
      } else {
        sqlite3_bind_null(*ins_prepared, 18);
      }
      if (ins.Step() != SQLITE_DONE) return Error("writing an incident");
      sqlite3_reset(*ins_prepared);
      if (!replayed && sqlite3_changes(db_) == 0) return Error("writing an incident");
      if (replayed && sqlite3_changes(db_) == 0) {
        // Recorded by an earlier replay of the same lines: keep that one.
        existing.Bind(1, identity);
        if (existing.Step() != SQLITE_ROW) return Error("finding a replayed incident");
        ids.push_back(existing.Int(0));
        merged.push_back(false);
        sqlite3_reset(*existing_prepared);
        continue;
      }
      const std::int64_t id = sqlite3_last_insert_rowid(db_);
      ids.push_back(id);
      merged.push_back(false);
      std::int64_t seq = 0;
      for (const EvidenceLine* line : kept) {
        ev.Bind(1, id).Bind(2, seq++).Bind(3, line->time).Bind(4, line->text);
        if (ev.Step() != SQLITE_DONE) return Error("writing evidence");
        sqlite3_reset(*ev_prepared);
      }
      for (const ActionRequest& a : inc.actions) {
        const bool dry = a.dry_run || inc.mode == PlaybookMode::kDryRun;
        act.Bind(1, id)
            .Bind(2, a.type)
            .Bind(3, a.params.dump())
            .Bind(4, ActionStatusName(dry ? ActionStatus::kDryRun : ActionStatus::kPending))
            .Bind(5, now)
            .Bind(6, now)
            .Bind(7, now);
        if (act.Step() != SQLITE_DONE) return Error("writing an action");
        sqlite3_reset(*act_prepared);
        const std::int64_t action_id = sqlite3_last_insert_rowid(db_);
        key.Bind(1, IdempotencyKey(action_id)).Bind(2, action_id);
        if (key.Step() != SQLITE_DONE) return Error("writing an action");
        sqlite3_reset(*key_prepared);
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  for (std::size_t i = 0; i < incidents->size(); ++i) {
    (*incidents)[i].id = ids[i];
    (*incidents)[i].merged = merged[i];
  }
  return Status::Ok();
}

namespace {

constexpr const char* kIncidentColumns =
    "id, playbook, description, severity, mode, key_kind, key, trigger, first_seen, last_seen, "
    "count, window_seconds, status, origin, triggers, open_until";

Incident IncidentFromRow(const Stmt& q) {
  Incident inc;
  inc.id = q.Int(0);
  inc.playbook = q.Text(1);
  inc.description = q.Text(2);
  inc.severity = ParseOr(q.Text(3), ParseSeverity, Severity::kMedium);
  inc.mode = ParseOr(q.Text(4), ParsePlaybookMode, PlaybookMode::kEnforce);
  inc.key_kind = q.Text(5);
  inc.key = q.Text(6);
  inc.trigger = q.Text(7);
  inc.first_seen = q.Int(8);
  inc.last_seen = q.Int(9);
  inc.count = static_cast<std::uint64_t>(q.Int(10));
  inc.window_seconds = q.Int(11);
  inc.status = ParseOr(q.Text(12), ParseIncidentStatus, IncidentStatus::kOpen);
  inc.origin = ParseOr(q.Text(13), ParseIncidentOrigin, IncidentOrigin::kLive);
  inc.triggers = static_cast<std::uint64_t>(q.Int(14));
  inc.open_until = q.Int(15);
  return inc;
}

constexpr const char* kActionColumns =
    "id, incident_id, type, params, status, revert, attempts, last_error, idempotency_key, "
    "created_at, updated_at, next_attempt_at, claimed_by";

ActionRecord ActionFromRow(const Stmt& q) {
  ActionRecord a;
  a.id = q.Int(0);
  a.incident_id = q.Int(1);
  a.type = q.Text(2);
  a.params = ParseJsonOr(q.Text(3), nlohmann::json::object());
  a.status = ParseOr(q.Text(4), ParseActionStatus, ActionStatus::kFailed);
  a.revert = q.Int(5) != 0;
  a.attempts = static_cast<int>(q.Int(6));
  a.last_error = q.Text(7);
  a.idempotency_key = q.Text(8);
  a.created_at = q.Int(9);
  a.updated_at = q.Int(10);
  a.claimed_by = q.Int(12);
  a.next_attempt_at = q.Int(11);
  return a;
}

// SQL text built once from the column lists (static storage: the statement cache keys on the
// pointer).
const std::string kListIncidentsSql = fmt::format(
    "SELECT {} FROM incidents WHERE (?1 IS NULL OR status = ?1) AND (?2 = '' OR playbook = ?2) "
    "AND (?3 = '' OR key = ?3) AND last_seen >= ?4 ORDER BY last_seen DESC, id DESC LIMIT ?5",
    kIncidentColumns);
// The same condition as RecordIncidents' `open` statement: what a trigger would update.
const std::string kLiveIncidentsSql = fmt::format(
    "SELECT {} FROM incidents WHERE open_until > 0 AND open_until > ?1 AND status != 'resolved' "
    "AND origin = 'live' ORDER BY id LIMIT ?2",
    kIncidentColumns);
const std::string kGetIncidentSql =
    fmt::format("SELECT {} FROM incidents WHERE id = ?", kIncidentColumns);
const std::string kActionsForIncidentSql =
    fmt::format("SELECT {} FROM actions WHERE incident_id = ? ORDER BY id", kActionColumns);
const std::string kGetActionSql =
    fmt::format("SELECT {} FROM actions WHERE id = ?", kActionColumns);
const std::string kListActionsSql = fmt::format(
    "SELECT {} FROM actions WHERE (?1 IS NULL OR incident_id = ?1) AND (?2 IS NULL OR status = ?2) "
    "ORDER BY id DESC LIMIT ?3",
    kActionColumns);
const std::string kDueActionsSql = fmt::format(
    "SELECT {} FROM actions WHERE status = 'pending' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, id LIMIT ?",
    kActionColumns);

}  // namespace

Result<std::vector<Incident>> IncidentStore::ListIncidents(const IncidentQuery& query) {
  MXWARD_STMT(q, kListIncidentsSql.c_str());
  if (query.status) q.Bind(1, IncidentStatusName(*query.status));
  q.Bind(2, query.playbook).Bind(3, query.key).Bind(4, query.since).Bind(5, query.limit);
  std::vector<Incident> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(IncidentFromRow(q));
  if (rc != SQLITE_DONE) return Error("listing incidents");
  return out;
}

Result<std::vector<Incident>> IncidentStore::IncidentsInTheirLife(UnixMicros now, int limit) {
  MXWARD_STMT(q, kLiveIncidentsSql.c_str());
  q.Bind(1, now).Bind(2, limit);
  std::vector<Incident> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(IncidentFromRow(q));
  if (rc != SQLITE_DONE) return Error("listing the incidents still in their life");
  return out;
}

Result<Incident> IncidentStore::GetIncident(std::int64_t id) {
  Incident inc;
  {
    MXWARD_STMT(q, kGetIncidentSql.c_str());
    q.Bind(1, id);
    const int rc = q.Step();
    if (rc == SQLITE_DONE) return Status::NotFound(fmt::format("no incident {}", id));
    if (rc != SQLITE_ROW) return Error("reading an incident");
    inc = IncidentFromRow(q);
  }
  {
    MXWARD_STMT(q, "SELECT time, text FROM evidence WHERE incident_id = ? ORDER BY seq");
    q.Bind(1, id);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) inc.evidence.push_back({q.Int(0), q.Text(1)});
    if (rc != SQLITE_DONE) return Error("reading evidence");
  }
  auto actions = ActionsForIncident(id);
  if (!actions.ok()) return actions.status();
  for (const ActionRecord& a : *actions) {
    if (a.revert) continue;  // undo requests are not what the playbook asked for
    inc.actions.push_back({a.type, a.params, a.status == ActionStatus::kDryRun});
  }
  return inc;
}

Result<std::vector<ActionRecord>> IncidentStore::ActionsForIncident(std::int64_t id) {
  MXWARD_STMT(q, kActionsForIncidentSql.c_str());
  q.Bind(1, id);
  std::vector<ActionRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ActionFromRow(q));
  if (rc != SQLITE_DONE) return Error("reading actions");
  return out;
}

Result<std::string> IncidentStore::IncidentPlaybook(std::int64_t id) {
  MXWARD_STMT(q, "SELECT playbook FROM incidents WHERE id = ?");
  q.Bind(1, id);
  const int rc = q.Step();
  if (rc == SQLITE_DONE) return Status::NotFound(fmt::format("no incident {}", id));
  if (rc != SQLITE_ROW) return Error("reading an incident's playbook");
  return q.Text(0);
}

Result<ActionRecord> IncidentStore::GetAction(std::int64_t id) {
  MXWARD_STMT(q, kGetActionSql.c_str());
  q.Bind(1, id);
  const int rc = q.Step();
  if (rc == SQLITE_DONE) return Status::NotFound(fmt::format("no action {}", id));
  if (rc != SQLITE_ROW) return Error("reading an action");
  return ActionFromRow(q);
}

Result<std::vector<ActionRecord>> IncidentStore::ListActions(const ActionQuery& query) {
  MXWARD_STMT(q, kListActionsSql.c_str());
  if (query.incident_id) q.Bind(1, *query.incident_id);
  if (query.status) q.Bind(2, ActionStatusName(*query.status));
  q.Bind(3, query.limit);
  std::vector<ActionRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ActionFromRow(q));
  if (rc != SQLITE_DONE) return Error("listing actions");
  return out;
}

Result<std::string> IncidentStore::StoreId() {
  MXWARD_STMT(q, "SELECT id FROM store_identity LIMIT 1");
  const int rc = q.Step();
  if (rc == SQLITE_DONE) return Status::NotFound(fmt::format("{} has no store id", path_));
  if (rc != SQLITE_ROW) return Error("reading the store id");
  return q.Text(0);
}

Status IncidentStore::ChangeIncidentStatus(std::int64_t id, IncidentStatus status,
                                           std::string_view kind, std::string_view note) {
  const UnixMicros now = SystemClock::Instance()->Now();
  return InTransaction([&]() -> Status {
    std::string current;
    {
      MXWARD_STMT(q, "SELECT status FROM incidents WHERE id = ?");
      q.Bind(1, id);
      const int rc = q.Step();
      if (rc == SQLITE_DONE) return Status::NotFound(fmt::format("no incident {}", id));
      if (rc != SQLITE_ROW) return Error("reading an incident");
      current = q.Text(0);
    }
    if (status == IncidentStatus::kAcknowledged && current == "resolved") {
      return Status::InvalidArgument(fmt::format("incident {} is already resolved", id));
    }
    {
      MXWARD_STMT(q, "UPDATE incidents SET status = ?, updated_at = ? WHERE id = ?");
      q.Bind(1, IncidentStatusName(status)).Bind(2, now).Bind(3, id);
      if (q.Step() != SQLITE_DONE) return Error("updating an incident");
    }
    if (!note.empty()) {
      MXWARD_STMT(q, "INSERT INTO notes (incident_id, time, kind, text) VALUES (?,?,?,?)");
      q.Bind(1, id).Bind(2, now).Bind(3, kind).Bind(4, note);
      if (q.Step() != SQLITE_DONE) return Error("writing a note");
    }
    return Status::Ok();
  });
}

Status IncidentStore::AcknowledgeIncident(std::int64_t id, std::string_view note) {
  return ChangeIncidentStatus(id, IncidentStatus::kAcknowledged, "ack", note);
}

Status IncidentStore::ResolveIncident(std::int64_t id, std::string_view note) {
  return ChangeIncidentStatus(id, IncidentStatus::kResolved, "resolve", note);
}

Result<std::vector<IncidentNote>> IncidentStore::NotesForIncident(std::int64_t id) {
  MXWARD_STMT(q, "SELECT time, kind, text FROM notes WHERE incident_id = ? ORDER BY time, id");
  q.Bind(1, id);
  std::vector<IncidentNote> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back({q.Int(0), q.Text(1), q.Text(2)});
  if (rc != SQLITE_DONE) return Error("reading notes");
  return out;
}

Result<std::int64_t> IncidentStore::PruneResolved(UnixMicros cutoff) {
  std::int64_t pruned = 0;
  Status s = InTransaction([&]() -> Status {
    // Children first, selected by the same condition, then the incidents themselves.
    MXWARD_STMT(ev,
                "DELETE FROM evidence WHERE incident_id IN (SELECT id FROM incidents WHERE "
                "status = 'resolved' AND last_seen < ?)");
    MXWARD_STMT(nt,
                "DELETE FROM notes WHERE incident_id IN (SELECT id FROM incidents WHERE "
                "status = 'resolved' AND last_seen < ?)");
    // Pending actions stay: an undo still waiting must run even after its incident is pruned.
    MXWARD_STMT(ac,
                "DELETE FROM actions WHERE status != 'pending' AND incident_id IN (SELECT id "
                "FROM incidents WHERE status = 'resolved' AND last_seen < ?)");
    MXWARD_STMT(in, "DELETE FROM incidents WHERE status = 'resolved' AND last_seen < ?");
    for (Stmt* q : {&ev, &nt, &ac}) {
      q->Bind(1, cutoff);
      if (q->Step() != SQLITE_DONE) return Error("pruning resolved incidents");
    }
    in.Bind(1, cutoff);
    if (in.Step() != SQLITE_DONE) return Error("pruning resolved incidents");
    pruned = sqlite3_changes64(db_);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return pruned;
}

// --- outbox --------------------------------------------------------------------------------------

Result<std::int64_t> IncidentStore::InsertAction(std::int64_t incident_id, const std::string& type,
                                                 const std::string& params, ActionStatus status,
                                                 bool revert, UnixMicros now) {
  MXWARD_STMT(act,
              "INSERT INTO actions (incident_id, type, params, status, revert, created_at, "
              "updated_at, next_attempt_at) VALUES (?,?,?,?,?,?,?,?)");
  act.Bind(1, incident_id)
      .Bind(2, type)
      .Bind(3, params)
      .Bind(4, ActionStatusName(status))
      .Bind(5, std::int64_t{revert ? 1 : 0})
      .Bind(6, now)
      .Bind(7, now)
      .Bind(8, now);
  if (act.Step() != SQLITE_DONE) return Error("queueing an action");
  const std::int64_t id = sqlite3_last_insert_rowid(db_);
  MXWARD_STMT(key, "UPDATE actions SET idempotency_key = ? WHERE id = ?");
  key.Bind(1, IdempotencyKey(id)).Bind(2, id);
  if (key.Step() != SQLITE_DONE) return Error("queueing an action");
  return id;
}

Result<std::int64_t> IncidentStore::EnqueueAction(std::int64_t incident_id,
                                                  const ActionRequest& request, bool revert,
                                                  UnixMicros now) {
  std::int64_t id = 0;
  Status s = InTransaction([&]() -> Status {
    auto inserted =
        InsertAction(incident_id, request.type, request.params.dump(),
                     request.dry_run ? ActionStatus::kDryRun : ActionStatus::kPending, revert, now);
    if (!inserted.ok()) return inserted.status();
    id = *inserted;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return id;
}

Result<std::vector<ActionRecord>> IncidentStore::DueActions(UnixMicros now, int limit) {
  MXWARD_STMT(q, kDueActionsSql.c_str());
  q.Bind(1, now).Bind(2, limit);
  std::vector<ActionRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ActionFromRow(q));
  if (rc != SQLITE_DONE) return Error("reading the outbox");
  return out;
}

namespace {

Status ExpectOneRow(sqlite3* db, std::int64_t id) {
  if (sqlite3_changes(db) == 0) return Status::NotFound(fmt::format("no action {}", id));
  return Status::Ok();
}

}  // namespace

Status IncidentStore::MarkActionDone(std::int64_t id, UnixMicros now) {
  return MarkActionsDone({id}, now);  // one statement for one action or a batch
}

Status IncidentStore::MarkActionsDone(const std::vector<std::int64_t>& ids, UnixMicros now) {
  if (ids.empty()) return Status::Ok();
  return InTransaction([&]() -> Status {
    MXWARD_STMT(q,
                "UPDATE actions SET status = 'done', attempts = attempts + 1, last_error = '', "
                "updated_at = ?, claimed_by = 0 WHERE id = ?");
    for (std::int64_t id : ids) {
      q.Bind(1, now).Bind(2, id);
      if (q.Step() != SQLITE_DONE) return Error("recording an action as done");
      MXWARD_RETURN_IF_ERROR(ExpectOneRow(db_, id));
      sqlite3_reset(*q_prepared);
    }
    return Status::Ok();
  });
}

Status IncidentStore::MarkActionRetry(std::int64_t id, std::string_view error,
                                      UnixMicros next_attempt, UnixMicros now) {
  MXWARD_STMT(q,
              "UPDATE actions SET status = 'pending', attempts = attempts + 1, last_error = ?, "
              "next_attempt_at = ?, updated_at = ?, claimed_by = 0 WHERE id = ?");
  q.Bind(1, error).Bind(2, next_attempt).Bind(3, now).Bind(4, id);
  if (q.Step() != SQLITE_DONE) return Error("scheduling a retry");
  return ExpectOneRow(db_, id);
}

Status IncidentStore::MarkActionFinal(std::int64_t id, ActionStatus status, std::string_view error,
                                      UnixMicros now) {
  // Only a failure is one more attempt; refused / reverted / dry_run describe the action's fate.
  MXWARD_STMT(q,
              "UPDATE actions SET status = ?, attempts = attempts + ?, last_error = ?, "
              "updated_at = ?, claimed_by = 0 WHERE id = ?");
  q.Bind(1, ActionStatusName(status))
      .Bind(2, std::int64_t{status == ActionStatus::kFailed || status == ActionStatus::kDone})
      .Bind(3, error)
      .Bind(4, now)
      .Bind(5, id);
  if (q.Step() != SQLITE_DONE) return Error("recording an action's outcome");
  return ExpectOneRow(db_, id);
}

std::string ReplayIdentity(const Incident& incident) {
  std::uint64_t h = kFnv1aOffsetBasis;  // the hash of no text
  UnixMicros time = incident.first_seen;
  if (!incident.evidence.empty()) {
    time = incident.evidence.front().time;
    h = Fnv1a(incident.evidence.front().text);
  }
  return fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{:016x}", incident.playbook, incident.key_kind,
                     incident.key, time, h);
}

std::string ActionSubjectKey(const ActionRecord& action) {
  std::string key = action.type;
  key += '\x1f';
  for (const char* name : {"target", "address", "user", "to"}) {
    auto it = action.params.find(name);
    if (it != action.params.end() && it->is_string()) {
      key += it->get<std::string>();
      break;
    }
  }
  return key;
}

namespace {

// Due, unclaimed pending actions, oldest first, leaving out skipped types and ids and subjects
// waiting behind an action in backoff. The subject expression mirrors ActionSubjectKey.
constexpr const char* kClaimCandidatesSql =
    "SELECT id FROM (SELECT id, next_attempt_at, type || char(31) || coalesce("
    "iif(json_type(params, '$.target') = 'text', json_extract(params, '$.target'), NULL), "
    "iif(json_type(params, '$.address') = 'text', json_extract(params, '$.address'), NULL), "
    "iif(json_type(params, '$.user') = 'text', json_extract(params, '$.user'), NULL), "
    "iif(json_type(params, '$.to') = 'text', json_extract(params, '$.to'), NULL), '') AS okey "
    "FROM actions WHERE status = 'pending' AND next_attempt_at <= ?1 "
    "AND type NOT IN (SELECT value FROM json_each(?2)) "
    "AND id NOT IN (SELECT value FROM json_each(?3))) AS c "
    "WHERE NOT EXISTS (SELECT 1 FROM json_each(?4) AS b WHERE b.key = c.okey AND b.value < c.id) "
    "ORDER BY next_attempt_at, id LIMIT ?5";

}  // namespace

Result<ClaimOutcome> IncidentStore::ClaimDueActions(
    const ClaimRequest& request, const std::function<ClaimVerdict(const ActionRecord&)>& decide) {
  ClaimOutcome out;
  Status s = InTransaction([&]() -> Status {
    nlohmann::json blocked = nlohmann::json::object();
    for (const auto& [key, id] : request.blocked_subjects) {
      auto head = GetAction(id);
      if (head.ok() && head->status == ActionStatus::kPending) {
        blocked[key] = id;
      } else if (head.ok() || head.status().code() == Status::Code::kNotFound) {
        out.stale_heads.push_back(id);  // another process ran it, or it was pruned
      } else {
        return head.status();
      }
    }
    std::vector<std::int64_t> ids;
    {
      MXWARD_STMT(q, kClaimCandidatesSql);
      q.Bind(1, request.now)
          .Bind(2, nlohmann::json(request.skip_types)
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
          .Bind(3, nlohmann::json(request.skip_ids).dump())
          .Bind(4, blocked.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
          .Bind(5, std::int64_t{request.limit});
      int rc;
      while ((rc = q.Step()) == SQLITE_ROW) ids.push_back(q.Int(0));
      if (rc != SQLITE_DONE) return Error("reading the outbox");
    }
    std::vector<std::string> skipped;  // subjects whose later actions stay behind
    for (std::int64_t id : ids) {
      auto a = GetAction(id);
      if (!a.ok()) return a.status();
      const std::string key = ActionSubjectKey(*a);
      if (std::find(skipped.begin(), skipped.end(), key) != skipped.end()) continue;
      ClaimVerdict verdict = decide(*a);
      if (verdict.kind == ClaimVerdict::Kind::kSkipSubject) {
        skipped.push_back(key);
        continue;
      }
      if (verdict.kind == ClaimVerdict::Kind::kSettle) {
        MXWARD_RETURN_IF_ERROR(MarkActionFinal(id, verdict.status, verdict.note, request.now));
        continue;
      }
      if (verdict.kind == ClaimVerdict::Kind::kDefer) {
        MXWARD_STMT(defer,
                    "UPDATE actions SET next_attempt_at = ?, last_error = ?, updated_at = ? "
                    "WHERE id = ? AND status = 'pending'");
        defer.Bind(1, verdict.not_before).Bind(2, verdict.note).Bind(3, request.now).Bind(4, id);
        if (defer.Step() != SQLITE_DONE) return Error(fmt::format("deferring action {}", id));
        skipped.push_back(key);
        continue;
      }
      // Only if it is still pending and due: nobody else took it in between.
      MXWARD_STMT(claim,
                  "UPDATE actions SET next_attempt_at = ?, claimed_by = ? WHERE id = ? "
                  "AND status = 'pending' AND next_attempt_at <= ?");
      claim.Bind(1, request.lease_until).Bind(2, request.owner).Bind(3, id).Bind(4, request.now);
      if (claim.Step() != SQLITE_DONE) return Error(fmt::format("claiming action {}", id));
      if (sqlite3_changes(db_) != 1) continue;
      a->next_attempt_at = request.lease_until;
      a->claimed_by = request.owner;
      out.claimed.push_back(std::move(*a));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status IncidentStore::ReleaseActions(const std::vector<std::int64_t>& ids, UnixMicros now) {
  if (ids.empty()) return Status::Ok();
  return InTransaction([&]() -> Status {
    MXWARD_STMT(q,
                "UPDATE actions SET next_attempt_at = ?, claimed_by = 0 WHERE id = ? "
                "AND status = 'pending'");
    for (std::int64_t id : ids) {
      q.Bind(1, now).Bind(2, id);
      if (q.Step() != SQLITE_DONE) return Error("handing a claimed action back");
      sqlite3_reset(*q_prepared);
    }
    return Status::Ok();
  });
}

Result<std::vector<std::int64_t>> IncidentStore::ClaimOwners(UnixMicros now) {
  MXWARD_STMT(q,
              "SELECT DISTINCT claimed_by FROM actions WHERE status = 'pending' "
              "AND claimed_by != 0 AND next_attempt_at > ?");
  q.Bind(1, now);
  std::vector<std::int64_t> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(q.Int(0));
  if (rc != SQLITE_DONE) return Error("reading claim owners");
  return out;
}

Result<std::int64_t> IncidentStore::ReleaseClaimsOf(std::int64_t owner, UnixMicros now) {
  MXWARD_STMT(q,
              "UPDATE actions SET next_attempt_at = ?, claimed_by = 0 WHERE claimed_by = ? "
              "AND status = 'pending' AND next_attempt_at > ?");
  q.Bind(1, now).Bind(2, owner).Bind(3, now);
  if (q.Step() != SQLITE_DONE) return Error("handing back a dead dispatcher's claims");
  return std::int64_t{sqlite3_changes(db_)};
}

Result<OutboxStats> IncidentStore::GetOutboxStats() {
  MXWARD_STMT(q,
              "SELECT count(*), coalesce(min(created_at), 0) FROM actions "
              "WHERE status = 'pending'");
  if (q.Step() != SQLITE_ROW) return Error("reading the outbox");
  return OutboxStats{q.Int(0), q.Int(1)};
}

// --- bans and suspensions ------------------------------------------------------------------------

Status IncidentStore::UpsertBan(const BanRecord& ban) {
  MXWARD_STMT(q,
              "INSERT INTO bans (prefix, created_at, until, incident_id, reason, ports, "
              "decision_uuid, origin_node, playbook) VALUES (?,?,?,?,?,?,?,?,?) "
              "ON CONFLICT (prefix, ports) DO UPDATE SET until = excluded.until, "
              "incident_id = excluded.incident_id, reason = excluded.reason, "
              "decision_uuid = excluded.decision_uuid, origin_node = excluded.origin_node, "
              "playbook = excluded.playbook");
  q.Bind(1, ban.prefix).Bind(2, ban.created_at).Bind(3, ban.until).Bind(4, ban.incident_id);
  q.Bind(5, ban.reason).Bind(6, ban.ports).BindTextOrNull(7, ban.decision_uuid);
  q.BindTextOrNull(8, ban.origin_node).BindTextOrNull(9, ban.playbook);
  if (q.Step() != SQLITE_DONE) return Error("recording a ban");
  return Status::Ok();
}

Status IncidentStore::RemoveBan(std::string_view prefix, std::string_view ports) {
  MXWARD_STMT(q, "DELETE FROM bans WHERE prefix = ?1 AND (coalesce(?2, '') = '' OR ports = ?2)");
  q.Bind(1, prefix).Bind(2, ports);
  if (q.Step() != SQLITE_DONE) return Error("removing a ban");
  return Status::Ok();
}

Result<std::vector<BanRecord>> IncidentStore::ActiveBans(UnixMicros now) {
  MXWARD_STMT(q,
              "SELECT prefix, created_at, until, incident_id, reason, ports, decision_uuid, "
              "origin_node, playbook FROM bans "
              "WHERE until = 0 OR until > ? ORDER BY created_at, prefix, ports");
  q.Bind(1, now);
  std::vector<BanRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back({q.Text(0), q.Int(1), q.Int(2), q.Int(3), q.Text(4), q.Text(5), q.Text(6),
                   q.Text(7), q.Text(8)});
  }
  if (rc != SQLITE_DONE) return Error("reading bans");
  return out;
}

Result<std::int64_t> IncidentStore::CountActiveBans(UnixMicros now) {
  MXWARD_STMT(q, "SELECT count(*) FROM bans WHERE until = 0 OR until > ?");
  q.Bind(1, now);
  if (q.Step() != SQLITE_ROW) return Error("counting bans");
  return q.Int(0);
}

Result<std::int64_t> IncidentStore::AddAllow(const AllowRecord& entry) {
  IpPrefix p;
  if (!IpPrefix::Parse(entry.prefix, &p, /*strict=*/true) || p.ToString() != entry.prefix) {
    return Status::InvalidArgument(fmt::format("'{}' is not a canonical prefix", entry.prefix));
  }
  const int nbytes = p.address().bits() / 8;
  const IpAddress last = p.address().Filled(p.length());
  const auto size = static_cast<std::size_t>(nbytes);
  std::int64_t id = 0;
  Status s = InTransaction([&]() -> Status {
    MXWARD_STMT(old,
                "UPDATE allowlist SET removed_at = ?, removed_by = ? "
                "WHERE prefix = ? AND removed_at IS NULL");
    old.Bind(1, entry.created_at).Bind(2, entry.created_by).Bind(3, entry.prefix);
    if (old.Step() != SQLITE_DONE) return Error("replacing an allowlist entry");
    MXWARD_STMT(q,
                "INSERT INTO allowlist (prefix, family, first, last, created_at, expires_at, "
                "note, created_by) VALUES (?,?,?,?,?,NULLIF(?,0),?,?)");
    q.Bind(1, entry.prefix).Bind(2, static_cast<std::int64_t>(p.address().bits() == 32 ? 4 : 6));
    q.BindBlob(3, p.address().bytes().data(), size).BindBlob(4, last.bytes().data(), size);
    q.Bind(5, entry.created_at);
    q.Bind(6, entry.expires_at).Bind(7, entry.note).Bind(8, entry.created_by);
    if (q.Step() != SQLITE_DONE) return Error("adding an allowlist entry");
    id = sqlite3_last_insert_rowid(db_);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return id;
}

Status IncidentStore::RemoveAllow(std::string_view prefix, UnixMicros now,
                                  std::string_view removed_by) {
  MXWARD_STMT(q,
              "UPDATE allowlist SET removed_at = ?, removed_by = ? WHERE prefix = ? AND "
              "removed_at IS NULL AND (expires_at IS NULL OR expires_at > ?)");
  q.Bind(1, now).Bind(2, removed_by).Bind(3, prefix).Bind(4, now);
  if (q.Step() != SQLITE_DONE) return Error("removing an allowlist entry");
  if (sqlite3_changes(db_) == 0) {
    return Status::NotFound(fmt::format("{} is not on the runtime allowlist", prefix));
  }
  return Status::Ok();
}

Result<std::vector<AllowRecord>> IncidentStore::ListAllow(UnixMicros now, bool all) {
  constexpr const char* kCurrent =
      "SELECT id, prefix, created_at, coalesce(expires_at, 0), note, created_by, "
      "coalesce(removed_at, 0), coalesce(removed_by, '') FROM allowlist WHERE removed_at IS NULL "
      "AND (expires_at IS NULL OR expires_at > ?) ORDER BY family, first, prefix";
  constexpr const char* kAll =
      "SELECT id, prefix, created_at, coalesce(expires_at, 0), note, created_by, "
      "coalesce(removed_at, 0), coalesce(removed_by, '') FROM allowlist WHERE ? IS NOT NULL "
      "ORDER BY id DESC";
  auto prepared = Prepare(all ? kAll : kCurrent);
  if (!prepared.ok()) return prepared.status();
  Stmt q(*prepared);
  q.Bind(1, now);
  std::vector<AllowRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back(
        {q.Int(0), q.Text(1), q.Int(2), q.Int(3), q.Text(4), q.Text(5), q.Int(6), q.Text(7)});
  }
  if (rc != SQLITE_DONE) return Error("reading the allowlist");
  return out;
}

Status IncidentStore::UpsertSuspension(const SuspensionRecord& s) {
  MXWARD_STMT(q,
              "INSERT INTO suspensions (user, kind, previous, created_at, until, incident_id) "
              "VALUES (?,?,?,?,?,?) ON CONFLICT (user, kind) DO UPDATE SET "
              "until = excluded.until, incident_id = excluded.incident_id");
  // revert_action_id is kept too: an expiry already queued runs (and ends the suspension).
  // On conflict `previous` is kept: it holds the values from before the first suspension, which
  // a second suspension would otherwise overwrite with the suspended values.
  q.Bind(1, s.user).Bind(2, s.kind).Bind(3, s.previous.dump()).Bind(4, s.created_at);
  q.Bind(5, s.until).Bind(6, s.incident_id);
  if (q.Step() != SQLITE_DONE) return Error("recording a suspension");
  return Status::Ok();
}

Status IncidentStore::RemoveSuspension(std::string_view user, std::string_view kind) {
  MXWARD_STMT(q, "DELETE FROM suspensions WHERE user = ? AND kind = ?");
  q.Bind(1, user).Bind(2, kind);
  if (q.Step() != SQLITE_DONE) return Error("removing a suspension");
  return Status::Ok();
}

Result<std::vector<SuspensionRecord>> IncidentStore::ActiveSuspensions() {
  MXWARD_STMT(q,
              "SELECT user, kind, previous, created_at, until, incident_id, revert_action_id "
              "FROM suspensions ORDER BY created_at, user, kind");
  std::vector<SuspensionRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back({q.Text(0), q.Text(1), ParseJsonOr(q.Text(2), nlohmann::json::object()), q.Int(3),
                   q.Int(4), q.Int(5), q.Int(6)});
  }
  if (rc != SQLITE_DONE) return Error("reading suspensions");
  return out;
}

Result<std::vector<std::int64_t>> IncidentStore::QueueExpiredSuspensionReverts(UnixMicros now) {
  // Newest first among those ending together: stacked suspensions of one account (suspend, then
  // suspend_sending, both save `modified`) unwind in reverse, so the last restore writes the
  // values from before the first change.
  constexpr const char* kExpiredSql =
      "SELECT user, kind, incident_id FROM suspensions WHERE until > 0 AND until <= ? "
      "AND revert_action_id = 0 ORDER BY until, created_at DESC, rowid DESC";
  // A read first: the common case (nothing expired) takes no write lock.
  {
    MXWARD_STMT(q, kExpiredSql);
    q.Bind(1, now);
    const int rc = q.Step();
    if (rc == SQLITE_DONE) return std::vector<std::int64_t>{};
    if (rc != SQLITE_ROW) return Error("reading expired suspensions");
  }
  std::vector<std::int64_t> ids;
  Status s = InTransaction([&]() -> Status {
    ids.clear();
    struct Expired {
      std::string user, kind;
      std::int64_t incident_id;
    };
    std::vector<Expired> expired;
    {
      // Read again under the write lock: another dispatcher may have queued them meanwhile.
      MXWARD_STMT(q, kExpiredSql);
      q.Bind(1, now);
      int rc;
      while ((rc = q.Step()) == SQLITE_ROW) expired.push_back({q.Text(0), q.Text(1), q.Int(2)});
      if (rc != SQLITE_DONE) return Error("reading expired suspensions");
    }
    for (const Expired& e : expired) {
      ActionRequest request{e.kind, {{"user", e.user}, {"expired", true}}, false};
      auto id = EnqueueAction(e.incident_id, request, /*revert=*/true, now);
      if (!id.ok()) return id.status();
      MXWARD_STMT(mark,
                  "UPDATE suspensions SET revert_action_id = ? WHERE user = ? AND kind = ? "
                  "AND revert_action_id = 0");
      mark.Bind(1, *id).Bind(2, e.user).Bind(3, e.kind);
      if (mark.Step() != SQLITE_DONE) return Error("recording a suspension's expiry");
      ids.push_back(*id);
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return ids;
}

// --- baselines -----------------------------------------------------------------------------------

Status IncidentStore::SaveBaselines(std::string_view playbook,
                                    const std::vector<BaselineEntry>& entries) {
  return InTransaction([&]() -> Status {
    MXWARD_STMT(q,
                "INSERT INTO baselines (playbook, key, value, last_seen, first_seen) "
                "VALUES (?,?,?,?,?) ON CONFLICT (playbook, key, value) DO UPDATE SET "
                "last_seen = max(last_seen, excluded.last_seen), "
                "first_seen = CASE WHEN first_seen = 0 THEN excluded.first_seen "
                "WHEN excluded.first_seen = 0 THEN first_seen "
                "ELSE min(first_seen, excluded.first_seen) END");
    for (const BaselineEntry& e : entries) {
      q.Bind(1, playbook)
          .Bind(2, e.key)
          .Bind(3, e.value)
          .Bind(4, e.last_seen)
          .Bind(5, e.first_seen);
      if (q.Step() != SQLITE_DONE) return Error("saving baselines");
      sqlite3_reset(*q_prepared);
    }
    // Bounded: beyond kMaxBaselinesPerPlaybook, what was seen least recently goes first.
    MXWARD_STMT(trim,
                "DELETE FROM baselines WHERE playbook = ?1 AND last_seen < (SELECT last_seen "
                "FROM baselines WHERE playbook = ?1 ORDER BY last_seen DESC LIMIT 1 OFFSET ?2)");
    trim.Bind(1, playbook).Bind(2, kMaxBaselinesPerPlaybook - 1);
    if (trim.Step() != SQLITE_DONE) return Error("trimming baselines");
    return Status::Ok();
  });
}

Result<std::vector<BaselineEntry>> IncidentStore::LoadBaselines(std::string_view playbook,
                                                                UnixMicros newer_than) {
  MXWARD_STMT(q,
              "SELECT key, value, last_seen, first_seen FROM baselines WHERE playbook = ? AND "
              "last_seen > ? ORDER BY key, value");
  q.Bind(1, playbook).Bind(2, newer_than);
  std::vector<BaselineEntry> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back({q.Text(0), q.Text(1), q.Int(2), q.Int(3)});
  }
  if (rc != SQLITE_DONE) return Error("loading baselines");
  return out;
}

Result<std::vector<BaselineEntry>> IncidentStore::BaselineOfKey(std::string_view playbook,
                                                                std::string_view key) {
  MXWARD_STMT(q,
              "SELECT key, value, last_seen, first_seen FROM baselines WHERE playbook = ? AND "
              "key = ? ORDER BY value");
  q.Bind(1, playbook).Bind(2, key);
  std::vector<BaselineEntry> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back({q.Text(0), q.Text(1), q.Int(2), q.Int(3)});
  }
  if (rc != SQLITE_DONE) return Error("loading a baseline");
  return out;
}

Result<UnixMicros> IncidentStore::BaselineLearningSince(std::string_view playbook) {
  MXWARD_STMT(q,
              "SELECT coalesce(min(CASE WHEN first_seen > 0 AND first_seen < last_seen "
              "THEN first_seen ELSE last_seen END), 0) FROM baselines WHERE playbook = ?");
  q.Bind(1, playbook);
  if (q.Step() != SQLITE_ROW) return Error("reading a baseline's age");
  return q.Int(0);
}

Result<std::int64_t> IncidentStore::PruneBaselines(UnixMicros older_than) {
  MXWARD_STMT(q, "DELETE FROM baselines WHERE last_seen < ?");
  q.Bind(1, older_than);
  if (q.Step() != SQLITE_DONE) return Error("pruning baselines");
  return static_cast<std::int64_t>(sqlite3_changes64(db_));
}

// --- event counts and summaries ------------------------------------------------------------------

Status IncidentStore::AddEventCounts(
    UnixMicros hour, const std::vector<std::pair<std::string, std::int64_t>>& counts_by_type) {
  return InTransaction([&]() -> Status {
    MXWARD_STMT(q,
                "INSERT INTO event_counts (hour, type, count) VALUES (?,?,?) "
                "ON CONFLICT (hour, type) DO UPDATE SET count = count + excluded.count");
    for (const auto& [type, n] : counts_by_type) {
      q.Bind(1, hour).Bind(2, type).Bind(3, n);
      if (q.Step() != SQLITE_DONE) return Error("adding event counts");
      sqlite3_reset(*q_prepared);
    }
    return Status::Ok();
  });
}

Status IncidentStore::SaveInputCursor(std::string_view input, std::string_view cursor,
                                      UnixMicros now) {
  MXWARD_STMT(q,
              "INSERT INTO input_cursors (input, cursor, updated_at) VALUES (?,?,?) "
              "ON CONFLICT (input) DO UPDATE SET cursor = excluded.cursor, "
              "updated_at = excluded.updated_at");
  q.Bind(1, input).Bind(2, cursor).Bind(3, now);
  if (q.Step() != SQLITE_DONE) return Error("saving an input cursor");
  return Status::Ok();
}

Result<std::optional<std::string>> IncidentStore::LoadInputCursor(std::string_view input) {
  MXWARD_STMT(q, "SELECT cursor FROM input_cursors WHERE input = ?");
  q.Bind(1, input);
  const int rc = q.Step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(q.Text(0));
  if (rc != SQLITE_DONE) return Error("reading an input cursor");
  return std::optional<std::string>();
}

Result<std::vector<std::pair<std::string, std::int64_t>>> IncidentStore::EventCountsSince(
    UnixMicros since) {
  MXWARD_STMT(q,
              "SELECT type, sum(count) AS n FROM event_counts WHERE hour >= ? "
              "GROUP BY type ORDER BY n DESC, type");
  q.Bind(1, since);
  std::vector<std::pair<std::string, std::int64_t>> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.emplace_back(q.Text(0), q.Int(1));
  if (rc != SQLITE_DONE) return Error("reading event counts");
  return out;
}

Result<std::vector<NamedCount>> IncidentStore::IncidentsPerPlaybook(UnixMicros since) {
  MXWARD_STMT(q,
              "SELECT playbook, count(*) AS n FROM incidents WHERE first_seen >= ? "
              "GROUP BY playbook ORDER BY n DESC, playbook");
  q.Bind(1, since);
  std::vector<NamedCount> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back({q.Text(0), q.Int(1)});
  if (rc != SQLITE_DONE) return Error("counting incidents");
  return out;
}

Result<std::vector<NamedCount>> IncidentStore::TopOffenders(UnixMicros since, int limit) {
  MXWARD_STMT(q,
              "SELECT key_kind || ' ' || key, count(*) AS n FROM incidents "
              "WHERE first_seen >= ? GROUP BY key_kind, key ORDER BY n DESC, key LIMIT ?");
  q.Bind(1, since).Bind(2, limit);
  std::vector<NamedCount> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back({q.Text(0), q.Int(1)});
  if (rc != SQLITE_DONE) return Error("counting offenders");
  return out;
}

Result<std::vector<std::pair<UnixMicros, std::int64_t>>> IncidentStore::IncidentsPerHour(
    UnixMicros since) {
  MXWARD_STMT(q,
              "SELECT first_seen - (first_seen % 3600000000) AS hour, count(*) FROM incidents "
              "WHERE first_seen >= ? GROUP BY hour ORDER BY hour");
  q.Bind(1, since);
  std::vector<std::pair<UnixMicros, std::int64_t>> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.emplace_back(q.Int(0), q.Int(1));
  if (rc != SQLITE_DONE) return Error("counting incidents per hour");
  return out;
}

// --- the cluster link ----------------------------------------------------------------------------

Result<std::optional<std::int64_t>> IncidentStore::LoadClusterValue(std::string_view name) {
  MXWARD_STMT(q, "SELECT value FROM cluster_state WHERE name = ?");
  q.Bind(1, name);
  const int rc = q.Step();
  if (rc == SQLITE_ROW) return std::optional<std::int64_t>(q.Int(0));
  if (rc != SQLITE_DONE) return Error("reading the cluster state");
  return std::optional<std::int64_t>();
}

Status IncidentStore::SaveClusterValue(std::string_view name, std::int64_t value) {
  MXWARD_STMT(q,
              "INSERT INTO cluster_state (name, value) VALUES (?,?) "
              "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
  q.Bind(1, name).Bind(2, value);
  if (q.Step() != SQLITE_DONE) return Error("saving the cluster state");
  return Status::Ok();
}

Result<std::int64_t> IncidentStore::MaxActionId() {
  MXWARD_STMT(q, "SELECT coalesce(max(id), 0) FROM actions");
  if (q.Step() != SQLITE_ROW) return Error("reading the last action id");
  return q.Int(0);
}

namespace {
const std::string kUnpublishedBansSql = fmt::format(
    "SELECT {} FROM actions a WHERE a.id > ?1 AND a.type = 'ban' AND a.status = 'done' "
    "AND json_extract(a.params, '$.cluster_uuid') IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM cluster_published p WHERE p.action_id = a.id) "
    "ORDER BY a.id LIMIT ?2",
    kActionColumns);
}  // namespace

Result<UnpublishedBans> IncidentStore::UnpublishedBanActions(std::int64_t floor, int limit) {
  UnpublishedBans out;
  {
    // Everything at or below the new floor is settled now, so the read below sees it as it stays.
    MXWARD_STMT(f,
                "SELECT coalesce((SELECT min(id) - 1 FROM actions WHERE id > ?1 AND type = 'ban' "
                "AND status = 'pending'), (SELECT max(id) FROM actions), ?1)");
    f.Bind(1, floor);
    if (f.Step() != SQLITE_ROW) return Error("reading the publish floor");
    out.floor = std::max(floor, f.Int(0));
  }
  MXWARD_STMT(q, kUnpublishedBansSql.c_str());
  q.Bind(1, floor).Bind(2, limit);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.actions.push_back(ActionFromRow(q));
  if (rc != SQLITE_DONE) return Error("reading the bans to publish");
  if (static_cast<int>(out.actions.size()) >= limit) {
    out.floor = std::min(out.floor, out.actions.back().id);
  }
  return out;
}

Status IncidentStore::MarkBansPublished(const std::vector<std::int64_t>& ids, std::int64_t floor) {
  return InTransaction([&]() -> Status {
    for (std::int64_t id : ids) {
      MXWARD_STMT(ins, "INSERT OR IGNORE INTO cluster_published (action_id) VALUES (?)");
      ins.Bind(1, id);
      if (ins.Step() != SQLITE_DONE) return Error("recording a published ban");
    }
    MXWARD_STMT(del, "DELETE FROM cluster_published WHERE action_id <= ?");
    del.Bind(1, floor);
    if (del.Step() != SQLITE_DONE) return Error("forgetting published bans");
    return SaveClusterValue("publish_floor", floor);
  });
}

Result<std::int64_t> IncidentStore::CountPendingClusterActions() {
  // Every pending action: the received decisions and whatever else waits. Counted from the
  // partial outbox index alone (no row, no JSON read): a node catching up asks every 20 ms, with
  // thousands pending. Counting the others too only makes the link's bound a little tighter,
  // which is its purpose (each claim reads the outbox).
  MXWARD_STMT(q, "SELECT count(*) FROM actions WHERE status = 'pending'");
  if (q.Step() != SQLITE_ROW) return Error("counting pending cluster actions");
  return q.Int(0);
}

Result<std::int64_t> IncidentStore::PruneClusterApplied(UnixMicros before) {
  auto cursor = LoadClusterValue("cursor");
  if (!cursor.ok()) return cursor.status();
  if (!cursor->has_value()) return 0;
  MXWARD_STMT(q, "DELETE FROM cluster_applied WHERE seq <= ? AND applied_at < ?");
  q.Bind(1, **cursor).Bind(2, before);
  if (q.Step() != SQLITE_DONE) return Error("pruning applied cluster decisions");
  return static_cast<std::int64_t>(sqlite3_changes(db_));
}

Status IncidentStore::StartRecordingIncidentChanges() {
  MXWARD_STMT(q,
              "INSERT OR IGNORE INTO cluster_state (name, value) VALUES ('incidents_shared', 1)");
  if (q.Step() != SQLITE_DONE) return Error("starting to record incident changes");
  return Status::Ok();
}

Result<IncidentChanges> IncidentStore::ChangedIncidents(int limit) {
  IncidentChanges out;
  {
    MXWARD_STMT(q, "SELECT count(*) FROM cluster_incident_changes");
    if (q.Step() != SQLITE_ROW) return Error("counting changed incidents");
    out.total = q.Int(0);
  }
  if (out.total == 0) return out;
  MXWARD_STMT(q,
              "SELECT incident_id, version FROM cluster_incident_changes ORDER BY incident_id "
              "LIMIT ?");
  q.Bind(1, limit);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.changes.push_back({q.Int(0), q.Int(1)});
  if (rc != SQLITE_DONE) return Error("reading changed incidents");
  return out;
}

Status IncidentStore::ForgetIncidentChanges(const std::vector<IncidentChange>& published) {
  if (published.empty()) return Status::Ok();
  return InTransaction([&]() -> Status {
    for (const IncidentChange& c : published) {
      MXWARD_STMT(q, "DELETE FROM cluster_incident_changes WHERE incident_id = ? AND version = ?");
      q.Bind(1, c.incident_id).Bind(2, c.version);
      if (q.Step() != SQLITE_DONE) return Error("forgetting published incident changes");
    }
    return Status::Ok();
  });
}

Result<std::vector<std::int64_t>> IncidentStore::QueueClusterDecisions(
    const std::vector<ClusterDecision>& decisions, std::int64_t cursor, UnixMicros now) {
  std::vector<std::int64_t> ids;
  Status s = InTransaction([&]() -> Status {
    for (const ClusterDecision& d : decisions) {
      {
        MXWARD_STMT(seen,
                    "INSERT OR IGNORE INTO cluster_applied (uuid, seq, applied_at) VALUES (?,?,?)");
        seen.Bind(1, d.uuid).Bind(2, d.seq).Bind(3, now);
        if (seen.Step() != SQLITE_DONE) return Error("recording a cluster decision");
        if (sqlite3_changes(db_) == 0) continue;  // queued before
      }
      // Without EnqueueAction's savepoint per action: a catch-up queues thousands in this one
      // transaction.
      nlohmann::json params = d.request.params;
      params["cluster_uuid"] = d.uuid;
      auto id =
          InsertAction(0, d.request.type, params.dump(), ActionStatus::kPending, d.revert, now);
      if (!id.ok()) return id.status();
      ids.push_back(*id);
    }
    return SaveClusterValue("cursor", cursor);
  });
  if (!s.ok()) return s;
  return ids;
}

std::vector<ClusterBatchOp> NetClusterOps(const std::vector<ReceivedDecision>& decisions) {
  std::vector<ClusterBatchOp> removals;
  // The bans still standing, in the order first banned; a removal takes its prefix's bans out
  // (of its scope, or of every scope for "*"), a later ban of the same (prefix, scope) replaces
  // the end of the earlier one.
  std::vector<ClusterBatchOp> bans;
  std::map<std::pair<std::string_view, std::string_view>, std::size_t> ban_at;
  std::vector<bool> gone;
  for (const ReceivedDecision& d : decisions) {
    if (!d.refusal.empty()) continue;
    if (d.remove) {
      removals.push_back({true, d.prefix, d.ports, 0});
      for (auto it = ban_at.lower_bound({d.prefix, {}});
           it != ban_at.end() && it->first.first == d.prefix;) {
        if (d.ports == "*" || it->first.second == d.ports) {
          gone[it->second] = true;
          it = ban_at.erase(it);
        } else {
          ++it;
        }
      }
      continue;
    }
    auto [it, added] = ban_at.try_emplace({d.prefix, d.ports}, bans.size());
    if (added) {
      bans.push_back({false, d.prefix, d.ports, d.until, d.was_banned});
      gone.push_back(false);
    } else {
      bans[it->second].until = d.until;
      bans[it->second].refresh = bans[it->second].refresh || d.was_banned;
    }
  }
  std::vector<ClusterBatchOp> out = std::move(removals);
  out.reserve(out.size() + bans.size());
  for (std::size_t i = 0; i < bans.size(); ++i) {
    if (!gone[i]) out.push_back(std::move(bans[i]));
  }
  return out;
}

Result<ClusterBatchOutcome> IncidentStore::ApplyClusterBatch(
    const std::vector<ReceivedDecision>& decisions, std::int64_t cursor, UnixMicros now) {
  ClusterBatchOutcome outcome;
  Status s = InTransaction([&]() -> Status {
    std::vector<ReceivedDecision> fresh;  // new here, in log order
    fresh.reserve(decisions.size());
    nlohmann::json refusals = nlohmann::json::array();
    std::set<std::string> nodes;
    std::int64_t first_seq = 0, last_seq = 0;
    for (const ReceivedDecision& d : decisions) {
      {
        MXWARD_STMT(seen,
                    "INSERT OR IGNORE INTO cluster_applied (uuid, seq, applied_at, scope, outcome) "
                    "VALUES (?,?,?,?,?)");
        seen.Bind(1, d.uuid).Bind(2, d.seq).Bind(3, now).Bind(4, d.prefix);
        seen.Bind(5, !d.refusal.empty() ? "refused" : d.remove ? "unban" : "ban");
        if (seen.Step() != SQLITE_DONE) return Error("recording a cluster decision");
        if (sqlite3_changes(db_) == 0) {
          ++outcome.repeated;
          continue;
        }
      }
      if (first_seq == 0) first_seq = d.seq;
      last_seq = d.seq;
      nodes.insert(d.node);
      if (!d.refusal.empty()) {
        ++outcome.refused;
        refusals.push_back({{"scope", d.prefix},
                            {"node", d.node},
                            {"seq", d.seq},
                            {"uuid", d.uuid},
                            {"reason", d.refusal}});
        continue;
      }
      if (d.remove) {
        MXWARD_RETURN_IF_ERROR(RemoveBan(d.prefix, d.ports == "*" ? "" : d.ports));
        ++outcome.removals;
      } else {
        // UpsertBan's statement, telling a new row (created now) from an existing one (the
        // update keeps its created_at): a new one is a new kernel element.
        MXWARD_STMT(q,
                    "INSERT INTO bans (prefix, created_at, until, incident_id, reason, ports, "
                    "decision_uuid, origin_node, playbook) VALUES (?,?,?,0,?,?,?,?,?) "
                    "ON CONFLICT (prefix, ports) DO UPDATE SET until = excluded.until, "
                    "incident_id = 0, reason = excluded.reason, "
                    "decision_uuid = excluded.decision_uuid, origin_node = excluded.origin_node, "
                    "playbook = excluded.playbook RETURNING created_at");
        q.Bind(1, d.prefix).Bind(2, now).Bind(3, d.until).Bind(4, d.reason).Bind(5, d.ports);
        q.Bind(6, d.uuid).Bind(7, d.node).BindTextOrNull(8, d.playbook);
        if (q.Step() != SQLITE_ROW) return Error("recording a ban");
        const bool was_banned = q.Int(0) != now;
        if (q.Step() != SQLITE_DONE) return Error("recording a ban");
        ++outcome.bans;
        fresh.push_back(d);
        fresh.back().was_banned = was_banned;
        continue;
      }
      fresh.push_back(d);
    }
    if (outcome.bans + outcome.removals + outcome.refused > 0) {
      std::string from;
      for (const std::string& n : nodes) from += (from.empty() ? "" : ",") + n;
      nlohmann::json params = {
          {"summary", fmt::format("{} ban(s), {} removal(s){} from node(s) {}, seq {}..{}",
                                  outcome.bans, outcome.removals,
                                  outcome.refused ? fmt::format(", {} refused", outcome.refused)
                                                  : std::string(),
                                  from, first_seq, last_seq)},
          {"nodes", nodes},
          {"seq_from", first_seq},
          {"seq_to", last_seq},
          {"bans", outcome.bans},
          {"removals", outcome.removals},
          {"refused", std::move(refusals)}};
      const std::vector<ClusterBatchOp> ops = NetClusterOps(fresh);
      // Nothing for the kernel (every decision refused): the record is settled at once.
      auto id = InsertAction(0, "cluster_batch", params.dump(),
                             ops.empty() ? ActionStatus::kRefused : ActionStatus::kPending,
                             /*revert=*/false, now);
      if (!id.ok()) return id.status();
      outcome.action_id = *id;
      std::int64_t pos = 0;
      for (const ClusterBatchOp& op : ops) {
        MXWARD_STMT(ins,
                    "INSERT INTO cluster_batch_ops (action_id, pos, remove, prefix, ports, until, "
                    "refresh) VALUES (?,?,?,?,?,?,?)");
        ins.Bind(1, *id).Bind(2, pos++).Bind(3, std::int64_t{op.remove ? 1 : 0});
        ins.Bind(4, op.prefix).Bind(5, op.ports).Bind(6, op.until);
        ins.Bind(7, std::int64_t{op.refresh ? 1 : 0});
        if (ins.Step() != SQLITE_DONE) return Error("recording a batch's kernel changes");
      }
    }
    return SaveClusterValue("cursor", cursor);
  });
  if (!s.ok()) return s;
  return outcome;
}

Result<std::vector<ClusterBatchOp>> IncidentStore::ClusterBatchOps(std::int64_t action_id) {
  // A ban whose `bans` row is gone was lifted here after the link's commit (`mxward bans
  // remove` before the nftables lane got to the batch): putting it in the kernel now would bring
  // back a ban the admin removed, with no row to expire or list it.
  MXWARD_STMT(q,
              "SELECT remove, prefix, ports, until, refresh FROM cluster_batch_ops o "
              "WHERE action_id = ? AND (remove OR EXISTS (SELECT 1 FROM bans b "
              "WHERE b.prefix = o.prefix AND b.ports = o.ports)) ORDER BY pos");
  q.Bind(1, action_id);
  std::vector<ClusterBatchOp> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back({q.Int(0) != 0, q.Text(1), q.Text(2), q.Int(3), q.Int(4) != 0});
  }
  if (rc != SQLITE_DONE) return Error("reading a batch's kernel changes");
  return out;
}

Status IncidentStore::ForgetClusterBatchOps(std::int64_t action_id) {
  MXWARD_STMT(q, "DELETE FROM cluster_batch_ops WHERE action_id = ?");
  q.Bind(1, action_id);
  if (q.Step() != SQLITE_DONE) return Error("forgetting a batch's kernel changes");
  return Status::Ok();
}

Result<std::int64_t> IncidentStore::CountPendingClusterBatches() {
  MXWARD_STMT(q,
              "SELECT count(*) FROM actions WHERE status = 'pending' AND type = 'cluster_batch'");
  if (q.Step() != SQLITE_ROW) return Error("counting pending cluster batches");
  return q.Int(0);
}

}  // namespace mxward
