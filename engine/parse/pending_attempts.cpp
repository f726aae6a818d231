#include "engine/parse/pending_attempts.h"

#include <algorithm>
#include <bit>

#include "engine/base/fnv1a.h"

namespace mxward {

void OwnedEvent::Assign(const Event& e) {
  std::size_t total = e.line.size() + e.program.size() + e.host.size() + e.pid.size() +
                      e.message.size() + e.parser.size() + e.node.size();
  for (const auto& f : e.fields) total += f.size();
  storage_.clear();
  storage_.reserve(total);  // no reallocation below: the views taken stay valid
  auto keep = [this](std::string_view v) -> std::string_view {
    if (v.empty()) return {};
    const std::size_t at = storage_.size();
    storage_.append(v);
    return std::string_view(storage_.data() + at, v.size());
  };
  event_ = e;
  event_.line = keep(e.line);
  event_.program = keep(e.program);
  event_.host = keep(e.host);
  event_.pid = keep(e.pid);
  event_.message = keep(e.message);
  event_.parser = keep(e.parser);
  event_.node = keep(e.node);
  for (std::size_t i = 0; i < e.fields.size(); ++i) event_.fields[i] = keep(e.fields[i]);
}

PendingAttempts::PendingAttempts(const PendingAttemptsOptions& options)
    : options_(options), entries_(std::max<std::size_t>(options.capacity, 1)) {
  options_.capacity = entries_.size();
  index_.assign(std::bit_ceil(options_.capacity * 2), kNil);
  free_.reserve(options_.capacity);
  for (std::size_t i = options_.capacity; i > 0; --i)
    free_.push_back(static_cast<std::uint32_t>(i - 1));
}

std::uint32_t PendingAttempts::Find(const IpAddress& ip) const {
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = ip.Hash() & mask;; i = (i + 1) & mask) {
    const std::uint32_t slot = index_[i];
    if (slot == kNil) return kNil;
    if (entries_[slot].ip == ip) return slot;
  }
}

std::uint32_t PendingAttempts::Insert(const IpAddress& ip) {
  if (free_.empty()) {
    Entry& oldest = entries_[head_];
    if (oldest.held > 0) Release(oldest);
    ++stats_.evictions;
    Erase(head_);
  }
  const std::uint32_t slot = free_.back();
  free_.pop_back();
  Entry& e = entries_[slot];
  e.ip = ip;
  e.held = e.released = e.credit = e.held_sessionless = 0;
  e.hold_until = 0;
  e.attempts = {};
  e.live = true;
  e.prev = e.next = kNil;
  const std::size_t mask = index_.size() - 1;
  std::size_t i = ip.Hash() & mask;
  while (index_[i] != kNil) i = (i + 1) & mask;
  index_[i] = slot;
  ++live_;
  Touch(slot, now_);
  return slot;
}

void PendingAttempts::Erase(std::uint32_t slot) {
  Entry& e = entries_[slot];
  const std::size_t mask = index_.size() - 1;
  std::size_t i = e.ip.Hash() & mask;
  while (index_[i] != slot) i = (i + 1) & mask;
  // Backward-shift deletion: later members of the probe run move up so lookups never stop early.
  for (std::size_t j = (i + 1) & mask; index_[j] != kNil; j = (j + 1) & mask) {
    const std::size_t home = entries_[index_[j]].ip.Hash() & mask;
    // Move index_[j] into the hole at i when its home is not in (i, j] (cyclically).
    const bool home_in_between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!home_in_between) {
      index_[i] = index_[j];
      i = j;
    }
  }
  index_[i] = kNil;
  Unlink(slot);
  e.live = false;
  e.held = e.held_sessionless = 0;
  free_.push_back(slot);
  --live_;
}

void PendingAttempts::Unlink(std::uint32_t slot) {
  Entry& e = entries_[slot];
  if (e.prev != kNil) entries_[e.prev].next = e.next;
  if (e.next != kNil) entries_[e.next].prev = e.prev;
  if (head_ == slot) head_ = e.next;
  if (tail_ == slot) tail_ = e.prev;
  e.prev = e.next = kNil;
}

void PendingAttempts::Touch(std::uint32_t slot, UnixMicros now) {
  Entry& e = entries_[slot];
  if (tail_ != slot) {
    if (e.prev != kNil || e.next != kNil || head_ == slot) Unlink(slot);
    e.prev = tail_;
    if (tail_ != kNil) entries_[tail_].next = slot;
    tail_ = slot;
    if (head_ == kNil) head_ = slot;
  }
  e.touched = now;
}

