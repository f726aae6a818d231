// Parallel line preparation (issue 20, "use the cores the machine has"): the stateless stage of
// each line (syslog header, routing, pattern match: prepared_line.h) on worker threads, the
// stateful stage on the owner's thread, strictly in the order the lines came in.
//
//   - PrepareRing: the one mechanism. Lines are copied into blocks of up to lines_per_block
//     lines; a bounded ring of blocks (reused, so no allocation per line once the ring is warm)
//     goes owner -> workers -> owner. Only the owner's thread calls it and receives the lines.
//   - ReadLinesParallel: `mxward replay --threads N`, a file descriptor read to EOF through a
//     PrepareRing.
//   - ParallelLineSink: `mxward serve` with [engine] parse_threads, a LineSink the listeners
//     deliver to (on the io thread) that feeds a PrepareRing and hands the prepared lines to the
//     Pipeline on the same io thread.
//
// Order: blocks are handed back in the order they were filled, lines in a block in the order
// they were added, so the stateful stage sees exactly the sequence one thread would have seen
// and produces the same windows and incidents (prepared_line.h says why the stateless results
// are the same too).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include "mxward/line_origin.h"
#include "mxward/line_sink.h"
#include "mxward/prepared_line.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

class Pipeline;
class ParserPack;

// One line as a PrepareRing hands it back: its bytes, the workers' record, and what the input
// said about it. Views are valid during the consumer's call only.
struct RingLine {
  std::string_view line;
  PreparedLine* prepared = nullptr;  // the consumer may modify it
  UnixMicros received_at = 0;
  int input_index = 0;
  std::string_view node;               // a tls input's authorised peer ("" for the others)
  const LineOrigin* origin = nullptr;  // a unix or journal input's writer (null for the others)
};

struct PrepareRingOptions {
  int threads = 1;  // worker threads (>= 1)
  std::size_t lines_per_block = 1024;
  // Replay: each block's first reference is reference_hint()'s guess and each line moves it on
  // (prepared_line.h). Live: each line's reference is its received_at and the hint is not used.
  bool live = false;
};

class PrepareRing {
 public:
  using Consumer = std::function<void(const RingLine&)>;
  // consumer: the stateful stage, called on the owner's thread in input order.
  // reference_hint (replay): read on the owner's thread when a block is handed to the workers.
  // on_ready (may be empty): called on a worker thread when it finished a block, so that an
  // owner waiting on something else (an io_context) knows to call ConsumeReady().
  PrepareRing(LinePreparer preparer, PrepareRingOptions options, Consumer consumer,
              std::function<UnixMicros()> reference_hint = {}, std::function<void()> on_ready = {});
  // Stops and joins the workers. Lines not handed over yet are not: Drain() first.
  ~PrepareRing();
  PrepareRing(const PrepareRing&) = delete;
  PrepareRing& operator=(const PrepareRing&) = delete;

  // Owner's thread only, from here on.
  //
  // Copies a line into the block being filled (node and origin's texts too). When that block is
  // full it goes to the workers; when every block is taken (the workers are behind), the oldest
  // is handed over first, waiting for its worker or preparing it here: this is the backpressure,
  // the caller does not return (so reads nothing more) until there is room.
  void Add(std::string_view line, UnixMicros received_at, int input_index,
           std::string_view node = {}, const LineOrigin* origin = nullptr);
  // Hands the block being filled to the workers even if it is not full: a lone line does not wait
  // for others.
  void Submit();
  // As Submit(), unless blocks are in flight: then the partial block keeps filling and the owner
  // submits it when one comes back (ParallelLineSink does, from on_ready's call). Under load a
  // block is then what arrived while the previous one was prepared, not one read's worth of lines
  // (each block costs two thread wake-ups); when idle it is Submit().
  void SubmitIfNoneInFlight();
  // Hands over every block at the head of the ring whose workers are done, without waiting.
  void ConsumeReady();
  // Submit(), then hands over every line added, waiting for the workers.
  void Drain();
  // Drain(), then the workers prepare with `preparer` (a reloaded pack: no worker refers to the
  // old one afterwards, so it may be freed).
  void SetPreparer(LinePreparer preparer);
  // Lines added and not handed over yet; readable from any thread.
  std::size_t waiting() const { return waiting_.load(std::memory_order_relaxed); }
  // True when no line is in the ring (nothing to drain).
  bool empty() const;

