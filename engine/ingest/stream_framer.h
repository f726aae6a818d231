// StreamFramer: RFC 6587 framing of one syslog byte stream (a TCP, unix-stream or TLS
// connection), without I/O. Pure: bytes go in, frames come out; the caller owns the socket.
//
// Framing is decided from the stream's first bytes: octet-counted ("123 <34>1 ...") when it starts
// with a digit 1-9, up to 10 digits and a space, otherwise LF-terminated (NUL and CRLF accepted
// too). A first byte that is neither printable ASCII nor '<', LF, CR or NUL is not syslog (a TLS
// ClientHello on a plain port, binary) and makes the stream bad. So are a bad octet count, a length
// over max_message_size and an unterminated line longer than max_message_size. Once bad, the
// framer stays bad; the caller closes the connection.
//
// Memory is bounded: the buffer holds at most one message plus its octet-count header
// (max_message_size + 32 bytes), whatever the peer sends. It starts at 64 KiB (or the bound, if
// smaller) and grows only for a longer octet-counted frame or line.
//
// Use:
//   std::span<char> space = framer.WritableSpace();   // read the socket into it ...
//   framer.Commit(n);                                 // ... then say how much arrived
//   (or framer.Feed(bytes), which copies as much as fits and returns how many it took)
//   for (;;) { Frame f = framer.Next(); if (f.kind == Frame::kNeedMore) break; ... }
//   framer.Finish() when the peer closed: a last line without LF is still a line.
//
// A Frame's `line` (framing removed: no trailing LF/CR/NUL) points into the framer's buffer and is
// valid until the next call of any non-const member. Not thread-safe; one framer per connection.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace mxward {

struct Frame {
  enum Kind {
    kLine,      // `line` is a complete message
    kEmpty,     // an octet-counted frame that was empty after removing framing (count it)
    kNeedMore,  // nothing complete is buffered: read more (or Finish at the end of the stream)
    kBad,       // the stream is not well-framed syslog (`why` says how); close it
    kLost,      // Finish only: a partial octet-counted frame was cut off by the end of the stream
  };
  Kind kind = kNeedMore;
  std::string_view line;
  std::string why;
};

class StreamFramer {
 public:
  enum class Framing { kUnknown, kOctetCounted, kLineTerminated };

  explicit StreamFramer(std::size_t max_message_size);
  StreamFramer(const StreamFramer&) = delete;
  StreamFramer& operator=(const StreamFramer&) = delete;

  // Room for the next read, after moving unprocessed bytes to the front and growing the buffer
  // (up to the bound) when needed. Empty only when the framer is bad.
  std::span<char> WritableSpace();
  // n bytes were written into the span WritableSpace() returned.
  void Commit(std::size_t n);
  // Copies as much of `bytes` as fits now and returns how many were taken; call Next() until
  // kNeedMore and Feed the rest. Returns 0 when bad.
  std::size_t Feed(std::string_view bytes);

  // The next frame in the buffer.
  Frame Next();
  // The end of the stream: a last line without terminator (kLine), a cut octet-counted frame
  // (kLost) or nothing (kNeedMore). The buffered bytes are consumed.
  Frame Finish();

  Framing framing() const { return framing_; }
  bool bad() const { return bad_; }
  std::size_t capacity() const { return cap_; }  // bytes allocated now
  std::size_t buffered() const { return end_ - start_; }
  std::size_t limit() const { return limit_; }  // the most capacity() will ever be

 private:
  void Compact();
  void Grow(std::size_t want);
  Frame Bad(std::string why);

  std::size_t max_message_size_;
  std::size_t limit_;
  std::size_t cap_ = 0;
  std::unique_ptr<char[]> buf_;
  std::size_t start_ = 0, end_ = 0, scan_ = 0;
  Framing framing_ = Framing::kUnknown;
  bool bad_ = false;
};

}  // namespace mxward
