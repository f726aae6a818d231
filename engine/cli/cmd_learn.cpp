// `mxward learn FILE...`: builds the baselines of the `novel` playbooks from old logs (plain or
// gzip, rotated names read oldest first), so a fresh install judges novelty from the start
// instead of after the warm-up. Nothing else happens: no incident is recorded, no action runs,
// no event count is kept; only the learned baselines are written to the store. Reports per key
// (account) what it learned and how warm it now is.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "engine/cli/admin_request.h"
#include "engine/cli/baseline_report.h"
#include "engine/cli/commands.h"
#include "engine/cli/engine_assembly.h"
#include "engine/cli/log_history.h"
#include "mxward/incident_store.h"
#include "mxward/pipeline.h"

namespace mxward::cli {

namespace {

struct LearnOptions {
  std::vector<std::string> files;
  bool quiet = false;
};

// Where learning puts what the playbooks would have opened: nowhere. Counted for the summary.
class DiscardingSink final : public IncidentSink {
 public:
  void OnIncident(Incident) override { ++count_; }
  std::uint64_t count() const { return count_; }

 private:
  std::uint64_t count_ = 0;
};

struct KeyLearned {
  std::size_t values = 0;
  UnixMicros last_seen = 0;
};

void RunLearn(const GlobalOptions& globals, const LearnOptions& opts) {
  Config config = LoadEffectiveConfig(globals);
  config.dry_run = true;
  auto pack = LoadParserPackOrExit(ParserDirs(config), config);
  auto engine = LoadPlaybooksOrExit(config);
  const std::vector<std::string> playbooks = engine->BaselinePlaybooks();
  if (playbooks.empty()) {
    throw CliExit(kExitFailure, "no playbook has a novel trigger: there is nothing to learn");
  }
  auto store = OpenStoreOrExit(config, StoreUse::kWrite);
  const UnixMicros now = SystemClock::Instance()->Now();
  // What is already learned stays; earlier incidents do not matter to learning.
  PrimeEngineFromStore(engine.get(), store.get(), now, /*with_history=*/false);

  const auto started = std::chrono::steady_clock::now();
  DiscardingSink discard;
  PipelineOptions popts;
  popts.replay = true;
  popts.vouch_for_every_line = true;  // the operator named the files (docs/cli.md)
  popts.reference = now;
  Pipeline pipeline(
      SyslogParser(), EventExtractor::Create(pack), std::move(engine), &discard,
      [](UnixMicros, const auto&) {}, popts);
  const std::vector<std::string> files = OldestFirst(opts.files);
  for (const auto& file : files) {
    struct stat st {};
    // Year-less times are placed near the file's last write.
    if (::stat(file.c_str(), &st) == 0) {
      pipeline.SetReplayReference(static_cast<UnixMicros>(st.st_mtime) * kMicrosPerSecond);
    }
    Status read = ReadLogHistoryFile(file, &pipeline);
    if (!read.ok()) throw CliExit(kExitRuntime, "reading " + read.message());
  }
  pipeline.ReleaseHeld();

  std::map<std::string, std::map<std::string, KeyLearned>> learned;  // playbook -> key
  for (auto& batch : pipeline.engine().TakeDirtyBaselines()) {
    Status saved = store->SaveBaselines(batch.playbook, batch.entries);
    if (!saved.ok()) throw CliExit(kExitRuntime, "saving baselines: " + saved.ToString());
    for (const auto& e : batch.entries) {
      KeyLearned& k = learned[batch.playbook][e.key];
      ++k.values;
      k.last_seen = std::max(k.last_seen, e.last_seen);
    }
  }
  const auto& c = pipeline.counters();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!opts.quiet) {
    std::fprintf(stderr,
                 "learned from %zu file(s): %llu lines, %llu events in %.2fs; %llu incident(s) "
                 "the playbooks would have opened were not recorded -> %s\n",
                 files.size(), static_cast<unsigned long long>(c.lines),
                 static_cast<unsigned long long>(c.events), secs,
                 static_cast<unsigned long long>(discard.count()), config.store_path.c_str());
  }
  for (const auto& name : playbooks) {
    const Playbook* pb = pipeline.engine().FindPlaybook(name);
    if (pb == nullptr) continue;
    auto install_since = store->BaselineLearningSince(name);
    if (!install_since.ok()) ExitWith(install_since.status());
    const auto& keys = learned[name];
    std::printf("%s: %zu %s(s) learned %s values (warm-up %s)\n", name.c_str(), keys.size(),
                pb->key_kind.c_str(), std::string(FieldName(pb->trigger.field.field)).c_str(),
                FormatDurationSeconds(pb->trigger.baseline.warmup_seconds).c_str());
    for (const auto& [key, k] : keys) {
      auto entries = store->BaselineOfKey(name, key);
      if (!entries.ok()) ExitWith(entries.status());
      BaselineWarmth warmth{0, *install_since, pb->trigger.baseline.warmup_seconds, now};
      for (const auto& e : *entries) {
        const UnixMicros since =
            e.first_seen > 0 ? std::min(e.first_seen, e.last_seen) : e.last_seen;
        if (warmth.key_since == 0 || since < warmth.key_since) warmth.key_since = since;
      }
      std::printf("  %s: %zu new or renewed, %zu held; last use %s; %s\n", key.c_str(), k.values,
                  entries->size(), FormatRfc3339(k.last_seen).c_str(),
                  warmth.Describe(pb->trigger).c_str());
    }
  }
}

}  // namespace

void AddLearnCommand(CLI::App& app, GlobalOptions& globals) {
  auto opts = std::make_shared<LearnOptions>();
  CLI::App* cmd = app.add_subcommand(
      "learn",
      "Build the baselines of the novel playbooks (outbound-anomaly: the recipient domains each "
      "account uses) from old logs, plain or .gz, rotated names read oldest first. Records no "
      "incident and runs no action. Run it once at install over /var/log/mail.log*.");
  cmd->add_option("files", opts->files, "log files (mail.log, mail.log.1, mail.log.2.gz, ...)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("-q,--quiet", opts->quiet, "no summary on stderr");
  cmd->callback([&globals, opts] { RunLearn(globals, *opts); });
}

}  // namespace mxward::cli
