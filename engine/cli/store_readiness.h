// Can the daemon write its store? `serve` asks before it reports ready (and sd_notify READY=1):
// a store it can only read (created by root before the first start, a mode that lost its write
// bit) would otherwise let it detect attacks it can neither record nor act on. The answer names
// what to fix: the file or directory, its owner and mode, and the user the daemon runs as.
#pragma once

#include "mxward/incident_store.h"
#include "mxward/status.h"

namespace mxward::cli {

// OK when a write commits on this connection (a no-op UPDATE of the store's identity row in its
// own transaction). Otherwise PermissionDenied (or the SQLite error) with a message that says,
// for the store file, its -wal/-shm and its directory, which one this process cannot write and
// the chown/chmod that fixes it. ResourceExhausted when the disk is full: that heals by itself,
// and the daemon runs on (incidents held in memory), so the caller warns and goes on.
Status CheckStoreWritable(IncidentStore* store);

// The PermissionDenied CheckStoreWritable returns, for a store at path that failed with error
// (also when IncidentStore::Open refused it).
Status UnwritableStore(const std::string& path, const std::string& error);

}  // namespace mxward::cli
