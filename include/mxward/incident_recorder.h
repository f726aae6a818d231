// IncidentRecorder: the IncidentSink the pipeline hands incidents to. It holds them in memory and
// writes them to the IncidentStore in batches on its own thread, so the hot path never waits on
// SQLite, then tells the action dispatcher that new actions are pending.
//
// Write policy: the writer takes whatever is held (up to 256 incidents) as soon as it is idle and
// writes it, with the event counts, baselines and input cursors that wait, in ONE transaction
// (one commit: most of a small batch's cost is the commit's WAL pages); in the daemon it never
// waits for a timer while work is held, so one incident on a quiet server is written at once and
// a burst is written in a few large transactions. Replay (kBlock, RecorderOptions::linger) waits
// up to `linger` for a full batch instead: nobody waits for its incidents, and a batch of 256
// costs one commit where 2-3 incidents at a time cost a hundred. A
// trigger of a key whose open incident is still in its life updates that incident in the store
// (IncidentStore::RecordIncidents): a flood costs rows per key, not per trigger.
//
// A burst while the store is writable (OverflowPolicy::kHold, the daemon) pushes back: once
// min(full_evidence_held, max_held) incidents wait for the writer, OnIncident waits for room, so
// the pipeline's thread stops reading its inputs (TCP and Unix stream senders are slowed by
// their socket buffers, rsyslog queues; UDP datagrams overflow the kernel buffer and are counted
// by the listener). Nothing is dropped and no evidence is shed while the store can be written;
// the waits are counted (stats().pushed_back, mxward_store_pushback_total). The wait ends when
// the writer made room, when a write fails (then the rules below apply) or at Stop(); the
// writer never waits for the pipeline's thread (a full queue is written whatever input batch is
// open), so this cannot deadlock.
//
// When the store cannot be written (disk full, read-only file system, permissions), the daemon
// must keep protecting the server. What an admin wants at 3 a.m., and what kHold does then:
//   - Detection never stops: OnIncident does not wait, so windows keep counting and lines keep
//     flowing; bans already in the kernel stay (they carry their own timeouts).
//   - Incidents are held in memory, in order, and retried every retry_interval. Nothing held is
//     lost while the process runs: when space returns, everything is written in order and the
//     dispatcher then runs its actions (new bans wait for the store, because the outbox that
//     makes actions exactly-once lives in it).
//   - Memory stays bounded: beyond full_evidence_held held incidents, a new incident keeps only
//     shed_evidence_keep lines of its evidence (the first ones and the last) plus one line that
//     says how many were shed; the shed lines are counted. Beyond max_held, a new incident is
//     not held at all and is counted as dropped: the one case where something is lost, after
//     max_held incidents (the daemon: [store] max_held_incidents, 50,000 by default, at most
//     ~2 KB each, ~100 MB) of a store that stays unwritable.
//   - It is visible: a log line at the first failure, a reminder at most once a minute while it
//     lasts, one when the store is writable again; metrics (write errors, held incidents, shed
//     evidence lines, dropped incidents, store writable) and store_error() for /healthz. A drop
//     is logged at once with the counts (then a reminder at most every log_interval_seconds) and
//     stamps stats().last_dropped_at, which the daemon's /healthz reads (unhealthy for an hour).
//   - Stop() makes one last attempt; what still cannot be written is reported with its count.
// OverflowPolicy::kBlock (mxward replay, reading files: waiting loses nothing) keeps full
// evidence and makes OnIncident wait for room at max_held instead, whether or not the store can
// be written.
//
// Threads: OnIncident, AddEventCounts and AddBaselines from the pipeline's thread; stats(),
// store_error() and the metrics from any thread; the store is used only by the writer thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mxward/baseline.h"
#include "mxward/incident.h"
#include "mxward/incident_store.h"
#include "mxward/metrics_registry.h"
#include "mxward/rate_limited_log.h"
#include "mxward/thread_annotations.h"
#include "mxward/time.h"

