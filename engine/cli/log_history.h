// Log history: the old, rotated log files `mxward learn` reads, in the order they were written.
//
// What: OldestFirst orders files by their rotation number (mail.log.2.gz before mail.log.1
// before mail.log: logrotate numbers older files higher), keeping the given order among equals.
// ReadLogHistoryFile reads one file, plain or gzip-compressed (zlib tells them apart by the
// magic bytes, so mail.log.2.gz and a gzip file without the suffix both work), and hands every
// line to a LineSink.
//
// Who uses it: the CLI's learn command, on its one thread.
//
// Why it exists: a fresh install has days of rotated, compressed logs; learning from them is what
// makes a `novel` baseline warm at once, and they have to be read in time order for the
// baseline's first/last use times to mean anything.
#pragma once

#include <string>
#include <vector>

#include "mxward/line_sink.h"
#include "mxward/status.h"

namespace mxward::cli {

// The rotation number of a log file's name: 2 for "mail.log.2.gz", 1 for "mail.log.1", 0 for
// "mail.log".
int RotationNumber(const std::string& path);
// files, oldest first (highest rotation number first), stably.
std::vector<std::string> OldestFirst(std::vector<std::string> files);
// Reads path (plain or gzip) to its end into sink. IoError when it cannot be opened or is a
// damaged gzip stream.
Status ReadLogHistoryFile(const std::string& path, LineSink* sink);

}  // namespace mxward::cli
