// PlaybookEngine: the compiled playbooks of rules.d/*.toml and their window state.
//
// Load() compiles the TOML into plain objects once; OnEvent() routes an event to the playbooks that
// watch its type, updates their per-key window state and, when a trigger fires, hands an Incident
// to the IncidentSink. Owned and called by one thread (the pipeline's); no I/O inside OnEvent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mxward/config.h"
#include "mxward/event.h"
#include "mxward/incident.h"
#include "mxward/status.h"

namespace mxward {

class IncidentSink {
 public:
  virtual ~IncidentSink() = default;
  virtual void OnIncident(Incident incident) = 0;
};

struct EngineStats {
  std::uint64_t events = 0;
  std::uint64_t triggers = 0;
  std::uint64_t tracked_keys = 0;
  std::uint64_t evictions = 0;
  std::uint64_t allowlisted = 0;
};

class PlaybookEngine {
 public:
  // Compiles every playbook *.toml directly inside the config's rule_dirs (parsers/ is not read).
  // Problems go to diagnostics (file:line:col) and make it return InvalidArgument.
  static Result<std::unique_ptr<PlaybookEngine>> Load(const Config& config,
                                                      std::vector<Diagnostic>* diagnostics);
  virtual ~PlaybookEngine() = default;

  virtual void OnEvent(const Event& event, IncidentSink* sink) = 0;
  // True when some playbook counts this event (used by `explain` for "matched").
  virtual bool Watches(const Event& event) const = 0;
  virtual std::size_t playbook_count() const = 0;
  virtual const EngineStats& stats() const = 0;
};

}  // namespace mxward
