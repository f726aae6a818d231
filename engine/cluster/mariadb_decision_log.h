// MariadbDecisionLog: the decision log in MariaDB through libmariadb's prepared statements, for
// sites whose platform runs only MariaDB (docs/cluster.md, "MariaDB"). The same tables as
// PostgreSQL's (decisions, their counter, node rows, shared windows' events and claims,
// cluster-wide incidents and requests), in InnoDB, utf8mb4_bin, times in UTC on the server's
// clock, versioned in mxward_cluster_schema with MariaDB's own numbering and migrated under one
// GET_LOCK so nodes starting together migrate once.
//
// MariaDB has no LISTEN/NOTIFY: there is no doorbell, socket() is -1, and the cluster link reads
// every poll_interval what a doorbell would announce (the rows after its cursor, the other
// nodes' window events, the requests for this node's incidents). Sequence numbers (decisions)
// and ids (window events) follow commit order as in PostgreSQL: the publishing transaction locks
// the one counter row (SELECT ... FOR UPDATE, TakeNumbers) and holds it to COMMIT.
//
// Every statement is prepared with bound parameters (mysql_stmt_*); no value is spliced into SQL.
// Text a client chose is held as PostgreSQL holds it (cluster_incidents.h): valid UTF-8 is what
// utf8mb4 accepts too. Blocking calls: the ClusterLink's thread owns one and is its only user.
#pragma once

#include <initializer_list>
#include <map>
#include <string>

#include "engine/base/mariadb_statement.h"
#include "engine/cluster/decision_log.h"

typedef struct st_mysql MYSQL;
typedef struct st_mysql_stmt MYSQL_STMT;

namespace mxward {

class MariadbDecisionLog final : public DecisionLog {
 public:
  // MariaDB's schema versions: 1 holds PostgreSQL's v1 to v3 tables (decisions with the
  // allowlist kinds and note, the counter, the node rows); 2 its v4 and v5 (shared windows,
  // cluster-wide incidents); 3 its v6 (shared resets: the window events' kind).
  static constexpr int kMariadbSchemaVersion = 3;

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
  int socket() const override { return -1; }
  Result<int> ConsumeNotifications() override;
  Result<std::int64_t> Publish(const std::vector<DecisionToPublish>& decisions) override;
  Result<std::vector<DecisionRow>> ReadAfter(std::int64_t cursor, int limit) override;
  Status Heartbeat(std::int64_t cursor, std::string_view role, bool connected) override;
  Result<ClusterView> ReadView() override;
  Result<std::int64_t> Prune(std::int64_t keep_s) override;

  Result<std::int64_t> PublishWindowEvents(const std::vector<WindowEvent>& events,
                                           std::size_t n) override;
  Result<std::vector<RemoteWindowEvent>> ReadWindowEventsAfter(std::int64_t cursor,
                                                               std::int64_t max_age_s, int limit,
                                                               bool include_own) override;
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

  // A counter row whose lock orders publishers by commit: its locking read, its advance.
  struct Counter {
    const char* lock_sql;
    const char* advance_sql;
    const char* table;
  };

 private:
  // Runs a statement (prepared once per connection) with params; rows into *rows when given.
  // The rows affected (or read). Any failure disconnects.
  Result<std::int64_t> Run(const char* sql, const std::vector<MariadbParam>& params,
                           std::vector<MariadbRow>* rows = nullptr);
  // Inside an open transaction: locks counter's row to COMMIT and advances it by n; the value
  // before (this transaction's numbers are before + 1 .. before + n).
  Result<std::int64_t> TakeNumbers(const Counter& counter, std::int64_t n);
  // Each pruning statement with keep_s (at least 1) as its one parameter; the rows deleted in all.
  Result<std::int64_t> RunPrunes(std::initializer_list<const char*> statements,
                                 std::int64_t keep_s);
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
