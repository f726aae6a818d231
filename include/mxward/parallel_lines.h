// ReadLinesParallel: `mxward replay --threads N`. Reads a file descriptor to EOF like ReadLines
// (the same line splitting: ingest::LineReader, the same cut of over-long lines) and spreads the
// stateless stage of each line (syslog header, routing, pattern match: prepared_line.h) over N
// worker threads, while the calling thread hands the PreparedLines to the sink (the pipeline's
// stateful stage) strictly in input order.
//
// Lines are copied into blocks of up to lines_per_block lines; a bounded ring of blocks (reused,
// so no allocation per line once the ring is warm) goes reader -> workers -> sink. The sink runs
// on the calling thread only. The incidents are those of ReadLines (prepared_line.h says why).
#pragma once

#include <cstddef>

#include "mxward/prepared_line.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

struct ParallelLinesOptions {
  int threads = 2;  // worker threads for the stateless stage (>= 1)
  int input_index = 0;
  std::size_t max_line_bytes = 16 * 1024 * 1024;  // as ReadLinesOptions
  // 1024: the same CPU time as 4096 and 256 on the bench corpora, 16 MiB less peak RSS than
  // 4096 (a PreparedLine is ~750 bytes; the ring holds 2 * threads + 1 blocks).
  std::size_t lines_per_block = 1024;
  const Clock* clock = nullptr;  // received_at; nullptr: the system clock
};

// Reads fd until EOF (fd is not closed). preparer's pack must outlive the call. Errors: IoError.
Status ReadLinesParallel(int fd, const LinePreparer& preparer, PreparedLineSink* sink,
                         const ParallelLinesOptions& options = {});

}  // namespace mxward
