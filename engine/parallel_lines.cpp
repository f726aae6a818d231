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
#include "mxward/pipeline.h"

namespace mxward {

namespace {

// A block is handed over at this many bytes even when it has fewer lines (long lines).
constexpr std::size_t kMaxBlockBytes = 4 * 1024 * 1024;

// Where a text a line came with (node, comm, exe) sits in Block::texts.
struct TextRef {
  std::uint32_t start = 0;
  std::uint32_t size = 0;
};

// What a live line came with besides its bytes (PrepareRing::Add's arguments, texts copied).
struct LineMeta {
  UnixMicros received_at = 0;
  int input_index = 0;
  TextRef node;
  bool has_origin = false;
  LineOrigin::Transport transport = LineOrigin::Transport::kNone;
  std::uint32_t uid = 0;
  std::int64_t pid = -1;
  TextRef comm;
  TextRef exe;
};

}  // namespace

// One block of lines: their bytes, where each starts, what came with each, and the workers'
// records. Reused.
struct PrepareRing::Block {
  std::vector<char> bytes;
  std::vector<std::size_t> starts;  // line i is bytes[starts[i], starts[i + 1])
  std::vector<LineMeta> meta;       // per line
  std::vector<char> texts;          // node, comm and exe of the lines that have them
  std::vector<PreparedLine> prepared;
  UnixMicros reference = 0;  // replay: the workers' guess for the first line's reference
  bool claimed = false;      // a thread is preparing it (under Shared::mu)
  bool ready = false;        // prepared (under Shared::mu)

  std::size_t size() const { return starts.empty() ? 0 : starts.size() - 1; }
  std::string_view line(std::size_t i) const {
    return std::string_view(bytes.data() + starts[i], starts[i + 1] - starts[i]);
  }
  std::string_view text(TextRef r) const {
    return std::string_view(texts.data() + r.start, r.size);
  }
  TextRef Keep(std::string_view s) {
    TextRef r{static_cast<std::uint32_t>(texts.size()), static_cast<std::uint32_t>(s.size())};
    texts.insert(texts.end(), s.begin(), s.end());
    return r;
  }
  void Reset() {
    bytes.clear();
    starts.assign(1, 0);
    meta.clear();
    texts.clear();
    claimed = ready = false;
  }
};

struct PrepareRing::Shared {
  std::mutex mu;
  std::condition_variable work_cv;  // a block to prepare, or stop
  std::condition_variable done_cv;  // a block became ready
  std::deque<Block*> work;          // submitted, not claimed yet, oldest first (under mu)
  bool stop = false;                // under mu
  // Read by the workers outside mu while they prepare a block they claimed; replaced only when
  // no block is in flight (SetPreparer), under mu, so the next claim sees the new one.
  LinePreparer preparer;
  bool live = false;
  std::function<void()> on_ready;
  std::vector<std::thread> threads;

  // Owner's thread only.
  std::vector<std::unique_ptr<Block>> blocks;
  std::deque<Block*> in_flight;  // submitted, in input order
  std::vector<Block*> free_blocks;
  Block* filling = nullptr;

  explicit Shared(LinePreparer p) : preparer(std::move(p)) {}

  void Prepare(Block* b) const {
    const std::size_t n = b->size();
    if (b->prepared.size() < n) b->prepared.resize(n);
    if (live) {
      // A live line's year-less time is placed near its arrival, as Pipeline::OnLine does.
      for (std::size_t i = 0; i < n; ++i) {
        UnixMicros reference = b->meta[i].received_at;
        preparer.Prepare(b->line(i), &reference, &b->prepared[i], b->meta[i].input_index);
      }
      return;
    }
    UnixMicros reference = b->reference;
    for (std::size_t i = 0; i < n; ++i) {
      preparer.Prepare(b->line(i), &reference, &b->prepared[i], b->meta[i].input_index);
    }
  }

