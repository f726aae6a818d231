// PostgresDecisionLog: the decision log in PostgreSQL through libpq (decision_log.h,
// docs/cluster.md). One connection LISTENs for the doorbell NOTIFY that carries only the newest
// sequence number (mxward_decisions), the window events' doorbell and the incident requests'
// (which names the owner). The same connection holds the cluster's other tables: shared windows'
// events and claims (schema v4), and cluster-wide incidents with the requests other nodes make of
// an incident's owner (schema v5, cluster_incidents.h); the CLI opens one for `incidents list
// --cluster` and NODE:ID references.
//
// Every statement is text with bound parameters ($1...). Blocking libpq calls: the ClusterLink's
// own thread owns one and is its only user.
#pragma once

#include <string>

#include "engine/cluster/decision_log.h"

typedef struct pg_conn PGconn;

namespace mxward {

class PostgresDecisionLog final : public DecisionLog {
 public:
  static constexpr const char* kChannel = "mxward_decisions";
  static constexpr const char* kWindowChannel = "mxward_window_events";
  // Rung with the owner's node name when a request for one of its incidents is written.
  static constexpr const char* kRequestChannel = "mxward_incident_requests";

  // conninfo: a libpq connection string or URI; password: "" to let libpq find none or its own.
  PostgresDecisionLog(std::string conninfo, std::string password, std::string node);
  ~PostgresDecisionLog() override;
  PostgresDecisionLog(const PostgresDecisionLog&) = delete;
  PostgresDecisionLog& operator=(const PostgresDecisionLog&) = delete;

  Status Connect() override;
  void Disconnect() override;
  bool connected() const override { return conn_ != nullptr; }
  bool has_doorbells() const override { return true; }
  int socket() const override;
  Result<int> ConsumeNotifications() override;
  Result<std::int64_t> Publish(const std::vector<DecisionToPublish>& decisions) override;
  Result<std::vector<DecisionRow>> ReadAfter(std::int64_t cursor, int limit) override;
  Status Heartbeat(std::int64_t cursor, std::string_view role, bool connected) override;
  Result<ClusterView> ReadView() override;
  Result<std::int64_t> Prune(std::int64_t keep_s) override;

  // Writes the batch in one INSERT statement and rings mxward_window_events. Keys
  // FitsPostgresText refuses are left out.
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

 private:
  Status Exec(const char* sql);
  Status Migrate();
  // A Status for a failed result; disconnects when the connection is gone.
  Status Fail(const char* doing, void* result);

  std::string conninfo_;
  std::string password_;
  std::string node_;
  PGconn* conn_ = nullptr;
};

}  // namespace mxward
