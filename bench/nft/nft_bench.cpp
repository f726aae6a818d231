// nft_bench: what a ban costs NftablesBlocker with N bans already in the kernel, and how long a
// restore of those N bans takes. Not a test: it prints figures (issue 20).
//
//   nft_bench [--preload N] [--bans M] [--batch B] [--ports SCOPE]
//
// --ports: the port scope of every ban, preloaded and new ("mail" by default; "web", "all", ...).
//
// Runs in a network namespace of its own (unshare(CLONE_NEWNET): needs root), so the host's
// ruleset is never touched. Steps, each timed in wall and CPU time of this process:
//   1. N stored bans (90% IPv4 hosts in 11.0.0.0/8, 10% IPv6 hosts, timeouts of 1-2 h) are written
//      straight into a fresh store with the sqlite3 program, as earlier runs would have left them;
//   2. Start(): the table is built and the N bans restored from the store (one transaction);
//   3. M Apply() calls of new IPv4 hosts, one at a time, each timed (p50/p90/p99/max), then, with
//      --batch B > 1, M more bans through ApplyMany() in groups of B (time per group);
//   4. `nft flush ruleset`, then Maintain(): the repair tick restores the N + M bans.
// The libnftables work happens in this process, the kernel's in the kernel (system time).
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "actions/nftables/nftables_blocker.h"
#include "mxward/incident_store.h"

namespace {

using Steady = std::chrono::steady_clock;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Ms(Steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "nft_bench: %s\n", what.c_str());
  return 1;
}

std::string g_ports = "mail";  // --ports: the scope of every ban

mxward::ActionRecord BanAction(std::int64_t id, const std::string& address) {
  mxward::ActionRecord a;
  a.id = id;
  a.incident_id = id;
  a.type = "ban";
  a.params = {{"address", address}, {"duration_s", 3600}, {"ports", g_ports}};
  return a;
}

std::string NewAddress(int i) {
  // 198.18.0.0/15: never in the preloaded 11.0.0.0/8.
  return fmt::format("198.{}.{}.{}", 18 + (i >> 16) % 2, (i >> 8) & 255, i & 255);
}

}  // namespace

int main(int argc, char** argv) {
  long preload = 0, bans = 200, batch = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 < argc && arg == "--preload") {
      preload = std::atol(argv[++i]);
    } else if (i + 1 < argc && arg == "--bans") {
      bans = std::atol(argv[++i]);
    } else if (i + 1 < argc && arg == "--batch") {
      batch = std::max(1L, std::atol(argv[++i]));
    } else if (i + 1 < argc && arg == "--ports") {
      g_ports = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: nft_bench [--preload N] [--bans M] [--batch B] [--ports SCOPE]\n");
      return 2;
    }
  }
  if (unshare(CLONE_NEWNET) != 0) {
    return Fail(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno) + " (run as root)");
  }
  char dir_template[] = "/tmp/mxward-nft-bench-XXXXXX";
  if (!mkdtemp(dir_template)) return Fail("mkdtemp failed");
  const std::string dir = dir_template;
  const std::string db = dir + "/state.db";
  const mxward::UnixMicros now = mxward::SystemClock::Instance()->Now();
  {
    auto store = mxward::IncidentStore::Open(db);
    if (!store.ok()) return Fail(store.status().ToString());
  }
  if (preload > 0) {
    const long v6 = preload / 10, v4 = preload - v6;
    const std::string sql = fmt::format(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {1} - 1) "
        "INSERT INTO bans (prefix, created_at, until, incident_id, reason, ports) "
        "SELECT CASE WHEN i < {2} THEN "
        "((184549376 + 7 * i) >> 24) || '.' || (((184549376 + 7 * i) >> 16) & 255) || '.' || "
        "(((184549376 + 7 * i) >> 8) & 255) || '.' || ((184549376 + 7 * i) & 255) "
        "ELSE printf('2001:db8:%x:%x::1', (i - {2}) / 65536, (i - {2}) % 65536) END, "
        "{0}, {0} + (3600 + i % 3600) * 1000000, i, '', '{3}' FROM s",
        now, preload, v4, g_ports);
    const std::string command = "sqlite3 " + db + " \"" + sql + "\"";
    if (std::system(command.c_str()) != 0) return Fail("sqlite3 failed (apt-get install sqlite3)");
  }
  std::system("ip link set lo up");

  mxward::NftablesOptions options;
  mxward::NftablesBlocker blocker(options, db, mxward::SystemClock::Instance());
  double cpu = CpuSeconds();
  auto t = Steady::now();
  if (auto s = blocker.Start(); !s.ok()) return Fail(s.ToString());
  std::printf("start with %ld stored bans: %.0f ms wall, %.0f ms CPU\n", preload,
              Ms(Steady::now() - t), (CpuSeconds() - cpu) * 1e3);

  std::vector<double> each;
  cpu = CpuSeconds();
  for (long i = 0; i < bans; ++i) {
    const auto a = BanAction(i + 1, NewAddress(static_cast<int>(i)));
    t = Steady::now();
    if (auto s = blocker.Apply(a); !s.ok()) return Fail(s.ToString());
    each.push_back(Ms(Steady::now() - t));
  }
  std::printf(
      "%ld single bans with %ld in place: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms; "
      "%.2f ms CPU per ban\n",
      bans, preload, Percentile(each, 50), Percentile(each, 90), Percentile(each, 99),
      Percentile(each, 100), (CpuSeconds() - cpu) * 1e3 / static_cast<double>(bans));

  if (batch > 1) {
    std::vector<double> per_group;
    cpu = CpuSeconds();
    for (long i = 0; i < bans; i += batch) {
      std::vector<mxward::ActionRecord> group;
      for (long j = i; j < std::min(bans, i + batch); ++j) {
        group.push_back(BanAction(bans + j + 1, NewAddress(static_cast<int>(bans + j))));
      }
      std::vector<const mxward::ActionRecord*> pointers;
      for (const auto& a : group) pointers.push_back(&a);
      t = Steady::now();
      const auto results = blocker.ApplyMany(pointers);
      per_group.push_back(Ms(Steady::now() - t));
      for (const auto& s : results) {
        if (!s.ok()) return Fail(s.ToString());
      }
    }
    std::printf(
        "%ld bans in groups of %ld with %ld in place: p50 %.2f ms, p99 %.2f ms per group; "
        "%.3f ms CPU per ban\n",
        bans, batch, preload, Percentile(per_group, 50), Percentile(per_group, 99),
        (CpuSeconds() - cpu) * 1e3 / static_cast<double>(bans));
  }

  if (std::system("nft flush ruleset") != 0) return Fail("nft flush ruleset failed");
  cpu = CpuSeconds();
  t = Steady::now();
  if (auto s = blocker.Maintain(); !s.ok()) return Fail(s.ToString());
  std::printf("restore after flush ruleset (Maintain), %ld bans: %.0f ms wall, %.0f ms CPU\n",
              preload + bans * (batch > 1 ? 2 : 1), Ms(Steady::now() - t),
              (CpuSeconds() - cpu) * 1e3);
  blocker.Stop();
  std::system(("rm -rf " + dir).c_str());
  return 0;
}
