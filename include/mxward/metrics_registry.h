// MetricsRegistry: the numbers mxward exposes on /metrics, rendered in the Prometheus text
// exposition format 0.0.4.
//
// Components keep counting in their own relaxed atomics (PipelineCounters, RecorderStats, ...).
// They register *callbacks* that read those atomics; nothing is pushed into the registry, so the
// hot path pays nothing. Render() runs the callbacks once per scrape, under the registry's mutex,
// on the metrics server's thread. A callback must therefore only read memory that outlives its
// registration (a relaxed atomic load, a size() under the owner's own lock) and must never block
// for long or do I/O.
//
// Families (name, type, help, label names) are declared up front; mxward's own families are in
// kStandardFamilies below, and DeclareStandardFamilies() declares them all. Samples can only be
// added to a declared family and must give exactly its label names.
//
// What can never appear in a label: log text, user names, addresses, secrets. The label *names*
// of every family come from a fixed vocabulary (kAllowedLabelNames: input, reason, type, playbook,
// outcome, version, parser, program, provenance) whose values come from mxward.toml, from the
// parser and playbook files, or from enums, never from a log line (program: the parser pack's
// bounded names for the programs it knows, "other" for the rest). Label *values* are checked too,
// as a second line of defence: at most 64 bytes, printable, no '@' (an e-mail address or SASL user)
// and no whitespace or control bytes (a log line). A value that fails the check is refused at
// registration (Add* returns InvalidArgument); one produced by a collector at render time is
// dropped and counted in mxward_metrics_rejected_samples_total.
//
// Registrations are owned by MetricsRegistry::Handle: destroying the handle removes the samples,
// and once Remove returns their callbacks are never called again. The SIGHUP reload that replaces
// the playbook engine drops the old engine's handles before destroying the engine.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/status.h"
#include "mxward/thread_annotations.h"

namespace mxward {

enum class MetricType : std::uint8_t { kCounter, kGauge };

struct MetricFamily {
  std::string_view name;  // mxward_lines_total
  MetricType type = MetricType::kCounter;
  std::string_view help;                      // one line, for people
  std::vector<std::string_view> label_names;  // empty for a single unlabelled sample
};

// The label names any mxward family may use. Their values come from the config or from enums.
inline constexpr std::string_view kAllowedLabelNames[] = {
    "input", "reason", "type", "playbook", "outcome", "version", "parser", "program", "provenance"};

// mxward's metric names, one constant each so the code that registers a value and the dashboard
// cannot drift apart (packaging/grafana/mxward-dashboard.json uses the same strings).
namespace metric {
// The process families every Prometheus client library exports under these conventional names
// (no mxward_ prefix, so the usual dashboards and alerts find them); process_metrics.h
// registers them. The only names without the prefix the registry accepts.
inline constexpr std::string_view kProcessStartTime = "process_start_time_seconds";
inline constexpr std::string_view kProcessResidentMemory = "process_resident_memory_bytes";
inline constexpr std::string_view kProcessOpenFds = "process_open_fds";
inline constexpr std::string_view kInputMessages = "mxward_input_messages_total";
inline constexpr std::string_view kInputBytes = "mxward_input_bytes_total";
inline constexpr std::string_view kInputMalformed = "mxward_input_malformed_total";
inline constexpr std::string_view kInputDropped = "mxward_input_dropped_total";
inline constexpr std::string_view kInputConnections = "mxward_input_connections";
inline constexpr std::string_view kInputRefused = "mxward_input_refused_total";
inline constexpr std::string_view kInputClosed = "mxward_input_closed_total";
inline constexpr std::string_view kInputAcceptPaused = "mxward_input_accept_paused_total";
inline constexpr std::string_view kInputLinesByProvenance = "mxward_input_lines_total";
inline constexpr std::string_view kInputJournalSkipped =
    "mxward_input_journal_skipped_seconds_total";
inline constexpr std::string_view kLines = "mxward_lines_total";
inline constexpr std::string_view kLinesMalformed = "mxward_lines_malformed_total";
inline constexpr std::string_view kLinesUnmatched = "mxward_lines_unmatched_total";
inline constexpr std::string_view kLinesTimeAdjusted = "mxward_lines_time_adjusted_total";
inline constexpr std::string_view kEvents = "mxward_events_total";
// Declared by Pipeline::RegisterMetrics (labels known once the parser pack is loaded).
inline constexpr std::string_view kEventsByParser = "mxward_events_by_parser_total";
inline constexpr std::string_view kLinesUnmatchedByProgram =
    "mxward_lines_unmatched_by_program_total";
inline constexpr std::string_view kPlaybookTriggers = "mxward_playbook_triggers_total";
inline constexpr std::string_view kPlaybookUnverified = "mxward_playbook_unverified_events_total";
inline constexpr std::string_view kIncidents = "mxward_incidents_total";
inline constexpr std::string_view kActions = "mxward_actions_total";
inline constexpr std::string_view kOutboxDepth = "mxward_outbox_depth";
inline constexpr std::string_view kOutboxOldestAge = "mxward_outbox_oldest_age_seconds";
inline constexpr std::string_view kActiveBans = "mxward_active_bans";
inline constexpr std::string_view kWindowKeys = "mxward_window_keys";
inline constexpr std::string_view kWindowEvictions = "mxward_window_evictions_total";
inline constexpr std::string_view kQueueIds = "mxward_queue_ids";
inline constexpr std::string_view kQueueIdEvictions = "mxward_queue_id_evictions_total";
inline constexpr std::string_view kProcessingLag = "mxward_processing_lag_seconds";
inline constexpr std::string_view kStoreWriteErrors = "mxward_store_write_errors_total";
inline constexpr std::string_view kBuildInfo = "mxward_build_info";
// The registry's own: collector samples refused by the label-value check.
inline constexpr std::string_view kRejectedSamples = "mxward_metrics_rejected_samples_total";
}  // namespace metric

// Every family mxward exposes, with its help text and labels (docs/operations.md lists them).
const std::vector<MetricFamily>& StandardFamilies();

class MetricsRegistry {
 public:
  using ValueFn = std::function<double()>;
  // Emits any number of samples of one family at render time: emit(label_values, value). For
  // label sets only known at run time (events per type, windows per playbook).
  using EmitFn = std::function<void(const std::vector<std::string_view>& label_values, double)>;
  using CollectFn = std::function<void(const EmitFn& emit)>;

