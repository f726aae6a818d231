// RunMariadbStatement: one prepared libmariadb statement executed with bound parameters, its rows
// read back as text. The two users of MariaDB, the PostfixAdmin backend
// (actions/postfixadmin/mariadb_connection.cpp) and the cluster's decision log on MariaDB
// (engine/cluster/mariadb_decision_log.cpp), each own their connection and prepared statements;
// this is the part where they do the same thing. Values are only ever bound, never spliced into
// SQL. MariadbStatus says what a libmariadb error code means to a caller that retries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/status.h"

struct st_mysql_stmt;  // libmariadb's MYSQL_STMT

namespace mxward {

// A bound parameter: SQL NULL, text (a view: the caller keeps it alive for the call), or a 64-bit
// integer.
struct MariadbParam {
  enum class Kind { kNull, kText, kInt };
  Kind kind = Kind::kNull;
  std::string_view text;
  std::int64_t integer = 0;

  static MariadbParam Null() { return {}; }
  static MariadbParam Text(std::string_view t) { return {Kind::kText, t, 0}; }
  static MariadbParam Int(std::int64_t i) { return {Kind::kInt, {}, i}; }
};

// A row read: each column as the client's text form (numbers and dates too); nullopt is NULL.
using MariadbRow = std::vector<std::optional<std::string>>;

// The Status for a libmariadb error `code` with its `message`, met while `doing` something:
// Unavailable when the server or the connection went away or a lock conflicted (retry later),
// PermissionDenied for the access-denied errors, Internal otherwise.
Status MariadbStatus(unsigned int code, std::string_view message, std::string_view doing);

// Executes prepared `stmt` with `params` (as many as its placeholders, or an Internal error
// without executing). A statement with a result set appends its rows to *rows when rows is not
// null and returns how many it read; one without returns the rows it affected. The result is
// freed on every path, so the statement can run again.
Result<std::int64_t> RunMariadbStatement(st_mysql_stmt* stmt,
                                         const std::vector<MariadbParam>& params,
                                         std::vector<MariadbRow>* rows);

}  // namespace mxward
