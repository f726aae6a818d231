// RecordingLineSink: a LineSink for input tests that keeps every line it is given, with the input
// index and, for authenticated inputs (tls), the peer identity passed to OnLineFrom, and for
// inputs that know the writer (unix sockets, journal) the origin passed to OnLineWithOrigin. Tests
// wait on it with a deadline (WaitForCount), never a sleep. SetBlocked(true) makes the input's
// thread wait inside OnLine*, which is how the backpressure tests hold an input still.
//
// Thread-safe: inputs call it from their io thread, tests read it from theirs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/line_origin.h"
#include "mxward/line_sink.h"

namespace mxward::testing {

struct ReceivedLine {
  std::string line;
  std::string node;  // OnLineFrom's identity; empty for OnLine
  int input = -1;
  // OnLineWithOrigin's writer as the transport stated it (kNone for OnLine, OnLineFrom).
  LineOrigin::Transport transport = LineOrigin::Transport::kNone;
  std::uint32_t uid = 0;
  std::int64_t pid = -1;
};

class RecordingLineSink final : public LineSink {
 public:
  void OnLine(std::string_view line, UnixMicros, int input_index) override {
    Add(line, {}, input_index);
  }
  void OnLineFrom(std::string_view line, UnixMicros, int input_index,
                  std::string_view node) override {
    Add(line, node, input_index);
  }
  void OnLineWithOrigin(std::string_view line, UnixMicros, int input_index,
                        const LineOrigin& origin) override {
    Add(line, {}, input_index, &origin);
  }

  // True once at least n lines arrived; false after timeout.
  bool WaitForCount(std::size_t n, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return lines_.size() >= n; });
  }
  std::vector<ReceivedLine> lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return lines_.size();
  }
  void SetBlocked(bool blocked) {
    std::lock_guard lock(mu_);
    blocked_ = blocked;
    cv_.notify_all();
  }

 private:
  void Add(std::string_view line, std::string_view node, int input_index,
           const LineOrigin* origin = nullptr) {
    std::unique_lock lock(mu_);
    lines_.push_back({std::string(line), std::string(node), input_index});
    if (origin != nullptr) {
      lines_.back().transport = origin->transport;
      lines_.back().uid = origin->uid;
      lines_.back().pid = origin->pid;
    }
    cv_.notify_all();
    cv_.wait(lock, [&] { return !blocked_; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ReceivedLine> lines_;
  bool blocked_ = false;
};

}  // namespace mxward::testing
