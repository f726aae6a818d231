// The IncidentStore schema as an ordered list of migrations. Migration N (1-based) takes a file
// from user_version N-1 to N; IncidentStore::Open applies the missing ones in one transaction.
// Never edit a migration that has shipped: append a new one and bump kSchemaVersion.
#pragma once

#include <span>

namespace mxward::store {

// Each entry is one or more SQL statements separated by ';'.
std::span<const char* const> Migrations();

}  // namespace mxward::store