  // Removes its registration when destroyed or reset. Movable, not copyable.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept;
    Handle& operator=(Handle&& other) noexcept;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { Reset(); }
    void Reset();
    bool active() const { return registry_ != nullptr; }

   private:
    friend class MetricsRegistry;
    Handle(MetricsRegistry* registry, std::uint64_t id) : registry_(registry), id_(id) {}
    MetricsRegistry* registry_ = nullptr;
    std::uint64_t id_ = 0;
  };

  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Declares a family. InvalidArgument for a bad name, a label name outside kAllowedLabelNames,
  // or a second declaration of the same name with a different type or labels (an identical
  // second declaration is fine).
  Status Declare(const MetricFamily& family);
  // Declares StandardFamilies().
  void DeclareStandardFamilies();

  // One sample of a declared family whose value is read by fn at each scrape.
  Result<Handle> Add(std::string_view family, std::vector<std::string> label_values, ValueFn fn);
  // Shorthands for the common case: a relaxed load of an atomic the caller keeps alive.
  Result<Handle> AddAtomic(std::string_view family, std::vector<std::string> label_values,
                           const std::atomic<std::uint64_t>* value);
  Result<Handle> AddAtomic(std::string_view family, std::vector<std::string> label_values,
                           const std::atomic<std::int64_t>* value);
  // Samples produced at render time (see CollectFn). Values are checked then; see the top comment.
  Result<Handle> AddCollector(std::string_view family, CollectFn fn);

  // The whole exposition, families in declaration order, each with # HELP and # TYPE lines.
  std::string Render() const;

  // True when value may be a label value (see the top comment).
  static bool IsSafeLabelValue(std::string_view value);

 private:
  struct Family;
  struct Entry;
  void Remove(std::uint64_t id) EXCLUDES(mu_);
  Result<Handle> AddEntry(std::string_view family, Entry entry) EXCLUDES(mu_);

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ GUARDED_BY(mu_);
  std::uint64_t next_id_ GUARDED_BY(mu_) = 1;
  mutable std::uint64_t rejected_samples_ GUARDED_BY(mu_) = 0;
};

}  // namespace mxward
