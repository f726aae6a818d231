// Fuzz target: StreamFramer on arbitrary bytes. The first byte picks max_message_size (small, so
// oversize paths are reached) and the read size; the stream is then framed twice, once in reads of
// that size and once a byte at a time. Both must yield the same frames (framing may not depend on
// how TCP split the stream), every line must fit max_message_size, lie inside the buffer and carry
// no trailing LF/CR/NUL, and the buffer must never exceed its bound.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "engine/ingest/stream_framer.h"

namespace {

struct Result {
  std::vector<std::string> frames;  // "L:<line>", "E", "B", "X" (lost)
};

Result Frame(std::string_view data, std::size_t max, std::size_t chunk) {
  mxward::StreamFramer f(max);
  Result r;
  bool bad = false;
  auto check_capacity = [&] {
    if (f.capacity() > f.limit() || f.limit() != max + 32) std::abort();
  };
  while (!data.empty() && !bad) {
    const std::size_t took = f.Feed(data.substr(0, chunk));
    check_capacity();
    if (took == 0) std::abort();  // only a bad framer refuses bytes
    data.remove_prefix(took);
    for (;;) {
      const mxward::Frame fr = f.Next();
      check_capacity();
      if (fr.kind == mxward::Frame::kNeedMore) break;
      if (fr.kind == mxward::Frame::kBad) {
        r.frames.push_back("B");
        bad = true;
        break;
      }
      if (fr.kind == mxward::Frame::kEmpty) {
        r.frames.push_back("E");
        continue;
      }
      if (fr.kind != mxward::Frame::kLine) std::abort();
      if (fr.line.empty() || fr.line.size() > max) std::abort();
      const char last = fr.line.back();
      if (last == '\n' || last == '\r' || last == '\0') std::abort();
      r.frames.push_back("L:" + std::string(fr.line));
    }
  }
  if (!bad) {
    const mxward::Frame fr = f.Finish();
    if (fr.kind == mxward::Frame::kLine) r.frames.push_back("L:" + std::string(fr.line));
    if (fr.kind == mxward::Frame::kLost) r.frames.push_back("X");
    if (fr.kind == mxward::Frame::kBad || fr.kind == mxward::Frame::kEmpty) std::abort();
    if (f.buffered() != 0) std::abort();
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::size_t max = 16 + (data[0] & 0x3f) * 4;  // 16..268 bytes
  const std::size_t chunk = 1 + (data[0] >> 6) * 37;  // 1, 38, 75 or 112 bytes per read
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  const Result a = Frame(stream, max, chunk);
  const Result b = Frame(stream, max, 1);
  const Result c = Frame(stream, max, stream.size() + 1);
  if (a.frames != b.frames || a.frames != c.frames) std::abort();
  return 0;
}
