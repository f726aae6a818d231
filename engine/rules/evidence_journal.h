// EvidenceJournal and EvidenceRing: the log lines an incident shows as its evidence.
//
// What: the EvidenceJournal is one fixed ring of the last `lines` counted log lines (each cut at
// `line_bytes`, a cut line is shown with "..."), shared by every playbook of a PlaybookEngine. An
// EvidenceRing is a view over eleven uint32 words of a key's KeyTable record that hold 32-bit
// references into the journal: the first five lines of the key's episode and a ring of its last
// five. A key therefore costs 44 bytes of evidence however long its attack lasts, never a copy.
//
// Who owns what: the PlaybookEngine owns the journal (and hands it on at a reload with the rest of
// its state); the KeyTable owns the words an EvidenceRing looks at, which is only a pointer and is
// made afresh wherever it is needed. Both are used by the engine's one thread (the pipeline's);
// neither locks. No allocation after construction: Append copies into memory allocated once (its
// pages are touched as used); only Copy, at an incident, builds strings.
//
// Why: an incident must show the lines that caused it, but copying every counted line into every
// key would cost memory per key and an allocation per event. A reference can outlive its line: a
// slow attack on a busy server keeps a key longer than the journal keeps its first lines. Such a
// line is not guessed at; Copy counts it as dropped and says so in the evidence.
//
// References are the low 32 bits of the line's sequence number (1, 2, ...); Get widens one to the
// newest sequence number with those bits, so a reference stays exact across the 2^32 wrap as long
// as the journal holds fewer than 2^32 lines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <vector>

#include "mxward/incident.h"
#include "mxward/time.h"

namespace mxward {

class EvidenceJournal {
 public:
  // Holds max(lines, 16) lines of up to max(line_bytes, 64) bytes. first_sequence is the number
  // the first line gets (tests start near 2^32 to cross the wrap of the 32-bit references).
  EvidenceJournal(std::size_t lines, std::size_t line_bytes, std::uint64_t first_sequence = 1);

  // Copies line (cut at line_bytes) into the ring, overwriting the oldest; returns its reference.
  std::uint32_t Append(std::string_view line, UnixMicros time);
  // As Append, for the line the concatenation of parts would be, without building it.
  std::uint32_t AppendParts(std::initializer_list<std::string_view> parts, UnixMicros time);
  // The line `ref` names, or false when it has left the ring (or was never appended).
  bool Get(std::uint32_t ref, EvidenceLine* out) const;

  std::size_t capacity() const { return lines_; }
  std::size_t line_bytes() const { return line_bytes_; }

 private:
  struct Entry {
    std::uint64_t seq = 0;
    UnixMicros time = 0;
    std::uint32_t len = 0;
    bool cut = false;
  };
  std::size_t lines_;
  std::size_t line_bytes_;
  std::unique_ptr<char[]> bytes_;  // lines_ * line_bytes_, left uninitialised
  std::vector<Entry> entries_;
  std::uint64_t next_;
};

// A view over a key's kWords record words: one meta word (first count | last count << 8 |
// last head << 16), kEach references to the episode's first lines, then a ring of kEach to its
// last ones. All zero words are an empty ring.
class EvidenceRing {
 public:
  static constexpr std::uint32_t kEach = 5;
  static constexpr std::uint32_t kWords = 1 + 2 * kEach;

  explicit EvidenceRing(std::uint32_t* words) : w_(words) {}

  // Forgets every reference (a new episode).
  void Clear();
  // Keeps ref as one of the first kEach, or else as the newest of the last kEach.
  void Add(std::uint32_t ref);
  std::uint32_t first_count() const { return w_[0] & 0xff; }
  std::uint32_t last_count() const { return (w_[0] >> 8) & 0xff; }

  // Appends the lines the journal still holds to *out, first ones then last ones, oldest first.
  // When some are gone, a line "(N evidence line(s) no longer held)" (time 0) stands between the
  // first and the last ones. Returns N.
  std::size_t Copy(const EvidenceJournal& journal, std::vector<EvidenceLine>* out) const;

 private:
  std::uint32_t* w_;
};

}  // namespace mxward
