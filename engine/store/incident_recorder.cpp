#include "mxward/incident_recorder.h"

#include <pthread.h>

#include <algorithm>
#include "engine/base/one_line.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mxward {

namespace {

RateLimitedLogOptions LogOptions(const RecorderOptions& o) {
  RateLimitedLogOptions r;
  r.interval_seconds = o.log_interval_seconds;
  r.burst = 1;
  r.max_keys = 8;
  return r;
}

RecorderOptions BlockingOptions(std::size_t capacity) {
  RecorderOptions o;
  o.overflow = OverflowPolicy::kBlock;
  o.max_held = capacity;
  o.linger = std::chrono::milliseconds(50);
  return o;
}

}  // namespace

IncidentRecorder::IncidentRecorder(std::unique_ptr<IncidentStore> store, const Clock* clock,
                                   std::function<void()> on_recorded, RecorderOptions options)
    : store_(std::move(store)),
      clock_(clock),
      on_recorded_(std::move(on_recorded)),
      options_(options),
      log_(LogOptions(options), nullptr, clock) {
  if (options_.max_held == 0) options_.max_held = 1;
  if (options_.batch_size == 0) options_.batch_size = 1;
  // spdlog's registry is built on first use. Build it here, before the writer thread exists, so
  // its construction happens-before every use on either thread in a way TSan can see (inside
  // libspdlog, uninstrumented, the guard's fast path hides the edge; tests/tsan.supp).
  (void)spdlog::default_logger_raw();
  thread_ = std::thread([this] { Run(); });
}

IncidentRecorder::IncidentRecorder(std::unique_ptr<IncidentStore> store, const Clock* clock,
                                   std::function<void()> on_recorded, std::size_t queue_capacity)
    : IncidentRecorder(std::move(store), clock, std::move(on_recorded),
                       BlockingOptions(queue_capacity)) {}

IncidentRecorder::~IncidentRecorder() { Stop(); }

std::size_t IncidentRecorder::RoomLimit() const {
  return options_.overflow == OverflowPolicy::kBlock
             ? options_.max_held
             : std::min(options_.full_evidence_held, options_.max_held);
}

void IncidentRecorder::UpdateHeld() {
  stats_.held.store(queue_.size() + in_flight_, std::memory_order_relaxed);
}

void IncidentRecorder::ShedEvidence(Incident* incident) {
  auto& ev = incident->evidence;
  const std::size_t keep = options_.shed_evidence_keep;
  if (ev.size() <= keep) return;
  // The first lines say how it started, the last one how it ended.
  const std::size_t head = keep > 1 ? keep - 1 : keep;
  const std::size_t tail = keep - head;
  const std::size_t shed = ev.size() - keep;
  EvidenceLine note;
  note.time = ev[head].time;
  note.text = fmt::format(
      "mxward: {} evidence line(s) not kept: more than {} incidents were waiting in memory for "
      "the store",
      shed, options_.full_evidence_held);
  std::vector<EvidenceLine> kept;
  kept.reserve(keep + 1);
  for (std::size_t i = 0; i < head; ++i) kept.push_back(std::move(ev[i]));
  kept.push_back(std::move(note));
  for (std::size_t i = ev.size() - tail; i < ev.size(); ++i) kept.push_back(std::move(ev[i]));
  ev = std::move(kept);
  stats_.evidence_shed.fetch_add(shed, std::memory_order_relaxed);
}

