// Pipeline: the hot path. One log line in; syslog header parsed, event extracted, playbooks
// updated, and any incident handed to the IncidentSink. Implements LineSink so every input
// (listeners, file follower, replay) feeds it the same way.
//
// Owned by and called from one thread. Nothing here does I/O or waits: incidents go to the
// IncidentRecorder's queue, hourly event counts are handed over once per hour of event time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mxward/event.h"
#include "mxward/line_sink.h"
#include "mxward/log_format.h"
#include "mxward/metrics_registry.h"
#include "mxward/parser_pack.h"
#include "mxward/playbook_engine.h"
#include "mxward/prepared_line.h"
#include "mxward/provenance.h"
#include "mxward/rate_limited_log.h"
#include "mxward/syslog_parser.h"

namespace mxward {

// Read by the metrics endpoint from another thread: relaxed atomics, written by the pipeline's
// thread only (plain load + store, no locked read-modify-write on the hot path).
struct PipelineCounters {
  std::atomic<std::uint64_t> lines{0};
  std::atomic<std::uint64_t> malformed{0};  // not syslog: counted and skipped
  std::atomic<std::uint64_t> events{0};
  std::atomic<std::uint64_t> unmatched{0};  // syslog lines no parser took (or folded / no event)
  std::atomic<std::uint64_t> incidents{0};
  std::atomic<UnixMicros> last_event_time{0};
  std::atomic<std::uint64_t> time_future{0};  // live lines dated too far ahead: arrival time used
  std::atomic<std::uint64_t> time_stale{0};   // live lines older than max_age: skipped
  std::array<std::atomic<std::uint64_t>, kEventTypeCount> events_by_type{};
  // Per parser (ParserPack::parser_names() order) and, for lines no pattern recognised, per
  // program label (ParserPack::program_labels() order, then "other").
  std::vector<std::string> parser_names;
  std::unique_ptr<std::atomic<std::uint64_t>[]> events_by_parser;
  std::vector<std::string> program_labels;  // the last one is "other"
  std::unique_ptr<std::atomic<std::uint64_t>[]> unmatched_by_program;
  // Per input (PipelineOptions::input_names order, then one for lines of no configured input):
  // lines whose writer the provenance policy verified, lines nobody vouches for, and lines whose
  // writer is not one of their program's users (dropped when the policy enforces).
  std::unique_ptr<std::atomic<std::uint64_t>[]> verified_by_input;
  std::unique_ptr<std::atomic<std::uint64_t>[]> unverified_by_input;
  std::unique_ptr<std::atomic<std::uint64_t>[]> forged_by_input;
  std::size_t input_slots = 1;
};

struct PipelineOptions {
  // Replay: year-less times are placed relative to the previous line's time (starting from
  // `reference`), not the wall clock, so a year-old log replays in its own year.
  bool replay = false;
  UnixMicros reference = 0;
  // Live inputs only (Config's [clock]): a line's own time is believed within
  // [arrival - max_age, arrival + max_skew]. Ahead of that it is counted at its arrival time, so
  // one forged or mis-clocked line cannot squeeze a window or push a cooldown, retention or
  // warm-up into the future; behind it the line is skipped (counted), since a burst of ancient
  // lines at one instant would look like an attack.
  std::int64_t max_skew_seconds = 300;
  std::int64_t max_age_seconds = 7 * 86400;
  // How each input's lines are written, by the input_index OnLine receives (the [[input]]
  // order); an index beyond the list (replay, stdin) uses `format`.
  std::vector<LogFormat> input_formats;
  LogFormat format = LogFormat::kSyslog;
  // Who may write which program's lines (provenance.h); null: nobody is listed, so only root's
  // lines are verified. input_names label the per-input counters and the warnings; an input in
  // input_trusted (`trusted = true`) has its lines verified unless their writer is known and
  // refused.
  std::shared_ptr<const ProvenancePolicy> provenance;
  std::vector<std::string> input_names;
  std::vector<bool> input_trusted;
  // Every line is verified unless its writer is known and refused, as if each input were
  // trusted: `mxward replay` and `learn`, whose files the operator named and so vouches for
  // (docs/cli.md).
  bool vouch_for_every_line = false;
};

class Pipeline final : public LineSink, public PreparedLineSink {
 public:
  using CountsFn = std::function<void(UnixMicros hour,
                                      const std::vector<std::pair<std::string, std::int64_t>>&)>;

  Pipeline(SyslogParser parser, std::unique_ptr<EventExtractor> extractor,
           std::unique_ptr<PlaybookEngine> engine, IncidentSink* sink, CountsFn on_hour_counts,
           PipelineOptions options = {});

