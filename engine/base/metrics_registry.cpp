#include "mxward/metrics_registry.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

namespace mxward {

namespace {

using metric::kActions;
using metric::kActiveBans;
using metric::kBuildInfo;
using metric::kEvents;
using metric::kIncidents;
using metric::kInputAcceptPaused;
using metric::kInputBytes;
using metric::kInputClosed;
using metric::kInputConnections;
using metric::kInputDropped;
using metric::kInputJournalSkipped;
using metric::kInputMalformed;
using metric::kInputMessages;
using metric::kInputRefused;
using metric::kLines;
using metric::kLinesMalformed;
using metric::kLinesTimeAdjusted;
using metric::kLinesUnmatched;
using metric::kOutboxDepth;
using metric::kOutboxOldestAge;
using metric::kPlaybookTriggers;
using metric::kPlaybookUnverified;
using metric::kProcessingLag;
using metric::kQueueIdEvictions;
using metric::kQueueIds;
using metric::kRejectedSamples;
using metric::kStoreWriteErrors;
using metric::kWindowEvictions;
using metric::kWindowKeys;

constexpr MetricType kCounter = MetricType::kCounter;
constexpr MetricType kGauge = MetricType::kGauge;

// Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. We do not use ':' (reserved for recording
// rules) and insist on the mxward_ prefix so nothing else can sneak in; the conventional process
// families are the only exceptions, by exact name.
bool IsValidMetricName(std::string_view name) {
  if (name == metric::kProcessStartTime || name == metric::kProcessResidentMemory ||
      name == metric::kProcessOpenFds) {
    return true;
  }
  if (name.size() < 8 || name.substr(0, 7) != "mxward_") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool IsAllowedLabelName(std::string_view name) {
  return std::find(std::begin(kAllowedLabelNames), std::end(kAllowedLabelNames), name) !=
         std::end(kAllowedLabelNames);
}

// HELP text escaping (format 0.0.4): backslash and line feed.
void AppendEscapedHelp(std::string* out, std::string_view text) {
  for (char c : text) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

// Label value escaping (format 0.0.4): backslash, double quote and line feed.
void AppendEscapedLabelValue(std::string* out, std::string_view text) {
  for (char c : text) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

// `{a="x",b="y"}`, or nothing for a family without labels.
std::string FormatLabels(const std::vector<std::string_view>& names,
                         const std::vector<std::string_view>& values) {
  std::string out;
  if (names.empty()) return out;
  out.push_back('{');
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(names[i]);
    out.append("=\"");
    AppendEscapedLabelValue(&out, values[i]);
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

// Go's ParseFloat spellings for the special values; integers without a fraction.
void AppendValue(std::string* out, double v) {
  if (std::isnan(v)) {
    out->append("NaN");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
  } else if (v == std::trunc(v) && std::fabs(v) < 9.007199254740992e15) {
    fmt::format_to(std::back_inserter(*out), "{}", static_cast<std::int64_t>(v));
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", v);
  }
}

}  // namespace

const std::vector<MetricFamily>& StandardFamilies() {
  static const std::vector<MetricFamily> kFamilies = {
      {kInputMessages, kCounter, "Syslog messages received, per input.", {"input"}},
      {kInputBytes, kCounter, "Bytes of syslog messages received, per input.", {"input"}},
      {kInputMalformed,
       kCounter,
       "Messages an input could not frame or decode (counted and skipped).",
       {"input"}},
      {kInputDropped,
       kCounter,
       "Messages lost before parsing, per input and reason (kernel receive queue, oversize, "
       "closed connection).",
       {"input", "reason"}},
      {kInputConnections, kGauge, "Open stream connections, per input.", {"input"}},
      {kInputRefused,
       kCounter,
       "Datagrams and connections an input refused, per input and reason (sender: not in "
       "allowed_senders; tls_handshake: TLS handshake failed; tls_peer: a valid certificate not "
       "on the allow list; peer_limit: the peer had max_connections_per_peer open).",
       {"input", "reason"}},
      {kInputClosed,
       kCounter,
       "Stream connections mxward closed, per input and reason (idle: no complete message for "
       "idle_timeout; bad_framing: garbage, a bad octet count or an oversize message).",
       {"input", "reason"}},
      {kInputAcceptPaused,
       kCounter,
       "Times a stream input stopped accepting at max_connections (new connections wait in the "
       "kernel's backlog until one closes).",
       {"input"}},
      {kInputJournalSkipped,
       kCounter,
       "Journal time a journal input did not read because the entry of its saved cursor was "
       "vacuumed while mxward was not reading, per input. Should be 0.",
       {"input"}},
      {kLines, kCounter, "Log lines handed to the pipeline.", {}},
      {kLinesMalformed, kCounter, "Lines that were not syslog (counted and skipped).", {}},
      {kLinesUnmatched, kCounter, "Syslog lines no parser recognised.", {}},
      {kLinesTimeAdjusted,
       kCounter,
       "Live lines whose own time was not believed, per reason (future: dated beyond [clock] "
       "max_skew ahead of arrival, counted at arrival time; stale: older than [clock] max_age, "
       "skipped).",
       {"reason"}},
      {kEvents, kCounter, "Typed events extracted, per event type.", {"type"}},
      {kPlaybookTriggers, kCounter, "Times a playbook's trigger fired.", {"playbook"}},
      {kPlaybookUnverified,
       kCounter,
       "Events a playbook matched but did not count: not verified, and it takes verified "
       "evidence only (it acts on mailboxes, or says evidence = \"verified\").",
       {"playbook"}},
      {kIncidents, kCounter, "Incidents opened, per playbook.", {"playbook"}},
      {kActions, kCounter, "Actions finished, per action type and outcome.", {"type", "outcome"}},
      {kOutboxDepth, kGauge, "Actions waiting in the outbox.", {}},
      {kOutboxOldestAge,
       kGauge,
       "Age of the oldest action waiting in the outbox (0 when empty).",
       {}},
      {kActiveBans, kGauge, "Addresses and prefixes currently banned.", {}},
      {kWindowKeys, kGauge, "Keys tracked in a playbook's sliding windows.", {"playbook"}},
      {kWindowEvictions,
       kCounter,
       "Keys evicted from a playbook's window table because it was full.",
       {"playbook"}},
      {kQueueIds, kGauge, "Postfix queue ids held for correlation.", {}},
      {kQueueIdEvictions,
       kCounter,
       "Queue ids evicted from the correlation table before they expired.",
       {}},
      {kProcessingLag, kGauge, "Wall clock minus the time of the last event processed.", {}},
      {kStoreWriteErrors, kCounter, "Failed writes to the incident store (retried).", {}},
      {kBuildInfo, kGauge, "Always 1; the version label says which mxward runs.", {"version"}},
      {kRejectedSamples,
       kCounter,
       "Samples the metrics registry refused because a label value looked like log data.",
       {}},
  };
  return kFamilies;
}

struct MetricsRegistry::Entry {
  std::uint64_t id = 0;
  std::string labels;  // pre-rendered `{...}` for a fixed sample
  ValueFn value;       // fixed sample
  CollectFn collect;   // or a collector
};

struct MetricsRegistry::Family {
  std::string name;
  MetricType type;
  std::string help;
  std::vector<std::string> label_name_storage;
  std::vector<std::string_view> label_names;
  std::vector<Entry> entries;
};

MetricsRegistry::Handle::Handle(Handle&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}

MetricsRegistry::Handle& MetricsRegistry::Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    Reset();
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

void MetricsRegistry::Handle::Reset() {
  if (registry_ != nullptr) std::exchange(registry_, nullptr)->Remove(id_);
}

MetricsRegistry::MetricsRegistry() = default;

MetricsRegistry::~MetricsRegistry() = default;

Status MetricsRegistry::Declare(const MetricFamily& family) {
  if (!IsValidMetricName(family.name)) {
    return Status::InvalidArgument(
        fmt::format("metric name '{}' must be mxward_ followed by [a-z0-9_]", family.name));
  }
  for (std::string_view l : family.label_names) {
    if (!IsAllowedLabelName(l)) {
      return Status::InvalidArgument(fmt::format(
          "metric {}: label '{}' is not one of the allowed label names", family.name, l));
    }
  }
  // The registry's own counter is always rendered, last (see Render); declaring it is a no-op.
  if (family.name == metric::kRejectedSamples) return Status::Ok();
  MutexLock lock(mu_);
  for (const auto& f : families_) {
    if (f->name != family.name) continue;
    if (f->type == family.type && f->label_names.size() == family.label_names.size() &&
        std::equal(f->label_names.begin(), f->label_names.end(), family.label_names.begin())) {
      return Status::Ok();
    }
    return Status::AlreadyExists(
        fmt::format("metric {} is already declared with another type or labels", family.name));
  }
  auto f = std::make_unique<Family>();
  f->name = family.name;
  f->type = family.type;
  f->help = family.help;
  f->label_name_storage.assign(family.label_names.begin(), family.label_names.end());
  for (const auto& s : f->label_name_storage) f->label_names.push_back(s);
  families_.push_back(std::move(f));
  return Status::Ok();
}

void MetricsRegistry::DeclareStandardFamilies() {
  for (const MetricFamily& f : StandardFamilies()) {
    Status s = Declare(f);
    assert(s.ok());
    (void)s;
  }
}

bool MetricsRegistry::IsSafeLabelValue(std::string_view value) {
  if (value.empty() || value.size() > 64) return false;
  return std::all_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != '@';
  });
}

Result<MetricsRegistry::Handle> MetricsRegistry::AddEntry(std::string_view family, Entry entry) {
  MutexLock lock(mu_);
  for (auto& f : families_) {
    if (f->name != family) continue;
    entry.id = next_id_++;
    f->entries.push_back(std::move(entry));
    return Handle(this, f->entries.back().id);
  }
  return Status::NotFound(fmt::format("metric {} is not declared", family));
}

Result<MetricsRegistry::Handle> MetricsRegistry::Add(std::string_view family,
                                                     std::vector<std::string> label_values,
                                                     ValueFn fn) {
  std::vector<std::string_view> names;
  {
    MutexLock lock(mu_);
    auto it = std::find_if(families_.begin(), families_.end(),
                           [&](const auto& f) { return f->name == family; });
    if (it == families_.end()) {
      return Status::NotFound(fmt::format("metric {} is not declared", family));
    }
    names = (*it)->label_names;  // views into the family, which lives as long as the registry
  }
  if (label_values.size() != names.size()) {
    return Status::InvalidArgument(fmt::format("metric {} takes {} label value(s), got {}", family,
                                               names.size(), label_values.size()));
  }
  for (std::size_t i = 0; i < label_values.size(); ++i) {
    if (!IsSafeLabelValue(label_values[i])) {
      return Status::InvalidArgument(fmt::format(
          "metric {}: value for label '{}' must be 1-64 printable characters without spaces or "
          "'@'",
          family, names[i]));
    }
  }
  Entry e;
  e.labels = FormatLabels(names, {label_values.begin(), label_values.end()});
  e.value = std::move(fn);
  return AddEntry(family, std::move(e));
}

Result<MetricsRegistry::Handle> MetricsRegistry::AddAtomic(
    std::string_view family, std::vector<std::string> label_values,
    const std::atomic<std::uint64_t>* value) {
  return Add(family, std::move(label_values),
             [value] { return static_cast<double>(value->load(std::memory_order_relaxed)); });
}

Result<MetricsRegistry::Handle> MetricsRegistry::AddAtomic(std::string_view family,
                                                           std::vector<std::string> label_values,
                                                           const std::atomic<std::int64_t>* value) {
  return Add(family, std::move(label_values),
             [value] { return static_cast<double>(value->load(std::memory_order_relaxed)); });
}

Result<MetricsRegistry::Handle> MetricsRegistry::AddCollector(std::string_view family,
                                                              CollectFn fn) {
  Entry e;
  e.collect = std::move(fn);
  return AddEntry(family, std::move(e));
}

void MetricsRegistry::Remove(std::uint64_t id) {
  MutexLock lock(mu_);
  for (auto& f : families_) {
    auto it = std::find_if(f->entries.begin(), f->entries.end(),
                           [id](const Entry& e) { return e.id == id; });
    if (it != f->entries.end()) {
      f->entries.erase(it);
      return;
    }
  }
}

std::string MetricsRegistry::Render() const {
  MutexLock lock(mu_);
  std::string out;
  out.reserve(4096);
  for (const auto& f : families_) {
    out.append("# HELP ").append(f->name).push_back(' ');
    AppendEscapedHelp(&out, f->help);
    out.append("\n# TYPE ").append(f->name);
    out.append(f->type == MetricType::kCounter ? " counter\n" : " gauge\n");
    for (const Entry& e : f->entries) {
      if (e.value) {
        out.append(f->name).append(e.labels).push_back(' ');
        AppendValue(&out, e.value());
        out.push_back('\n');
        continue;
      }
      const std::vector<std::string_view>& names = f->label_names;
      e.collect([&](const std::vector<std::string_view>& values, double v) REQUIRES(mu_) {
        bool safe = values.size() == names.size();
        for (std::size_t i = 0; safe && i < values.size(); ++i) {
          safe = IsSafeLabelValue(values[i]);
        }
        if (!safe) {
          ++rejected_samples_;
          return;
        }
        out.append(f->name).append(FormatLabels(names, values)).push_back(' ');
        AppendValue(&out, v);
        out.push_back('\n');
      });
    }
  }
  // The registry's own counter comes last so it includes this scrape's rejections.
  for (const MetricFamily& f : StandardFamilies()) {
    if (f.name != metric::kRejectedSamples) continue;
    out.append("# HELP ").append(f.name).push_back(' ');
    AppendEscapedHelp(&out, f.help);
    out.append("\n# TYPE ").append(f.name).append(" counter\n");
    out.append(f.name).push_back(' ');
    AppendValue(&out, static_cast<double>(rejected_samples_));
    out.push_back('\n');
  }
  return out;
}

}  // namespace mxward