void IncidentRecorder::OnIncident(Incident incident) {
  MutexLock lock(mu_);
  if (options_.overflow == OverflowPolicy::kBlock) {
    space_cv_.wait(lock, [&]() REQUIRES(mu_) {
      return queue_.size() + in_flight_ < options_.max_held || stopping_;
    });
  } else {
    // While the store is writable the writer is only behind: wait for it (push back). Only a
    // store that cannot be written lets incidents pile up in memory, then be dropped.
    const std::size_t pushback_at = RoomLimit();
    if (queue_.size() + in_flight_ >= pushback_at && last_error_.ok() && !stopping_) {
      stats_.pushed_back.fetch_add(1, std::memory_order_relaxed);
      space_cv_.wait(lock, [&]() REQUIRES(mu_) {
        return queue_.size() + in_flight_ < pushback_at || stopping_ || !last_error_.ok();
      });
    }
    const std::size_t held = queue_.size() + in_flight_;
    if (held >= options_.max_held) {
      const std::uint64_t dropped = stats_.dropped.fetch_add(1, std::memory_order_relaxed) + 1;
      stats_.last_dropped_at.store(clock_->Now(), std::memory_order_relaxed);
      const std::string why = last_error_.ok() ? "stopping" : last_error_.message();
      lock.unlock();
      log_.Error("store.dropped",
                 "store: {} incidents held in memory (the limit) and the store cannot be written "
                 "({}): an incident of playbook {} was not kept ({} dropped so far); its actions "
                 "will not run",
                 held, why, incident.playbook, dropped);
      return;
    }
    if (held >= options_.full_evidence_held) ShedEvidence(&incident);
  }
  queue_.push_back(std::move(incident));
  ++enqueued_;
  UpdateHeld();
  work_cv_.notify_one();
}

void IncidentRecorder::AddEventCounts(UnixMicros hour,
                                      const std::vector<std::pair<std::string, std::int64_t>>& c) {
  if (c.empty()) return;
  MutexLock lock(mu_);
  counts_.emplace_back(hour, c);
  work_cv_.notify_one();
}

void IncidentRecorder::AddBaselines(std::vector<BaselineBatch> batches) {
  if (batches.empty()) return;
  MutexLock lock(mu_);
  for (auto& b : batches) baselines_.push_back(std::move(b));
  work_cv_.notify_one();
}

void IncidentRecorder::BeginInputBatch(std::string_view input) {
  MutexLock lock(mu_);
  for (auto& [name, mark] : open_batches_) {
    if (name == input) return;  // still open: its start stays
  }
  open_batches_.emplace_back(std::string(input), enqueued_);
}

void IncidentRecorder::SaveInputCursor(std::string_view input, std::string_view cursor) {
  MutexLock lock(mu_);
  std::uint64_t from = enqueued_;
  for (const auto& [name, mark] : open_batches_) {
    if (name == input) from = mark;
  }
  std::erase_if(open_batches_, [&](const auto& b) { return b.first == input; });
  work_cv_.notify_one();
  if (cursor.empty()) return;  // the batch is closed; there is no position to keep
  cursors_.push_back(PendingCursor{std::string(input), std::string(cursor), from, enqueued_});
  work_cv_.notify_one();
}

std::uint64_t IncidentRecorder::WritableLimit() const {
  std::uint64_t limit = UINT64_MAX;
  if (stopping_) return limit;  // a last write takes everything
  // A full queue is written whatever batch is open: a producer waiting for room (kBlock, or
  // kHold pushed back) inside an input batch must not wait for that batch's own end.
  if (queue_.size() + in_flight_ >= RoomLimit()) return limit;
  for (const auto& [name, mark] : open_batches_) limit = std::min(limit, mark);
  return limit;
}

void IncidentRecorder::Flush() {
  MutexLock lock(mu_);
  const std::uint64_t target = enqueued_;
  ++flushing_;
  work_cv_.notify_one();
  space_cv_.wait(lock, [&]() REQUIRES(mu_) {
    return (written_ >= target && counts_.empty() && baselines_.empty() && cursors_.empty() &&
            !writing_) ||
           stopped_;
  });
  --flushing_;
}

bool IncidentRecorder::Flush(std::chrono::milliseconds timeout) {
  MutexLock lock(mu_);
  const std::uint64_t target = enqueued_;
  ++flushing_;
  work_cv_.notify_one();
  auto done = [&]() REQUIRES(mu_) {
    return written_ >= target && counts_.empty() && baselines_.empty() && cursors_.empty() &&
           !writing_;
  };
  space_cv_.wait_for(lock, timeout, [&]() REQUIRES(mu_) { return done() || stopped_; });
  --flushing_;
  return done();
}

