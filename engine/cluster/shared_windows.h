// Shared windows (issue 18, docs/cluster.md "Shared windows"): the two pieces that sit between
// the engine's thread and the cluster link's thread.
//
// WindowEventBatch: the bounded in-memory batch of counted events of `shared = true` playbooks.
// The engine's thread adds to it (through the daemon's SharedWindowSink) without I/O and, once its
// slots have grown to the keys' lengths, without allocation: a slot's strings keep their capacity
// across batches, because the link takes the whole vector in exchange for its spent one. At the
// cap further events are dropped and counted, never waited for: publication must not slow
// detection. The link takes the batch on its own schedule (every publish poll, or when woken at
// half the cap) and writes it in one statement.
//
// ClaimingIncidentSink: the incident sink in front of the recorder. An incident of a shared
// playbook is not opened here at once: it goes to the link, which claims (playbook, key) in the
// database, and only the node whose claim wins opens it (the link hands it back to the engine's
// thread); the others drop it, and the ban reaches them through the decision log. Incidents of
// other playbooks pass straight through.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "engine/cluster/decision_log.h"
#include "mxward/incident.h"
#include "mxward/thread_annotations.h"
#include "mxward/time.h"

namespace mxward {

class WindowEventBatch {
 public:
  // capacity: the most events one batch holds; on_half_full is called (on the adding thread)
  // when a batch reaches half of it, to wake the link early.
  explicit WindowEventBatch(std::size_t capacity, std::function<void()> on_half_full = {});

  // The engine's thread. False when the batch is full: the event is dropped and counted, and the
  // first drop since the last warning is said once (rate limited by the caller's counter).
  bool Add(std::string_view playbook, std::string_view key, UnixMicros time, std::uint32_t weight,
           WindowEventKind kind = WindowEventKind::kCount) EXCLUDES(mu_);
  // The link's thread: swaps the filled batch into *spent (a vector of the same capacity, whose
  // slots keep their strings' capacity for the next round) and returns how many of its first
  // slots are filled.
  std::size_t Take(std::vector<WindowEvent>* spent) EXCLUDES(mu_);

  std::size_t capacity() const { return capacity_; }
  std::int64_t added() const { return added_.load(std::memory_order_relaxed); }
  std::int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  const std::size_t capacity_;
  std::function<void()> on_half_full_;
  Mutex mu_;
  std::vector<WindowEvent> slots_ GUARDED_BY(mu_);
  std::size_t filled_ GUARDED_BY(mu_) = 0;
  std::atomic<std::int64_t> added_{0};
  std::atomic<std::int64_t> dropped_{0};
};

class ClaimingIncidentSink final : public IncidentSink {
 public:
  // inner: where incidents are opened (the recorder, or the policy decision feed in front of
  // it). is_shared: whether a playbook shares its windows (asked of the running engine).
  // claim: hands a shared playbook's incident to the link, which calls back on the engine's
  // thread with the incident to open, or drops it.
  ClaimingIncidentSink(IncidentSink* inner, std::function<bool(std::string_view)> is_shared,
                       std::function<void(Incident)> claim)
      : inner_(inner), is_shared_(std::move(is_shared)), claim_(std::move(claim)) {}

  void OnIncident(Incident incident) override {
    if (is_shared_(incident.playbook)) {
      claim_(std::move(incident));
    } else {
      inner_->OnIncident(std::move(incident));
    }
  }
  IncidentSink* inner() const { return inner_; }

 private:
  IncidentSink* inner_;
  std::function<bool(std::string_view)> is_shared_;
  std::function<void(Incident)> claim_;
};

// How long a node's claim on (playbook, key) holds the incident: the incident's life here (its
// cooldown or longest action, Incident::open_until) and at least the window, so the other nodes'
// windows, which reach the threshold with the same events a little later, find it held.
std::int64_t ClaimLeaseSeconds(const Incident& incident);

}  // namespace mxward
