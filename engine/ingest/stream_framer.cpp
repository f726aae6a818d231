#include "engine/ingest/stream_framer.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

namespace mxward {

namespace {

// Framing leftovers a sender may put at the end of a message.
std::string_view StripFraming(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == '\0')) {
    s.remove_suffix(1);
  }
  return s;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

StreamFramer::StreamFramer(std::size_t max_message_size)
    : max_message_size_(max_message_size), limit_(max_message_size + 32) {
  cap_ = std::min<std::size_t>(64 * 1024, limit_);
  buf_.reset(new char[cap_]);
}

void StreamFramer::Compact() {
  if (start_ == 0) return;
  std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
  end_ -= start_;
  scan_ = scan_ > start_ ? scan_ - start_ : 0;
  start_ = 0;
}

void StreamFramer::Grow(std::size_t want) {
  Compact();
  want = std::min(want, limit_);
  if (want <= cap_) return;
  std::unique_ptr<char[]> bigger(new char[want]);
  std::memcpy(bigger.get(), buf_.get(), end_);
  buf_ = std::move(bigger);
  cap_ = want;
}

std::span<char> StreamFramer::WritableSpace() {
  if (bad_) return {};
  if (start_ == end_) start_ = end_ = scan_ = 0;
  if (end_ == cap_) {
    if (start_ > 0) {
      Compact();
    } else {
      Grow(cap_ * 2);
    }
  }
  // Full at the bound cannot happen: Next() turns bad before a frame outgrows the limit.
  return std::span<char>(buf_.get() + end_, cap_ - end_);
}

void StreamFramer::Commit(std::size_t n) { end_ += std::min(n, cap_ - end_); }

std::size_t StreamFramer::Feed(std::string_view bytes) {
  const std::span<char> space = WritableSpace();
  const std::size_t n = std::min(space.size(), bytes.size());
  if (n > 0) std::memcpy(space.data(), bytes.data(), n);
  Commit(n);
  return n;
}

Frame StreamFramer::Bad(std::string why) {
  bad_ = true;
  start_ = end_ = scan_ = 0;
  return Frame{Frame::kBad, {}, std::move(why)};
}

Frame StreamFramer::Next() {
  if (bad_) return Frame{Frame::kBad, {}, "the stream was already bad"};
  while (start_ < end_) {
    if (framing_ == Framing::kUnknown) {
      const unsigned char first = static_cast<unsigned char>(buf_[start_]);
      if (first >= '1' && first <= '9') {
        std::size_t i = start_;
        // An octet count has at most 10 digits; a longer number starts a line ("2025-...").
        // Undecided until the byte after the digits is here (after 10 digits too: it may be an
        // 11th digit or the space), so the outcome does not depend on where TCP split.
        while (i < end_ && i - start_ < 10 && IsDigit(buf_[i])) ++i;
        if (i == end_) return Frame{};  // need more bytes to decide
        framing_ = i < end_ && buf_[i] == ' ' ? Framing::kOctetCounted : Framing::kLineTerminated;
      } else if (first == '<' || first == '\n' || first == '\r' || first == '\0' ||
                 (first >= 0x20 && first < 0x7f)) {
        framing_ = Framing::kLineTerminated;
      } else {
        return Bad(fmt::format("not syslog (first byte 0x{:02x})", first));
      }
    }
    if (framing_ == Framing::kOctetCounted) {
      // Tolerate separators some senders put between frames.
      while (start_ < end_ &&
             (buf_[start_] == '\n' || buf_[start_] == '\r' || buf_[start_] == '\0')) {
        ++start_;
      }
      if (start_ == end_) break;
      std::size_t i = start_;
      std::uint64_t len = 0;
      while (i < end_ && IsDigit(buf_[i]) && i - start_ < 10) {
        len = len * 10 + static_cast<std::uint64_t>(buf_[i] - '0');
        ++i;
      }
      if (i == end_) return Frame{};  // header incomplete
      if (i == start_ || buf_[start_] == '0' || buf_[i] != ' ') {
        return Bad("bad octet count in RFC 6587 octet-counted framing");
      }
      if (len > max_message_size_) {
        return Bad(
            fmt::format("message of {} bytes exceeds max_message_size {}", len, max_message_size_));
      }
      std::size_t body = i + 1;
      if (end_ - body < len) {
        const std::size_t header = body - start_;
        Grow(header + len);
        return Frame{};
      }
      const std::string_view msg =
          StripFraming(std::string_view(buf_.get() + body, static_cast<std::size_t>(len)));
      start_ = body + static_cast<std::size_t>(len);
      if (msg.empty()) return Frame{Frame::kEmpty, {}, {}};
      return Frame{Frame::kLine, msg, {}};
    }
    // LF-terminated (NUL accepted as a terminator too).
    if (scan_ < start_) scan_ = start_;
    const char* base = buf_.get();
    const void* nl = std::memchr(base + scan_, '\n', end_ - scan_);
    const std::size_t limit =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - base) : end_;
    const void* nul = std::memchr(base + scan_, '\0', limit - scan_);
    const char* term = static_cast<const char*>(nul ? nul : nl);
    // One rule for a line with and without its terminator, so that the outcome does not depend
    // on where TCP split the stream: too long once trailing CRs are removed, or more raw bytes
    // than the buffer's slack allows.
    if (term == nullptr) {
      scan_ = end_;
      const std::size_t raw = end_ - start_;
      if (raw >= limit_ ||
          StripFraming(std::string_view(base + start_, raw)).size() > max_message_size_) {
        return Bad(
            fmt::format("a line longer than max_message_size {} without LF", max_message_size_));
      }
      return Frame{};
    }
    const std::size_t pos = static_cast<std::size_t>(term - base);
    const std::string_view line = StripFraming(std::string_view(base + start_, pos - start_));
    const std::size_t raw = pos - start_;
    start_ = scan_ = pos + 1;
    if (raw >= limit_ || line.size() > max_message_size_) {
      return Bad(fmt::format("a line longer than max_message_size {}", max_message_size_));
    }
    if (!line.empty()) return Frame{Frame::kLine, line, {}};
  }
  return Frame{};
}

Frame StreamFramer::Finish() {
  if (bad_) return Frame{Frame::kBad, {}, "the stream was already bad"};
  if (end_ == start_) return Frame{};
  const std::string_view rest = StripFraming(std::string_view(buf_.get() + start_, end_ - start_));
  start_ = end_ = scan_ = 0;
  if (rest.empty()) return Frame{};
  if (framing_ == Framing::kLineTerminated) return Frame{Frame::kLine, rest, {}};
  return Frame{Frame::kLost, {}, "the stream ended inside an octet-counted frame"};
}

}  // namespace mxward
