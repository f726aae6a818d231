#include "engine/rules/evidence_journal.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace mxward {

EvidenceJournal::EvidenceJournal(std::size_t lines, std::size_t line_bytes,
                                 std::uint64_t first_sequence)
    : lines_(std::max<std::size_t>(lines, 16)),
      line_bytes_(std::max<std::size_t>(line_bytes, 64)),
      bytes_(new char[lines_ * line_bytes_]),  // left uninitialised: pages are touched as used
      entries_(lines_),
      next_(std::max<std::uint64_t>(first_sequence, 1)) {}

std::uint32_t EvidenceJournal::Append(std::string_view line, UnixMicros time) {
  return AppendParts({line}, time);
}

std::uint32_t EvidenceJournal::AppendParts(std::initializer_list<std::string_view> parts,
                                           UnixMicros time) {
  const std::uint64_t seq = next_++;
  Entry& e = entries_[seq % lines_];
  e.seq = seq;
  e.time = time;
  char* const slot = &bytes_[(seq % lines_) * line_bytes_];
  std::size_t len = 0;
  bool cut = false;
  for (std::string_view part : parts) {
    if (part.empty()) continue;  // an absent field's view may have no data() for memcpy
    const std::size_t n = std::min(part.size(), line_bytes_ - len);
    std::memcpy(slot + len, part.data(), n);
    len += n;
    if (n < part.size()) {
      cut = true;
      break;
    }
  }
  e.len = static_cast<std::uint32_t>(len);
  e.cut = cut;
  return static_cast<std::uint32_t>(seq);
}

bool EvidenceJournal::Get(std::uint32_t ref, EvidenceLine* out) const {
  // Widen the 32-bit reference to the newest sequence number with those low bits.
  const std::uint64_t last = next_ - 1;
  std::uint64_t seq = (last & ~0xffffffffull) | ref;
  if (seq > last) seq -= 0x100000000ull;
  if (seq == 0 || last - seq >= lines_) return false;
  const Entry& e = entries_[seq % lines_];
  if (e.seq != seq) return false;
  out->time = e.time;
  out->text.assign(&bytes_[(seq % lines_) * line_bytes_], e.len);
  if (e.cut) out->text += "...";
  return true;
}

void EvidenceRing::Clear() { std::memset(w_, 0, kWords * sizeof(std::uint32_t)); }

void EvidenceRing::Add(std::uint32_t ref) {
  std::uint32_t first_n = first_count(), last_n = last_count(), last_head = w_[0] >> 16;
  std::uint32_t* first = w_ + 1;
  std::uint32_t* last = w_ + 1 + kEach;
  if (first_n < kEach) {
    first[first_n++] = ref;
  } else {
    last[(last_head + last_n) % kEach] = ref;
    if (last_n < kEach) {
      ++last_n;
    } else {
      last_head = (last_head + 1) % kEach;
    }
  }
  w_[0] = first_n | last_n << 8 | last_head << 16;
}

std::size_t EvidenceRing::Copy(const EvidenceJournal& journal,
                               std::vector<EvidenceLine>* out) const {
  const std::uint32_t first_n = first_count(), last_n = last_count(), last_head = w_[0] >> 16;
  const std::uint32_t* first = w_ + 1;
  const std::uint32_t* last = w_ + 1 + kEach;
  std::size_t dropped = 0;
  auto copy = [&](std::uint32_t ref) {
    EvidenceLine line;
    if (journal.Get(ref, &line)) {
      out->push_back(std::move(line));
    } else {
      ++dropped;
    }
  };
  for (std::uint32_t i = 0; i < first_n; ++i) copy(first[i]);
  const std::size_t first_held = out->size();
  for (std::uint32_t i = 0; i < last_n; ++i) copy(last[(last_head + i) % kEach]);
  if (dropped > 0) {
    out->insert(out->begin() + static_cast<std::ptrdiff_t>(first_held),
                EvidenceLine{0, fmt::format("({} evidence line(s) no longer held)", dropped)});
  }
  return dropped;
}

}  // namespace mxward