  void OnLine(std::string_view line, UnixMicros received_at, int input_index) override;
  // As OnLine; the event (if any) carries `node` (Event::node).
  void OnLineFrom(std::string_view line, UnixMicros received_at, int input_index,
                  std::string_view node) override;
  // As OnLine, with the writer the input knows: checked against the provenance policy for the
  // parser the line's program picks; a writer the policy refuses drops the line (counted).
  void OnLineWithOrigin(std::string_view line, UnixMicros received_at, int input_index,
                        const LineOrigin& origin) override;
  // A line whose syslog parse and pattern match a worker did (prepared_line.h, parallel_lines.h).
  // Gives exactly what OnLine(line, ...) gives: the record is used only when it was made with
  // this line's reference (replay: the previous line's time; live: received_at), the running pack
  // and the input's format, otherwise the line is parsed again here.
  void OnPreparedLine(std::string_view line, PreparedLine* prepared, UnixMicros received_at,
                      int input_index) override;
  // As OnPreparedLine for a live line, with what OnLineFrom (node) and OnLineWithOrigin (origin,
  // may be null) would have been given.
  void OnPreparedLineFrom(std::string_view line, PreparedLine* prepared, UnixMicros received_at,
                          int input_index, std::string_view node, const LineOrigin* origin);
  UnixMicros replay_reference() const override { return reference_; }
  // The stateless stage for this pipeline (its parser, pack and formats).
  LinePreparer MakePreparer() const {
    return LinePreparer(parser_, extractor_->pack(), options_.format, options_.input_formats);
  }
  // Swaps in a policy resolved again (SIGHUP). Called on the pipeline's thread.
  void ReplaceProvenance(std::shared_ptr<const ProvenancePolicy> policy);

  // Swaps in a reloaded engine (SIGHUP). Called on the pipeline's thread.
  void ReplaceEngine(std::unique_ptr<PlaybookEngine> engine) { engine_ = std::move(engine); }
  // Swaps in a reloaded parser pack (SIGHUP), on the pipeline's thread between two lines: the
  // next line is matched with it, and the extractor keeps its queue-id and held-attempt state
  // (EventExtractor::UsePack). The per-parser and per-program counters keep the labels of the
  // pack the pipeline was built with (the metrics registry holds them): a parser or program the
  // new pack adds is counted under the "other" slots until the next start.
  void ReplaceParsers(std::shared_ptr<const ParserPack> pack);
  // [clock] max_skew / max_age of a reload; live lines from the next one on.
  void SetClockBounds(std::int64_t max_skew_seconds, std::int64_t max_age_seconds) {
    options_.max_skew_seconds = max_skew_seconds;
    options_.max_age_seconds = max_age_seconds;
  }
  PlaybookEngine& engine() { return *engine_; }
  EventExtractor& extractor() { return *extractor_; }
  // Replay: the time year-less lines are placed near, until the first line sets it (per file).
  void SetReplayReference(UnixMicros t) { reference_ = t; }
  // Hands over the counts of the current hour (at shutdown and end of replay).
  void FlushCounts();
  // The counts of the current hour not handed over yet, by event type name, and that hour's
  // start (-1: none counted). Reads only; on the pipeline's thread (`mxward stats` asks the
  // daemon for them, so it shows the hour in progress).
  UnixMicros pending_hour() const { return count_hour_; }
  std::vector<std::pair<std::string, std::int64_t>> PendingCounts() const;
  // Counts held lines whose hold ended by `now` (the daemon calls it once a second, so a quiet log
  // does not keep them waiting for the next line).
  void AdvanceTime(UnixMicros now);
  // Counts every held line now (end of replay, shutdown; before FlushCounts): none is lost.
  void ReleaseHeld();
  const PipelineCounters& counters() const { return counters_; }
  // Registers what only the pipeline knows the labels of: mxward_events_by_parser_total{parser}
  // and mxward_lines_unmatched_by_program_total{program}. The counters outlive the handles as
  // long as the pipeline outlives them.
  void RegisterMetrics(MetricsRegistry* registry,
                       std::vector<MetricsRegistry::Handle>* handles) const;

 private:
  class CountingSink;

  LogFormat FormatOf(int input_index) const {
    return input_index >= 0 && static_cast<std::size_t>(input_index) < options_.input_formats.size()
               ? options_.input_formats[static_cast<std::size_t>(input_index)]
               : options_.format;
  }
  // Everything after the syslog parse; prepared: the worker's match (null: match here).
  void OnMessage(SyslogMessage* msg, UnixMicros received_at, int input_index,
                 PreparedLine* prepared);
  void Deliver(const PatternInfo* pattern);
  void DeliverReleased();
  void DeliverEvent(int parser_index);  // event_ to counters and playbooks
  // The provenance verdict on msg (false: drop it); sets msg->verified.
  bool CheckProvenance(SyslogMessage* msg, int input_index);

  SyslogParser parser_;
  std::unique_ptr<EventExtractor> extractor_;
  std::unique_ptr<PlaybookEngine> engine_;
  IncidentSink* sink_;
  CountsFn on_hour_counts_;
  PipelineOptions options_;
  UnixMicros reference_ = 0;
  UnixMicros count_hour_ = -1;
  std::array<std::int64_t, kEventTypeCount> hour_counts_{};
  PipelineCounters counters_;
  // The running pack's parser_index and ProgramLabel() -> the counters' slot (identity until a
  // reload changes the pack; -1 for names the counters do not have).
  std::vector<int> parser_slot_;
  std::vector<int> program_slot_;
  Event event_;
  std::string_view node_;               // OnLineFrom's node, during the call
  const LineOrigin* origin_ = nullptr;  // OnLineWithOrigin's origin, during the call
  std::shared_ptr<const ProvenancePolicy> provenance_;
  RateLimitedLog provenance_log_;
};

}  // namespace mxward
