// parse_bench: single-thread throughput of the hot path `explain` and the daemon share:
// SyslogParser + EventExtractor (parser pack, folding, queue-id correlation) over a log file held
// in memory. Not a test: prints figures (bench/parse/run.sh compares them with fail2ban-regex).
//
//   parse_bench PARSERS_DIR LOG [--rounds N]
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/parser_pack.h"
#include "mxward/syslog_parser.h"

// CPU time of this thread: on a shared machine, wall time also counts the time other processes
// held the core. Both are printed.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: parse_bench PARSERS_DIR LOG [--rounds N]\n");
    return 2;
  }
  int rounds = 5;
  for (int i = 3; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  std::vector<mxward::Diagnostic> diags;
  auto pack = mxward::ParserPack::Load({argv[1]}, &diags);
  if (!pack.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", argv[2]);
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::vector<std::string_view> lines;
  for (std::size_t pos = 0; pos < data.size();) {
    std::size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    lines.emplace_back(data.data() + pos, nl - pos);
    pos = nl + 1;
  }

  mxward::SyslogParserOptions sopts;
  sopts.use_local_zone = false;
  const mxward::SyslogParser parser(sopts);
  const mxward::UnixMicros reference = 1'795'000'000LL * mxward::kMicrosPerSecond;

  // Syslog header only, for the breakdown.
  double best_syslog = 1e9, best_syslog_cpu = 1e9;
  for (int r = 0; r < rounds; ++r) {
    mxward::SyslogMessage msg;
    std::size_t ok = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = ThreadCpuSeconds();
    for (auto line : lines) ok += parser.Parse(line, reference, &msg).ok();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best_syslog) best_syslog = s;
    if (ThreadCpuSeconds() - c0 < best_syslog_cpu) best_syslog_cpu = ThreadCpuSeconds() - c0;
    if (ok == 0) std::fprintf(stderr, "warning: no syslog line parsed\n");
  }

  double best = 1e9, best_cpu = 1e9;
  std::uint64_t events = 0, malformed = 0;
  mxward::ExtractorStats stats;
  std::map<std::string, std::uint64_t> by_type;
  for (int r = 0; r < rounds; ++r) {
    auto extractor = mxward::EventExtractor::Create(*pack);  // fresh state per round
    mxward::SyslogMessage msg;
    mxward::Event event;
    std::uint64_t n = 0, bad = 0;
    std::uint64_t counts[mxward::kEventTypeCount] = {};
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = ThreadCpuSeconds();
    for (auto line : lines) {
      if (!parser.Parse(line, reference, &msg).ok()) {
        ++bad;
        continue;
      }
      if (extractor->Extract(msg, &event)) {
        ++n;
        ++counts[static_cast<int>(event.type)];
      }
      while (extractor->NextReleased(&event)) {  // held lines counted on their own
        ++n;
        ++counts[static_cast<int>(event.type)];
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = ThreadCpuSeconds() - c0;
    if (s < best) best = s;
    if (cpu < best_cpu) best_cpu = cpu;
    events = n;
    malformed = bad;
    stats = extractor->stats();
    by_type.clear();
    for (int i = 0; i < mxward::kEventTypeCount; ++i) {
      if (counts[i] != 0) {
        by_type[std::string(mxward::EventTypeName(static_cast<mxward::EventType>(i)))] = counts[i];
      }
    }
  }
  const double n = static_cast<double>(lines.size());
  std::printf("lines             %zu (%.1f MB), best of %d rounds, one thread\n", lines.size(),
              data.size() / 1e6, rounds);
  std::printf("                  wall time              thread CPU time\n");
  std::printf("syslog only       %.3f s %10.0f lines/s  %.3f s %10.0f lines/s\n", best_syslog,
              n / best_syslog, best_syslog_cpu, n / best_syslog_cpu);
  std::printf("syslog+extract    %.3f s %10.0f lines/s  %.3f s %10.0f lines/s\n", best, n / best,
              best_cpu, n / best_cpu);
  std::printf(
      "events            %llu (folded %llu, unmatched %llu, not syslog %llu)\n",
      static_cast<unsigned long long>(events), static_cast<unsigned long long>(stats.folded),
      static_cast<unsigned long long>(stats.unmatched), static_cast<unsigned long long>(malformed));
  for (const auto& [type, count] : by_type) {
    std::printf("  %-18s %llu\n", type.c_str(), static_cast<unsigned long long>(count));
  }
  std::printf("MXWARD_LINES_PER_SECOND=%.0f\n", n / best);
  std::printf("MXWARD_CPU_LINES_PER_SECOND=%.0f\n", n / best_cpu);
  return 0;
}
