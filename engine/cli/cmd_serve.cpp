// `mxward serve`: the daemon. One io_context thread runs the listeners, the pipeline (called
// synchronously from the listeners, so slow processing pushes back on TCP senders), the control
// socket and the metrics endpoint; the IncidentRecorder and the ActionDispatcher have their own
// threads. With [engine] parse_threads (default 0: none; "auto": the cores but one, at most 3) the
// stateless
// half of each line (syslog header, pattern match) runs on worker threads between the listeners
// and the pipeline (ParallelLineSink, parallel_lines.h); the pipeline stays on the io thread and
// takes the lines in the order they were read. SIGHUP reloads the parsers, the playbooks and every
// section that can change at runtime, or nothing when anything is invalid, and names the sections
// that need a restart (Reload()); SIGTERM/SIGINT stop gracefully: stop accepting, drain, flush the
// store. A store SQLite finds corrupt at start is moved aside; one deleted under the daemon is
// recreated (WatchStoreFile).
#include <linux/close_range.h>
#include <sched.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/asio.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actions/nftables/nftables_blocker.h"
#include "engine/base/process_metrics.h"
#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/daemon_queries.h"
#include "engine/cli/engine_assembly.h"
#include "engine/cli/policy_assembly.h"
#include "engine/cli/store_readiness.h"
#include "engine/cluster/cluster_link.h"
#include "engine/cluster/cluster_options.h"
#include "engine/cluster/shared_windows.h"
#include "engine/policy/decision_feed.h"
#include "engine/policy/decision_table.h"
#include "engine/policy/dovecot_policy.h"
#include "engine/policy/dovecot_policy_server.h"
#include "engine/policy/postfix_policy.h"
#include "engine/policy/postfix_policy_server.h"
#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/action_types.h"
#include "mxward/allow_set.h"
#include "mxward/control_protocol.h"
#include "mxward/incident_recorder.h"
#include "mxward/incident_store.h"
#include "mxward/input_config.h"
#include "mxward/metrics_registry.h"
#include "mxward/metrics_server.h"
#include "mxward/parallel_lines.h"
#include "mxward/pipeline.h"
#include "mxward/provenance.h"
#include "mxward/syslog_listener.h"
#include "mxward/version.h"

namespace mxward::cli {

namespace {

struct ServeOptions {
  bool dry_run = false;
  bool foreground_log = true;
};

template <typename T>
T OrExit(Result<T> r, const std::vector<Diagnostic>& diags, const char* what) {
  if (r.ok()) return std::move(*r);
  for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
  throw CliExit(kExitFailure, fmt::format("{}: {}", what, r.status().message()));
}

// Everything the daemon runs, in construction order; destroyed in reverse.
class Daemon {
 public:
  Daemon(const GlobalOptions& globals, const ServeOptions& opts)
      : globals_(globals), opts_(opts), signals_(io_), housekeeping_(io_) {}

  void Run() {
    config_ = LoadEffectiveConfig(globals_);
    started_document_ = config_.document;
    AllowOwnAddresses(&config_);
    if (opts_.dry_run) config_.dry_run = true;
    std::vector<Diagnostic> diags;
    auto inputs = OrExit(ParseInputSpecs(config_, &diags), diags, "inputs");
    auto metrics_options =
        OrExit(MetricsServerOptions::FromConfig(config_, &diags), diags, "metrics");
    auto dispatcher_options =
        OrExit(DispatcherOptions::FromConfig(config_, &diags), diags, "dispatcher");
    auto control_options =
        OrExit(ControlServerOptions::FromConfig(config_, &diags), diags, "control");
    auto dovecot_policy_options =
        OrExit(DovecotPolicyServerOptions::FromConfig(config_, &diags), diags, "policy");
    auto postfix_policy_options =
        OrExit(PostfixPolicyServerOptions::FromConfig(config_, &diags), diags, "policy");
    auto cluster_options = OrExit(ClusterOptions::FromConfig(config_, &diags), diags, "cluster");
    auto provenance = ResolveProvenanceOrExit(config_);
    pack_ = LoadParserPackOrExit(ParserDirs(config_), config_);
    auto engine = LoadPlaybooksOrExit(config_);

    std::error_code ec;
    const auto store_dir = std::filesystem::path(config_.store_path).parent_path();
    if (!store_dir.empty()) std::filesystem::create_directories(store_dir, ec);
    auto store = OpenStoreOrMoveCorruptAside();
    if (!store.ok() && store.status().code() == Status::Code::kPermissionDenied) {
      throw CliExit(kExitRuntime,
                    UnwritableStore(config_.store_path, "SQLite opened it read-only").message());
    }
    if (!store.ok()) throw CliExit(kExitRuntime, store.status().ToString());
    control_store_ = std::move(*store);
    store_watch_ = std::make_unique<StoreFileWatch>(config_.store_path);
    TakeStoreNoticeFromBeforeRestart();
    // Before anything reports ready: a store this user can only read means no incident recorded
    // and no action run (issue 16). Say what to fix and stop instead.
    if (Status st = CheckStoreWritable(control_store_.get()); !st.ok()) {
      if (st.code() != Status::Code::kResourceExhausted) throw CliExit(kExitRuntime, st.message());
      spdlog::warn("{}", st.message());
    }
    PrimeEngineFromStore(engine.get(), control_store_.get(), SystemClock::Instance()->Now());
    // One compiled address allowlist for the engine, the dispatcher and the policy servers:
    // [allow] addresses plus the runtime entries in the store (`mxward allow`).
    CompileAllowSet(config_.allow_addresses);
    engine->UseAllowSet(allow_set_);
    dispatcher_options.allow_set = allow_set_;

    std::vector<std::string>& notes = notes_;
    auto executors =
        OrExit(BuildExecutors(config_, config_.store_path, &diags, &notes), diags, "actions");
    executor_modes_ = DescribeExecutors(executors);
    dispatcher_ = std::make_unique<ActionDispatcher>(config_.store_path, std::move(executors),
                                                     dispatcher_options, SystemClock::Instance());
    auto recorder_store = IncidentStore::Open(config_.store_path);
    if (!recorder_store.ok()) throw CliExit(kExitRuntime, recorder_store.status().ToString());
    // The daemon never stops detecting because the store cannot be written (disk full):
    // incidents are held in memory, bounded, and written when it can be; a writer that is only
    // behind pushes back instead (incident_recorder.h).
    RecorderOptions recorder_options;
    recorder_options.overflow = OverflowPolicy::kHold;
    // ~2 KB each with shed evidence: ~100 MB at the default 50,000.
    recorder_options.max_held = static_cast<std::size_t>(config_.max_held_incidents);
    recorder_ = std::make_unique<IncidentRecorder>(
        std::move(*recorder_store), SystemClock::Instance(), [this] { dispatcher_->Notify(); },
        recorder_options);
    // With a policy server, incidents pass through the decision table on their way to the
    // recorder, so what they decide is in force for the next request (engine/policy/).
    IncidentSink* incident_sink = recorder_.get();
    if (dovecot_policy_options.enabled || postfix_policy_options.enabled) {
      decisions_ = std::make_unique<DecisionTable>();
      const std::size_t loaded = LoadDecisionsFromStore(control_store_.get(), decisions_.get(),
                                                        SystemClock::Instance()->Now());
      spdlog::info("policy: {} decisions in force loaded from the store", loaded);
      decision_feed_ = std::make_unique<DecisionFeed>(decisions_.get(), recorder_.get(),
                                                      SystemClock::Instance());
      incident_sink = decision_feed_.get();
    }
    incident_sink = WireSharedWindows(cluster_options, engine.get(), incident_sink);
    PipelineOptions pipeline_options;
    pipeline_options.max_skew_seconds = config_.max_clock_skew_seconds;
    pipeline_options.max_age_seconds = config_.max_event_age_seconds;
    for (const auto& spec : inputs) {
      pipeline_options.input_formats.push_back(spec.format);
      pipeline_options.input_names.push_back(spec.name);
      pipeline_options.input_trusted.push_back(spec.trusted);
    }
    pipeline_options.provenance = std::move(provenance);
    if (const std::string w = UnverifiableEvidenceWarning(*engine, inputs, dovecot_policy_options,
                                                          postfix_policy_options);
        !w.empty()) {
      spdlog::warn("{}", w);
    }
    pipeline_ = std::make_unique<Pipeline>(
        SyslogParser(), EventExtractor::Create(pack_), std::move(engine), incident_sink,
        [this](UnixMicros hour, const auto& counts) { recorder_->AddEventCounts(hour, counts); },
        pipeline_options);

    parse_threads_ = ParseThreads(config_.parse_threads);
    LineSink* line_sink = pipeline_.get();
    if (parse_threads_ > 0) {
      parallel_sink_ = std::make_unique<ParallelLineSink>(
          pipeline_.get(), parse_threads_,
          [this](std::function<void()> f) { boost::asio::post(io_, std::move(f)); });
      line_sink = parallel_sink_.get();
    }
    listener_ = std::make_unique<SyslogListener>(io_, inputs, line_sink);
    // Journal inputs resume at the cursor in the store. It is saved through the recorder, in the
    // transaction of the incidents its batch produced: a restart (even after kill -9) neither
    // skips nor repeats.
    InputCursorHooks hooks;
    hooks.load = [this](const std::string& input) -> std::optional<std::string> {
      auto c = control_store_->LoadInputCursor(input);
      if (c.ok()) return *c;
      spdlog::error("input {}: cannot read its saved position: {}; it starts at its start_at",
                    input, c.status().ToString());
      return std::nullopt;
    };
    // With parse workers the lines before a batch (other inputs') and the batch's own are
    // processed first, so the batch's incidents are in the cursor's transaction as without them.
    hooks.begin = [this](const std::string& input) {
      DrainLines();
      recorder_->BeginInputBatch(input);
    };
    hooks.save = [this](const std::string& input, std::string_view cursor) {
      DrainLines();
      recorder_->SaveInputCursor(input, cursor);
    };
    listener_->SetCursorHooks(std::move(hooks));
    if (Status st = listener_->Start(); !st.ok()) throw CliExit(kExitRuntime, st.ToString());

    StartPolicyServers(dovecot_policy_options, postfix_policy_options);

    control_ = std::make_unique<ControlServer>(io_, control_options, [this](const auto& req) {
      // `status` and the pending counts read the engine: this is its thread (daemon_queries.h).
      if (IsDaemonQuery(req)) return AnswerDaemonQuery(req, View(), SystemClock::Instance()->Now());
      auto resp = ExecuteControlRequest(control_store_.get(), req, SystemClock::Instance()->Now());
      // An allowlist change applies to the next event, claim and policy request.
      if (req.value("op", std::string()).rfind("allow.", 0) == 0 && resp.value("ok", false)) {
        CompileAllowSet(config_.allow_addresses);
        spdlog::info("{}", resp["result"].value("audit", std::string()));
      }
      dispatcher_->Notify();
      // What a ban or suspension by hand (or its undoing) decides holds for the policy servers
      // at once, before the dispatcher has run it.
      if (decisions_) ApplyControlResponse(resp);
      return resp;
    });
    if (Status st = control_->Start(); !st.ok()) {
      // Without the control socket the CLI still works directly on the store; say so and go on.
      notes.push_back(
          fmt::format("control socket off ({}): the CLI acts on the store directly", st.message()));
      control_.reset();
    }

    registry_.DeclareStandardFamilies();
    RegisterMetrics();
    metrics_ = std::make_unique<MetricsServer>(
        io_, &registry_, [this] { return Health(); }, metrics_options);
    if (Status st = metrics_->Start(); !st.ok()) throw CliExit(kExitRuntime, st.ToString());
    RegisterMetricsServerMetrics();

    StartCluster(cluster_options);
    if (Status st = dispatcher_->Start(); !st.ok()) throw CliExit(kExitRuntime, st.ToString());

    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.add(SIGHUP);
    WaitForSignal();
    ScheduleHousekeeping();

    spdlog::info("mxward {} ready: {}{}; {} parsers, {} playbooks, {} parse threads; state in {}{}",
                 kVersion, listener_->Describe(), PolicyDescription(), pack_->parser_count(),
                 pipeline_->engine().playbook_count(), parse_threads_, config_.store_path,
                 config_.dry_run ? "; DRY-RUN: no action will run" : "");
    for (const auto& n : notes) spdlog::warn("{}", n);
    for (const auto& w : InputWarnings(listener_->inputs())) spdlog::warn("{}", w);
    sd_notify(0, "READY=1");

    io_.run();

    // Restarting in place on a recreated store is a reload to systemd: after STOPPING=1 it would
    // wait for the pid to exit and never take the new process's READY=1.
    sd_notify(0, restart_for_lost_store_ ? "RELOADING=1" : "STOPPING=1");
    Shutdown();
    if (restart_for_lost_store_) RestartOnARecreatedStore();
  }

