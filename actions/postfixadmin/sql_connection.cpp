#include "actions/postfixadmin/sql_connection.h"

#include "actions/postfixadmin/sql_backends.h"

namespace mxward {

Result<std::unique_ptr<SqlConnection>> SqlConnection::Open(const SqlConnectionOptions& options) {
  switch (options.backend) {
    case SqlConnectionOptions::Backend::kMysql:
      return OpenMariadbConnection(options);
    case SqlConnectionOptions::Backend::kPostgres:
      return OpenPostgresConnection(options);
    case SqlConnectionOptions::Backend::kSqlite:
      return OpenSqliteConnection(options);
  }
  return Status::Internal("unknown database backend");
}

}  // namespace mxward
