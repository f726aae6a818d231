#include "engine/base/process_metrics.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace mxward {

double ProcessStartTimeSeconds() {
  // Field 22 of /proc/self/stat is the start in clock ticks since boot; /proc/stat's btime is
  // the boot in Unix seconds. The command name (field 2) is in parentheses and may hold spaces.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  unsigned long long start_ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 22) {
      start_ticks = std::strtoull(field.c_str(), nullptr, 10);
      break;
    }
  }
  std::ifstream boot_file("/proc/stat");
  std::string line;
  long long btime = -1;
  while (std::getline(boot_file, line)) {
    if (line.rfind("btime ", 0) == 0) btime = std::strtoll(line.c_str() + 6, nullptr, 10);
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (btime < 0 || start_ticks == 0 || ticks <= 0) return -1;
  return static_cast<double>(btime) + static_cast<double>(start_ticks) / static_cast<double>(ticks);
}

double ProcessResidentMemoryBytes() {
  // /proc/self/statm: size resident shared ... in pages.
  std::FILE* f = std::fopen("/proc/self/statm", "re");
  if (!f) return -1;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double ProcessOpenFds() {
  std::error_code ec;
  double n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++n;
  }
  // The iterator's own descriptor on /proc/self/fd was open while it counted.
  return ec ? -1 : n - 1;
}

void RegisterProcessMetrics(MetricsRegistry* registry,
                            std::vector<MetricsRegistry::Handle>* handles) {
  using namespace metric;
  (void)registry->Declare({kProcessStartTime,
                           MetricType::kGauge,
                           "Start time of the process since unix epoch in seconds.",
                           {}});
  (void)registry->Declare(
      {kProcessResidentMemory, MetricType::kGauge, "Resident memory size in bytes.", {}});
  (void)registry->Declare(
      {kProcessOpenFds, MetricType::kGauge, "Number of open file descriptors.", {}});
  auto keep = [handles](Result<MetricsRegistry::Handle> h) {
    if (h.ok()) handles->push_back(std::move(*h));
  };
  if (const double start = ProcessStartTimeSeconds(); start > 0) {
    keep(registry->Add(kProcessStartTime, {}, [start] { return start; }));
  }
  if (ProcessResidentMemoryBytes() >= 0) {
    keep(registry->Add(kProcessResidentMemory, {}, [] { return ProcessResidentMemoryBytes(); }));
  }
  if (ProcessOpenFds() >= 0) {
    keep(registry->Add(kProcessOpenFds, {}, [] { return ProcessOpenFds(); }));
  }
}

}  // namespace mxward
