// PostfixAdminAccounts: the account actions, done in PostfixAdmin's own database the way its UI
// does them, so Dovecot's and Postfix's standard queries see the change at once.
//
//   suspend_sending          mailbox.smtp_active = 0 (PostfixAdmin 3.3+): stops only sending
//   suspend                  mailbox.active = 0 and the mailbox's alias row active = 0, both
//                            modified = now(), and a row in PostfixAdmin's `log` table
//   require_password_change  mailbox.password_expiry = now()
//   hold_queue               `postsuper -h` for the account's queue ids (see mail_queue_hold.h)
//
// Before changing anything, the values about to be overwritten are saved in the incident store
// (UpsertSuspension, `previous` as JSON), once: re-applying an action that is already in effect
// keeps the first saved values, so Revert (`mxward accounts restore`, expiry) puts back exactly
// what was there. Revert only touches rows still in the state mxward left them in, so an admin
// who re-enabled an account by hand in between is not overruled.
//
// Backends: MariaDB/MySQL (libmariadb), PostgreSQL (libpq), SQLite, all through prepared
// statements (sql_connection.h); user names are parameters, never SQL text. A server that is down
// or refuses the connection gives Status::Unavailable, so the dispatcher retries.
//
// Optional follow-ups run as argv commands (no shell) after a change: `doveadm auth cache flush
// <user>` and `doveadm kick <user>`, so Dovecot stops serving the account now, not after its
// cache expires.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "actions/postfixadmin/mail_queue_hold.h"
#include "actions/postfixadmin/sql_connection.h"
#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

// The [postfixadmin] section of mxward.toml.
struct PostfixAdminOptions {
  bool enabled = true;
  bool dry_run = false;
  SqlConnectionOptions database;     // backend, host/socket/port, credentials, database or path
  std::string table_prefix;          // PostfixAdmin's $CONF['database_prefix'], usually empty
  std::string log_admin = "mxward";  // `log.username`: who PostfixAdmin's log shows as acting
  // Follow-ups after suspend / suspend_sending / require_password_change and their reverts.
  bool flush_auth_cache = false;  // doveadm auth cache flush <user>
  bool kick = false;              // doveadm kick <user> (suspend only)
  std::string doveadm = "/usr/bin/doveadm";
  std::string postsuper = "/usr/sbin/postsuper";
  int command_timeout_ms = 10000;

  // Reads [postfixadmin]; unknown keys and bad values are Diagnostics with file:line:col.
  static Result<PostfixAdminOptions> FromConfig(const Config& config,
                                                std::vector<Diagnostic>* diagnostics);
};

class PostfixAdminAccounts final : public ActionExecutor {
 public:
  // `connection` may be null: it is then opened from options.database on first use (and
  // re-opened after a transient failure). Tests pass one in.
  PostfixAdminAccounts(PostfixAdminOptions options, std::string store_path, const Clock* clock,
                       std::unique_ptr<SqlConnection> connection = nullptr);
  ~PostfixAdminAccounts() override;

  // suspend_sending | suspend | require_password_change | hold_queue; params {user, ...}.
  bool Handles(std::string_view type) const override;
  Status Start() override;  // connects and checks that the mailbox table has the needed columns
  Status Apply(const ActionRecord& action) override;
  Status Revert(const ActionRecord& action) override;
  // suspend_sending: smtp_active is 0; suspend: active is 0; require_password_change:
  // password_expiry <= now; hold_queue: true once held (nothing to query without Postfix).
  Result<bool> Check(const ActionRecord& action) override;
  void Stop() override;

  // In dry-run: one line per change that would have been made, in order.
  const std::vector<std::string>& dry_run_log() const { return dry_run_log_; }

 private:
  // Apply and Revert differ only in direction: validate the user, then hold/release the queue
  // or suspend/restore the account.
  enum class Direction { kApply, kRevert };
  Status Run(const ActionRecord& action, Direction direction);
  Result<SqlConnection*> Connection();
  Result<IncidentStore*> Store();
  Status Suspend(std::string_view kind, const std::string& user, const ActionRecord& action);
  Status Restore(std::string_view kind, const std::string& user, const ActionRecord& action);
  // The values `kind` overwrites, as JSON: {"active": true, "modified": "...", ...}.
  Result<nlohmann::json> ReadPrevious(SqlConnection* conn, std::string_view kind,
                                      const std::string& user);
  Status WriteLog(SqlConnection* conn, const std::string& user, std::int64_t incident_id);
  void FollowUps(std::string_view kind, const std::string& user, bool restored);
  Result<std::vector<std::string>> QueueIds(const ActionRecord& action);
  void DryRun(std::string line);
  Status Guard(Status s);  // drops the connection after a transient error
  std::string Table(const char* name) const { return options_.table_prefix + name; }

  PostfixAdminOptions options_;
  std::string store_path_;
  const Clock* clock_;
  std::unique_ptr<SqlConnection> connection_;
  std::unique_ptr<IncidentStore> store_;
  MailQueueHold queue_hold_;
  std::vector<std::string> dry_run_log_;
};

// The mail domains PostfixAdmin hosts: the active rows of its `domain` table (with the table
// prefix), without the 'ALL' row PostfixAdmin keeps for superadmins. For [rules] local_domains.
Result<std::vector<std::string>> ReadPostfixAdminDomains(SqlConnection* connection,
                                                         const PostfixAdminOptions& options);

// The executor for [postfixadmin], or a null pointer when the section is absent or
// `enabled = false`. Falls back to dry-run (and says so in `notes`) when the section or the global
// config says dry_run.
Result<std::unique_ptr<ActionExecutor>> MakePostfixAdminAccounts(
    const Config& config, const std::string& store_path, std::vector<Diagnostic>* diagnostics,
    std::vector<std::string>* notes);

}  // namespace mxward
