// `mxward replay FILE...|-`: runs logs through the whole pipeline with event time taken from the
// lines, and records the incidents in a store. Actions are recorded as dry-run unless
// --enforce is given: replaying last week's log should not ban today's addresses by surprise.
//
// Which store: the one --db names; else, with --enforce, the live one ([store] path: the actions
// it runs must be where the daemon keeps its bans); else a scratch store in a new temporary
// directory, removed at the end unless --keep (then its path is printed), so trying a log out
// never adds incidents, baselines or earlier offences to the live state; the live store's learned
// baselines are read (only read) so novelty judges as the daemon would. Replayed incidents are
// marked IncidentOrigin::kReplay: escalation never counts them, and the store records each once
// however often the same lines are replayed (ReplayIdentity).
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/engine_assembly.h"
#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/file_follower.h"
#include "mxward/incident_recorder.h"
#include "mxward/incident_store.h"
#include "mxward/parallel_lines.h"
#include "mxward/pipeline.h"

namespace mxward::cli {

namespace {

struct ReplayOptions {
  std::vector<std::string> files;
  bool enforce = false;
  bool quiet = false;
  bool keep = false;
  std::string format = "syslog";
  // 1 by default: on the bench corpora the threaded path costs 20-30% more CPU time and gave no
  // measurable wall-clock gain on a shared two-core machine (docs/benchmarks.md, "replay
  // --threads"), so it is asked for, not assumed. 0: the cores this process may run on.
  int threads = 1;
};

// The CPUs this process may run on (its affinity mask: a container or taskset may allow fewer
// than the machine has).
int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// Marks what the engine opens as replayed before the recorder writes it.
class ReplayMarkingSink final : public IncidentSink {
 public:
  explicit ReplayMarkingSink(IncidentSink* next) : next_(next) {}
  void OnIncident(Incident incident) override {
    incident.origin = IncidentOrigin::kReplay;
    next_->OnIncident(std::move(incident));
  }

