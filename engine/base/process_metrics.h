// Process metrics: the daemon's own start time, resident memory and open file descriptors, under
// the names every Prometheus client library uses (process_start_time_seconds,
// process_resident_memory_bytes, process_open_fds), so stock alerts (fd exhaustion, memory
// growth, restarts) work on mxward unchanged.
//
// Read from /proc/self at each scrape, on the metrics server's thread: /proc reads are answered
// by the kernel from memory (no disk, no blocking), which is why these callbacks may do them
// while the registry's rule says "no I/O". The start time is read once, at registration. On a
// system without /proc the families are declared and have no sample.
#pragma once

#include <vector>

#include "mxward/metrics_registry.h"

namespace mxward {

// Declares the three families and adds their samples; the handles go to *handles (the caller
// keeps them as long as the registry renders).
void RegisterProcessMetrics(MetricsRegistry* registry,
                            std::vector<MetricsRegistry::Handle>* handles);

// The parts, for tests: each returns a negative value when /proc cannot tell.
double ProcessStartTimeSeconds();     // Unix seconds
double ProcessResidentMemoryBytes();  // RSS
double ProcessOpenFds();              // entries in /proc/self/fd

}  // namespace mxward
