#include "mxward/incident_recorder.h"

#include <chrono>

#include <spdlog/spdlog.h>

namespace mxward {

IncidentRecorder::IncidentRecorder(std::unique_ptr<IncidentStore> store, const Clock* clock,
                                   std::function<void()> on_recorded, std::size_t queue_capacity)
    : store_(std::move(store)),
      clock_(clock),
      on_recorded_(std::move(on_recorded)),
      capacity_(queue_capacity) {
  thread_ = std::thread([this] { Run(); });
}

IncidentRecorder::~IncidentRecorder() { Stop(); }

void IncidentRecorder::OnIncident(Incident incident) {
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] { return queue_.size() < capacity_ || stopping_; });
  queue_.push_back(std::move(incident));
  ++enqueued_;
  stats_.queued.store(queue_.size(), std::memory_order_relaxed);
  work_cv_.notify_one();
}

void IncidentRecorder::AddEventCounts(UnixMicros hour,
                                      const std::vector<std::pair<std::string, std::int64_t>>& c) {
  if (c.empty()) return;
  std::lock_guard lock(mu_);
  counts_.emplace_back(hour, c);
  work_cv_.notify_one();
}

void IncidentRecorder::AddBaselines(std::vector<BaselineBatch> batches) {
  if (batches.empty()) return;
  std::lock_guard lock(mu_);
  for (auto& b : batches) baselines_.push_back(std::move(b));
  work_cv_.notify_one();
}

void IncidentRecorder::Flush() {
  std::unique_lock lock(mu_);
  const std::uint64_t target = enqueued_;
  work_cv_.notify_one();
  space_cv_.wait(lock, [&] {
    return (written_ >= target && counts_.empty() && baselines_.empty()) || stopped_;
  });
}

void IncidentRecorder::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  work_cv_.notify_all();
  space_cv_.notify_all();
  thread_.join();
}

void IncidentRecorder::Run() {
  constexpr std::size_t kBatch = 256;
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] {
      return stopping_ || !queue_.empty() || !counts_.empty() || !baselines_.empty();
    });
    if (queue_.empty() && counts_.empty() && baselines_.empty()) {
      if (stopping_) break;
      continue;
    }
    std::vector<Incident> batch;
    while (!queue_.empty() && batch.size() < kBatch) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    auto counts = std::move(counts_);
    counts_.clear();
    auto baselines = std::move(baselines_);
    baselines_.clear();
    lock.unlock();

    Status st;
    if (!counts.empty() || !baselines.empty()) {
      st = store_->InTransaction([&]() -> Status {
        for (auto& [hour, c] : counts) MXWARD_RETURN_IF_ERROR(store_->AddEventCounts(hour, c));
        for (auto& b : baselines)
          MXWARD_RETURN_IF_ERROR(store_->SaveBaselines(b.playbook, b.entries));
        return Status::Ok();
      });
      if (st.ok()) {  // written: never re-add them
        counts.clear();
        baselines.clear();
      }
    }
    if (st.ok() && !batch.empty()) st = store_->RecordIncidents(&batch, clock_->Now());

    lock.lock();
    if (!st.ok()) {
      // Keep everything for the next attempt: put the batch back in front, in order.
      stats_.write_errors.fetch_add(1, std::memory_order_relaxed);
      if (last_error_.ToString() != st.ToString()) {
        spdlog::error("cannot write incidents to {}: {} (will retry)", store_->path(),
                      st.ToString());
      }
      last_error_ = st;
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
      for (auto& c : counts) counts_.push_back(std::move(c));
      for (auto& b : baselines) baselines_.push_back(std::move(b));
      if (stopping_) break;  // give up only when asked to stop; the daemon reports it
      work_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
      continue;
    }
    last_error_ = Status::Ok();
    written_ += batch.size();
    stats_.recorded.fetch_add(batch.size(), std::memory_order_relaxed);
    stats_.queued.store(queue_.size(), std::memory_order_relaxed);
    space_cv_.notify_all();
    if (!batch.empty() && on_recorded_) {
      lock.unlock();
      on_recorded_();
      lock.lock();
    }
  }
  stopped_ = true;
  space_cv_.notify_all();
}

}  // namespace mxward