 private:
  IncidentSink* next_;
};

// The temporary directory of a scratch store: removed when the replay ends (also on an error),
// unless kept.
class ScratchDirectory {
 public:
  ScratchDirectory() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/mxward-replay-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw CliExit(kExitRuntime,
                    fmt::format("cannot create a scratch directory: {}", strerror(errno)));
    }
    path_ = pattern;
  }
  ~ScratchDirectory() {
    std::error_code ec;
    if (!keep_) std::filesystem::remove_all(path_, ec);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;

  const std::string& path() const { return path_; }
  void Keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

void RunReplay(const GlobalOptions& globals, const ReplayOptions& opts) {
  Config config = LoadEffectiveConfig(globals);
  if (!opts.enforce) config.dry_run = true;
  auto pack = LoadParserPackOrExit(ParserDirs(config), config);
  auto engine = LoadPlaybooksOrExit(config);

  std::optional<ScratchDirectory> scratch;
  const UnixMicros now = SystemClock::Instance()->Now();
  if (globals.db_path.empty() && !opts.enforce) {
    // What the live store has learned (baselines; not its incidents: a replay's escalation counts
    // only what the replay itself opens) judges the replay as the daemon would, read-only.
    std::error_code ec;
    if (std::filesystem::exists(config.store_path, ec)) {
      StoreOptions read_only;
      read_only.read_only = true;
      if (auto live = IncidentStore::Open(config.store_path, read_only); live.ok()) {
        PrimeEngineFromStore(engine.get(), live->get(), now, /*with_history=*/false);
      } else if (!opts.quiet) {
        std::fprintf(stderr, "mxward: replaying without the learned baselines of %s: %s\n",
                     config.store_path.c_str(), live.status().ToString().c_str());
      }
    }
    scratch.emplace();
    config.store_path = scratch->path() + "/replay.db";
    if (opts.keep) scratch->Keep();
  }
  auto store = OpenStoreOrExit(config, StoreUse::kWrite);
  PrimeEngineFromStore(engine.get(), store.get(), now);
  IncidentRecorder recorder(std::move(store), SystemClock::Instance(), nullptr);
  ReplayMarkingSink marking(&recorder);

  const auto started = std::chrono::steady_clock::now();
  PipelineOptions popts;
  popts.replay = true;
  popts.vouch_for_every_line = true;  // the operator named the files (docs/cli.md)
  popts.reference = SystemClock::Instance()->Now();
  if (!ParseLogFormat(opts.format, &popts.format)) {
    throw CliExit(kExitUsage, "--format must be syslog, dovecot-log, roundcube-log or clamd-log");
  }
  // One pipeline for all files, so `replay mail.log.1 mail.log` keeps its windows across them.
  Pipeline pipeline(
      SyslogParser(), EventExtractor::Create(pack), std::move(engine), &marking,
      [&](UnixMicros hour, const auto& counts) { recorder.AddEventCounts(hour, counts); }, popts);
  const int threads = opts.threads > 0 ? opts.threads : AvailableCores();
  const LinePreparer preparer = pipeline.MakePreparer();
  ParallelLinesOptions parallel;
  parallel.threads = threads;
  for (const auto& file : opts.files) {
    int fd = 0;
    if (file != "-") {
      fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        throw CliExit(kExitUsage, fmt::format("cannot open {}: {}", file, strerror(errno)));
      struct stat st {};
      // Year-less times are placed near the file's last write, not near today.
      if (fstat(fd, &st) == 0) {
        pipeline.SetReplayReference(static_cast<UnixMicros>(st.st_mtime) * kMicrosPerSecond);
      }
    }
    // One thread: the pipeline reads and parses itself. More: the syslog parse and the pattern
    // match of each line run on `threads` workers, the rest on this thread in input order, with
    // the same incidents (prepared_line.h).
    Status st = threads > 1 ? ReadLinesParallel(fd, preparer, &pipeline, parallel)
                            : ReadLines(fd, &pipeline);
    if (fd > 0) ::close(fd);
    if (!st.ok()) throw CliExit(kExitRuntime, fmt::format("reading {}: {}", file, st.message()));
  }
  pipeline.ReleaseHeld();
  pipeline.FlushCounts();
  recorder.AddBaselines(pipeline.engine().TakeDirtyBaselines());
  const auto& c = pipeline.counters();
  const std::uint64_t lines = c.lines, malformed = c.malformed, events = c.events,
                      incidents = c.incidents;
  const EngineStats& engine_stats = pipeline.engine().stats();
  const std::uint64_t keys = engine_stats.tracked_keys, peak_keys = engine_stats.peak_keys;
  recorder.Flush();
  recorder.Stop();
  if (!recorder.last_error().ok()) {
    throw CliExit(kExitRuntime, "could not write incidents: " + recorder.last_error().ToString());
  }
  if (opts.enforce) {
    std::vector<Diagnostic> diags;
    std::vector<std::string> notes;
    auto executors = BuildExecutors(config, config.store_path, &diags, &notes);
    if (!executors.ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      throw CliExit(kExitFailure, executors.status().message());
    }
    for (const auto& n : notes) std::fprintf(stderr, "mxward: %s\n", n.c_str());
    auto dopts = DispatcherOptions::FromConfig(config, &diags);
    if (!dopts.ok()) throw CliExit(kExitFailure, dopts.status().message());
    ActionDispatcher dispatcher(config.store_path, std::move(*executors), *dopts,
                                SystemClock::Instance());
    Status st = dispatcher.RunDueOnce();
    if (!st.ok()) throw CliExit(kExitRuntime, "running actions: " + st.ToString());
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // CPU time of the whole process (pipeline and store writer): on a shared machine the wall time
  // also counts the time other processes held the cores.
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  if (!opts.quiet) {
    std::fprintf(
        stderr,
        "replayed %llu lines in %.2fs (%.0f lines/s; %.2fs CPU, %.0f lines per CPU "
        "second): %llu events, %llu malformed, %llu incidents%s, keys held %llu (at "
        "most %llu) -> %s%s\n",
        static_cast<unsigned long long>(lines), secs, secs > 0 ? lines / secs : 0.0, cpu,
        cpu > 0 ? lines / cpu : 0.0, static_cast<unsigned long long>(events),
        static_cast<unsigned long long>(malformed), static_cast<unsigned long long>(incidents),
        opts.enforce ? "" : " (actions recorded as dry-run)", static_cast<unsigned long long>(keys),
        static_cast<unsigned long long>(peak_keys), config.store_path.c_str(),
        !scratch    ? ""
        : opts.keep ? " (scratch store, kept)"
                    : " (scratch store, removed; --keep or --db to look at it)");
  }
}

}  // namespace

void AddReplayCommand(CLI::App& app, GlobalOptions& globals) {
  auto opts = std::make_shared<ReplayOptions>();
  CLI::App* cmd = app.add_subcommand(
      "replay",
      "Run log files (or - for stdin) through every parser and playbook, using the time in each "
      "line, and record incidents (marked as replayed) in a scratch store removed afterwards, "
      "or in the store --db names. Actions are recorded as dry-run unless --enforce (which "
      "writes to the live store).");
  cmd->add_option("files", opts->files, "log files, or - for standard input")
      ->required()
      ->check([](const std::string& f) -> std::string {
        if (f == "-" || access(f.c_str(), R_OK) == 0) return "";
        return "cannot read " + f;
      });
  cmd->add_flag("--enforce", opts->enforce, "run the actions (bans, suspensions, notifications)");
  cmd->add_flag("-q,--quiet", opts->quiet, "no summary on stderr");
  cmd->add_flag("--keep", opts->keep,
                "keep the scratch store (written when neither --db nor --enforce is given) and "
                "print its path");
  cmd->add_option("--format", opts->format,
                  "how the files are written: syslog (default), dovecot-log, roundcube-log, "
                  "clamd-log");
  cmd->add_option("--threads", opts->threads,
                  "threads for parsing and pattern matching, besides the one that correlates, "
                  "counts and records in input order; 1 (the default): one thread does it all; 0: "
                  "the cores available. Any value gives the same incidents")
      ->check(CLI::Range(0, 256));
  cmd->callback([&globals, opts] { RunReplay(globals, *opts); });
}

}  // namespace mxward::cli
