// IncidentRecorder: the IncidentSink the pipeline hands incidents to. It queues them and writes them
// to the IncidentStore in batches on its own thread, so the hot path never waits on SQLite, then
// tells the action dispatcher that new actions are pending.
//
// The queue is bounded; when it is full (the disk stalls for a long time) OnIncident blocks, which
// slows ingestion down (backpressure to TCP senders) rather than losing an incident. Failed writes
// are retried with a delay and counted; incidents stay queued meanwhile.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mxward/incident_store.h"
#include "mxward/playbook_engine.h"
#include "mxward/time.h"

namespace mxward {

struct RecorderStats {
  std::atomic<std::uint64_t> recorded{0};
  std::atomic<std::uint64_t> write_errors{0};
  std::atomic<std::uint64_t> queued{0};
};

class IncidentRecorder final : public IncidentSink {
 public:
  // on_recorded runs on the recorder's thread after each committed batch (dispatcher Notify).
  IncidentRecorder(std::unique_ptr<IncidentStore> store, const Clock* clock,
                   std::function<void()> on_recorded, std::size_t queue_capacity = 100'000);
  ~IncidentRecorder() override;

  void OnIncident(Incident incident) override;
  // Adds to the hourly event counts written with the next batch (called by the pipeline).
  void AddEventCounts(UnixMicros hour, const std::vector<std::pair<std::string, std::int64_t>>& c);
  // Learned baselines of `novel` playbooks (PlaybookEngine::TakeDirtyBaselines), written with the
  // next batch.
  void AddBaselines(std::vector<BaselineBatch> batches);
  // Blocks until everything queued so far is written (or the recorder is stopped).
  void Flush();
  // Writes what is queued, then stops the thread.
  void Stop();
  const RecorderStats& stats() const { return stats_; }
  const Status& last_error() const { return last_error_; }

 private:
  void Run();

  std::unique_ptr<IncidentStore> store_;
  const Clock* clock_;
  std::function<void()> on_recorded_;
  std::size_t capacity_;

  std::mutex mu_;
  std::condition_variable work_cv_;   // the writer waits for work
  std::condition_variable space_cv_;  // producers wait for room; Flush waits for empty
  std::deque<Incident> queue_;
  std::vector<std::pair<UnixMicros, std::vector<std::pair<std::string, std::int64_t>>>> counts_;
  std::vector<BaselineBatch> baselines_;
  std::uint64_t enqueued_ = 0;
  std::uint64_t written_ = 0;
  bool stopping_ = false;
  bool stopped_ = false;
  Status last_error_;
  RecorderStats stats_;
  std::thread thread_;
};

}  // namespace mxward