void PendingAttempts::Release(Entry& e) {
  if (release_count_ == release_queue_.size()) release_queue_.emplace_back();
  OwnedEvent& out = release_queue_[release_count_++];
  out.Assign(e.newest.event());
  out.event().weight = e.held;
  stats_.released += e.held;
  e.released += e.held;
  e.held = e.held_sessionless = 0;
  for (SessionAttempt& a : e.attempts) a.held = false;
}

void PendingAttempts::NoteChaining(std::uint32_t passdb) {
  if (Chains(passdb)) return;
  chaining_[chaining_next_] = passdb;
  chaining_next_ = (chaining_next_ + 1) % kChainingPassdbs;
  chaining_count_ = std::min(chaining_count_ + 1, kChainingPassdbs);
}

bool PendingAttempts::Chains(std::uint32_t passdb) const {
  const auto learned = chaining_.begin() + chaining_count_;
  return std::find(chaining_.begin(), learned, passdb) != learned;
}

bool PendingAttempts::ContinuesAttempt(Entry& e, const Event& event, SessionAttempt** attempt) {
  const std::string_view session = event.get(Field::kSession);
  // Session, '>', user: one text per pair, as a session has no '>'. Without a session (Postfix's
  // SASL requests), '<', user: never equal to a pair with a session.
  std::uint64_t key = session.empty() ? Fnv1a(event.get(Field::kUser), Fnv1a("<"))
                                      : Fnv1a(event.get(Field::kUser), Fnv1a(">", Fnv1a(session)));
  if (key == 0) key = 1;
  std::uint32_t passdb = static_cast<std::uint32_t>(Fnv1a(event.get(Field::kPassdb)));
  if (passdb == 0) passdb = 1;
  // Whether `a` can take this passdb's line: that passdb has not logged it (and the chain is not
  // longer than we follow).
  const auto lacks_passdb = [passdb](const SessionAttempt& a) {
    if (a.passdb_count >= kPassdbsPerAttempt) return false;
    const auto logged = a.passdbs.begin() + a.passdb_count;
    return std::find(a.passdbs.begin(), logged, passdb) == logged;
  };
  SessionAttempt* a = nullptr;
  bool continues = false;
  if (!session.empty()) {
    // One connection's attempts come one after another: only its current attempt continues.
    for (SessionAttempt& candidate : e.attempts) {
      if (candidate.session_user == key) a = &candidate;
    }
    continues = a != nullptr && lacks_passdb(*a);
  } else {
    // No session: one user's attempts from one address may run side by side (several
    // connections), and only time bounds an attempt (every passdb of one request logs within
    // moments). The line continues the least recently touched recent attempt of its user that
    // its passdb has not logged; else it starts an attempt (each is counted by its first line).
    const UnixMicros recent = now_ - options_.hold_seconds * kMicrosPerSecond;
    for (SessionAttempt& candidate : e.attempts) {
      if (candidate.session_user == key && candidate.last >= recent && lacks_passdb(candidate) &&
          (a == nullptr || candidate.last < a->last)) {
        a = &candidate;
      }
    }
    continues = a != nullptr;
  }
  if (continues) {
    NoteChaining(a->passdbs[a->passdb_count - 1]);  // the attempt's previous passdb chains on
    a->passdbs[a->passdb_count++] = passdb;
    a->last = now_;
    *attempt = a;
    return true;  // another passdb's line of the same attempt
  }
  if (a == nullptr) {
    // A new attempt (sessionless) or (session, user) pair: it takes an unused slot, else the
    // least recently touched one.
    a = &e.attempts[0];
    for (SessionAttempt& candidate : e.attempts) {
      if (candidate.session_user == 0) {
        a = &candidate;
        break;
      }
      if (candidate.last < a->last) a = &candidate;
    }
    a->session_user = key;
    a->session = session.empty() ? 0 : (Fnv1a(session) | 1);
  }
  // This passdb logged the session's current attempt already (or the chain is longer than we
  // follow), or the line is the first of an attempt: it starts the next attempt.
  a->passdbs[0] = passdb;
  a->passdb_count = 1;
  a->last = now_;
  a->held = false;  // Hold() sets it when it holds this first line
  *attempt = a;
  return false;
}

bool PendingAttempts::Hold(const Event& event) {
  std::uint32_t slot = Find(event.client_ip);
  SessionAttempt* attempt = nullptr;
  if (slot != kNil && ContinuesAttempt(entries_[slot], event, &attempt)) {
    ++stats_.same_attempt;
    Touch(slot, now_);
    return false;
  }
  if (slot != kNil && entries_[slot].credit > 0) {
    --entries_[slot].credit;
    Touch(slot, now_);
    return false;
  }
  if (slot == kNil) {
    slot = Insert(event.client_ip);
    ContinuesAttempt(entries_[slot], event, &attempt);  // notes the attempt's first passdb
  }
  Entry& e = entries_[slot];
  attempt->held = true;
  if (e.held == 0) {
    e.hold_until = now_ + options_.hold_seconds * kMicrosPerSecond;
    next_hold_end_ = std::min(next_hold_end_, e.hold_until);
  }
  e.newest.Assign(event);
  ++e.held;
  if (!event.has(Field::kSession)) ++e.held_sessionless;
  ++stats_.held;
  Touch(slot, now_);
  return true;
}

