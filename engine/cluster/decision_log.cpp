#include "engine/cluster/decision_log.h"

#include "engine/cluster/mariadb_decision_log.h"
#include "engine/cluster/postgres_decision_log.h"

namespace mxward {

std::unique_ptr<DecisionLog> MakeDecisionLog(const ClusterOptions& options) {
  if (options.engine == ClusterEngine::kMariadb) {
    MariadbDecisionLog::Target target;
    target.host = options.host;
    target.port = options.port;
    target.socket = options.socket;
    target.user = options.user;
    target.password = options.password;
    target.database = options.database;
    return std::make_unique<MariadbDecisionLog>(std::move(target), options.node);
  }
  return std::make_unique<PostgresDecisionLog>(options.dsn, options.password, options.node);
}

}  // namespace mxward
