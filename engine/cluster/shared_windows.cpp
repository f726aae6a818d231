#include "engine/cluster/shared_windows.h"

#include <algorithm>

namespace mxward {

WindowEventBatch::WindowEventBatch(std::size_t capacity, std::function<void()> on_half_full)
    : capacity_(std::max<std::size_t>(capacity, 1)), on_half_full_(std::move(on_half_full)) {
  MutexLock lock(mu_);
  slots_.resize(capacity_);
}

bool WindowEventBatch::Add(std::string_view playbook, std::string_view key, UnixMicros time,
                           std::uint32_t weight, WindowEventKind kind) {
  bool wake = false;
  {
    MutexLock lock(mu_);
    if (filled_ >= slots_.size()) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    WindowEvent& slot = slots_[filled_++];
    slot.playbook.assign(playbook);  // reuses the slot's capacity: no allocation once warm
    slot.key.assign(key);
    slot.time_us = time;
    slot.weight = weight;
    slot.kind = kind;
    wake = filled_ == capacity_ / 2;
  }
  added_.fetch_add(1, std::memory_order_relaxed);
  if (wake && on_half_full_) on_half_full_();
  return true;
}

std::size_t WindowEventBatch::Take(std::vector<WindowEvent>* spent) {
  if (spent->size() != capacity_) spent->resize(capacity_);
  MutexLock lock(mu_);
  const std::size_t n = filled_;
  if (n == 0) return 0;
  slots_.swap(*spent);
  filled_ = 0;
  return n;
}

std::int64_t ClaimLeaseSeconds(const Incident& incident) {
  const std::int64_t life =
      incident.open_until > incident.last_seen
          ? (incident.open_until - incident.last_seen + kMicrosPerSecond - 1) / kMicrosPerSecond
          : 0;
  return std::max<std::int64_t>({life, incident.window_seconds, 1});
}

}  // namespace mxward
