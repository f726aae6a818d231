#include "mxward/parallel_lines.h"

#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/ingest/line_reader.h"

namespace mxward {

namespace {

// A block is handed over at this many bytes even when it has fewer lines (long lines).
constexpr std::size_t kMaxBlockBytes = 4 * 1024 * 1024;

// One block of lines: their bytes, where each starts, and the workers' records. Reused.
struct Block {
  std::vector<char> bytes;
  std::vector<std::size_t> starts;  // line i is bytes[starts[i], starts[i + 1])
  std::vector<PreparedLine> prepared;
  UnixMicros reference = 0;  // the workers' guess for the first line's reference
  UnixMicros received_at = 0;
  bool claimed = false;  // a thread is preparing it (under Shared::mu)
  bool ready = false;    // prepared (under Shared::mu)

  std::size_t size() const { return starts.empty() ? 0 : starts.size() - 1; }
  std::string_view line(std::size_t i) const {
    return std::string_view(bytes.data() + starts[i], starts[i + 1] - starts[i]);
  }
  void Reset() {
    bytes.clear();
    starts.assign(1, 0);
    claimed = ready = false;
  }
};

struct Shared {
  std::mutex mu;
  std::condition_variable work_cv;  // a block to prepare, or stop
  std::condition_variable done_cv;  // a block became ready
  std::deque<Block*> work;
  bool stop = false;
};

void Prepare(const LinePreparer& preparer, Block* b) {
  const std::size_t n = b->size();
  if (b->prepared.size() < n) b->prepared.resize(n);
  UnixMicros reference = b->reference;
  for (std::size_t i = 0; i < n; ++i) preparer.Prepare(b->line(i), &reference, &b->prepared[i]);
}

void Work(const LinePreparer& preparer, Shared* shared) {
  while (true) {
    Block* b = nullptr;
    {
      std::unique_lock lock(shared->mu);
      shared->work_cv.wait(lock, [&] { return shared->stop || !shared->work.empty(); });
      if (shared->work.empty()) return;  // stop, and nothing left
      b = shared->work.front();
      shared->work.pop_front();
      b->claimed = true;
    }
    Prepare(preparer, b);
    {
      std::lock_guard lock(shared->mu);
      b->ready = true;
    }
    shared->done_cv.notify_all();
  }
}

}  // namespace

Status ReadLinesParallel(int fd, const LinePreparer& preparer, PreparedLineSink* sink,
                         const ParallelLinesOptions& options) {
  const int threads = options.threads < 1 ? 1 : options.threads;
  const std::size_t per_block = options.lines_per_block < 1 ? 1 : options.lines_per_block;
  const Clock* clock = options.clock != nullptr ? options.clock : SystemClock::Instance();
  // Two blocks per worker in flight plus the one being filled: a worker finds the next block
  // while the sink consumes the oldest.
  const std::size_t ring = 2 * static_cast<std::size_t>(threads) + 1;
  std::vector<std::unique_ptr<Block>> blocks;
  for (std::size_t i = 0; i < ring; ++i) {
    blocks.push_back(std::make_unique<Block>());
    blocks.back()->Reset();
  }
  Shared shared;
  // Stops and joins the workers however this function is left (a sink may throw).
  struct Workers {
    Shared* shared;
    std::vector<std::thread> threads;
    ~Workers() {
      {
        std::lock_guard lock(shared->mu);
        shared->stop = true;
      }
      shared->work_cv.notify_all();
      for (auto& t : threads) t.join();
    }
  } workers{&shared, {}};
  workers.threads.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    workers.threads.emplace_back(Work, std::cref(preparer), &shared);
  }

  std::deque<Block*> in_flight;  // submitted, in input order
  std::vector<Block*> free_blocks;
  for (auto& b : blocks) free_blocks.push_back(b.get());
  Block* filling = nullptr;

  // Hands the oldest submitted block to the sink (waiting for its workers) and frees it.
  auto consume_oldest = [&] {
    Block* b = in_flight.front();
    in_flight.pop_front();
    bool self = false;
    {
      std::unique_lock lock(shared.mu);
      if (!b->claimed) {
        // No worker has started on it (the oldest block is at the queue's front): rather than
        // sleep until one does, this thread prepares it.
        shared.work.pop_front();
        b->claimed = self = true;
      } else {
        shared.done_cv.wait(lock, [&] { return b->ready; });
      }
    }
    if (self) Prepare(preparer, b);
    for (std::size_t i = 0; i < b->size(); ++i) {
      sink->OnPreparedLine(b->line(i), &b->prepared[i], b->received_at, options.input_index);
    }
    b->Reset();
    free_blocks.push_back(b);
  };
  auto submit = [&] {
    if (filling == nullptr) return;
    if (filling->size() == 0) {
      free_blocks.push_back(filling);
    } else {
      // A guess only (the sink is behind the reader): the sink checks it (prepared_line.h).
      filling->reference = sink->replay_reference();
      filling->received_at = clock->Now();
      in_flight.push_back(filling);
      {
        std::lock_guard lock(shared.mu);
        shared.work.push_back(filling);
      }
      shared.work_cv.notify_one();
    }
    filling = nullptr;
  };
  auto add_line = [&](std::string_view line, bool /*cut*/) {
    if (filling != nullptr &&
        (filling->size() >= per_block || filling->bytes.size() >= kMaxBlockBytes)) {
      submit();
    }
    if (filling == nullptr) {
      if (free_blocks.empty()) consume_oldest();
      filling = free_blocks.back();
      free_blocks.pop_back();
    }
    filling->bytes.insert(filling->bytes.end(), line.begin(), line.end());
    filling->starts.push_back(filling->bytes.size());
  };

  Status status = Status::Ok();
  ingest::LineReader reader(options.max_line_bytes, 1024 * 1024);
  while (true) {
    std::size_t space = 0;
    char* p = reader.Space(&space);
    const ssize_t got = ::read(fd, p, space);
    if (got < 0) {
      if (errno == EINTR) continue;
      status = Status::IoError(fmt::format("read failed: {}", std::strerror(errno)));
      break;
    }
    if (got == 0) break;
    reader.Commit(static_cast<std::size_t>(got), add_line);
  }
  if (status.ok()) reader.Finish(add_line);
  submit();
  // On a read error the lines before it are still delivered, as ReadLines does.
  while (!in_flight.empty()) consume_oldest();
  return status;
}

}  // namespace mxward
