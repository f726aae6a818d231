// LineReader: splits a byte stream into LF-terminated lines with a bounded buffer. Shared by
// ReadLines, FileFollower and the LF-framed TCP/Unix stream inputs (private to engine/ingest).
//
// Usage: read into Space(), then Commit(n, fn): fn(line) is called for every complete line (the
// view is valid during the call; the '\n' is not included, a '\r' before it is). Lines longer than
// max_line_bytes are cut: the first max_line_bytes are delivered with cut = true and the rest up
// to the next '\n' is skipped. consumed() counts the bytes of lines fully handled, so a follower
// can resume exactly after them.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace mxward::ingest {

class LineReader {
 public:
  explicit LineReader(std::size_t max_line_bytes, std::size_t initial_capacity = 64 * 1024)
      : max_line_(max_line_bytes < 1 ? 1 : max_line_bytes),
        cap_(initial_capacity < 16 ? 16 : initial_capacity),
        buf_(new char[cap_]) {}

  // Space to read into (never empty): compacts and grows up to max_line_bytes + 1 as needed.
  char* Space(std::size_t* available) {
    if (end_ == cap_) {
      if (start_ > 0) {
        std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
        end_ -= start_;
        scan_ -= start_;
        start_ = 0;
      } else {
        Grow();
      }
    }
    *available = cap_ - end_;
    return buf_.get() + end_;
  }

  // n bytes were written into Space(). fn(std::string_view line, bool cut).
  template <typename Fn>
  void Commit(std::size_t n, Fn&& fn) {
    end_ += n;
    while (scan_ < end_) {
      const void* nl = std::memchr(buf_.get() + scan_, '\n', end_ - scan_);
      if (nl == nullptr) {
        scan_ = end_;
        break;
      }
      const std::size_t pos = static_cast<std::size_t>(static_cast<const char*>(nl) - buf_.get());
      if (skipping_) {
        skipping_ = false;
      } else if (pos - start_ > max_line_) {
        fn(std::string_view(buf_.get() + start_, max_line_), true);
      } else {
        fn(std::string_view(buf_.get() + start_, pos - start_), false);
      }
      consumed_ += pos + 1 - start_;
      start_ = scan_ = pos + 1;
    }
    if (start_ == end_) {
      start_ = scan_ = end_ = 0;
      return;
    }
    const std::size_t pending = end_ - start_;
    if (skipping_) {  // drop the tail of an over-long line as it comes
      consumed_ += pending;
      start_ = scan_ = end_ = 0;
    } else if (pending >= max_line_) {
      fn(std::string_view(buf_.get() + start_, max_line_), true);
      consumed_ += pending;
      start_ = scan_ = end_ = 0;
      skipping_ = true;
    }
  }

  // End of input: delivers a last line that had no final newline.
  template <typename Fn>
  void Finish(Fn&& fn) {
    if (end_ > start_ && !skipping_) {
      const std::size_t n = end_ - start_;
      fn(std::string_view(buf_.get() + start_, n > max_line_ ? max_line_ : n), n > max_line_);
    }
    consumed_ += end_ - start_;
    start_ = scan_ = end_ = 0;
    skipping_ = false;
  }

  // Forgets buffered bytes (a file was truncated or replaced).
  void Reset() {
    start_ = scan_ = end_ = 0;
    skipping_ = false;
  }

  std::size_t pending() const { return end_ - start_; }
  std::uint64_t consumed() const { return consumed_; }
  void set_consumed(std::uint64_t c) { consumed_ = c; }

 private:
  void Grow() {
    std::size_t next = cap_ * 2;
    const std::size_t limit = max_line_ + 1;
    if (next > limit) next = limit;
    if (next <= cap_) next = cap_ + 1;  // cannot happen: Commit cuts lines at max_line_
    std::unique_ptr<char[]> bigger(new char[next]);
    std::memcpy(bigger.get(), buf_.get(), end_);
    buf_ = std::move(bigger);
    cap_ = next;
  }

  std::size_t max_line_;
  std::size_t cap_;
  std::unique_ptr<char[]> buf_;
  std::size_t start_ = 0, scan_ = 0, end_ = 0;
  bool skipping_ = false;
  std::uint64_t consumed_ = 0;
};

}  // namespace mxward::ingest