std::uint32_t PendingAttempts::Settle(const IpAddress& ip, std::uint32_t weight, UnixMicros now) {
  Tick(now);
  std::uint32_t slot = Find(ip);
  if (slot == kNil) {
    if (weight == 0) return 0;
    slot = Insert(ip);
  }
  Entry& e = entries_[slot];
  const std::uint32_t matched = std::min(weight, e.held);
  e.held -= matched;
  e.held_sessionless -= std::min(e.held_sessionless, matched);
  stats_.matched += matched;
  std::uint32_t rest = weight - matched;
  const std::uint32_t already = std::min(rest, e.released);
  e.released -= already;
  rest -= already;
  // Capped so a flood of counting lines without passdb lines cannot overflow; what is lost is
  // only the folding of passdb lines that would arrive after a million counted attempts.
  e.credit = std::min<std::uint32_t>(e.credit + std::min<std::uint32_t>(rest, 1u << 20), 1u << 20);
  Touch(slot, now_);
  return weight - already;
}

void PendingAttempts::Succeeded(const IpAddress& ip, std::uint32_t successes, UnixMicros now) {
  Tick(now);
  const std::uint32_t slot = Find(ip);
  if (slot == kNil) return;
  Entry& e = entries_[slot];
  const std::uint32_t dropped = std::min(successes, e.held_sessionless);
  e.held -= dropped;
  e.held_sessionless -= dropped;
  stats_.succeeded += dropped;
  Touch(slot, now_);
}

bool PendingAttempts::LoggedIn(const IpAddress& ip, std::string_view session, UnixMicros now) {
  Tick(now);
  if (session.empty()) return false;
  const std::uint32_t slot = Find(ip);
  if (slot == kNil) return false;
  Entry& e = entries_[slot];
  const std::uint64_t key = Fnv1a(session) | 1;
  // The session's last attempt: one connection's attempts come one after another.
  SessionAttempt* a = nullptr;
  for (SessionAttempt& candidate : e.attempts) {
    if (candidate.session == key && (a == nullptr || candidate.last > a->last)) a = &candidate;
  }
  // Dropped only when its first line is still held and it stopped at a passdb that chains on:
  // an attempt that stopped at the chain's end failed there. Held lines of sessions are
  // e.held - e.held_sessionless (a counting line may have taken one already: then nothing is
  // left to drop).
  if (a == nullptr || !a->held || !Chains(a->passdbs[a->passdb_count - 1]) ||
      e.held <= e.held_sessionless) {
    return false;
  }
  a->held = false;
  --e.held;
  ++stats_.succeeded;
  ++stats_.logged_in;
  Touch(slot, now_);
  return true;
}

void PendingAttempts::Tick(UnixMicros now) { now_ = std::max(now_, now); }

void PendingAttempts::Advance(UnixMicros now) {
  Tick(now);
  const std::int64_t second = now_ / kMicrosPerSecond;
  if (second == last_scan_second_) return;
  last_scan_second_ = second;
  // Memory: the recency list is ordered by touch time, oldest first.
  const UnixMicros forget_before = now_ - options_.memory_seconds * kMicrosPerSecond;
  while (head_ != kNil && entries_[head_].touched < forget_before) {
    if (entries_[head_].held > 0) Release(entries_[head_]);
    Erase(head_);
  }
  // The walk below visits every address remembered (up to `capacity`) and ran for each second of
  // event time, on nearly every line of a busy log; it can only release something once the
  // earliest hold has ended. When it runs it is the same walk, so releases keep their order.
  if (now_ < next_hold_end_) return;
  UnixMicros next = kNoHold;
  for (std::uint32_t s = head_; s != kNil; s = entries_[s].next) {
    Entry& e = entries_[s];
    if (e.held > 0 && e.hold_until <= now_) Release(e);
    if (e.held > 0) next = std::min(next, e.hold_until);
  }
  next_hold_end_ = next;
}

void PendingAttempts::ReleaseAll() {
  for (std::uint32_t s = head_; s != kNil; s = entries_[s].next) {
    if (entries_[s].held > 0) Release(entries_[s]);
  }
}

const Event* PendingAttempts::NextReleased() {
  if (release_read_ < release_count_) return &release_queue_[release_read_++].event();
  release_read_ = release_count_ = 0;
  return nullptr;
}

}  // namespace mxward