std::size_t IncidentRecorder::Stop() {
  {
    MutexLock lock(mu_);
    if (!thread_.joinable()) return queue_.size();
    stopping_ = true;
  }
  work_cv_.notify_all();
  space_cv_.notify_all();
  thread_.join();
  log_.Flush(/*force=*/true);
  MutexLock lock(mu_);  // the writer is gone; the lock is for the analysis, never contended
  const std::size_t left = queue_.size();
  if (left > 0) {
    spdlog::error("stopping with {} incident(s) not written to {}: {}", left, store_->path(),
                  last_error_.ToString());
  }
  return left;
}

// The audit trail: one line per incident once it is in the store (so its number is real), with
// what an admin greps for (fail2ban's "Ban 198.51.100.77"): playbook, key, why, what it does.
// Never evidence text; the key is the client's text (a user name), so it is made one line.
void IncidentRecorder::LogOpened(const Incident& inc) {
  std::string actions;
  for (const ActionRequest& a : inc.actions) {
    if (!actions.empty()) actions += ", ";
    actions += a.type;
    if (a.dry_run) actions += " (dry-run)";
  }
  if (inc.merged) {
    // A repeat within the open incident's life: its ban stands, nothing new runs. Debug only, so
    // a flood of repeats costs no log line each.
    spdlog::debug("incident #{} triggered again: {} {}={} ({})", inc.id, inc.playbook, inc.key_kind,
                  OneLine(inc.key, 256), OneLine(inc.trigger, 200));
    return;
  }
  const auto level = inc.severity >= Severity::kHigh ? spdlog::level::warn : spdlog::level::info;
  spdlog::log(level, "incident #{} opened: {} {}={} ({}){}{}", inc.id, inc.playbook, inc.key_kind,
              OneLine(inc.key, 256), OneLine(inc.trigger, 200),
              inc.mode == PlaybookMode::kDryRun ? " [playbook in dry-run]" : "",
              actions.empty() ? std::string() : "; actions: " + actions);
}

std::uint64_t IncidentRecorder::recorded(std::string_view playbook) const {
  MutexLock lock(mu_);
  auto it = recorded_by_playbook_.find(playbook);
  return it == recorded_by_playbook_.end() ? 0 : it->second;
}

Status IncidentRecorder::store_error() const {
  MutexLock lock(mu_);
  if (last_error_.ok()) return last_error_;
  return Status::Unavailable(
      fmt::format("cannot write incidents to {}: {}; {} incident(s) held in memory", store_->path(),
                  last_error_.message(), queue_.size() + in_flight_));
}

void IncidentRecorder::ReportFailure(const Status& st, std::size_t held) {
  const UnixMicros now = clock_->Now();
  if (failed_attempts_ == 1) {
    last_failure_log_ = now;
    spdlog::error(
        "cannot write incidents to {}: {}; {}{} incident(s) held in memory and retried "
        "every {} ms, their actions run once written",
        store_->path(), st.ToString(),
        options_.overflow == OverflowPolicy::kHold
            ? "detection and the bans already in place continue, "
            : "",
        held, options_.retry_interval.count());
    return;
  }
  if (now - last_failure_log_ < options_.log_interval_seconds * kMicrosPerSecond) return;
  last_failure_log_ = now;
  spdlog::error(
      "store {} still cannot be written ({} attempts since {} s): {}; {} incident(s) held, {} "
      "evidence line(s) shed, {} incident(s) dropped",
      store_->path(), failed_attempts_,
      (now - stats_.failing_since.load(std::memory_order_relaxed)) / kMicrosPerSecond,
      st.ToString(), held, stats_.evidence_shed.load(std::memory_order_relaxed),
      stats_.dropped.load(std::memory_order_relaxed));
}

void IncidentRecorder::ReportRecovery(std::size_t written) {
  const UnixMicros since = stats_.failing_since.load(std::memory_order_relaxed);
  spdlog::info("store {} is writable again after {} s: {} held incident(s) written, actions follow",
               store_->path(), since > 0 ? (clock_->Now() - since) / kMicrosPerSecond : 0, written);
}