namespace mxward {

enum class OverflowPolicy : std::uint8_t {
  kBlock,  // OnIncident waits for room at max_held (batch replay)
  kHold,   // wait while the store is writable; otherwise hold, shed evidence, drop (the daemon)
};

struct RecorderOptions {
  OverflowPolicy overflow = OverflowPolicy::kBlock;
  std::size_t max_held = 100'000;
  // kHold: held incidents that keep all their evidence; later ones keep shed_evidence_keep lines.
  // Also where a writable store pushes back (at most max_held).
  std::size_t full_evidence_held = 1'000;
  std::size_t shed_evidence_keep = 3;
  std::size_t batch_size = 256;
  // How long the writer waits for a batch to fill before writing a partial one; 0: never (the
  // daemon: a ban's latency). Flush() and Stop() do not wait for it.
  std::chrono::milliseconds linger{0};
  std::chrono::milliseconds retry_interval{1000};
  std::int64_t log_interval_seconds = 60;  // the "still failing" reminder
};

// Read from any thread (relaxed atomics).
struct RecorderStats {
  std::atomic<std::uint64_t> recorded{0};        // incidents written to the store
  std::atomic<std::uint64_t> write_errors{0};    // failed write attempts (each is retried)
  std::atomic<std::uint64_t> held{0};            // incidents in memory, not yet written
  std::atomic<std::uint64_t> evidence_shed{0};   // evidence lines not kept (kHold overflow)
  std::atomic<std::uint64_t> dropped{0};         // incidents not held at max_held (kHold)
  std::atomic<std::uint64_t> store_writable{1};  // 0 while the last write attempt failed
  std::atomic<UnixMicros> failing_since{0};      // wall time of the first failure, 0 if none
  std::atomic<UnixMicros> last_dropped_at{0};    // clock time of the last drop, 0 if none
  std::atomic<std::uint64_t> pushed_back{0};     // OnIncident calls that waited (kHold, writable)
  std::atomic<std::uint64_t> repeats{0};         // written as updates of an open incident
};

// Metric families the recorder exposes (RegisterMetrics declares them).
namespace metric {
inline constexpr std::string_view kStoreHeldIncidents = "mxward_store_held_incidents";
inline constexpr std::string_view kStoreEvidenceShed = "mxward_store_evidence_shed_total";
inline constexpr std::string_view kStoreIncidentsDropped = "mxward_store_incidents_dropped_total";
inline constexpr std::string_view kStoreWritable = "mxward_store_writable";
inline constexpr std::string_view kStorePushback = "mxward_store_pushback_total";
inline constexpr std::string_view kStoreRepeats = "mxward_store_incident_repeats_total";
}  // namespace metric

class IncidentRecorder final : public IncidentSink {
 public:
  // on_recorded runs on the recorder's thread after each committed batch (dispatcher Notify).
  IncidentRecorder(std::unique_ptr<IncidentStore> store, const Clock* clock,
                   std::function<void()> on_recorded, RecorderOptions options);
  // kBlock with queue_capacity as max_held and a linger of 50 ms (replay).
  IncidentRecorder(std::unique_ptr<IncidentStore> store, const Clock* clock,
                   std::function<void()> on_recorded, std::size_t queue_capacity = 100'000);
  ~IncidentRecorder() override;

  void OnIncident(Incident incident) override;
  // Adds to the hourly event counts written with the next batch (called by the pipeline).
  void AddEventCounts(UnixMicros hour, const std::vector<std::pair<std::string, std::int64_t>>& c);
  // Learned baselines of `novel` playbooks (PlaybookEngine::TakeDirtyBaselines), written with the
  // next batch.
  void AddBaselines(std::vector<BaselineBatch> batches);
  // Positions of inputs that can resume (journal cursors), exactly: an input calls
  // BeginInputBatch before the lines of a batch and SaveInputCursor with the position after them.
  // Incidents handed over between the two are written in the same transaction as that position,
  // never before it (they wait the few milliseconds the batch takes), and the position never
  // before them: after a crash the store has both or neither, so a restart at the saved position
  // neither loses an incident nor opens one twice. Only the newest cursor per input is written.
  // SaveInputCursor without BeginInputBatch is fine (a start position, nothing to wait for).
  void BeginInputBatch(std::string_view input);
  void SaveInputCursor(std::string_view input, std::string_view cursor);
  // Blocks until everything queued so far is written (or the recorder is stopped).
  void Flush();
  // The same, for at most `timeout`; false when something is still held then (store failing).
  bool Flush(std::chrono::milliseconds timeout);
  // Writes what is held (one last attempt if the store is failing), then stops the thread.
  // Returns the number of incidents that could not be written.
  std::size_t Stop();

  const RecorderStats& stats() const { return stats_; }
  // Incidents of this playbook written to the store since start (mxward_incidents_total). Any
  // thread.
  std::uint64_t recorded(std::string_view playbook) const;
  // OK, or why the last write attempt failed, with how much is held ("cannot write incidents to
  // /var/lib/mxward/state.db: ... full; 12 incidents held in memory"). Any thread.
  Status store_error() const;
  // The last write error; read it only after Stop() (mxward replay).
  // (After Stop() the writer thread is gone: no lock needed, and none is taken.)
  const Status& last_error() const NO_THREAD_SAFETY_ANALYSIS { return last_error_; }

  // Adds the mxward_store_* samples (write errors, held, shed, dropped, writable); the handles
  // must be dropped before the recorder is destroyed.
  void RegisterMetrics(MetricsRegistry* registry,
                       std::vector<MetricsRegistry::Handle>* handles) const;

 private:
  void Run();
  // kHold overflow: keeps the first and last lines of the evidence and says what was shed.
  void ShedEvidence(Incident* incident);
  void ReportFailure(const Status& st, std::size_t held);
  void ReportRecovery(std::size_t written);
  void UpdateHeld() REQUIRES(mu_);

  std::unique_ptr<IncidentStore> store_;
  const Clock* clock_;
  std::function<void()> on_recorded_;
  RecorderOptions options_;
  RateLimitedLog log_;

  mutable Mutex mu_;
  std::condition_variable_any work_cv_;   // the writer waits for work
  std::condition_variable_any space_cv_;  // producers wait for room; Flush waits for empty
  std::deque<Incident> queue_ GUARDED_BY(mu_);
  std::size_t in_flight_ GUARDED_BY(mu_) = 0;  // taken out of queue_ by the writer, being written
  // The writer holds a batch (incidents, counts, baselines or cursors) outside the lock: Flush
  // waits for it, since what it took is no longer in the queues it looks at.
  bool writing_ GUARDED_BY(mu_) = false;
  std::vector<std::pair<UnixMicros, std::vector<std::pair<std::string, std::int64_t>>>> counts_
      GUARDED_BY(mu_);
  std::vector<BaselineBatch> baselines_ GUARDED_BY(mu_);
  struct PendingCursor {
    std::string input, cursor;
    // The incidents of its batch: from enqueued_ at BeginInputBatch to enqueued_ when it was
    // given (after). They and the cursor are written in one transaction.
    std::uint64_t from = 0, after = 0;
  };
  std::deque<PendingCursor> cursors_ GUARDED_BY(mu_);
  // Input batches begun and not yet given their cursor: input, enqueued_ at the start.
  std::vector<std::pair<std::string, std::uint64_t>> open_batches_ GUARDED_BY(mu_);
  // Incidents up to this count (written_ + taken) may be written now: the start of the oldest
  // open input batch, or no limit.
  std::uint64_t WritableLimit() const REQUIRES(mu_);
  // Held incidents at which OnIncident waits for room: max_held (kBlock); min(full_evidence_held,
  // max_held) while the store is writable (kHold).
  std::size_t RoomLimit() const;
  std::uint64_t enqueued_ GUARDED_BY(mu_) = 0;
  void LogOpened(const Incident& incident);
  std::uint64_t written_ GUARDED_BY(mu_) = 0;
  std::map<std::string, std::uint64_t, std::less<>> recorded_by_playbook_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::size_t flushing_ GUARDED_BY(mu_) = 0;  // Flush() calls waiting: the linger is skipped
  bool stopped_ GUARDED_BY(mu_) = false;
  Status last_error_ GUARDED_BY(mu_);  // read without mu_ only after Stop() (last_error())
  std::uint64_t failed_attempts_ = 0;  // consecutive; writer thread only
  UnixMicros last_failure_log_ = 0;    // writer thread only
  bool recovering_ = false;            // writable again, held incidents still going out
  RecorderStats stats_;
  std::thread thread_;
};

}  // namespace mxward
