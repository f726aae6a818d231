// Cluster-wide incidents (issue 18, docs/cluster.md "Cluster-wide incidents"): the shapes that
// travel between a node's store and the cluster's PostgreSQL, and the pure conversions between
// them. The SQL that moves them is DecisionLog's (decision_log.h); who publishes when is the
// ClusterLink's (cluster_link.h).
//
// An incident belongs to the node that opened it: that node's store is the truth, and the
// database holds a copy (its latest state, evidence and action outcomes) that the owner
// republishes at every change. Any node reads the copies (`incidents list --cluster`, `show
// NODE:ID`) and asks the owner for a change (`ack`, `resolve [--revert]` of NODE:ID) with a
// request row that the owner's link applies to its own store, as a local admin's command.
//
// A reference to another node's incident is "NODE:ID": the node's name in [cluster] (no ':' in
// it) and the incident's id in that node's store, as `incidents list --cluster` shows them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxward/incident.h"
#include "mxward/incident_store.h"
#include "mxward/time.h"

namespace mxward {

// One node's incident as the cluster's table holds it.
struct SharedIncident {
  std::string node;   // the node that opened it and owns it
  std::string uuid;   // given by the database at its first publication ("" before)
  Incident incident;  // incident.id: its id in the owner's store; evidence only when read singly
  std::vector<ActionRecord> actions;  // their outcomes as the owner last published them
  std::vector<IncidentNote> notes;
  std::int64_t published_ago_s = 0;  // since the owner last published it (the database's clock)
};

// What `incidents list --cluster` asks for (the local list's filters, plus the node).
struct SharedIncidentQuery {
  std::string node;      // exact, "" for all
  std::string status;    // open | acknowledged | resolved, "" for all
  std::string playbook;  // exact, "" for all
  std::string key;       // exact, "" for all
  UnixMicros since = 0;  // last_seen >= since
  int limit = 100;
};

// A change asked of the node that owns an incident.
struct IncidentRequest {
  std::int64_t id = 0;  // the request's row
  std::string node;     // the owner, which applies it
  std::int64_t incident_id = 0;
  std::string kind;  // "ack" | "resolve"
  bool revert = false;
  std::string note;
  std::string requested_by;    // the asking node's name
  std::string requested_user;  // the user who ran the command there
  // Filled in by the owner.
  bool done = false;
  bool ok = false;
  std::string outcome;  // "resolved; 1 undo action(s) queued" or the error
};

// What the owner made of a request.
struct IncidentRequestOutcome {
  bool ok = false;
  std::string text;
};

// "a:17" names incident 17 of node a. False for anything else (a bare "17" is a local id).
bool ParseIncidentRef(std::string_view text, std::string* node, std::int64_t* id);

// Whether s can be a PostgreSQL text value in a UTF-8 database: valid UTF-8 without NUL. Keys
// come from log lines (a SASL user name is what the client typed), and one that is not would make
// the server refuse the whole statement.
bool FitsPostgresText(std::string_view s);

// Text PostgreSQL's text and jsonb can hold: bytes that are not UTF-8, and NUL, become U+FFFD.
// Evidence lines and keys are what a client sent; the copy is for people to read, so a lossy
// replacement is right where refusing the row would hide the incident.
std::string PostgresSafeText(std::string_view s);

// The three jsonb columns, built from the owner's records (every string made PostgresSafeText)
// and read back. Times are microseconds since the epoch, as the store keeps them.
std::string EvidenceColumn(const std::vector<EvidenceLine>& evidence);
std::string ActionsColumn(const std::vector<ActionRecord>& actions);
std::string NotesColumn(const std::vector<IncidentNote>& notes);
std::vector<EvidenceLine> EvidenceFromColumn(std::string_view json);
std::vector<ActionRecord> ActionsFromColumn(std::string_view json);
std::vector<IncidentNote> NotesFromColumn(std::string_view json);

}  // namespace mxward
