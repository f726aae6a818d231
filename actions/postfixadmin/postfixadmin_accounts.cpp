#include "actions/postfixadmin/postfixadmin_accounts.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "actions/common/argv_command.h"
#include "engine/base/secret_file.h"
#include "engine/base/settings_reader.h"
#include "mxward/action_types.h"

namespace mxward {
namespace {

constexpr std::string_view kSuspendSending = "suspend_sending";
constexpr std::string_view kSuspend = "suspend";
constexpr std::string_view kRequirePasswordChange = "require_password_change";
constexpr std::string_view kHoldQueue = "hold_queue";
constexpr std::size_t kMaxDryRunLog = 1000;

// PostfixAdmin's UI logs every change to a mailbox as "edit_mailbox" with the address as data.
constexpr const char* kLogAction = "edit_mailbox";

// Booleans as each backend returns them: 1/0 (MySQL, SQLite), t/f (PostgreSQL).
bool ParseSqlBool(const SqlValue& v) {
  if (!v) return false;
  return *v == "1" || *v == "t" || *v == "true" || *v == "TRUE";
}

// The user parameter: one mailbox address. It is only ever a bound parameter, but refusing what
// cannot be an address gives a clear error instead of a silent "no such mailbox".
Result<std::string> UserParam(const ActionRecord& action) {
  auto it = action.params.find("user");
  if (it == action.params.end() || !it->is_string()) {
    return Status::InvalidArgument(
        fmt::format("{} action {} has no 'user' parameter", action.type, action.id));
  }
  const std::string& user = it->get_ref<const std::string&>();
  const auto at = user.find('@');
  bool ok = !user.empty() && user.size() <= 255 && at != std::string::npos && at > 0 &&
            at + 1 < user.size() && user.find('@', at + 1) == std::string::npos;
  for (unsigned char c : user) ok = ok && c > 0x20 && c != 0x7f;
  if (!ok) {
    return Status::InvalidArgument(
        fmt::format("{} action {}: '{}' is not a mailbox address", action.type, action.id, user));
  }
  return user;
}

std::string DomainOf(const std::string& user) { return user.substr(user.find('@') + 1); }

nlohmann::json JsonValue(const SqlValue& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

SqlValue SqlFromJson(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  return std::nullopt;
}

}  // namespace

// --- domains -------------------------------------------------------------------------------------

Result<std::vector<std::string>> ReadPostfixAdminDomains(SqlConnection* connection,
                                                         const PostfixAdminOptions& options) {
  // table_prefix is checked to be an identifier when read; bool_true is the dialect's constant.
  auto rows = connection->Query(
      fmt::format(
          "SELECT domain FROM {}domain WHERE active = {} AND domain <> 'ALL' ORDER BY domain",
          options.table_prefix, connection->dialect().bool_true),
      {});
  if (!rows.ok()) return rows.status().Annotate("reading PostfixAdmin's domain table");
  std::vector<std::string> out;
  for (const SqlRow& row : *rows) {
    if (!row.empty() && row[0] && !row[0]->empty()) out.push_back(*row[0]);
  }
  return out;
}

// --- options -------------------------------------------------------------------------------------

Result<PostfixAdminOptions> PostfixAdminOptions::FromConfig(const Config& config,
                                                            std::vector<Diagnostic>* diagnostics) {
  PostfixAdminOptions o;
  if (!config.document.contains("postfixadmin")) return o;
  const toml::table* t = SectionTable(config, "postfixadmin", diagnostics);
  if (!t) return Status::InvalidArgument(diagnostics->back().ToString());
  SettingsReader r(*t, "[postfixadmin]", config.source, diagnostics);
  r.CheckKnownKeys({"enabled", "dry_run", "backend", "host", "port", "socket", "user", "password",
                    "password_file", "database", "path", "table_prefix", "log_admin",
                    "flush_auth_cache", "kick", "doveadm", "postsuper", "command_timeout",
                    "connect_timeout"});
  r.Bool("enabled", &o.enabled);
  r.Bool("dry_run", &o.dry_run);
  std::string backend = "mysql";
  r.Choice("backend", {"mysql", "mariadb", "pgsql", "postgresql", "sqlite"}, &backend);
  if (backend == "pgsql" || backend == "postgresql") {
    o.database.backend = SqlConnectionOptions::Backend::kPostgres;
  } else if (backend == "sqlite") {
    o.database.backend = SqlConnectionOptions::Backend::kSqlite;
  } else {
    o.database.backend = SqlConnectionOptions::Backend::kMysql;
  }
  r.String("host", &o.database.host);
  r.Int("port", 0, 65535, &o.database.port);
  r.String("socket", &o.database.socket);
  r.String("user", &o.database.user);
  r.String("password", &o.database.password);
  r.String("database", &o.database.database);
  r.String("path", &o.database.path);
  r.Identifier("table_prefix", &o.table_prefix, /*allow_empty=*/true);
  r.String("log_admin", &o.log_admin);
  r.Bool("flush_auth_cache", &o.flush_auth_cache);
  r.Bool("kick", &o.kick);
  r.String("doveadm", &o.doveadm);
  r.String("postsuper", &o.postsuper);
  std::int64_t command_timeout_s = o.command_timeout_ms / 1000;
  r.Duration("command_timeout", &command_timeout_s);
  o.command_timeout_ms =
      static_cast<int>(std::clamp<std::int64_t>(command_timeout_s, 1, 3600)) * 1000;
  std::int64_t connect_timeout_s = o.database.connect_timeout_s;
  r.Duration("connect_timeout", &connect_timeout_s);
  o.database.connect_timeout_s =
      static_cast<int>(std::clamp<std::int64_t>(connect_timeout_s, 1, 600));
  // The same checks as every other secret: a database password readable by every local user is
  // refused, not used.
  ReadSecretSetting(r, "password_file", &o.database.password);
  for (const auto& [key, value] :
       {std::pair<const char*, const std::string*>{"doveadm", &o.doveadm},
        {"postsuper", &o.postsuper}}) {
    if (value->empty() || (*value)[0] != '/') {
      if (const toml::node* n = t->get(key)) {
        r.Error(*n, fmt::format("'{}' must be an absolute path", key));
      }
    }
  }
  if (o.database.backend == SqlConnectionOptions::Backend::kSqlite && o.database.path.empty()) {
    r.Error(*t, "[postfixadmin] backend = \"sqlite\" needs 'path', PostfixAdmin's database file");
  }
  if (!r.ok()) {
    return Status::InvalidArgument(fmt::format("bad [postfixadmin] section in {}", config.source));
  }
  return o;
}

// --- accounts ------------------------------------------------------------------------------------

PostfixAdminAccounts::PostfixAdminAccounts(PostfixAdminOptions options, std::string store_path,
                                           const Clock* clock,
                                           std::unique_ptr<SqlConnection> connection)
    : options_(std::move(options)),
      store_path_(std::move(store_path)),
      clock_(clock),
      connection_(std::move(connection)),
      queue_hold_(options_.postsuper, std::chrono::milliseconds(options_.command_timeout_ms)) {}

PostfixAdminAccounts::~PostfixAdminAccounts() = default;

bool PostfixAdminAccounts::Handles(std::string_view type) const {
  const ActionTypeInfo* info = FindActionType(type);
  return info != nullptr && info->section == "postfixadmin";
}

Result<SqlConnection*> PostfixAdminAccounts::Connection() {
  if (!connection_) {
    auto c = SqlConnection::Open(options_.database);
    if (!c.ok()) return c.status();
    connection_ = std::move(c).value();
  }
  return connection_.get();
}

Result<IncidentStore*> PostfixAdminAccounts::Store() {
  if (!store_) {
    auto store = IncidentStore::Open(store_path_);
    if (!store.ok()) return store.status().Annotate("postfixadmin: opening the incident store");
    store_ = std::move(store).value();
  }
  return store_.get();
}

void PostfixAdminAccounts::DryRun(std::string line) {
  spdlog::info("postfixadmin (dry-run): {}", line);
  if (dry_run_log_.size() >= kMaxDryRunLog) dry_run_log_.erase(dry_run_log_.begin());
  dry_run_log_.push_back(std::move(line));
}

Status PostfixAdminAccounts::Guard(Status s) {
  // After a transient failure the connection may be half-dead: open a fresh one next time.
  if (!s.ok() && s.transient()) connection_.reset();
  return s;
}

Status PostfixAdminAccounts::Start() {
  if (options_.dry_run) return Status::Ok();
  auto conn = Connection();
  if (!conn.ok()) return Guard(conn.status());
  // Every column the actions touch; a schema older than PostfixAdmin 3.3 lacks smtp_active.
  auto probe = (*conn)->Query(fmt::format("SELECT username, active, smtp_active, password_expiry, "
                                          "modified, domain FROM {} WHERE 1 = 0",
                                          Table("mailbox")),
                              {});
  if (!probe.ok()) {
    return Guard(probe.status().Annotate(
        "PostfixAdmin's mailbox table lacks a column mxward needs (PostfixAdmin 3.3 or later "
        "has them all)"));
  }
  return Status::Ok();
}

Result<nlohmann::json> PostfixAdminAccounts::ReadPrevious(SqlConnection* conn,
                                                          std::string_view kind,
                                                          const std::string& user) {
  auto rows = conn->Query(fmt::format("SELECT active, smtp_active, password_expiry, modified "
                                      "FROM {} WHERE username = ?",
                                      Table("mailbox")),
                          {user});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    return Status::NotFound(fmt::format("no mailbox '{}' in PostfixAdmin's database", user));
  }
  const SqlRow& m = (*rows)[0];
  nlohmann::json previous = {{"modified", JsonValue(m[3])}};
  if (kind == kSuspendSending) {
    previous["smtp_active"] = ParseSqlBool(m[1]);
  } else if (kind == kSuspend) {
    previous["active"] = ParseSqlBool(m[0]);
    auto alias = conn->Query(
        fmt::format("SELECT active, modified FROM {} WHERE address = ?", Table("alias")), {user});
    if (!alias.ok()) return alias.status();
    if (!alias->empty()) {
      previous["alias_active"] = ParseSqlBool((*alias)[0][0]);
      previous["alias_modified"] = JsonValue((*alias)[0][1]);
    }
  } else {
    previous["password_expiry"] = JsonValue(m[2]);
  }
  return previous;
}

Status PostfixAdminAccounts::WriteLog(SqlConnection* conn, const std::string& user,
                                      std::int64_t incident_id) {
  const std::string admin = incident_id
                                ? fmt::format("{} (incident {})", options_.log_admin, incident_id)
                                : options_.log_admin;
  auto r = conn->Execute(fmt::format("INSERT INTO {} (timestamp, username, domain, action, data) "
                                     "VALUES ({}, ?, ?, ?, ?)",
                                     Table("log"), conn->dialect().now),
                         {admin, DomainOf(user), std::string(kLogAction), user});
  return r.ok() ? Status::Ok() : r.status();
}

Status PostfixAdminAccounts::Suspend(std::string_view kind, const std::string& user,
                                     const ActionRecord& action) {
  if (options_.dry_run) {
    if (kind == kSuspendSending) {
      DryRun(fmt::format("{}: {}.smtp_active = 0", user, Table("mailbox")));
    } else if (kind == kSuspend) {
      DryRun(fmt::format("{}: {}.active = 0, {}.active = 0, modified = now, log {}", user,
                         Table("mailbox"), Table("alias"), kLogAction));
    } else {
      DryRun(fmt::format("{}: {}.password_expiry = now", user, Table("mailbox")));
    }
    return Status::Ok();
  }
  auto conn_or = Connection();
  if (!conn_or.ok()) return conn_or.status();
  SqlConnection* conn = *conn_or;
  auto store = Store();
  if (!store.ok()) return store.status();

  // Save what is about to be overwritten before overwriting it: a crash in between leaves a record
  // whose values equal the current ones, which restores harmlessly. The store keeps the first
  // `previous` of a (user, kind), so re-applying does not record the suspended state as previous.
  auto previous = ReadPrevious(conn, kind, user);
  if (!previous.ok()) return previous.status();
  const UnixMicros now = clock_->Now();
  SuspensionRecord record;
  record.user = user;
  record.kind = std::string(kind);
  record.previous = *previous;
  record.created_at = now;
  record.incident_id = action.incident_id;
  if (auto d = action.params.find("duration_s");
      d != action.params.end() && d->is_number_integer() && d->get<std::int64_t>() > 0) {
    record.until = now + d->get<std::int64_t>() * kMicrosPerSecond;
  }
  MXWARD_RETURN_IF_ERROR((*store)->UpsertSuspension(record));

  const SqlDialect& d = conn->dialect();
  MXWARD_RETURN_IF_ERROR(conn->Begin());
  auto body = [&]() -> Status {
    Result<std::int64_t> r = std::int64_t{0};
    if (kind == kSuspendSending) {
      r = conn->Execute(fmt::format("UPDATE {} SET smtp_active = ?, modified = {} WHERE "
                                    "username = ?",
                                    Table("mailbox"), d.now),
                        {std::string(d.bool_false), user});
    } else if (kind == kSuspend) {
      r = conn->Execute(fmt::format("UPDATE {} SET active = ?, modified = {} WHERE username = ?",
                                    Table("mailbox"), d.now),
                        {std::string(d.bool_false), user});
      if (r.ok()) {
        auto a = conn->Execute(fmt::format("UPDATE {} SET active = ?, modified = {} WHERE "
                                           "address = ?",
                                           Table("alias"), d.now),
                               {std::string(d.bool_false), user});
        if (!a.ok()) return a.status();
      }
    } else {
      r = conn->Execute(fmt::format("UPDATE {0} SET password_expiry = {1}, modified = {1} WHERE "
                                    "username = ?",
                                    Table("mailbox"), d.now),
                        {user});
    }
    if (!r.ok()) return r.status();
    if (*r == 0) {
      return Status::NotFound(fmt::format("no mailbox '{}' in PostfixAdmin's database", user));
    }
    return WriteLog(conn, user, action.incident_id);
  };
  Status s = body();
  if (!s.ok()) {
    conn->Rollback();
    return s;
  }
  MXWARD_RETURN_IF_ERROR(conn->Commit());
  spdlog::info("postfixadmin: {} {} (incident {})", kind, user, action.incident_id);
  FollowUps(kind, user, /*restored=*/false);
  return Status::Ok();
}

Status PostfixAdminAccounts::Restore(std::string_view kind, const std::string& user,
                                     const ActionRecord& action) {
  if (options_.dry_run) {
    DryRun(fmt::format("{}: restore the values saved before {}", user, kind));
    return Status::Ok();
  }
  auto store = Store();
  if (!store.ok()) return store.status();
  auto all = (*store)->ActiveSuspensions();
  if (!all.ok()) return all.status();
  const SuspensionRecord* record = nullptr;
  for (const SuspensionRecord& s : *all) {
    if (s.user == user && s.kind == kind) record = &s;
  }
  if (!record) return Status::Ok();  // nothing saved: never suspended, or already restored

  auto conn_or = Connection();
  if (!conn_or.ok()) return conn_or.status();
  SqlConnection* conn = *conn_or;
  const SqlDialect& d = conn->dialect();
  const nlohmann::json& p = record->previous;
  auto flag = [&](const char* key) -> SqlValue {
    if (!p.contains(key)) return std::nullopt;
    return std::string(p[key].is_boolean() && !p[key].get<bool>() ? d.bool_false : d.bool_true);
  };
  const SqlValue modified = p.contains("modified") ? SqlFromJson(p["modified"]) : std::nullopt;

  // Each UPDATE only touches the row if it is still as mxward left it: an admin who re-enabled
  // the account by hand in between keeps what they set.
  MXWARD_RETURN_IF_ERROR(conn->Begin());
  std::int64_t changed = 0;
  auto body = [&]() -> Status {
    Result<std::int64_t> r = std::int64_t{0};
    if (kind == kSuspendSending) {
      if (!flag("smtp_active")) return Status::Ok();
      r = conn->Execute(fmt::format("UPDATE {} SET smtp_active = ?, modified = COALESCE(?, "
                                    "modified) WHERE username = ? AND smtp_active = ?",
                                    Table("mailbox")),
                        {flag("smtp_active"), modified, user, std::string(d.bool_false)});
    } else if (kind == kSuspend) {
      if (!flag("active")) return Status::Ok();
      r = conn->Execute(fmt::format("UPDATE {} SET active = ?, modified = COALESCE(?, modified) "
                                    "WHERE username = ? AND active = ?",
                                    Table("mailbox")),
                        {flag("active"), modified, user, std::string(d.bool_false)});
      if (r.ok() && flag("alias_active")) {
        const SqlValue alias_modified =
            p.contains("alias_modified") ? SqlFromJson(p["alias_modified"]) : std::nullopt;
        auto a =
            conn->Execute(fmt::format("UPDATE {} SET active = ?, modified = COALESCE(?, "
                                      "modified) WHERE address = ? AND active = ?",
                                      Table("alias")),
                          {flag("alias_active"), alias_modified, user, std::string(d.bool_false)});
        if (!a.ok()) return a.status();
      }
    } else {
      // Still expired means nobody set a new password since (that moves the expiry forward).
      const SqlValue expiry =
          p.contains("password_expiry") ? SqlFromJson(p["password_expiry"]) : std::nullopt;
      r = conn->Execute(fmt::format("UPDATE {} SET password_expiry = ?, modified = COALESCE(?, "
                                    "modified) WHERE username = ? AND password_expiry <= {}",
                                    Table("mailbox"), d.now),
                        {expiry, modified, user});
    }
    if (!r.ok()) return r.status();
    changed = *r;
    if (changed == 0) return Status::Ok();
    return WriteLog(conn, user, action.incident_id);
  };
  Status s = body();
  if (!s.ok()) {
    conn->Rollback();
    return s;
  }
  MXWARD_RETURN_IF_ERROR(conn->Commit());
  if (changed == 0) {
    spdlog::info("postfixadmin: {} of {} was already undone by hand; left as it is", kind, user);
  } else {
    spdlog::info("postfixadmin: restored {} after {}", user, kind);
  }
  MXWARD_RETURN_IF_ERROR((*store)->RemoveSuspension(user, kind));
  FollowUps(kind, user, /*restored=*/true);
  return Status::Ok();
}

void PostfixAdminAccounts::FollowUps(std::string_view kind, const std::string& user,
                                     bool restored) {
  // Best effort: the database change is the action; these only make it take effect sooner.
  std::vector<std::vector<std::string>> commands;
  if (options_.flush_auth_cache) {
    commands.push_back({options_.doveadm, "auth", "cache", "flush", user});
  }
  if (options_.kick && kind == kSuspend && !restored) {
    commands.push_back({options_.doveadm, "kick", user});
  }
  for (auto& argv : commands) {
    ArgvCommand command;
    command.argv = std::move(argv);
    command.timeout = std::chrono::milliseconds(options_.command_timeout_ms);
    auto outcome = RunArgvCommand(command);
    Status s = outcome.ok() ? CheckArgvOutcome(command, *outcome) : outcome.status();
    if (!s.ok()) spdlog::warn("postfixadmin: follow-up for {} failed: {}", user, s.ToString());
  }
}

Result<std::vector<std::string>> PostfixAdminAccounts::QueueIds(const ActionRecord& action) {
  auto it = action.params.find("queue_ids");
  std::vector<std::string> ids;
  if (it == action.params.end()) return ids;
  if (!it->is_array()) {
    return Status::InvalidArgument(
        fmt::format("hold_queue action {}: 'queue_ids' must be an array", action.id));
  }
  for (const auto& id : *it) {
    if (!id.is_string() || !MailQueueHold::IsQueueId(id.get<std::string>())) {
      return Status::InvalidArgument(
          fmt::format("hold_queue action {}: {} is not a Postfix queue id", action.id, id.dump()));
    }
    ids.push_back(id.get<std::string>());
  }
  return ids;
}

Status PostfixAdminAccounts::Apply(const ActionRecord& action) {
  return Run(action, Direction::kApply);
}

Status PostfixAdminAccounts::Revert(const ActionRecord& action) {
  return Run(action, Direction::kRevert);
}

Status PostfixAdminAccounts::Run(const ActionRecord& action, Direction direction) {
  const bool revert = direction == Direction::kRevert;
  auto user = UserParam(action);
  if (!user.ok()) return user.status();
  if (action.type == kHoldQueue) {
    auto ids = QueueIds(action);
    if (!ids.ok()) return ids.status();
    if (options_.dry_run) {
      DryRun(fmt::format("{}: {}", *user, fmt::join(queue_hold_.HoldArgv(*ids, revert), " ")));
      return Status::Ok();
    }
    return revert ? queue_hold_.Release(*ids) : queue_hold_.Hold(*ids);
  }
  if (!Handles(action.type)) {
    return Status::InvalidArgument(
        fmt::format("postfixadmin cannot {} '{}'", revert ? "revert" : "run", action.type));
  }
  return Guard(revert ? Restore(action.type, *user, action) : Suspend(action.type, *user, action));
}

Result<bool> PostfixAdminAccounts::Check(const ActionRecord& action) {
  auto user = UserParam(action);
  if (!user.ok()) return user.status();
  if (options_.dry_run || action.type == kHoldQueue) return true;
  auto conn = Connection();
  if (!conn.ok()) return Guard(conn.status());
  const SqlDialect& d = (*conn)->dialect();
  std::string sql;
  if (action.type == kSuspendSending) {
    sql = fmt::format("SELECT smtp_active FROM {} WHERE username = ?", Table("mailbox"));
  } else if (action.type == kSuspend) {
    sql = fmt::format("SELECT active FROM {} WHERE username = ?", Table("mailbox"));
  } else if (action.type == kRequirePasswordChange) {
    sql = fmt::format(
        "SELECT CASE WHEN password_expiry <= {} THEN 0 ELSE 1 END FROM {} WHERE "
        "username = ?",
        d.now, Table("mailbox"));
  } else {
    return Status::InvalidArgument(fmt::format("postfixadmin cannot check '{}'", action.type));
  }
  auto rows = (*conn)->Query(sql, {*user});
  if (!rows.ok()) return Guard(rows.status());
  if (rows->empty()) {
    return Status::NotFound(fmt::format("no mailbox '{}' in PostfixAdmin's database", *user));
  }
  // In effect when the flag reads false (0 / f).
  return !ParseSqlBool((*rows)[0][0]);
}

void PostfixAdminAccounts::Stop() {
  connection_.reset();
  store_.reset();
}

Result<std::unique_ptr<ActionExecutor>> MakePostfixAdminAccounts(
    const Config& config, const std::string& store_path, std::vector<Diagnostic>* diagnostics,
    std::vector<std::string>* notes) {
  if (!config.document["postfixadmin"].as_table()) return std::unique_ptr<ActionExecutor>();
  auto options = PostfixAdminOptions::FromConfig(config, diagnostics);
  if (!options.ok()) return options.status();
  if (!options->enabled) return std::unique_ptr<ActionExecutor>();
  if (config.dry_run && !options->dry_run) {
    options->dry_run = true;
    notes->push_back("postfixadmin: dry-run (dry_run = true in the config)");
  } else if (options->dry_run) {
    notes->push_back("postfixadmin: dry-run ([postfixadmin] dry_run = true)");
  }
  return std::unique_ptr<ActionExecutor>(std::make_unique<PostfixAdminAccounts>(
      std::move(*options), store_path, SystemClock::Instance()));
}

}  // namespace mxward