void IncidentRecorder::Run() {
  // Named for top -H, perf and the latency bench's CPU per thread.
  pthread_setname_np(pthread_self(), "mxw-recorder");
  MutexLock lock(mu_);
  std::size_t written_since_failure = 0;
  for (;;) {
    work_cv_.wait(lock, [&]() REQUIRES(mu_) {
      return stopping_ || (!queue_.empty() && written_ < WritableLimit()) || !counts_.empty() ||
             !baselines_.empty() || !cursors_.empty();
    });
    if (queue_.empty() && counts_.empty() && baselines_.empty() && cursors_.empty()) {
      if (stopping_) break;
      continue;
    }
    if (options_.linger.count() > 0 && failed_attempts_ == 0) {
      // Replay: a full batch is one commit; a few incidents at a time cost one commit each.
      work_cv_.wait_for(lock, options_.linger, [&]() REQUIRES(mu_) {
        return stopping_ || flushing_ > 0 || queue_.size() >= options_.batch_size ||
               queue_.size() + in_flight_ >= RoomLimit();
      });
    }
    const std::uint64_t limit = WritableLimit();
    std::vector<Incident> batch;
    batch.reserve(std::min(queue_.size(), options_.batch_size));
    while (!queue_.empty() && batch.size() < options_.batch_size &&
           written_ + batch.size() < limit) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    // A write batch never ends inside an input batch whose cursor is known: it takes the rest of
    // that input batch, so its incidents and its cursor go in one transaction.
    for (const PendingCursor& c : cursors_) {
      while (c.from < written_ + batch.size() && written_ + batch.size() < c.after &&
             !queue_.empty()) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    in_flight_ = batch.size();
    auto counts = std::move(counts_);
    counts_.clear();
    auto baselines = std::move(baselines_);
    baselines_.clear();
    // The cursors every incident before which is in this batch or already written.
    std::vector<PendingCursor> cursors;
    while (!cursors_.empty() && cursors_.front().after <= written_ + batch.size()) {
      cursors.push_back(std::move(cursors_.front()));
      cursors_.pop_front();
    }
    if (batch.empty() && counts.empty() && baselines.empty() && cursors.empty()) {
      // Only incidents of an open input batch are waiting: its cursor will wake us.
      work_cv_.wait_for(lock, options_.retry_interval);
      continue;
    }
    writing_ = true;
    lock.unlock();

    // ONE transaction: the counts, baselines, incidents and the positions after the lines that
    // produced them. All or nothing: on failure everything is kept for the next attempt.
    Status st = store_->InTransactionNoSavepoints([&]() -> Status {
      for (auto& [hour, c] : counts) MXWARD_RETURN_IF_ERROR(store_->AddEventCounts(hour, c));
      for (auto& b : baselines) {
        MXWARD_RETURN_IF_ERROR(store_->SaveBaselines(b.playbook, b.entries));
      }
      if (!batch.empty()) MXWARD_RETURN_IF_ERROR(store_->RecordIncidents(&batch, clock_->Now()));
      std::vector<const PendingCursor*> newest;  // per input, the last given
      for (const auto& c : cursors) {
        auto same = std::find_if(newest.begin(), newest.end(),
                                 [&](const PendingCursor* n) { return n->input == c.input; });
        if (same != newest.end()) {
          *same = &c;
        } else {
          newest.push_back(&c);
        }
      }
      for (const PendingCursor* c : newest) {
        MXWARD_RETURN_IF_ERROR(store_->SaveInputCursor(c->input, c->cursor, clock_->Now()));
      }
      return Status::Ok();
    });
    if (st.ok()) {  // written: never re-add them
      counts.clear();
      baselines.clear();
      cursors.clear();
    }
    if (st.ok()) {
      for (const Incident& inc : batch) LogOpened(inc);
    }

    lock.lock();
    in_flight_ = 0;
    writing_ = false;
    if (!st.ok()) {
      // Keep everything for the next attempt: put the batch back in front, in order.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
      for (auto& c : counts) counts_.push_back(std::move(c));
      for (auto& b : baselines) baselines_.push_back(std::move(b));
      for (auto it = cursors.rbegin(); it != cursors.rend(); ++it) {
        cursors_.push_front(std::move(*it));
      }
      UpdateHeld();
      last_error_ = st;
      ++failed_attempts_;
      stats_.write_errors.fetch_add(1, std::memory_order_relaxed);
      stats_.store_writable.store(0, std::memory_order_relaxed);
      if (failed_attempts_ == 1 && !recovering_) {
        stats_.failing_since.store(clock_->Now(), std::memory_order_relaxed);
        written_since_failure = 0;
      }
      const std::size_t held = queue_.size();
      // Producers pushed back while the store was writable now hold (or drop) instead of waiting.
      space_cv_.notify_all();
      lock.unlock();
      ReportFailure(st, held);
      lock.lock();
      if (stopping_) break;  // give up only when asked to stop; Stop() reports what is left
      work_cv_.wait_for(lock, options_.retry_interval, [&]() REQUIRES(mu_) { return stopping_; });
      continue;
    }
    written_ += batch.size();
    stats_.recorded.fetch_add(batch.size(), std::memory_order_relaxed);
    for (const Incident& inc : batch) {
      if (inc.merged) {
        stats_.repeats.fetch_add(1, std::memory_order_relaxed);
      } else {
        ++recorded_by_playbook_[inc.playbook];
      }
    }
    UpdateHeld();
    space_cv_.notify_all();
    if (failed_attempts_ > 0) {
      // Writable again: healthy from now on; one log line once everything held is out.
      last_error_ = Status::Ok();
      stats_.store_writable.store(1, std::memory_order_relaxed);
      failed_attempts_ = 0;
      recovering_ = true;
    }
    if (recovering_) {
      written_since_failure += batch.size();
      if (queue_.empty()) {
        const std::size_t n = written_since_failure;
        lock.unlock();
        ReportRecovery(n);
        lock.lock();
        recovering_ = false;
        stats_.failing_since.store(0, std::memory_order_relaxed);
      }
    }
    if (!batch.empty() && on_recorded_) {
      lock.unlock();
      on_recorded_();
      lock.lock();
    }
  }
  stopped_ = true;
  space_cv_.notify_all();
}

void IncidentRecorder::RegisterMetrics(MetricsRegistry* registry,
                                       std::vector<MetricsRegistry::Handle>* handles) const {
  static const MetricFamily kFamilies[] = {
      {metric::kStoreHeldIncidents,
       MetricType::kGauge,
       "incidents waiting in memory to be written to the store",
       {}},
      {metric::kStoreEvidenceShed,
       MetricType::kCounter,
       "evidence lines not kept because too many incidents waited for the store",
       {}},
      {metric::kStoreIncidentsDropped,
       MetricType::kCounter,
       "incidents lost because the store stayed unwritable and the memory limit was reached",
       {}},
      {metric::kStorePushback,
       MetricType::kCounter,
       "incidents the pipeline waited to hand over because the store writer was behind",
       {}},
      {metric::kStoreRepeats,
       MetricType::kCounter,
       "triggers that updated their key's open incident instead of opening another",
       {}},
      {metric::kStoreWritable,
       MetricType::kGauge,
       "1 when the last write to the store succeeded, 0 while it fails (disk full, ...)",
       {}},
  };
  for (const auto& f : kFamilies) (void)registry->Declare(f);
  auto keep = [&](Result<MetricsRegistry::Handle> h) {
    if (h.ok()) handles->push_back(std::move(*h));
  };
  keep(registry->AddAtomic(metric::kStoreWriteErrors, {}, &stats_.write_errors));
  keep(registry->AddAtomic(metric::kStoreHeldIncidents, {}, &stats_.held));
  keep(registry->AddAtomic(metric::kStoreEvidenceShed, {}, &stats_.evidence_shed));
  keep(registry->AddAtomic(metric::kStoreIncidentsDropped, {}, &stats_.dropped));
  keep(registry->AddAtomic(metric::kStoreWritable, {}, &stats_.store_writable));
  keep(registry->AddAtomic(metric::kStorePushback, {}, &stats_.pushed_back));
  keep(registry->AddAtomic(metric::kStoreRepeats, {}, &stats_.repeats));
}

}  // namespace mxward