  struct Block;
  struct Shared;

 private:
  void ConsumeOldest();

  PrepareRingOptions options_;
  Consumer consumer_;
  std::function<UnixMicros()> reference_hint_;
  std::unique_ptr<Shared> shared_;
  std::atomic<std::size_t> waiting_{0};
};

struct ParallelLinesOptions {
  int threads = 2;  // worker threads for the stateless stage (>= 1)
  int input_index = 0;
  std::size_t max_line_bytes = 16 * 1024 * 1024;  // as ReadLinesOptions
  // 1024: the same CPU time as 4096 and 256 on the bench corpora, 16 MiB less peak RSS than
  // 4096 (a PreparedLine is ~750 bytes; the ring holds 2 * threads + 1 blocks).
  std::size_t lines_per_block = 1024;
  const Clock* clock = nullptr;  // received_at; nullptr: the system clock
};

// Reads fd until EOF (fd is not closed). preparer's pack must outlive the call. Errors: IoError.
Status ReadLinesParallel(int fd, const LinePreparer& preparer, PreparedLineSink* sink,
                         const ParallelLinesOptions& options = {});

// The live LineSink of `mxward serve` with parse workers. Every call comes from the one thread
// that runs the Pipeline (the io thread); the pipeline sees each line exactly as if the listener
// had called it directly, only later.
//
// Latency: the first line into an empty block asks `post` for a call on the owner's thread,
// which runs once the handlers ready now (the reads that completed together) have run, and hands
// the partial block to the workers if none is in flight (SubmitIfNoneInFlight); a worker that
// finishes a block asks `post` for a call that submits the partial block and hands the finished
// one over. So a lone line waits for two thread hand-offs, not for a block to fill.
// post may be called from any thread and must run the function on the owner's thread (an
// io_context's post); the functions it is given must not be run after the sink is destroyed
// (run the io_context only while the sink lives).
//
// Whoever changes the pipeline's state other than by lines (a reload, the once-a-second
// AdvanceTime, the final flush, a journal cursor save) calls Drain() first, so that the lines
// read before it are processed before it, as without workers.
class ParallelLineSink final : public LineSink {
 public:
  using Post = std::function<void(std::function<void()>)>;
  ParallelLineSink(Pipeline* pipeline, int threads, Post post, std::size_t lines_per_block = 256);
  ~ParallelLineSink() override;

  void OnLine(std::string_view line, UnixMicros received_at, int input_index) override;
  void OnLineFrom(std::string_view line, UnixMicros received_at, int input_index,
                  std::string_view node) override;
  void OnLineWithOrigin(std::string_view line, UnixMicros received_at, int input_index,
                        const LineOrigin& origin) override;

  void Drain() { ring_.Drain(); }
  // Drains, swaps the pack in the pipeline (Pipeline::ReplaceParsers) and in the workers.
  void ReplaceParsers(std::shared_ptr<const ParserPack> pack);
  std::size_t waiting() const { return ring_.waiting(); }

 private:
  void Added();

  Pipeline* pipeline_;
  Post post_;
  // Whether a flush / a hand-over is already asked for (so one is posted at a time).
  bool flush_posted_ = false;
  std::shared_ptr<std::atomic<bool>> consume_posted_;
  // Posted functions hold it weakly: after the sink is gone they do nothing.
  std::shared_ptr<ParallelLineSink*> self_;
  PrepareRing ring_;
};

}  // namespace mxward
