#include "mxward/pipeline.h"

#include <string>
#include <vector>

namespace mxward {

namespace {
constexpr UnixMicros kMicrosPerHour = 3600 * kMicrosPerSecond;

// One writer (the pipeline's thread), readers elsewhere: a relaxed load and store is enough and
// avoids a locked read-modify-write per counter per line.
inline void Bump(std::atomic<std::uint64_t>& c) {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// A process name or path as the writer chose it, fit for one log line: at most 64 bytes, and
// anything but printable ASCII (a newline, an escape sequence) shown as '?'.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f && c != '\'' ? c : '?');
  return out;
}
}  // namespace

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
      reference_(options.reference) {
  if (const ParserPack* pack = extractor_->pack(); pack != nullptr) {
    counters_.parser_names = pack->parser_names();
    counters_.program_labels = pack->program_labels();
  }
  counters_.program_labels.push_back("other");
  counters_.events_by_parser =
      std::make_unique<std::atomic<std::uint64_t>[]>(counters_.parser_names.size() + 1);
  counters_.unmatched_by_program =
      std::make_unique<std::atomic<std::uint64_t>[]>(counters_.program_labels.size());
  for (std::size_t i = 0; i < counters_.parser_names.size(); ++i) {
    parser_slot_.push_back(static_cast<int>(i));
  }
  for (std::size_t i = 0; i + 1 < counters_.program_labels.size(); ++i) {
    program_slot_.push_back(static_cast<int>(i));
  }
  counters_.input_slots = options_.input_names.size() + 1;
  counters_.verified_by_input =
      std::make_unique<std::atomic<std::uint64_t>[]>(counters_.input_slots);
  counters_.unverified_by_input =
      std::make_unique<std::atomic<std::uint64_t>[]>(counters_.input_slots);
  counters_.forged_by_input = std::make_unique<std::atomic<std::uint64_t>[]>(counters_.input_slots);
  provenance_ = options_.provenance != nullptr ? options_.provenance
                                               : std::make_shared<const ProvenancePolicy>();
}

void Pipeline::ReplaceParsers(std::shared_ptr<const ParserPack> pack) {
  if (!pack) return;
  auto slots = [](const std::vector<std::string>& now, const std::vector<std::string>& counted) {
    std::vector<int> out;
    for (const auto& name : now) {
      int slot = -1;
      for (std::size_t i = 0; i < counted.size(); ++i) {
        if (counted[i] == name) slot = static_cast<int>(i);
      }
      out.push_back(slot);
    }
    return out;
  };
  parser_slot_ = slots(pack->parser_names(), counters_.parser_names);
  std::vector<std::string> labels(counters_.program_labels.begin(),
                                  counters_.program_labels.end() - 1);  // without "other"
  program_slot_ = slots(pack->program_labels(), labels);
  extractor_->UsePack(std::move(pack));
}

void Pipeline::ReplaceProvenance(std::shared_ptr<const ProvenancePolicy> policy) {
  if (policy != nullptr) provenance_ = std::move(policy);
}

void Pipeline::OnLineWithOrigin(std::string_view line, UnixMicros received_at, int input_index,
                                const LineOrigin& origin) {
  origin_ = &origin;
  OnLine(line, received_at, input_index);
  origin_ = nullptr;
}

bool Pipeline::CheckProvenance(SyslogMessage* msg, int input_index) {
  static const LineOrigin kUnknown;
  const LineOrigin& origin = origin_ != nullptr ? *origin_ : kUnknown;
  const std::size_t slot =
      input_index >= 0 && static_cast<std::size_t>(input_index) < counters_.input_slots - 1
          ? static_cast<std::size_t>(input_index)
          : counters_.input_slots - 1;
  const bool trusted = options_.vouch_for_every_line ||
                       (slot < options_.input_trusted.size() && options_.input_trusted[slot]);
  if (origin.transport == LineOrigin::Transport::kNone) {
    // Nothing to check against (udp, tcp, tls, files): verified only where the input says so.
    msg->verified = trusted;
    Bump(trusted ? counters_.verified_by_input[slot] : counters_.unverified_by_input[slot]);
    return true;
  }
  std::string_view parser;
  if (const ParserPack* pack = extractor_->pack(); pack != nullptr) {
    // The pack's index, mapped to the names counted since start (a reload may renumber them;
    // a parser a reload added has no entry here and is judged as unknown).
    int p = pack->ParserIndex(msg->program);
    p = p >= 0 && static_cast<std::size_t>(p) < parser_slot_.size()
            ? parser_slot_[static_cast<std::size_t>(p)]
            : -1;
    if (p >= 0 && static_cast<std::size_t>(p) < counters_.parser_names.size()) {
      parser = counters_.parser_names[static_cast<std::size_t>(p)];
    }
  }
  const ProvenanceVerdict v = provenance_->Judge(parser, origin, msg->structured_data);
  switch (v.kind) {
    case ProvenanceVerdict::Kind::kVerified:
      msg->verified = true;
      Bump(counters_.verified_by_input[slot]);
      return true;
    case ProvenanceVerdict::Kind::kUnverified:
      msg->verified = trusted;
      Bump(trusted ? counters_.verified_by_input[slot] : counters_.unverified_by_input[slot]);
      return true;
    case ProvenanceVerdict::Kind::kForged:
      break;
  }
  Bump(counters_.forged_by_input[slot]);
  // One warning a minute per input (the key is the input's position, never text of the line);
  // the program is the parser's name, the rest is what the kernel or journald said.
  const std::string_view input =
      slot < options_.input_names.size() ? std::string_view(options_.input_names[slot]) : "-";
  provenance_log_.Warn(
      fmt::format("provenance.{}", slot),
      "input {}: {} a {} line written by uid {}{}{}{}{}: {} lines come from root and the users "
      "of [provenance.writers] only",
      input, provenance_->enforce() ? "dropped" : "would drop (enforce = false)", parser,
      v.writer_uid, v.via_forwarder ? " (as its forwarder stated)" : "",
      v.writer_pid >= 0 ? fmt::format(" pid {}", v.writer_pid) : std::string(),
      origin.comm.empty() ? std::string() : fmt::format(" comm '{}'", Printable(origin.comm)),
      origin.exe.empty() ? std::string() : fmt::format(" exe '{}'", Printable(origin.exe)), parser);
  msg->verified = false;
  return !provenance_->enforce();
}

void Pipeline::OnLineFrom(std::string_view line, UnixMicros received_at, int input_index,
                          std::string_view node) {
  node_ = node;
  OnLine(line, received_at, input_index);
  node_ = {};
}

void Pipeline::OnLine(std::string_view line, UnixMicros received_at, int input_index) {
  Bump(counters_.lines);
  SyslogMessage msg;
  const UnixMicros reference = options_.replay ? reference_ : received_at;
  const LogFormat format = FormatOf(input_index);
  // Roundcube's and Dovecot's own files are recognised in the syslog format too (syslog_parser.h).
  if (!parser_.Parse(line, reference, &msg, format).ok()) {
    Bump(counters_.malformed);
    return;
  }
  OnMessage(&msg, received_at, input_index, nullptr);
}

void Pipeline::OnPreparedLine(std::string_view line, PreparedLine* prepared, UnixMicros received_at,
                              int input_index) {
  OnPreparedLineFrom(line, prepared, received_at, input_index, {}, nullptr);
}

void Pipeline::OnPreparedLineFrom(std::string_view line, PreparedLine* prepared,
                                  UnixMicros received_at, int input_index, std::string_view node,
                                  const LineOrigin* origin) {
  // OnLine reads both during the call, whichever path the line takes below.
  node_ = node;
  origin_ = origin;
  // The worker's parse is this line's only if it used the reference this thread would use now,
  // the pack the extractor matches with and the input's format (prepared_line.h); otherwise the
  // line is done here, whole.
  if (prepared->reference != (options_.replay ? reference_ : received_at) ||
      prepared->pack != extractor_->pack() || prepared->format != FormatOf(input_index)) {
    OnLine(line, received_at, input_index);
  } else {
    Bump(counters_.lines);
    if (prepared->parsed) {
      OnMessage(&prepared->msg, received_at, input_index, prepared);
    } else {
      Bump(counters_.malformed);
    }
  }
  node_ = {};
  origin_ = nullptr;
}

void Pipeline::OnMessage(SyslogMessage* msg, UnixMicros received_at, int input_index,
                         PreparedLine* prepared) {
  if (!CheckProvenance(msg, input_index)) return;
  if (!msg->has_time) {
    msg->time = options_.replay ? reference_ : received_at;
  }
  if (options_.replay) {
    reference_ = msg->time;
  } else if (msg->time > received_at + options_.max_skew_seconds * kMicrosPerSecond) {
    msg->time = received_at;
    Bump(counters_.time_future);
  } else if (msg->time < received_at - options_.max_age_seconds * kMicrosPerSecond) {
    Bump(counters_.time_stale);
    return;
  }

  msg->node = node_;
  bool got_event = false;
  if (prepared == nullptr) {
    got_event = extractor_->Extract(*msg, &event_);
  } else {
    // The pattern's captures, as a match on this thread would have left them in event_ (an
    // unmatched line leaves event_ as it was, as Match does). The match copied the message's
    // time as the worker saw it; a live line dated too far ahead was moved to its arrival above.
    if (prepared->matched) {
      event_ = prepared->event;
      event_.time = msg->time;
    }
    got_event = extractor_->ExtractMatched(*msg, prepared->matched, prepared->pattern, &event_);
  }
  if (!got_event) {
    Bump(counters_.unmatched);
    if (extractor_->last_outcome().kind == ExtractOutcome::kUnmatched) {
      const ParserPack* pack = extractor_->pack();
      int label = pack != nullptr ? pack->ProgramLabel(msg->program) : -1;
      label = label >= 0 && static_cast<std::size_t>(label) < program_slot_.size()
                  ? program_slot_[static_cast<std::size_t>(label)]
                  : -1;
      const std::size_t other = counters_.program_labels.size() - 1;
      Bump(counters_.unmatched_by_program[label >= 0 && static_cast<std::size_t>(label) < other
                                              ? static_cast<std::size_t>(label)
                                              : other]);
    }
  } else {
    Deliver(extractor_->last_outcome().pattern);
  }
  DeliverReleased();
}

void Pipeline::AdvanceTime(UnixMicros now) {
  extractor_->Advance(now);
  DeliverReleased();
}

void Pipeline::ReleaseHeld() {
  extractor_->ReleaseAll();
  DeliverReleased();
}

// Held lines whose hold ended: the same path as any event (their parser is the held pattern's).
void Pipeline::DeliverReleased() {
  while (extractor_->NextReleased(&event_)) {
    const ParserPack* pack = extractor_->pack();
    int parser_index = -1;
    if (pack != nullptr) {
      const auto& names = counters_.parser_names;
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == event_.parser) parser_index = static_cast<int>(i);
      }
    }
    DeliverEvent(parser_index);
  }
}