  void Work() {
    while (true) {
      Block* b = nullptr;
      {
        std::unique_lock lock(mu);
        work_cv.wait(lock, [&] { return stop || !work.empty(); });
        if (work.empty()) return;  // stop, and nothing left
        b = work.front();
        work.pop_front();
        b->claimed = true;
      }
      Prepare(b);
      {
        std::lock_guard lock(mu);
        b->ready = true;
      }
      done_cv.notify_all();
      if (on_ready) on_ready();
    }
  }
};

PrepareRing::PrepareRing(LinePreparer preparer, PrepareRingOptions options, Consumer consumer,
                         std::function<UnixMicros()> reference_hint, std::function<void()> on_ready)
    : options_(options),
      consumer_(std::move(consumer)),
      reference_hint_(std::move(reference_hint)),
      shared_(std::make_unique<Shared>(std::move(preparer))) {
  if (options_.threads < 1) options_.threads = 1;
  if (options_.lines_per_block < 1) options_.lines_per_block = 1;
  shared_->live = options_.live;
  shared_->on_ready = std::move(on_ready);
  // Two blocks per worker in flight plus the one being filled: a worker finds the next block
  // while the owner consumes the oldest.
  const std::size_t ring = 2 * static_cast<std::size_t>(options_.threads) + 1;
  for (std::size_t i = 0; i < ring; ++i) {
    shared_->blocks.push_back(std::make_unique<Block>());
    shared_->blocks.back()->Reset();
    shared_->free_blocks.push_back(shared_->blocks.back().get());
  }
  shared_->threads.reserve(static_cast<std::size_t>(options_.threads));
  for (int i = 0; i < options_.threads; ++i) {
    shared_->threads.emplace_back([s = shared_.get()] { s->Work(); });
  }
}

PrepareRing::~PrepareRing() {
  {
    std::lock_guard lock(shared_->mu);
    shared_->stop = true;
  }
  shared_->work_cv.notify_all();
  for (auto& t : shared_->threads) t.join();
}

bool PrepareRing::empty() const {
  return shared_->in_flight.empty() &&
         (shared_->filling == nullptr || shared_->filling->size() == 0);
}

// Hands the oldest submitted block to the consumer (waiting for its worker) and frees it.
void PrepareRing::ConsumeOldest() {
  Shared& s = *shared_;
  Block* b = s.in_flight.front();
  s.in_flight.pop_front();
  bool self = false;
  {
    std::unique_lock lock(s.mu);
    if (!b->claimed) {
      // No worker has started on it (the oldest block is at the queue's front): rather than
      // sleep until one does, this thread prepares it.
      s.work.pop_front();
      b->claimed = self = true;
    } else {
      s.done_cv.wait(lock, [&] { return b->ready; });
    }
  }
  if (self) s.Prepare(b);
  RingLine r;
  for (std::size_t i = 0; i < b->size(); ++i) {
    const LineMeta& m = b->meta[i];
    LineOrigin origin;
    r.line = b->line(i);
    r.prepared = &b->prepared[i];
    r.received_at = m.received_at;
    r.input_index = m.input_index;
    r.node = b->text(m.node);
    r.origin = nullptr;
    if (m.has_origin) {
      origin.transport = m.transport;
      origin.uid = m.uid;
      origin.pid = m.pid;
      origin.comm = b->text(m.comm);
      origin.exe = b->text(m.exe);
      r.origin = &origin;
    }
    consumer_(r);
    waiting_.store(waiting_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  b->Reset();
  s.free_blocks.push_back(b);
}

void PrepareRing::Submit() {
  Shared& s = *shared_;
  Block* b = s.filling;
  if (b == nullptr || b->size() == 0) return;
  s.filling = nullptr;
  // Replay: a guess only (the consumer is behind the reader): the pipeline checks it
  // (prepared_line.h).
  if (!options_.live && reference_hint_) b->reference = reference_hint_();
  s.in_flight.push_back(b);
  {
    std::lock_guard lock(s.mu);
    s.work.push_back(b);
  }
  s.work_cv.notify_one();
}

void PrepareRing::SubmitIfNoneInFlight() {
  if (shared_->in_flight.empty()) Submit();
}

void PrepareRing::Add(std::string_view line, UnixMicros received_at, int input_index,
                      std::string_view node, const LineOrigin* origin) {
  Shared& s = *shared_;
  if (s.filling != nullptr && (s.filling->size() >= options_.lines_per_block ||
                               s.filling->bytes.size() >= kMaxBlockBytes)) {
    Submit();
  }
  if (s.filling == nullptr) {
    if (s.free_blocks.empty()) ConsumeOldest();
    s.filling = s.free_blocks.back();
    s.free_blocks.pop_back();
  }
  Block* b = s.filling;
  b->bytes.insert(b->bytes.end(), line.begin(), line.end());
  b->starts.push_back(b->bytes.size());
  LineMeta m;
  m.received_at = received_at;
  m.input_index = input_index;
  if (!node.empty()) m.node = b->Keep(node);
  if (origin != nullptr) {
    m.has_origin = true;
    m.transport = origin->transport;
    m.uid = origin->uid;
    m.pid = origin->pid;
    m.comm = b->Keep(origin->comm);
    m.exe = b->Keep(origin->exe);
  }
  b->meta.push_back(m);
  waiting_.store(waiting_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void PrepareRing::ConsumeReady() {
  Shared& s = *shared_;
  while (!s.in_flight.empty()) {
    {
      std::lock_guard lock(s.mu);
      if (!s.in_flight.front()->ready) return;
    }
    ConsumeOldest();
  }
}

void PrepareRing::Drain() {
  Submit();
  while (!shared_->in_flight.empty()) ConsumeOldest();
}

void PrepareRing::SetPreparer(LinePreparer preparer) {
  Drain();
  std::lock_guard lock(shared_->mu);
  shared_->preparer = std::move(preparer);
}

Status ReadLinesParallel(int fd, const LinePreparer& preparer, PreparedLineSink* sink,
                         const ParallelLinesOptions& options) {
  const Clock* clock = options.clock != nullptr ? options.clock : SystemClock::Instance();
  PrepareRingOptions ring_options;
  ring_options.threads = options.threads;
  ring_options.lines_per_block = options.lines_per_block;
  PrepareRing ring(
      preparer, ring_options,
      [sink](const RingLine& r) {
        sink->OnPreparedLine(r.line, r.prepared, r.received_at, r.input_index);
      },
      [sink] { return sink->replay_reference(); });

  // received_at is read once per block, as before the ring was shared with serve.
  std::size_t in_block = 0;
  UnixMicros received_at = 0;
  auto add_line = [&](std::string_view line, bool /*cut*/) {
    if (in_block == 0) received_at = clock->Now();
    ring.Add(line, received_at, options.input_index);
    if (++in_block >= options.lines_per_block) in_block = 0;
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
  // On a read error the lines before it are still delivered, as ReadLines does.
  ring.Drain();
  return status;
}

// ---------------------------------------------------------------------------------------------

ParallelLineSink::ParallelLineSink(Pipeline* pipeline, int threads, Post post,
                                   std::size_t lines_per_block)
    : pipeline_(pipeline),
      post_(std::move(post)),
      consume_posted_(std::make_shared<std::atomic<bool>>(false)),
      self_(std::make_shared<ParallelLineSink*>(this)),
      ring_(
          pipeline->MakePreparer(), PrepareRingOptions{threads, lines_per_block, /*live=*/true},
          [pipeline](const RingLine& r) {
            pipeline->OnPreparedLineFrom(r.line, r.prepared, r.received_at, r.input_index, r.node,
                                         r.origin);
          },
          {},
          // On a worker: ask the owner's thread once for a hand-over of what is ready.
          [post = post_, flag = consume_posted_, weak = std::weak_ptr<ParallelLineSink*>(self_)] {
            if (flag->exchange(true, std::memory_order_acq_rel)) return;
            post([flag, weak] {
              flag->store(false, std::memory_order_release);
              if (auto self = weak.lock()) {
                // The lines that came while the block was prepared go to the workers first, so
                // that they are prepared while this thread hands the finished ones over.
                (*self)->ring_.Submit();
                (*self)->ring_.ConsumeReady();
              }
            });
          }) {}

ParallelLineSink::~ParallelLineSink() {
  // The workers stop (ring_'s destructor, after this body); a posted hand-over that still runs
  // finds no sink.
  self_.reset();
}

void ParallelLineSink::Added() {
  if (flush_posted_) return;
  flush_posted_ = true;
  post_([weak = std::weak_ptr<ParallelLineSink*>(self_)] {
    auto self = weak.lock();
    if (!self) return;
    ParallelLineSink* sink = *self;
    sink->flush_posted_ = false;
    sink->ring_.SubmitIfNoneInFlight();
  });
}

void ParallelLineSink::OnLine(std::string_view line, UnixMicros received_at, int input_index) {
  ring_.Add(line, received_at, input_index);
  Added();
}

void ParallelLineSink::OnLineFrom(std::string_view line, UnixMicros received_at, int input_index,
                                  std::string_view node) {
  ring_.Add(line, received_at, input_index, node);
  Added();
}

void ParallelLineSink::OnLineWithOrigin(std::string_view line, UnixMicros received_at,
                                        int input_index, const LineOrigin& origin) {
  ring_.Add(line, received_at, input_index, {}, &origin);
  Added();
}

void ParallelLineSink::ReplaceParsers(std::shared_ptr<const ParserPack> pack) {
  ring_.Drain();
  pipeline_->ReplaceParsers(std::move(pack));
  ring_.SetPreparer(pipeline_->MakePreparer());
}

}  // namespace mxward
