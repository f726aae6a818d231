// ClusterOptions: the [cluster] section of mxward.toml (docs/cluster.md). Without the section the
// node is alone and nothing of the cluster link runs. Read by the daemon when it starts and by
// `mxward check`, with located diagnostics; a value type, safe to copy between threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxward/config.h"
#include "mxward/status.h"

namespace mxward {

// The database that holds the decision log (docs/cluster.md, "Engines").
enum class ClusterEngine {
  kPostgresql,  // LISTEN/NOTIFY doorbells; every cluster feature
  kMariadb,     // polled every poll_interval; decisions, allowlist and node rows only
};

// "postgresql" or "mariadb", as [cluster] engine spells it.
const char* ClusterEngineName(ClusterEngine engine);

enum class ClusterRole {
  kFull,      // detects, bans locally, publishes its decisions and applies the others'
  kEnforcer,  // applies the cluster's decisions; publishes only what an admin does by hand
};

struct ClusterOptions {
  bool enabled = false;  // a [cluster] section is present
  std::string node;      // this node's name in the decision log: [A-Za-z0-9._-]{1,64}
  // libpq connection string or URI without the password ("host=db1 dbname=mxward user=mxward").
  std::string dsn;
  std::string password;  // from password_file (ReadSecretFile checks), "" for none
  ClusterEngine engine = ClusterEngine::kPostgresql;
  // engine = "mariadb": the server (host and port, or a unix socket), the user and the
  // database. PostgreSQL takes all of this from dsn instead.
  std::string host;
  int port = 3306;
  std::string socket;
  std::string user;
  std::string database;
  // engine = "mariadb": how often the link reads the log for other nodes' rows (MariaDB has no
  // doorbell). The time from a decision on one node to the others' kernel sets is this plus
  // the publish poll and the apply at most.
  std::int64_t poll_interval_ms = 250;
  ClusterRole role = ClusterRole::kFull;
  // How often the link reads the decision log without a notification (a lost NOTIFY, a
  // notification the database dropped while the connection was being re-made).
  std::int64_t safety_tick_ms = 30'000;
  // How often the link looks in the local store for bans to publish without being woken (the
  // dispatcher wakes it when it finishes a ban; this catches what another process finished).
  std::int64_t publish_poll_ms = 200;
  // Reconnect and publication retry: from min doubling up to max.
  std::int64_t retry_min_ms = 1'000;
  std::int64_t retry_max_ms = 30'000;
  // Rows of the decision log that ended (expired, or lifted) longer ago than this are pruned,
  // once an hour by one node; a node not seen for this long no longer holds pruning back.
  int log_retention_s = 7 * 86400;

  static Result<ClusterOptions> FromConfig(const Config& config,
                                           std::vector<Diagnostic>* diagnostics);
};

}  // namespace mxward