void Pipeline::Deliver(const PatternInfo* pattern) {
  const int index = pattern != nullptr ? pattern->parser_index : -1;
  DeliverEvent(index >= 0 && static_cast<std::size_t>(index) < parser_slot_.size()
                   ? parser_slot_[static_cast<std::size_t>(index)]
                   : -1);
}

void Pipeline::DeliverEvent(int parser_index) {
  Bump(counters_.events);
  Bump(counters_.events_by_type[static_cast<int>(event_.type)]);
  {
    const int p = parser_index;
    const std::size_t n = counters_.parser_names.size();
    Bump(counters_.events_by_parser[p >= 0 && static_cast<std::size_t>(p) < n
                                        ? static_cast<std::size_t>(p)
                                        : n]);
  }
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

void Pipeline::RegisterMetrics(MetricsRegistry* registry,
                               std::vector<MetricsRegistry::Handle>* handles) const {
  auto keep = [&](Result<MetricsRegistry::Handle> h) {
    if (h.ok()) handles->push_back(std::move(*h));
  };
  (void)registry->Declare({metric::kEventsByParser,
                           MetricType::kCounter,
                           "Typed events extracted, per parser.",
                           {"parser"}});
  (void)registry->Declare({metric::kLinesUnmatchedByProgram,
                           MetricType::kCounter,
                           "Syslog lines no pattern recognised, per program the parser pack "
                           "knows (parser, or parser/process) and 'other' for the rest.",
                           {"program"}});
  // Label values are parser and process names from rules.d/parsers, never log text; a name the
  // registry's check refuses (it would have to contain '@' or a space) is left out.
  for (std::size_t i = 0; i < counters_.parser_names.size(); ++i) {
    keep(registry->AddAtomic(metric::kEventsByParser, {counters_.parser_names[i]},
                             &counters_.events_by_parser[i]));
  }
  for (std::size_t i = 0; i < counters_.program_labels.size(); ++i) {
    keep(registry->AddAtomic(metric::kLinesUnmatchedByProgram, {counters_.program_labels[i]},
                             &counters_.unmatched_by_program[i]));
  }
  (void)registry->Declare({metric::kInputLinesByProvenance,
                           MetricType::kCounter,
                           "Syslog lines per input by provenance: 'verified' (the writer is one "
                           "of its program's users, or the input is trusted), 'unverified' "
                           "(nobody vouches for the writer), 'forged' (the writer is known and "
                           "not one of them: dropped unless [provenance] enforce = false).",
                           {"input", "provenance"}});
  for (std::size_t i = 0; i < options_.input_names.size(); ++i) {
    const std::string& name = options_.input_names[i];
    keep(registry->AddAtomic(metric::kInputLinesByProvenance, {name, "verified"},
                             &counters_.verified_by_input[i]));
    keep(registry->AddAtomic(metric::kInputLinesByProvenance, {name, "unverified"},
                             &counters_.unverified_by_input[i]));
    keep(registry->AddAtomic(metric::kInputLinesByProvenance, {name, "forged"},
                             &counters_.forged_by_input[i]));
    if (provenance_->enforce()) {
      keep(registry->AddAtomic(metric::kInputDropped, {name, "provenance"},
                               &counters_.forged_by_input[i]));
    }
  }
}

std::vector<std::pair<std::string, std::int64_t>> Pipeline::PendingCounts() const {
  std::vector<std::pair<std::string, std::int64_t>> counts;
  for (int i = 0; i < kEventTypeCount; ++i) {
    if (hour_counts_[i] == 0) continue;
    counts.emplace_back(std::string(EventTypeName(static_cast<EventType>(i))), hour_counts_[i]);
  }
  return counts;
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
