// MariadbDecisionLog: the decision log in MariaDB through libmariadb's prepared statements, for
// sites whose platform runs only MariaDB (docs/cluster.md, "MariaDB"). The same tables as
// PostgreSQL's decisions, counter and node rows (InnoDB, utf8mb4, times in UTC on the server's
// clock), versioned in mxward_cluster_schema with MariaDB's own numbering and migrated under one
// GET_LOCK so nodes starting together migrate once.
//
// MariaDB has no LISTEN/NOTIFY: there is no doorbell, socket() is -1, and the cluster link reads
// the rows after its cursor every [cluster] poll_interval instead. Sequence numbers follow commit
// order as in PostgreSQL: the publishing transaction locks the one counter row (SELECT ... FOR
// UPDATE) and holds it to COMMIT. Shared windows and cluster-wide incidents are PostgreSQL's only:
// those calls answer InvalidArgument, and serve / check / `incidents --cluster` refuse them before.
//
// Every statement is prepared with bound parameters (mysql_stmt_*); no value is spliced into SQL.
// Blocking calls: the ClusterLink's thread owns one and is its only user.
#pragma once

#include <map>
#include <string>

#include "engine/cluster/decision_log.h"

typedef struct st_mysql MYSQL;
typedef struct st_mysql_stmt MYSQL_STMT;

namespace mxward {

class MariadbDecisionLog final : public DecisionLog {
 public:
  // MariaDB's schema versions: 1 holds PostgreSQL's v1 to v3 tables (decisions with the
  // allowlist kinds and note, the counter, the node rows).
  static constexpr int kMariadbSchemaVersion = 1;

  // socket: a unix socket path, or "" for host:port.
  struct Target {
    std::string host;
    int port = 3306;
    std::string socket;
    std::string user;
    std::string password;
    std::string database;
  };
  MariadbDecisionLog(Target target, std::string node);
  ~MariadbDecisionLog() override;
  MariadbDecisionLog(const MariadbDecisionLog&) = delete;
  MariadbDecisionLog& operator=(const MariadbDecisionLog&) = delete;

  Status Connect() override;
  void Disconnect() override;
  bool connected() const override { return mysql_ != nullptr; }
  bool has_doorbells() const override { return false; }
  bool has_windows_and_incidents() const override { return false; }
  int socket() const override { return -1; }
  Result<int> ConsumeNotifications() override;
  Result<std::int64_t> Publish(const std::vector<DecisionToPublish>& decisions) override;
  Result<std::vector<DecisionRow>> ReadAfter(std::int64_t cursor, int limit) override;
  Status Heartbeat(std::int64_t cursor, std::string_view role, bool connected) override;
  Result<ClusterView> ReadView() override;
  Result<std::int64_t> Prune(std::int64_t keep_s) override;

  // InvalidArgument on MariaDB (see the header comment).
  Result<std::int64_t> PublishWindowEvents(const std::vector<WindowEvent>& events,
                                           std::size_t n) override;
  Result<std::vector<RemoteWindowEvent>> ReadWindowEventsAfter(std::int64_t cursor,
                                                               std::int64_t max_age_s,
                                                               int limit) override;
  Result<WindowClaim> ClaimWindow(std::string_view playbook, std::string_view key,
                                  std::int64_t lease_s) override;
  Result<std::int64_t> PruneWindowEvents(std::int64_t keep_s) override;
  Status PublishIncidents(const std::vector<SharedIncident>& incidents) override;
  Result<std::vector<SharedIncident>> ListIncidents(const SharedIncidentQuery& query) override;
  Result<SharedIncident> GetIncident(std::string_view node, std::int64_t id) override;
  Result<std::int64_t> RequestIncidentChange(const IncidentRequest& request) override;
  Result<std::vector<IncidentRequest>> PendingIncidentRequests(int limit) override;
  Status FinishIncidentRequest(std::int64_t id, const IncidentRequestOutcome& outcome) override;
  Result<IncidentRequest> ReadIncidentRequest(std::int64_t id) override;
  Result<std::int64_t> PruneIncidents(std::int64_t keep_s) override;

  // A bound parameter: an integer or text.
  struct Param {
    Param(std::int64_t v) : is_int(true), i(v) {}  // NOLINT: implicit by design
    Param(int v) : is_int(true), i(v) {}           // NOLINT
    Param(std::string v) : s(std::move(v)) {}      // NOLINT
    Param(std::string_view v) : s(v) {}            // NOLINT
    Param(const char* v) : s(v) {}                 // NOLINT
    bool is_int = false;
    std::int64_t i = 0;
    std::string s;
  };
  // A row of text columns; a NULL reads as "".
  using Row = std::vector<std::string>;

 private:
  // Runs a statement (prepared once per connection) with params; rows into *rows when given.
  // The rows affected (or read). Any failure disconnects.
  Result<std::int64_t> Run(const char* sql, const std::vector<Param>& params,
                           std::vector<Row>* rows = nullptr);
  Status Simple(const char* sql);
  Status Migrate();
  // A Status for the connection's last error (Unavailable when it may pass); disconnects.
  Status Fail(unsigned int code, const char* message, std::string_view doing);

  Target target_;
  std::string node_;
  MYSQL* mysql_ = nullptr;
  std::map<const char*, MYSQL_STMT*> statements_;
};

}  // namespace mxward