 private:
  void WaitForSignal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        Reload();
        WaitForSignal();
        return;
      }
      spdlog::info("signal {}: stopping", sig);
      StopServing();
    });
  }

  // Stops accepting and ends io_.run(); Run() then drains (Shutdown).
  void StopServing() {
    listener_->Stop();
    if (dovecot_policy_server_) dovecot_policy_server_->Stop();
    if (postfix_policy_server_) postfix_policy_server_->Stop();
    if (control_) control_->Stop();
    metrics_->Stop();
    housekeeping_.cancel();
    signals_.cancel();
    io_.stop();
  }

  // SIGHUP. Everything is read and checked first; then either all of it that can change at
  // runtime is swapped in, or nothing is (a refused reload leaves the daemon exactly as it was).
  // Applied: the parser pack and the playbooks (together: playbooks name the parsers' fields),
  // [rules], [allow], [clock], [store] retention, [policy.*] (not turning a server on or off),
  // [provenance] and tls credentials. The other sections are checked (so a restart would not refuse
  // them) and, when they changed, logged one line each as needing a restart: inputs, [metrics],
  // [control], [dispatcher], [cluster], [store] path, dry_run and the executors' sections.
  // Executors are not rebuilt at runtime: each belongs to its dispatcher worker thread until the
  // worker ends (action_dispatcher.h), and a restart loses nothing (the outbox is in the store, the
  // kernel keeps its bans). Everything runs on the io thread, the one the listeners call the
  // pipeline on, so the swap happens between two lines. The outcome is kept for `mxward status`.
  void Reload() {
    sd_notify(0, "RELOADING=1");
    // Certificates and keys of tls inputs (renewed by an ACME client or a private CA's cron).
    if (Status st = listener_->ReloadCredentials(); !st.ok()) {
      spdlog::error("tls credentials not reloaded, the running ones stay: {}", st.ToString());
    }
    last_reload_ = ReloadOutcome();
    last_reload_.at = SystemClock::Instance()->Now();
    try {
      ApplyReload();
    } catch (const CliExit& e) {
      last_reload_.outcome = "refused";
      last_reload_.message = e.what();
    }
    if (last_reload_.outcome == "refused") {
      spdlog::error("reload refused, the running parsers, playbooks and settings stay: {}",
                    last_reload_.message);
    }
    const std::string status =
        fmt::format("reload {}: {}", last_reload_.outcome, last_reload_.message);
    sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
  }

  void ApplyReload() {
    Config fresh = LoadEffectiveConfig(globals_);
    AllowOwnAddresses(&fresh);
    if (opts_.dry_run) fresh.dry_run = true;
    std::vector<Diagnostic> diags;
    auto refuse = [&](std::string message) {
      for (const auto& d : diags) spdlog::error("{}", d.ToString());
      last_reload_.outcome = "refused";
      last_reload_.message = std::move(message);
    };
    // Sections applied only by a restart are still read now: a mistake in them would make that
    // restart refuse to start, so the reload says so today instead.
    bool sections_ok = ParseInputSpecs(fresh, &diags).ok();
    sections_ok &= MetricsServerOptions::FromConfig(fresh, &diags).ok();
    sections_ok &= DispatcherOptions::FromConfig(fresh, &diags).ok();
    sections_ok &= ControlServerOptions::FromConfig(fresh, &diags).ok();
    sections_ok &= ClusterOptions::FromConfig(fresh, &diags).ok();
    sections_ok &= CheckActionSections(fresh, &diags);
    if (!sections_ok) {
      return refuse(fmt::format("{} error(s) in {} (a restart would refuse them too)", diags.size(),
                                fresh.source.empty() ? "the config" : fresh.source));
    }
    Status provenance_status;
    auto provenance = ResolveProvenance(fresh, &provenance_status);
    if (!provenance_status.ok()) return refuse("provenance: " + provenance_status.message());
    auto pack = LoadParserPack(ParserDirs(fresh), fresh, &diags);
    if (!pack.ok()) return refuse("parsers: " + pack.status().message());
    auto engine = LoadCheckedPlaybooks(WithBackendDomains(fresh), &diags);
    if (!engine.ok()) return refuse("playbooks: " + engine.status().message());

    const std::vector<std::string> restart = SectionsNeedingRestart(fresh);
    for (const auto& section : restart) {
      spdlog::warn("reload: {} changed and needs a restart to apply; the running one stays",
                   section);
    }
    // What stays as it runs, so `status` and the housekeeping describe the daemon as it is.
    fresh.store_path = config_.store_path;
    fresh.control_socket = config_.control_socket;
    fresh.dry_run = config_.dry_run;

    // The lines read before the signal are processed with what they were read under.
    DrainLines();
    recorder_->AddBaselines(pipeline_->engine().TakeDirtyBaselines());
    // Unchanged playbooks keep their windows, cooldowns and baselines; changed ones start
    // from the store's baselines and recent incidents.
    const std::size_t kept = (*engine)->AdoptState(pipeline_->engine());
    PrimeEngineFromStore(engine->get(), control_store_.get(), SystemClock::Instance()->Now(),
                         /*with_history=*/false);
    engine_metrics_.clear();
    // The runtime allowlist entries stay; the static part is the fresh [allow].
    CompileAllowSet(fresh.allow_addresses);
    (*engine)->UseAllowSet(allow_set_);
    if (shared_publisher_) {
      (*engine)->UseSharedWindowSink(shared_publisher_.get());
      cluster_->SetLongestSharedWindow((*engine)->LongestSharedWindowSeconds());
    }
    for (const auto& w : SharedWithoutClusterWarnings(**engine, cluster_ != nullptr)) {
      spdlog::warn("{}", w);
    }
    pack_ = std::move(*pack);
    if (parallel_sink_) {
      parallel_sink_->ReplaceParsers(pack_);  // the workers too, once none holds the old pack
    } else {
      pipeline_->ReplaceParsers(pack_);
    }
    pipeline_->ReplaceEngine(std::move(*engine));
    pipeline_->SetClockBounds(fresh.max_clock_skew_seconds, fresh.max_event_age_seconds);
    RegisterEngineMetrics();
    std::vector<std::string> policy_restart = ReloadPolicyServers(fresh);
    pipeline_->ReplaceProvenance(std::move(provenance));
    config_ = std::move(fresh);
    last_reload_.needs_restart = restart;
    last_reload_.needs_restart.insert(last_reload_.needs_restart.end(), policy_restart.begin(),
                                      policy_restart.end());
    const std::string counts =
        fmt::format("{} parsers, {} playbooks, {} kept their state", pack_->parser_count(),
                    pipeline_->engine().playbook_count(), kept);
    if (last_reload_.needs_restart.empty()) {
      last_reload_.outcome = "reloaded";
      last_reload_.message = counts;
      spdlog::info("reloaded: {}", counts);
    } else {
      last_reload_.outcome = "reloaded in part";
      last_reload_.message = fmt::format("{}; needs a restart: {}", counts,
                                         fmt::join(last_reload_.needs_restart, ", "));
      spdlog::warn("reloaded in part: {}", last_reload_.message);
    }
  }

  // The top-level sections of mxward.toml applied only at start ("[nftables]", "[[input]]",
  // "dry_run", "[store] path") that differ in `fresh` from the file the daemon started with (not
  // from the last reload's: a second reload of the same file still needs that restart).
  std::vector<std::string> SectionsNeedingRestart(const Config& fresh) const {
    static const std::set<std::string, std::less<>> kRuntime = {"rules",  "allow", "clock",
                                                                "policy", "store", "provenance"};
    std::set<std::string, std::less<>> keys;
    for (const auto& [k, v] : started_document_) keys.insert(std::string(k.str()));
    for (const auto& [k, v] : fresh.document) keys.insert(std::string(k.str()));
    std::vector<std::string> out;
    for (const std::string& key : keys) {
      if (kRuntime.contains(key)) continue;
      if (TomlText(started_document_, key) == TomlText(fresh.document, key)) continue;
      if (key == "input") {
        out.push_back("[[input]]");
      } else if (key == "dry_run") {
        out.push_back("dry_run");
      } else if (key == "webhook" || key == "exec") {
        out.push_back(fmt::format("[{}.*]", key));
      } else {
        out.push_back(fmt::format("[{}]", key));
      }
    }
    if (fresh.store_path != config_.store_path) out.push_back("[store] path");
    if (fresh.control_socket != config_.control_socket) out.push_back("[control] socket");
    if (fresh.dry_run != config_.dry_run && !keys.contains("dry_run")) out.push_back("dry_run");
    return out;
  }

  // The TOML text of one top-level key ("" when absent): tables are ordered maps, so equal
  // settings print the same whatever their order or comments in the file.
  static std::string TomlText(const toml::table& document, const std::string& key) {
    const toml::node* node = document.get(key);
    if (node == nullptr) return "";
    toml::table one;
    one.insert(key, *node);
    std::ostringstream out;
    out << one;
    return out.str();
  }

  // Once a second: watchdog, baselines and counts to the store once an hour, retention.
  void ScheduleHousekeeping() {
    housekeeping_.expires_after(std::chrono::seconds(1));
    housekeeping_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      sd_notify(0, "WATCHDOG=1");
      if (!WatchStoreFile()) return;  // stopping, to restart on the recreated store
      DrainLines();  // held lines are released after the lines read before now, as without workers
      pipeline_->AdvanceTime(SystemClock::Instance()->Now());
      if (decisions_) decisions_->Expire(SystemClock::Instance()->Now());
      const auto now = std::chrono::steady_clock::now();
      if (now - last_hourly_ >= std::chrono::hours(1)) {
        last_hourly_ = now;
        recorder_->AddBaselines(pipeline_->engine().TakeDirtyBaselines());
        const UnixMicros cutoff =
            SystemClock::Instance()->Now() - config_.retention_seconds * kMicrosPerSecond;
        auto pruned = control_store_->PruneResolved(cutoff);
        if (pruned.ok() && *pruned > 0) spdlog::info("pruned {} resolved incidents", *pruned);
        (void)control_store_->PruneBaselines(SystemClock::Instance()->Now() -
                                             400LL * 86400 * kMicrosPerSecond);
      }
      ScheduleHousekeeping();
    });
  }

  // The store at start. One SQLite reports corrupt (a disk hiccup, a truncated copy) must not
  // switch protection off: it is moved aside, the daemon starts on a fresh store, and the log
  // and /healthz say what to repair (CorruptStoreRepairAdvice) until the moved file is dealt with.
  Result<std::unique_ptr<IncidentStore>> OpenStoreOrMoveCorruptAside() {
    auto store = IncidentStore::Open(config_.store_path);
    Status damage = store.ok() ? CheckStoreIntact(store->get()) : store.status();
    if (damage.ok() || damage.code() != Status::Code::kCorruption) return store;
    store = Status::Corruption(damage.message());  // closes the damaged connection first
    auto moved = MoveCorruptStoreAside(config_.store_path, SystemClock::Instance()->Now());
    if (!moved.ok()) {
      throw CliExit(kExitRuntime,
                    fmt::format("the store {} is corrupt ({}) and {}; move it aside by hand "
                                "(`mv {} {}.corrupt`) and start again",
                                config_.store_path, damage.message(), moved.status().message(),
                                config_.store_path, config_.store_path));
    }
    const std::string advice =
        CorruptStoreRepairAdvice(config_.store_path, *moved, damage.message());
    spdlog::error("{}", advice);
    corrupt_store_aside_ = *moved;
    store_notice_ = fmt::format("corrupt store moved aside to {}: {}", *moved, damage.message());
    return IncidentStore::Open(config_.store_path);
  }

  // Housekeeping, once a second: is the store file still the one every connection writes to?
  // Deleted (`rm mxward.db`): every connection keeps writing to the unlinked inode and all of it
  // vanishes at the next restart. The daemon then stops serving, drains the recorder and the
  // dispatcher into the lost file, copies it back to its path and restarts in place (same pid):
  // nothing recorded is lost, but the playbooks' windows start afresh. Replaced (another file at
  // the path): that file is the admin's; /healthz says so until a restart adopts it. False when
  // the daemon is stopping.
  bool WatchStoreFile() {
    if (!corrupt_store_aside_.empty() && ::access(corrupt_store_aside_.c_str(), F_OK) != 0) {
      spdlog::info("store: {} is gone; /healthz no longer reports the corrupt store",
                   corrupt_store_aside_);
      corrupt_store_aside_.clear();
      store_notice_.clear();
    }
    if (store_notice_until_ != 0 && SystemClock::Instance()->Now() > store_notice_until_) {
      store_notice_until_ = 0;
      store_notice_.clear();
    }
    switch (store_watch_->Check()) {
      case StoreFileWatch::State::kSame:
        return true;
      case StoreFileWatch::State::kReplaced:
        if (!store_replaced_logged_) {
          store_replaced_logged_ = true;
          store_notice_ = fmt::format(
              "{} is another file than the one the daemon writes to: restart mxward to use it",
              config_.store_path);
          spdlog::error("store: {}; until then incidents go to the file it replaced",
                        store_notice_);
        }
        return true;
      case StoreFileWatch::State::kDeleted:
        break;
    }
    store_notice_ =
        fmt::format("{} was deleted under the running daemon; recreating it", config_.store_path);
    spdlog::error(
        "store: {} was deleted under the running daemon; new incidents would vanish with the "
        "unlinked file. Stopping to write everything to it, copying it back to its path (owner "
        "and mode kept) and restarting in place",
        config_.store_path);
    restart_for_lost_store_ = true;
    StopServing();
    return false;
  }

  // After Shutdown() drained into the lost file: copies it back to its path, then execs this
  // binary again with the same arguments (systemd keeps tracking the same pid; the listeners'
  // sockets are closed first, so the new process can bind them).
  [[noreturn]] void RestartOnARecreatedStore() {
    const std::string& path = config_.store_path;
    if (Status st = RecreateStoreFrom(control_store_.get(), path, store_watch_->uid(),
                                      store_watch_->gid(), store_watch_->mode());
        !st.ok()) {
      throw CliExit(kExitRuntime, fmt::format("store: cannot recreate {} from the deleted file: {}",
                                              path, st.message()));
    }
    spdlog::warn("store: recreated {} with everything the deleted file held; restarting", path);
    std::vector<std::string> args;
    {
      std::ifstream in("/proc/self/cmdline", std::ios::binary);
      std::string arg;
      while (std::getline(in, arg, '\0')) args.push_back(arg);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string notice =
        fmt::format("{} was deleted under the daemon at {} and recreated from the open file", path,
                    FormatRfc3339(SystemClock::Instance()->Now()));
    ::setenv(kStoreNoticeEnv, notice.c_str(), 1);
    spdlog::default_logger()->flush();
    std::fflush(nullptr);
    (void)::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execv("/proc/self/exe", argv.data());
    throw CliExit(kExitRuntime, fmt::format("store: recreated {}, but cannot restart: {}", path,
                                            std::strerror(errno)));
  }

  // The notice RestartOnARecreatedStore hands to the process it execs: /healthz reports the
  // recreated store for 10 minutes, so a monitor that polls every few minutes sees it.
  static constexpr const char* kStoreNoticeEnv = "MXWARD_STORE_RECREATED";
  void TakeStoreNoticeFromBeforeRestart() {
    const char* notice = std::getenv(kStoreNoticeEnv);
    if (notice == nullptr) return;
    store_notice_ = notice;
    store_notice_until_ = SystemClock::Instance()->Now() + 600 * kMicrosPerSecond;
    ::unsetenv(kStoreNoticeEnv);
    spdlog::warn("store: {}", store_notice_);
  }

  // The policy servers answer on this thread, from the decision table and the running engine
  // (replaced on reload, so it is looked up per event).
  void StartPolicyServers(const DovecotPolicyServerOptions& dovecot,
                          const PostfixPolicyServerOptions& postfix) {
    // Through the claiming sink when windows are shared: a policy report counts as a log line.
    IncidentSink* sink =
        claiming_sink_ ? static_cast<IncidentSink*>(claiming_sink_.get()) : decision_feed_.get();
    auto feed = [this, sink](const Event& e) { pipeline_->engine().OnEvent(e, sink); };
    if (dovecot.enabled) {
      auto delay = [this](const Event& e) { return pipeline_->engine().PolicyDelaySeconds(e); };
      dovecot_policy_ =
          std::make_unique<DovecotPolicy>(decisions_.get(), feed, SystemClock::Instance(), delay);
      dovecot_policy_->SetAllowSet(allow_set_);
      dovecot_policy_->SetRequestsAuthenticated(!dovecot.secret.empty());
      dovecot_policy_server_ =
          std::make_unique<DovecotPolicyServer>(io_, dovecot, dovecot_policy_.get());
      if (Status st = dovecot_policy_server_->Start(); !st.ok()) {
        throw CliExit(kExitRuntime, st.ToString());
      }
    }
    if (postfix.enabled) {
      postfix_policy_ =
          std::make_unique<PostfixPolicy>(decisions_.get(), feed, SystemClock::Instance());
      postfix_policy_->SetAllowSet(allow_set_);
      postfix_policy_server_ =
          std::make_unique<PostfixPolicyServer>(io_, postfix, postfix_policy_.get());
      if (Status st = postfix_policy_server_->Start(); !st.ok()) {
        throw CliExit(kExitRuntime, st.ToString());
      }
    }
  }

  // [provenance]: its users resolved to uids again (a user added since start), warnings logged.
  static std::shared_ptr<const ProvenancePolicy> ResolveProvenance(const Config& config,
                                                                   Status* status) {
    std::vector<Diagnostic> diags;
    ProvenanceSettings settings;
    *status = ReadProvenanceSettings(config, &settings, &diags);
    if (!status->ok()) {
      for (const auto& d : diags) spdlog::error("{}", d.ToString());
      return nullptr;
    }
    std::vector<std::string> warnings, notes;
    auto policy = std::make_shared<const ProvenancePolicy>(
        ProvenancePolicy::Resolve(settings, &warnings, &notes));
    for (const auto& w : warnings) spdlog::warn("{}", w);
    for (const auto& n : notes) spdlog::info("{}", n);
    return policy;
  }
  static std::shared_ptr<const ProvenancePolicy> ResolveProvenanceOrExit(const Config& config) {
    Status st;
    auto policy = ResolveProvenance(config, &st);
    if (!st.ok()) throw CliExit(kExitFailure, fmt::format("provenance: {}", st.message()));
    return policy;
  }

  // [policy.dovecot] and [policy.postfix] on SIGHUP: a rotated secret, new limits or a new
  // listen address or socket take effect; a bad section or an address that cannot be bound
  // leaves the running server as it was. Turning a server on or off needs a restart (the
  // decision table is built at start only when some server is on).
  std::vector<std::string> ReloadPolicyServers(const Config& fresh) {
    std::vector<std::string> restart;
    std::vector<Diagnostic> diags;
    auto dovecot = DovecotPolicyServerOptions::FromConfig(fresh, &diags);
    auto postfix = PostfixPolicyServerOptions::FromConfig(fresh, &diags);
    for (const auto& d : diags) spdlog::error("{}", d.ToString());
    auto apply = [&restart](std::string_view name, auto* server, auto next) {
      const bool running = server != nullptr;
      if (next.enabled != running) {
        spdlog::warn("policy: [policy.{}] was turned {}: that takes a restart", name,
                     next.enabled ? "on" : "off");
        restart.push_back(fmt::format("[policy.{}] turned {}", name, next.enabled ? "on" : "off"));
        return;
      }
      if (!running || next == server->options()) return;
      if (Status st = server->Reconfigure(std::move(next)); !st.ok()) {
        spdlog::error("policy: [policy.{}] not reloaded, the running server stays: {}", name,
                      st.message());
      } else {
        spdlog::info("policy: [policy.{}] reloaded", name);
      }
    };
    if (dovecot.ok()) {
      apply("dovecot", dovecot_policy_server_.get(), std::move(*dovecot));
    } else {
      spdlog::error("policy: [policy.dovecot] not reloaded: {}", dovecot.status().message());
    }
    if (postfix.ok()) {
      apply("postfix", postfix_policy_server_.get(), std::move(*postfix));
    } else {
      spdlog::error("policy: [policy.postfix] not reloaded: {}", postfix.status().message());
    }
    return restart;
  }

  // Shared windows (docs/cluster.md): with [cluster], the engine reports the counted events of
  // shared playbooks into a bounded batch the link publishes, and incidents pass through the
  // claiming sink, which lets one node of the cluster open an incident of a shared playbook.
  // Set up with [cluster] even when no playbook shares yet, so a reload can turn it on. Returns
  // the sink the pipeline hands incidents to.
  IncidentSink* WireSharedWindows(const ClusterOptions& options, PlaybookEngine* engine,
                                  IncidentSink* inner) {
    for (const auto& w : SharedWithoutClusterWarnings(*engine, options.enabled)) {
      spdlog::warn("{}", w);
    }
    if (!options.enabled) return inner;
    window_batch_ = std::make_unique<WindowEventBatch>(kWindowBatchCapacity, [this] {
      if (cluster_) cluster_->Notify();
    });
    shared_publisher_ = std::make_unique<SharedWindowPublisher>(window_batch_.get());
    engine->UseSharedWindowSink(shared_publisher_.get());
    claiming_sink_ = std::make_unique<ClaimingIncidentSink>(
        inner, [this](std::string_view playbook) { return pipeline_->engine().IsShared(playbook); },
        [this, inner](Incident incident) {
          if (cluster_) {
            cluster_->Claim(std::move(incident));
          } else {
            inner->OnIncident(std::move(incident));
          }
        });
    return claiming_sink_.get();
  }

  // Incidents whose claim this node won (or decided alone): opened on the engine's thread.
  void OpenClaimed() {
    std::vector<Incident> open;
    {
      MutexLock lock(claimed_mu_);
      open.swap(claimed_);
    }
    for (Incident& inc : open) claiming_sink_->inner()->OnIncident(std::move(inc));
  }

  // The engine's counted events of shared playbooks into the batch; the first one the full batch
  // drops is said, the others counted (mxward_cluster_total{type="window_events_dropped"}).
  class SharedWindowPublisher final : public SharedWindowSink {
   public:
    explicit SharedWindowPublisher(WindowEventBatch* batch) : batch_(batch) {}
    void OnSharedCount(std::string_view playbook, std::string_view key, UnixMicros time,
                       std::uint32_t weight) override {
      Add(playbook, key, time, weight, WindowEventKind::kCount);
    }
    void OnSharedReset(std::string_view playbook, std::string_view key, UnixMicros time) override {
      Add(playbook, key, time, 1, WindowEventKind::kReset);
    }

   private:
    void Add(std::string_view playbook, std::string_view key, UnixMicros time, std::uint32_t weight,
             WindowEventKind kind) {
      if (batch_->Add(playbook, key, time, weight, kind) || warned_) return;
      warned_ = true;
      spdlog::warn(
          "cluster: the shared window batch is full ({} events): events of shared playbooks are "
          "dropped until the link has written it, and counted in "
          "mxward_cluster_total{{type=\"window_events_dropped\"}}",
          batch_->capacity());
    }

    WindowEventBatch* batch_;
    bool warned_ = false;
  };
  // One batch holds this many events; the link takes it every publish poll (200 ms), so about
  // 20,000 counted events per second of shared playbooks can be published per node.
  static constexpr std::size_t kWindowBatchCapacity = 4096;

  // The cluster link (engine/cluster/): shares ban decisions through PostgreSQL. Decisions of
  // other nodes land in the outbox; the dispatcher applies them like local ones.
  void StartCluster(const ClusterOptions& options) {
    if (!options.enabled) return;
    // Another node's allowlist entry is in the store: compile the set on the daemon's thread,
    // where the control store connection lives.
    cluster_ = std::make_shared<ClusterLink>(
        options, config_.store_path, [this] { dispatcher_->Notify(); },
        [this] { boost::asio::post(io_, [this] { CompileAllowSet(config_.allow_addresses); }); });
    // Received decisions in bulk (one store transaction and one nftables transaction per read
    // batch) when this node's kernel is what bans; aggregation counts each ban's neighbours
    // in the store, so with it on every decision goes through the executor one by one.
    if (auto nft = KernelNftablesOptions(config_);
        nft && nft->aggregate_v4 == 0 && nft->aggregate_v6 == 0) {
      BulkApplyHooks bulk;
      bulk.resolve_scope = [nft = *nft](std::string_view ports) {
        return ResolveBanScope(nft, ports);
      };
      bulk.refusal = [allow = allow_set_](const IpPrefix& p,
                                          UnixMicros now) -> std::optional<std::string> {
        const auto set = allow->Get();
        const AllowEntry* e = set->FindOverlap(p, now);
        if (e == nullptr) return std::nullopt;
        return fmt::format("{} is allowlisted ({}{})", p.ToString(), e->prefix.ToString(),
                           e->runtime ? ", mxward allow" : " in [allow] addresses");
      };
      bulk.default_duration_s = nft->default_duration_s;
      cluster_->SetBulkApply(std::move(bulk));
    }
    if (window_batch_) {
      SharedWindowHooks hooks;
      hooks.batch = window_batch_.get();
      // Other nodes' events are counted on the engine's thread, the only one that touches it.
      hooks.on_remote = [this](std::vector<RemoteWindowEvent> rows) {
        boost::asio::post(
            io_, [this, rows = std::make_shared<std::vector<RemoteWindowEvent>>(std::move(rows))] {
              for (const RemoteWindowEvent& r : *rows) {
                if (r.event.kind == WindowEventKind::kReset) {
                  pipeline_->engine().FoldRemoteReset(r.event.playbook, r.event.key,
                                                      r.event.time_us, r.node);
                } else {
                  pipeline_->engine().FoldRemoteCount(r.event.playbook, r.event.key,
                                                      r.event.time_us, r.event.weight, r.node,
                                                      claiming_sink_.get());
                }
              }
            });
      };
      // Through a queue the engine's thread empties: posted while it runs, emptied by Shutdown
      // after FlushClaims at a stop (io_ runs no more handlers then).
      hooks.on_claimed = [this](Incident incident, bool open, const std::string&) {
        if (!open) return;
        {
          MutexLock lock(claimed_mu_);
          claimed_.push_back(std::move(incident));
        }
        boost::asio::post(io_, [this] { OpenClaimed(); });
      };
      cluster_->EnableSharedWindows(std::move(hooks));
      cluster_->SetLongestSharedWindow(pipeline_->engine().LongestSharedWindowSeconds());
    }
    // Another node's ack / resolve of one of this node's incidents: carried out exactly as the
    // same command on this node's control socket (ExecuteControlRequest, on the link's own store
    // connection), so a revert queues the same undo actions, which the dispatcher runs here and
    // the link then publishes as ban removals: every node lifts the ban.
    cluster_->SetIncidentRequestHandler([this](IncidentStore& store, const IncidentRequest& r) {
      const std::string by = fmt::format("node {}, user {}", r.requested_by,
                                         r.requested_user.empty() ? "?" : r.requested_user);
      nlohmann::json req = {{"op", r.kind == "ack" ? "incidents.ack" : "incidents.resolve"},
                            {"id", r.incident_id},
                            {"note", r.note.empty() ? fmt::format("from {}", by)
                                                    : fmt::format("{} (from {})", r.note, by)}};
      if (r.kind == "resolve") req["revert"] = r.revert;
      auto resp = ExecuteControlRequest(&store, req, SystemClock::Instance()->Now());
      IncidentRequestOutcome outcome;
      outcome.ok = resp.value("ok", false);
      if (!outcome.ok) {
        outcome.text = resp.value("error", std::string("refused"));
        return outcome;
      }
      const auto undo = resp["result"].value("action_ids", nlohmann::json::array()).size();
      outcome.text = r.kind == "ack" ? "acknowledged"
                     : r.revert      ? fmt::format("resolved; {} undo action(s) queued", undo)
                                     : "resolved";
      dispatcher_->Notify();
      // What the undo decides holds for the policy servers at once (the daemon's thread).
      if (decisions_) {
        boost::asio::post(io_, [this, resp = std::move(resp)] { ApplyControlResponse(resp); });
      }
      return outcome;
    });
    if (Status st = cluster_->Start(); !st.ok()) throw CliExit(kExitRuntime, st.ToString());
    // A ban done here is published at once rather than at the link's next look.
    // Weak: a worker the dispatcher's Stop() detached may outlive the link.
    dispatcher_->SetDoneHook([link = std::weak_ptr<ClusterLink>(cluster_)](const ActionRecord& a) {
      // A ban to publish; a batch of received decisions in the kernel: room to read more.
      if (a.type != "ban" && a.type != "cluster_batch") return;
      if (auto l = link.lock()) l->Notify();
    });
    RegisterClusterMetrics();
    notes_.push_back(fmt::format("cluster: node {} ({})", options.node,
                                 options.role == ClusterRole::kFull ? "full" : "enforcer"));
  }

  void RegisterClusterMetrics() {
    constexpr std::string_view kConnected = "mxward_cluster_connected";
    constexpr std::string_view kEvents = "mxward_cluster_total";
    constexpr std::string_view kCursor = "mxward_cluster_cursor";
    constexpr std::string_view kUnpublished = "mxward_cluster_unpublished";
    constexpr std::string_view kUnpublishedIncidents = "mxward_cluster_incidents_unpublished";
    (void)registry_.Declare(
        {kConnected, MetricType::kGauge, "1 while the decision log connection is up.", {}});
    (void)registry_.Declare(
        {kEvents,
         MetricType::kCounter,
         "Cluster link events: connects, connect_failures, published, "
         "publish_failures, notifications, rows_read, queued, invalid, "
         "pruned; shared windows: window_events_published, _unpublished, "
         "_dropped, _received, _read_back, _folded, _before_reset, _pruned, window_resets_folded, "
         "claims_won, claims_lost, "
         "claims_alone; incidents: incidents_published, incident_requests.",
         {"type"}});
    (void)registry_.Declare({kUnpublishedIncidents,
                             MetricType::kGauge,
                             "This node's incidents changed and not yet published (database "
                             "down).",
                             {}});
    (void)registry_.Declare({kCursor,
                             MetricType::kGauge,
                             "The last decision log sequence number queued on this node.",
                             {}});
    (void)registry_.Declare({kUnpublished,
                             MetricType::kGauge,
                             "Local ban decisions waiting to be published (database down).",
                             {}});
    const ClusterLinkCounters& c = cluster_->counters();
    auto add = [this](std::string_view family, std::vector<std::string> labels,
                      const std::atomic<std::int64_t>* v) {
      Keep(registry_.Add(family, labels, [v] { return static_cast<double>(v->load()); }));
    };
    add(kConnected, {}, &c.connected);
    add(kCursor, {}, &c.cursor);
    add(kUnpublished, {}, &c.unpublished);
    add(kEvents, {"connects"}, &c.connects);
    add(kEvents, {"connect_failures"}, &c.connect_failures);
    add(kEvents, {"published"}, &c.published);
    add(kEvents, {"publish_failures"}, &c.publish_failures);
    add(kEvents, {"notifications"}, &c.notifications);
    add(kEvents, {"rows_read"}, &c.rows_read);
    add(kEvents, {"queued"}, &c.queued);
    add(kEvents, {"invalid"}, &c.invalid);
    add(kEvents, {"refused"}, &c.refused);
    add(kEvents, {"pruned"}, &c.pruned);
    add(kEvents, {"incidents_published"}, &c.incidents_published);
    add(kEvents, {"incident_requests"}, &c.incident_requests);
    add(kUnpublishedIncidents, {}, &c.incidents_unpublished);
    if (window_batch_) {
      add(kEvents, {"window_events_published"}, &c.window_events_published);
      add(kEvents, {"window_events_unpublished"}, &c.window_events_unpublished);
      add(kEvents, {"window_events_received"}, &c.window_events_received);
      add(kEvents, {"window_events_read_back"}, &c.window_events_read_back);
      add(kEvents, {"window_events_pruned"}, &c.window_events_pruned);
      add(kEvents, {"claims_won"}, &c.claims_won);
      add(kEvents, {"claims_lost"}, &c.claims_lost);
      add(kEvents, {"claims_alone"}, &c.claims_alone);
      WindowEventBatch* batch = window_batch_.get();
      Keep(registry_.Add(kEvents, {"window_events_dropped"},
                         [batch] { return static_cast<double>(batch->dropped()); }));
      // The engine's own count: read on the engine's thread, where the scrape runs.
      Keep(registry_.Add(kEvents, {"window_events_folded"}, [this] {
        return static_cast<double>(pipeline_->engine().stats().folded);
      }));
      Keep(registry_.Add(kEvents, {"window_resets_folded"}, [this] {
        return static_cast<double>(pipeline_->engine().stats().resets_folded);
      }));
      Keep(registry_.Add(kEvents, {"window_events_before_reset"}, [this] {
        return static_cast<double>(pipeline_->engine().stats().before_reset);
      }));
    }
  }

  // Compiles `static_prefixes` ([allow] of the running config, or of the one being loaded) and the
  // store's runtime entries in force now into the set everyone reads. Expired entries are left
  // out here and, between two compilations, skipped at lookup by their expiry.
  void CompileAllowSet(const std::vector<IpPrefix>& static_prefixes) {
    auto set =
        CompileAllowlist(static_prefixes, control_store_.get(), SystemClock::Instance()->Now());
    if (!set.ok()) {
      spdlog::error("allowlist: cannot read the runtime entries: {}; the previous set stays",
                    set.status().ToString());
      return;
    }
    allow_set_->Set(std::move(*set));
  }

  void ApplyControlResponse(const nlohmann::json& response) {
    if (!response.value("ok", false) || !response.contains("result")) return;
    std::vector<std::int64_t> action_ids;
    for (const auto& id : response["result"].value("action_ids", nlohmann::json::array())) {
      if (id.is_number_integer()) action_ids.push_back(id.get<std::int64_t>());
    }
    ApplyQueuedActions(control_store_.get(), action_ids, decisions_.get(),
                       SystemClock::Instance()->Now());
  }

  DaemonView View() {
    DaemonView v;
    v.config = &config_;
    v.pipeline = pipeline_.get();
    const auto allow = allow_set_->Get();
    v.allow_runtime = allow->runtime_count();
    v.allow_static = allow->size() - allow->runtime_count();
    v.inputs = &listener_->inputs();
    v.executors = &executor_modes_;
    v.cluster = cluster_.get();
    if (dovecot_policy_server_) {
      v.policy_servers.push_back(
          fmt::format("dovecot policy on port {}", dovecot_policy_server_->port()));
    }
    if (postfix_policy_server_) {
      v.policy_servers.push_back("postfix policy on " + postfix_policy_server_->Describe());
    }
    v.started_at = started_at_;
    v.last_reload = &last_reload_;
    return v;
  }

  std::string PolicyDescription() const {
    std::string out;
    if (dovecot_policy_server_) {
      out += fmt::format("; dovecot policy on port {}", dovecot_policy_server_->port());
    }
    if (postfix_policy_server_) {
      out += fmt::format("; postfix policy on {}", postfix_policy_server_->Describe());
    }
    return out;
  }

  HealthReport Health() {
    HealthReport h;
    if (!store_notice_.empty()) {
      h.ok = false;
      h.reason = "store: " + store_notice_;
      return h;
    }
    if (Status st = recorder_->store_error(); !st.ok()) {
      h.ok = false;
      h.reason = "store: " + st.message();
      return h;
    }
    // A dropped incident is an attack that may go unanswered: unhealthy for an hour after the
    // last one (published atomics: nothing here waits for the store).
    const RecorderStats& rs = recorder_->stats();
    const UnixMicros dropped_at = rs.last_dropped_at.load(std::memory_order_relaxed);
    if (dropped_at != 0 && SystemClock::Instance()->Now() - dropped_at < 3600 * kMicrosPerSecond) {
      h.ok = false;
      h.reason = fmt::format(
          "store: {} incident(s) dropped since start, the last {}s ago (the store could not be "
          "written and [store] max_held_incidents were held)",
          rs.dropped.load(std::memory_order_relaxed),
          (SystemClock::Instance()->Now() - dropped_at) / kMicrosPerSecond);
      return h;
    }
    // From the figures the dispatcher's claimer refreshes about once a second: a scrape never
    // reads the store (issue 21, point 5: 8 request loops on a SQLite count cut ingest 160-fold).
    const DispatcherStats d = dispatcher_->stats();
    if (d.outbox_depth > 0 && d.outbox_oldest_age_seconds > 15 * 60) {
      h.ok = false;
      h.reason = fmt::format("outbox not draining: {} pending, oldest {}s old", d.outbox_depth,
                             d.outbox_oldest_age_seconds);
      return h;
    }
    // A flood the safety valve holds back is an attack in progress that bans arrive late for:
    // unhealthy until a minute passes without a hold-back.
    const UnixMicros now = SystemClock::Instance()->Now();
    if (d.last_deferred_at != 0 && now - d.last_deferred_at < 60 * kMicrosPerSecond) {
      h.ok = false;
      h.reason = fmt::format(
          "safety valve holding actions back: {} hold-backs so far, the last {}s ago "
          "([dispatcher] per_minute_cap, per_prefix_cap)",
          d.deferred, (now - d.last_deferred_at) / kMicrosPerSecond);
    }
    return h;
  }

  void Keep(Result<MetricsRegistry::Handle> h) {
    if (h.ok()) handles_.push_back(std::move(*h));
  }

  void RegisterMetrics() {
    using namespace metric;
    const PipelineCounters& c = pipeline_->counters();
    Keep(registry_.AddAtomic(kLines, {}, &c.lines));
    Keep(registry_.AddAtomic(kLinesMalformed, {}, &c.malformed));
    // Actions per catalogue type and outcome, and the outbox and ban gauges the dispatcher's
    // claimer refreshes from the store (0 until its first refresh).
    for (const ActionTypeInfo& info : kActionTypes) {
      for (int o = 0; o < kActionOutcomeCount; ++o) {
        const auto outcome = static_cast<ActionOutcome>(o);
        Keep(registry_.Add(kActions,
                           {std::string(info.type), std::string(ActionOutcomeName(outcome))},
                           [this, type = info.type, outcome] {
                             return static_cast<double>(dispatcher_->outcome_count(type, outcome));
                           }));
      }
    }
    Keep(registry_.Add(kOutboxDepth, {}, [this] {
      return static_cast<double>(std::max<std::int64_t>(0, dispatcher_->stats().outbox_depth));
    }));
    Keep(registry_.Add(kOutboxOldestAge, {}, [this] {
      return static_cast<double>(
          std::max<std::int64_t>(0, dispatcher_->stats().outbox_oldest_age_seconds));
    }));
    Keep(registry_.Add(kActiveBans, {}, [this] {
      return static_cast<double>(std::max<std::int64_t>(0, dispatcher_->stats().active_bans));
    }));
    Keep(registry_.AddAtomic(kLinesTimeAdjusted, {"future"}, &c.time_future));
    Keep(registry_.AddAtomic(kLinesTimeAdjusted, {"stale"}, &c.time_stale));
    Keep(registry_.AddAtomic(kLinesUnmatched, {}, &c.unmatched));
    if (parallel_sink_) {
      (void)registry_.Declare({"mxward_lines_queued",
                               MetricType::kGauge,
                               "Lines read and not yet processed by the pipeline: in the parse "
                               "workers' ring ([engine] parse_threads).",
                               {}});
      Keep(registry_.Add("mxward_lines_queued", {},
                         [this] { return static_cast<double>(parallel_sink_->waiting()); }));
    }
    for (int i = 0; i < kEventTypeCount; ++i) {
      Keep(registry_.AddAtomic(kEvents, {std::string(EventTypeName(static_cast<EventType>(i)))},
                               &c.events_by_type[i]));
    }
    Keep(registry_.Add(kProcessingLag, {}, [&c] {
      const UnixMicros t = c.last_event_time.load(std::memory_order_relaxed);
      if (t == 0) return 0.0;
      return static_cast<double>(SystemClock::Instance()->Now() - t) / kMicrosPerSecond;
    }));
    recorder_->RegisterMetrics(&registry_, &handles_);
    Keep(registry_.Add(kBuildInfo, {kVersion}, [] { return 1.0; }));
    RegisterProcessMetrics(&registry_, &handles_);
    listener_->RegisterMetrics(&registry_, &handles_);
    pipeline_->RegisterMetrics(&registry_, &handles_);
    RegisterEngineMetrics();
    RegisterPolicyMetrics();
    RegisterControlMetrics();
  }

  // What the control socket turned away: connections over [control] max_connections and peers
  // closed at request_timeout. Atomics of the io thread; the labels are fixed words.
  void RegisterControlMetrics() {
    if (!control_) return;
    constexpr std::string_view kRefused = "mxward_control_refused_total";
    (void)registry_.Declare({kRefused,
                             MetricType::kCounter,
                             "Control socket connections refused over the cap or closed at the "
                             "request deadline, per reason.",
                             {"reason"}});
    const ControlServerCounters& c = control_->counters();
    Keep(registry_.AddAtomic(kRefused, {"over_cap"}, &c.refused_over_cap));
    Keep(registry_.AddAtomic(kRefused, {"timeout"}, &c.timed_out));
  }

  // What /metrics itself turned away: connections over [metrics] max_connections and over
  // max_connections_per_peer (a scanner, or a local user holding the slots Prometheus needs).
  void RegisterMetricsServerMetrics() {
    constexpr std::string_view kRefused = "mxward_metrics_refused_total";
    (void)registry_.Declare({kRefused,
                             MetricType::kCounter,
                             "/metrics and /healthz connections closed at accept, per reason: "
                             "over max_connections or over max_connections_per_peer.",
                             {"reason"}});
    const MetricsServer* server = metrics_.get();
    Keep(registry_.Add(kRefused, {"over_cap"},
                       [server] { return static_cast<double>(server->refused_over_cap()); }));
    Keep(registry_.Add(kRefused, {"peer_limit"},
                       [server] { return static_cast<double>(server->refused_peer_limit()); }));
  }

  // The policy servers' counters: plain numbers of the io thread, where the registry renders.
  // Labels are fixed words (server, answer), never request text.
  void RegisterPolicyMetrics() {
    if (!decisions_) return;
    constexpr std::string_view kRequests = "mxward_policy_requests_total";
    constexpr std::string_view kErrors = "mxward_policy_errors_total";
    constexpr std::string_view kDecisions = "mxward_policy_decisions";
    (void)registry_.Declare({kRequests,
                             MetricType::kCounter,
                             "Policy requests answered, per server (type) and answer (outcome).",
                             {"type", "outcome"}});
    (void)registry_.Declare({kErrors,
                             MetricType::kCounter,
                             "Policy connections or requests refused, per server and reason.",
                             {"type", "reason"}});
    (void)registry_.Declare({kDecisions,
                             MetricType::kGauge,
                             "Decisions in force the policy servers answer from (ban, account).",
                             {"type"}});
    auto add = [this](std::string_view family, std::vector<std::string> labels,
                      std::function<double()> fn) { Keep(registry_.Add(family, labels, fn)); };
    add(kDecisions, {"ban"}, [this] { return static_cast<double>(decisions_->ban_count()); });
    add(kDecisions, {"account"},
        [this] { return static_cast<double>(decisions_->account_count()); });
    if (dovecot_policy_) {
      const DovecotPolicyCounters& c = dovecot_policy_->counters();
      add(kRequests, {"dovecot", "allowed"},
          [&c] { return static_cast<double>(c.allow - c.refused - c.delayed); });
      add(kRequests, {"dovecot", "delayed"}, [&c] { return static_cast<double>(c.delayed); });
      add(kRequests, {"dovecot", "refused"}, [&c] { return static_cast<double>(c.refused); });
      add(kRequests, {"dovecot", "report"}, [&c] { return static_cast<double>(c.reports); });
      const DovecotPolicyServerCounters& s = dovecot_policy_server_->counters();
      add(kErrors, {"dovecot", "unauthorized"},
          [&s] { return static_cast<double>(s.unauthorized); });
      add(kErrors, {"dovecot", "bad_request"},
          [&s] { return static_cast<double>(s.bad_requests); });
      add(kErrors, {"dovecot", "connections_over_cap"},
          [&s] { return static_cast<double>(s.refused_connections); });
    }
    if (postfix_policy_) {
      const PostfixPolicyCounters& c = postfix_policy_->counters();
      add(kRequests, {"postfix", "dunno"},
          [&c] { return static_cast<double>(c.requests - c.reject - c.defer - c.hold); });
      add(kRequests, {"postfix", "reject"}, [&c] { return static_cast<double>(c.reject); });
      add(kRequests, {"postfix", "defer"}, [&c] { return static_cast<double>(c.defer); });
      add(kRequests, {"postfix", "hold"}, [&c] { return static_cast<double>(c.hold); });
      const PostfixPolicyServerCounters& s = postfix_policy_server_->counters();
      add(kErrors, {"postfix", "protocol_error"},
          [&s] { return static_cast<double>(s.protocol_errors); });
      add(kErrors, {"postfix", "idle_timeout"},
          [&s] { return static_cast<double>(s.idle_closed); });
      add(kErrors, {"postfix", "request_timeout"},
          [&s] { return static_cast<double>(s.request_timeouts); });
      add(kErrors, {"postfix", "connections_over_cap"},
          [&s] { return static_cast<double>(s.refused_connections); });
    }
  }

  // Engine numbers are read on the io thread only (the registry renders there too).
  void RegisterEngineMetrics() {
    using namespace metric;
    auto h = registry_.Add(kQueueIds, {}, [this] {
      return static_cast<double>(pipeline_->extractor().stats().queue_ids);
    });
    if (h.ok()) engine_metrics_.push_back(std::move(*h));
    h = registry_.Add(kQueueIdEvictions, {}, [this] {
      return static_cast<double>(pipeline_->extractor().stats().queue_id_evictions);
    });
    if (h.ok()) engine_metrics_.push_back(std::move(*h));
    // Per playbook; the names come from the playbook files, not from log text. The engine (and
    // so these) is replaced on reload, which is why this runs again then.
    const std::vector<std::string> names = pipeline_->engine().playbook_names();
    for (std::size_t i = 0; i < names.size(); ++i) {
      h = registry_.Add(kPlaybookTriggers, {names[i]}, [this, i] {
        return static_cast<double>(pipeline_->engine().playbook_triggers(i));
      });
      if (h.ok()) engine_metrics_.push_back(std::move(*h));
      h = registry_.Add(kPlaybookUnverified, {names[i]}, [this, i] {
        return static_cast<double>(pipeline_->engine().playbook_unverified_ignored(i));
      });
      if (h.ok()) engine_metrics_.push_back(std::move(*h));
      h = registry_.Add(kIncidents, {names[i]}, [this, name = names[i]] {
        return static_cast<double>(recorder_->recorded(name));
      });
      if (h.ok()) engine_metrics_.push_back(std::move(*h));
      h = registry_.Add(kWindowKeys, {names[i]}, [this, i] {
        return static_cast<double>(pipeline_->engine().window_keys(i));
      });
      if (h.ok()) engine_metrics_.push_back(std::move(*h));
      h = registry_.Add(kWindowEvictions, {names[i]}, [this, i] {
        return static_cast<double>(pipeline_->engine().window_evictions(i));
      });
      if (h.ok()) engine_metrics_.push_back(std::move(*h));
    }
  }

  void Shutdown() {
    // Every line the listeners accepted reaches the pipeline before the final flush.
    DrainLines();
    pipeline_->ReleaseHeld();
    pipeline_->FlushCounts();
    // Claims of shared windows still waiting (a window reached its threshold just before the
    // stop): settled now, bounded like the other flushes here, and the incidents this node won
    // opened before the recorder drains, so exactly one node opens each (docs/cluster.md
    // "Claims at a stop").
    if (cluster_ && window_batch_) {
      cluster_->FlushClaims(std::chrono::seconds(5));
      OpenClaimed();
    }
    recorder_->AddBaselines(pipeline_->engine().TakeDirtyBaselines());
    // Bounded: with an unwritable store (disk full) the held incidents cannot be saved, and
    // systemd's TimeoutStopSec must not be what ends the process. Stop() says what was lost.
    if (!recorder_->Flush(std::chrono::seconds(5))) {
      spdlog::error("the store could not take every incident within 5 s; stopping anyway");
    }
    recorder_->Stop();
    dispatcher_->Stop(std::chrono::seconds(10));
    // After the dispatcher: bans it finished while draining are published before we go.
    if (cluster_) cluster_->Stop();
    spdlog::info("stopped: {} lines, {} events, {} incidents", pipeline_->counters().lines.load(),
                 pipeline_->counters().events.load(), pipeline_->counters().incidents.load());
  }

  // Hands every line the parse workers hold to the pipeline (nothing without workers).
  void DrainLines() {
    if (parallel_sink_) parallel_sink_->Drain();
  }

  // [engine] parse_threads, "auto" (-1) resolved: the cores but one, at most 3. More would not
  // help: the stateful stage on the io thread (about a quarter to a third of a line's work,
  // docs/benchmarks.md) bounds the rate whatever the workers do.
  static int ParseThreads(int setting) {
    if (setting >= 0) return setting;
    cpu_set_t set;
    CPU_ZERO(&set);
    int cores = 1;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
    return std::clamp(cores - 1, 0, 3);
  }

  const GlobalOptions& globals_;
  ServeOptions opts_;
  int parse_threads_ = 0;
  Config config_;
  std::vector<std::string> notes_;            // warnings logged once the daemon is ready
  std::vector<ExecutorMode> executor_modes_;  // per action type: live or dry-run (`status`)
  UnixMicros started_at_ = SystemClock::Instance()->Now();
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer housekeeping_;
  std::chrono::steady_clock::time_point last_hourly_ = std::chrono::steady_clock::now();
  std::shared_ptr<const ParserPack> pack_;
  ReloadOutcome last_reload_;     // the last SIGHUP's outcome, for `status` (io thread)
  toml::table started_document_;  // mxward.toml as at start: what the restart-only parts run
  // The store file's identity (WatchStoreFile) and what /healthz says about the store file
  // (corrupt at start, deleted and recreated, replaced); io thread.
  std::unique_ptr<StoreFileWatch> store_watch_;
  std::string store_notice_;
  UnixMicros store_notice_until_ = 0;  // 0: until cleared otherwise
  std::string corrupt_store_aside_;    // the moved corrupt file, while it exists
  bool store_replaced_logged_ = false;
  bool restart_for_lost_store_ = false;
  std::unique_ptr<IncidentStore> control_store_;
  // The compiled address allowlist, shared with the engine, the dispatcher's claimer and the
  // policy servers (allow_set.h).
  std::shared_ptr<AllowSetHandle> allow_set_ = std::make_shared<AllowSetHandle>();
  std::unique_ptr<ActionDispatcher> dispatcher_;
  std::unique_ptr<IncidentRecorder> recorder_;
  // Before the pipeline, which hands incidents to decision_feed_; the policy servers after it.
  std::unique_ptr<DecisionTable> decisions_;
  std::unique_ptr<DecisionFeed> decision_feed_;
  // Shared windows (WireSharedWindows), with [cluster] only: before the pipeline, whose engine
  // reports into the batch and whose incidents pass through the claiming sink.
  std::unique_ptr<WindowEventBatch> window_batch_;
  Mutex claimed_mu_;
  std::vector<Incident> claimed_ GUARDED_BY(claimed_mu_);  // won claims, to open (OpenClaimed)
  std::unique_ptr<SharedWindowPublisher> shared_publisher_;
  std::unique_ptr<ClaimingIncidentSink> claiming_sink_;
  std::unique_ptr<Pipeline> pipeline_;
  // Between the listeners and the pipeline (with parse workers): after the pipeline it feeds,
  // before the listener that feeds it.
  std::unique_ptr<ParallelLineSink> parallel_sink_;
  std::unique_ptr<DovecotPolicy> dovecot_policy_;
  std::unique_ptr<DovecotPolicyServer> dovecot_policy_server_;
  std::unique_ptr<PostfixPolicy> postfix_policy_;
  std::unique_ptr<PostfixPolicyServer> postfix_policy_server_;
  std::unique_ptr<SyslogListener> listener_;
  std::unique_ptr<ControlServer> control_;
  MetricsRegistry registry_;
  std::vector<MetricsRegistry::Handle> handles_;
  std::vector<MetricsRegistry::Handle> engine_metrics_;
  std::unique_ptr<MetricsServer> metrics_;
  std::shared_ptr<ClusterLink> cluster_;  // after the dispatcher, which it wakes
};

}  // namespace

void AddServeCommand(CLI::App& app, GlobalOptions& globals) {
  auto opts = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Run the daemon: listen for syslog, run the playbooks, act, and serve the control socket "
      "and /metrics. SIGHUP reloads, SIGTERM stops.");
  cmd->add_flag("--dry-run", opts->dry_run, "record every action as dry-run, run none");
  cmd->callback([&globals, opts] {
    Daemon daemon(globals, *opts);
    daemon.Run();
  });
}

}  // namespace mxward::cli
