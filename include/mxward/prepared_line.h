// PreparedLine and LinePreparer: the stateless half of one replayed line's work, so that it can
// run on another thread than the stateful half (issue 20, "use the cores the machine has").
//
// A line's work splits into
//   - the stateless stage: the syslog header (SyslogParser::Parse), program routing and the parser
//     pack's match with its field captures (ParserPack::Match). Both are const and thread-safe;
//     the result is a PreparedLine, a plain record whose views point into the line;
//   - the stateful stage: provenance counters, queue-id correlation, held attempts, the playbooks
//     and the incident recorder (Pipeline::OnPreparedLine), on the pipeline's one thread, in input
//     order.
//
// Live lines (`mxward serve` with parse workers) need nothing from the stateful stage: their
// year-inference reference is their own arrival time, known when they are read.
//
// The only thing the stateless stage needs from the stateful one is replay's year-inference
// reference: a year-less time is placed near the previous line's time. A worker does not know
// the time of the line before its block, so it guesses, and records the reference it used in
// each PreparedLine; the pipeline uses a record only if that reference is the one it has itself
// at that line and otherwise parses the line again (in practice: the first line of a block).
// Once one line agrees, the following ones agree too (the reference chain is a function of the
// lines), so the incidents are exactly those of one thread by construction, not by luck.
//
// Owned by whoever fills it (a worker) until handed over; the pipeline may modify it while it
// consumes it. Valid as long as the line's bytes are.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

#include "mxward/event.h"
#include "mxward/log_format.h"
#include "mxward/parser_pack.h"
#include "mxward/syslog_message.h"
#include "mxward/syslog_parser.h"
#include "mxward/time.h"

namespace mxward {

struct PreparedLine {
  UnixMicros reference = 0;               // the year-inference reference the line was parsed with
  const ParserPack* pack = nullptr;       // the pack it was matched with (null: not matched at all)
  LogFormat format = LogFormat::kSyslog;  // the format the line was parsed as
  bool parsed = false;                    // false: not syslog (malformed)
  bool matched = false;  // a pattern took it (event or not): pattern and event are set
  const PatternInfo* pattern = nullptr;
  SyslogMessage msg;  // time already set to the reference when the header had none
  Event event;        // what the pattern extracted (valid when matched)
};

class LinePreparer {
 public:
  // pack may be null (every line unmatched); it must outlive the preparer and is only read.
  // input_formats: the format of each input's lines by input_index (as
  // PipelineOptions::input_formats); an index beyond it uses `format`.
  LinePreparer(SyslogParser parser, const ParserPack* pack, LogFormat format,
               std::vector<LogFormat> input_formats = {})
      : parser_(parser), pack_(pack), format_(format), input_formats_(std::move(input_formats)) {}

  // Fills *out from line, parsing with *reference and then moving *reference on as replay does
  // (to the line's time; unchanged for a malformed line). Const and thread-safe.
  void Prepare(std::string_view line, UnixMicros* reference, PreparedLine* out,
               int input_index = -1) const;
  const ParserPack* pack() const { return pack_; }

 private:
  SyslogParser parser_;
  const ParserPack* pack_;
  LogFormat format_;
  std::vector<LogFormat> input_formats_;
};

// The stateful stage, as the parallel reader sees it (Pipeline implements it).
class PreparedLineSink {
 public:
  virtual ~PreparedLineSink() = default;
  // As LineSink::OnLine for a line whose stateless work is in *prepared (which the sink may
  // modify); the sink redoes that work when prepared->reference or pack is not what it would
  // have used.
  virtual void OnPreparedLine(std::string_view line, PreparedLine* prepared, UnixMicros received_at,
                              int input_index) = 0;
  // The year-inference reference the next line would be parsed with: a hint for the workers'
  // guess, read on the sink's thread.
  virtual UnixMicros replay_reference() const = 0;
};

}  // namespace mxward
