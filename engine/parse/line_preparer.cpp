// The stateless stage of a replayed or live line (prepared_line.h). Mirrors Pipeline::OnLine up to
// the extractor: the same Parse, the same "no time in the header: the reference" rule, the same
// reference update as replay, then the pack's match; everything stateful is left to the pipeline.
#include "mxward/prepared_line.h"

namespace mxward {

void LinePreparer::Prepare(std::string_view line, UnixMicros* reference, PreparedLine* out,
                           int input_index) const {
  out->reference = *reference;
  out->pack = pack_;
  out->format = input_index >= 0 && static_cast<std::size_t>(input_index) < input_formats_.size()
                    ? input_formats_[static_cast<std::size_t>(input_index)]
                    : format_;
  out->matched = false;
  out->pattern = nullptr;
  out->msg = SyslogMessage();  // a reused slot: nothing of the previous line may stay
  out->parsed = parser_.Parse(line, *reference, &out->msg, out->format).ok();
  if (!out->parsed) return;
  if (!out->msg.has_time) out->msg.time = *reference;
  *reference = out->msg.time;
  if (pack_ != nullptr) out->matched = pack_->Match(out->msg, &out->event, &out->pattern);
}

}  // namespace mxward
