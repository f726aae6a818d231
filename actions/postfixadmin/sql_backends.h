// The three SqlConnection backends, opened by SqlConnection::Open(). Internal to actions/.
#pragma once

#include <memory>

#include "actions/postfixadmin/sql_connection.h"

namespace mxward {

Result<std::unique_ptr<SqlConnection>> OpenSqliteConnection(const SqlConnectionOptions& options);
Result<std::unique_ptr<SqlConnection>> OpenMariadbConnection(const SqlConnectionOptions& options);
Result<std::unique_ptr<SqlConnection>> OpenPostgresConnection(const SqlConnectionOptions& options);

}  // namespace mxward
