// LineSink: where inputs (syslog listeners, file follower, stdin) deliver complete log lines.
//
// OnLine is called on the input's thread (the io_context thread for listeners) and processes the
// line synchronously before returning, so an input that waits for OnLine to return applies
// backpressure naturally: TCP and Unix stream inputs stop reading while the engine is busy.
// The line is valid only during the call.
#pragma once

#include <cstdint>
#include <string_view>

#include "mxward/line_origin.h"
#include "mxward/time.h"

namespace mxward {

class LineSink {
 public:
  virtual ~LineSink() = default;
  // input_index: position of the input in the config (for per-input counters).
  virtual void OnLine(std::string_view line, UnixMicros received_at, int input_index) = 0;
  // A line from an input that authenticated its sender (a tls input: the name on the client
  // certificate the input's allow list admitted). `node` is that identity, never text from the
  // line, and is valid only during the call. Sinks that do not record nodes get OnLine.
  virtual void OnLineFrom(std::string_view line, UnixMicros received_at, int input_index,
                          std::string_view node) {
    (void)node;
    OnLine(line, received_at, input_index);
  }
  // A line from an input that knows who handed it over (line_origin.h: a unix socket's peer,
  // journald's _UID). The Pipeline checks that writer against the program the line claims
  // (provenance.h); sinks that do not check provenance get OnLine.
  virtual void OnLineWithOrigin(std::string_view line, UnixMicros received_at, int input_index,
                                const LineOrigin& origin) {
    (void)origin;
    OnLine(line, received_at, input_index);
  }
};

}  // namespace mxward
