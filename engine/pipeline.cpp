#include "mxward/pipeline.h"

#include <string>
#include <vector>

namespace mxward {

namespace {
constexpr UnixMicros kMicrosPerHour = 3600 * kMicrosPerSecond;
}

// Counts incidents on their way to the real sink.
class Pipeline::CountingSink final : public IncidentSink {
 public:
  CountingSink(IncidentSink* next, std::atomic<std::uint64_t>* count) : next_(next), n_(count) {}
  void OnIncident(Incident incident) override {
    n_->fetch_add(1, std::memory_order_relaxed);
    next_->OnIncident(std::move(incident));
  }

 private:
  IncidentSink* next_;
  std::atomic<std::uint64_t>* n_;
};

Pipeline::Pipeline(SyslogParser parser, std::unique_ptr<EventExtractor> extractor,
                   std::unique_ptr<PlaybookEngine> engine, IncidentSink* sink,
                   CountsFn on_hour_counts, PipelineOptions options)
    : parser_(parser),
      extractor_(std::move(extractor)),
      engine_(std::move(engine)),
      sink_(sink),
      on_hour_counts_(std::move(on_hour_counts)),
      options_(options),
      reference_(options.reference) {}

void Pipeline::OnLine(std::string_view line, UnixMicros received_at, int /*input_index*/) {
  counters_.lines.fetch_add(1, std::memory_order_relaxed);
  SyslogMessage msg;
  const UnixMicros reference = options_.replay ? reference_ : received_at;
  // Roundcube's own log files are not syslog: "[23-Nov-2026 10:00:00 +0100]: <sess> ...".
  if (!parser_.Parse(line, reference, &msg).ok() && !ParseRoundcubeFileLine(line, &msg)) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!msg.has_time) {
    msg.time = options_.replay ? reference_ : received_at;
  }
  if (options_.replay) reference_ = msg.time;

  if (!extractor_->Extract(msg, &event_)) {
    counters_.unmatched.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  counters_.events.fetch_add(1, std::memory_order_relaxed);
  counters_.events_by_type[static_cast<int>(event_.type)].fetch_add(1, std::memory_order_relaxed);
  counters_.last_event_time.store(event_.time, std::memory_order_relaxed);

  const UnixMicros hour = event_.time - event_.time % kMicrosPerHour;
  if (hour != count_hour_) {
    FlushCounts();
    count_hour_ = hour;
  }
  ++hour_counts_[static_cast<int>(event_.type)];

  CountingSink counting(sink_, &counters_.incidents);
  engine_->OnEvent(event_, &counting);
}

void Pipeline::FlushCounts() {
  if (count_hour_ < 0) return;
  std::vector<std::pair<std::string, std::int64_t>> counts;
  for (int i = 0; i < kEventTypeCount; ++i) {
    if (hour_counts_[i] == 0) continue;
    counts.emplace_back(std::string(EventTypeName(static_cast<EventType>(i))), hour_counts_[i]);
    hour_counts_[i] = 0;
  }
  if (!counts.empty() && on_hour_counts_) on_hour_counts_(count_hour_, counts);
}

}  // namespace mxward
