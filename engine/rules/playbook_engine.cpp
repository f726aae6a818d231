#include "mxward/playbook_engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/rules/distinct_window.h"
#include "engine/rules/evidence_journal.h"
#include "engine/rules/key_table.h"
#include "engine/rules/novel_baseline.h"
#include "engine/rules/sliding_window_counter.h"

namespace mxward {

namespace {

// Record layout (uint32 words) shared by every trigger type; trigger state follows at kState.
// (A key in cooldown has no record: its state starts over at an incident, so it is erased and
// only its cooldown end is kept, in Runtime::cooldowns.)
constexpr std::uint32_t kEpisodeWord = 0;   // int64 µs: first counted event of this episode
constexpr std::uint32_t kEvidenceWord = 2;  // the episode's EvidenceRing
constexpr std::uint32_t kStateWord = kEvidenceWord + EvidenceRing::kWords;

UnixMicros GetI64(const std::uint32_t* w) {
  return static_cast<UnixMicros>((static_cast<std::uint64_t>(w[1]) << 32) | w[0]);
}
void SetI64(std::uint32_t* w, UnixMicros v) {
  const auto u = static_cast<std::uint64_t>(v);
  w[0] = static_cast<std::uint32_t>(u);
  w[1] = static_cast<std::uint32_t>(u >> 32);
}

std::uint64_t Fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

// A seeded streaming hash; the seed is random per engine so a client cannot pick colliding names.
struct Hasher {
  std::uint64_t h;
  void Add(std::uint64_t v) { h = Fmix64(h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2))); }
  void AddLower(std::string_view s) {
    std::uint64_t chunk = 0;
    int n = 0;
    for (char c : s) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      chunk |= static_cast<std::uint64_t>(static_cast<unsigned char>(c)) << (8 * n);
      if (++n == 8) {
        Add(chunk);
        chunk = 0;
        n = 0;
      }
    }
    Add(chunk);
    Add(s.size());
  }
  void AddAddress(const IpAddress& a, int len) {
    const IpAddress m = a.Masked(len);
    std::uint64_t hi = 0, lo = 0;
    std::memcpy(&hi, m.bytes().data(), 8);
    std::memcpy(&lo, m.bytes().data() + 8, 8);
    Add(static_cast<std::uint64_t>(m.family()) << 8 | static_cast<std::uint64_t>(len));
    Add(hi);
    Add(lo);
  }
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Hashes one key part of e; false when the event lacks it.
bool HashPart(const KeyPart& p, const Event& e, Hasher* h) {
  if (p.field == Field::kClientIp) {
    if (!e.client_ip.valid()) return false;
    h->AddAddress(e.client_ip, p.LengthFor(e.client_ip));
    return true;
  }
  const std::string_view v = e.get(p.field);
  if (v.empty()) return false;
  h->AddLower(v);
  return true;
}

std::string PartText(const KeyPart& p, const Event& e) {
  if (p.field == Field::kClientIp) {
    return IpPrefix(e.client_ip, p.LengthFor(e.client_ip)).ToString();
  }
  return Lower(e.get(p.field));
}

std::string KeyText(const Playbook& pb, const Event& e) {
  std::string out;
  for (const KeyPart& p : pb.key) {
    if (!out.empty()) out += ',';
    out += PartText(p, e);
  }
  return out;
}

// The text a novel baseline stores for e's key and value, built only when it stores them first.
class EventEntryText final : public NovelBaseline::EntryText {
 public:
  EventEntryText(const Playbook& pb, const Event& e) : pb_(pb), e_(e) {}
  std::string Key() const override { return KeyText(pb_, e_); }
  std::string Value() const override { return PartText(pb_.trigger.field, e_); }

 private:
  const Playbook& pb_;
  const Event& e_;
};

// What fired, for the incident: "20 auth_failure in 10m (count >= 20)".
std::string TriggerText(const Playbook& pb, std::uint64_t count) {
  const Trigger& tr = pb.trigger;
  std::string events;
  for (int i = 0; i < kEventTypeCount; ++i) {
    if (!pb.match.types[i]) continue;
    if (!events.empty()) events += '/';
    events += EventTypeName(static_cast<EventType>(i));
  }
  const std::string window = FormatDurationSeconds(tr.window_seconds);
  switch (tr.type) {
    case TriggerType::kCount:
      return fmt::format("{} {} in {} (count >= {}{})", count, events, window, tr.threshold,
                         tr.min_addresses > 0
                             ? fmt::format(", from >= {} addresses", tr.min_addresses)
                             : std::string());
    case TriggerType::kDistinct:
      return fmt::format("{} distinct {} in {} of {} (distinct >= {}{})", count,
                         FieldName(tr.field.field), window, events, tr.threshold,
                         tr.min_addresses > 0
                             ? fmt::format(", from >= {} addresses", tr.min_addresses)
                             : std::string());
    case TriggerType::kConsecutive:
      return fmt::format("{} consecutive {} (consecutive >= {})", count, events, tr.threshold);
    case TriggerType::kNovel:
      return fmt::format("{} {} to {} values never used before in {} (novel >= {})", count, events,
                         FieldName(tr.field.field), window, tr.threshold);
  }
  return {};
}

// What fired when a cold baseline's fallback did: "warm-up fallback: 101 distinct
// recipient_domain in 1h of delivery (distinct > 100; this sasl_user has learned for 2h of 7d)".
std::string FallbackTriggerText(const Playbook& pb, std::uint64_t count, UnixMicros learning_since,
                                UnixMicros t, std::int64_t warmup_seconds) {
  const WarmupFallback& fb = pb.trigger.fallback;
  std::string events;
  for (int i = 0; i < kEventTypeCount; ++i) {
    if (!pb.match.types[i]) continue;
    if (!events.empty()) events += '/';
    events += EventTypeName(static_cast<EventType>(i));
  }
  const std::int64_t learned =
      learning_since > 0 && t > learning_since ? (t - learning_since) / kMicrosPerSecond : 0;
  return fmt::format(
      "warm-up fallback: {} distinct {} in {} of {} (distinct > {}; this {} has learned for {} of "
      "{})",
      count, FieldName(fb.field.field), FormatDurationSeconds(fb.window_seconds), events, fb.over,
      pb.key_kind, FormatDurationSeconds(learned), FormatDurationSeconds(warmup_seconds));
}

// An action parameter for this incident: its literal text with the placeholders filled in.
// client_prefix_len >= 0: e was rebuilt from another node's key text (a folded event), so its
// client_ip stands for the key's prefix, printed as that prefix.
std::string ExpandTemplate(const Template& tpl, const Playbook& pb, const Incident& inc,
                           const Event& e, int client_prefix_len) {
  std::string out;
  for (const auto& part : tpl.parts) {
    switch (part.kind) {
      case Template::Kind::kLiteral:
        out += part.literal;
        break;
      case Template::Kind::kField:
        if (part.field == Field::kClientIp) {
          if (e.client_ip.valid() && client_prefix_len >= 0) {
            out += IpPrefix(e.client_ip, client_prefix_len).ToString();
          } else if (e.client_ip.valid()) {
            out += e.client_ip.ToString();
          }
        } else {
          out += e.get(part.field);
        }
        break;
      case Template::Kind::kKey:
        out += inc.key;
        break;
      case Template::Kind::kKeyKind:
        out += inc.key_kind;
        break;
      case Template::Kind::kCount:
        out += std::to_string(inc.count);
        break;
      case Template::Kind::kWindow:
        out += FormatDurationSeconds(inc.window_seconds);
        break;
      case Template::Kind::kEvidence:
        for (const auto& l : inc.evidence) {
          out += FormatRfc3339(l.time);
          out += ' ';
          out += l.text;
          out += '\n';
        }
        break;
      case Template::Kind::kPlaybook:
        out += pb.name;
        break;
      case Template::Kind::kDescription:
        out += pb.description;
        break;
      case Template::Kind::kSeverity:
        out += SeverityName(pb.severity);
        break;
      case Template::Kind::kTrigger:
        out += inc.trigger;
        break;
      case Template::Kind::kFirstSeen:
        out += FormatRfc3339(inc.first_seen);
        break;
      case Template::Kind::kLastSeen:
        out += FormatRfc3339(inc.last_seen);
        break;
    }
  }
  return out;
}

// How much longer a repeat offender's bans and cooldown are: factor^(earlier incidents), never
// beyond the escalation's maximum (or the unescalated duration, when that is longer).
struct RepeatOffenderScale {
  double multiplier = 1;
  std::int64_t max_seconds = 0;

  std::int64_t Apply(std::int64_t seconds) const {
    if (multiplier == 1 || seconds <= 0) return seconds;
    const double d = static_cast<double>(seconds) * multiplier;
    const double cap = static_cast<double>(std::max(max_seconds, seconds));
    return static_cast<std::int64_t>(std::min(d, cap));
  }
};

// One playbook with its state.
struct Runtime {
  Playbook pb;
  int index = 0;
  std::optional<SlidingWindowCounter> counter;  // count, novel
  std::optional<DistinctWindow> distinct;
  std::optional<DistinctWindow> addresses;  // [trigger] min_addresses: addresses seen per key
  std::uint32_t addresses_word = 0;         // where their state starts in a record
  std::unique_ptr<KeyTable> table;
  // Each held key, by record number, written when the key is inserted and read by `mxward
  // status` (KeyTextOf). A key that is one address (key_by_address) keeps the address, and its
  // text (inet_ntop, "/24") is printed only when someone reads it: printing it for every new key
  // cost 9% of a botnet log's instructions and 25% of a key flood's. Other keys keep their text
  // (lower-cased fields; an IPv4 address fits std::string's inline buffer). A slot of an erased
  // record keeps a stale value until the record is reused, and is never read before.
  std::vector<std::string> key_text;
  std::vector<IpAddress> key_address;
  // The key is one client_ip part, and the playbook is not shared (a shared window sends the
  // key's text with every count: it is printed once, at insertion, as before).
  bool key_by_address = false;
  std::uint32_t words = 0;  // record size
  // Shared playbooks: where a record keeps the int64 event time of the key's last reset (local
  // or another node's); 0: not shared. An event older than it is not counted.
  std::uint32_t reset_word = 0;
  bool key_has_ip = false;                 // the global address allowlist applies
  std::optional<NovelBaseline> baseline;   // novel
  std::optional<DistinctWindow> fallback;  // novel with [trigger.fallback]: its state follows
  std::uint32_t fallback_word = 0;         // the trigger's state, at this offset from kStateWord
  // Keys in cooldown -> its end. Only keys that opened an incident: bounded by the incident rate
  // and swept of ended cooldowns as it grows.
  std::unordered_map<std::uint64_t, UnixMicros> cooldowns;
  std::size_t cooldown_sweep_at = 1024;
  // Keys whose last incident is still in its life -> its end (Incident::open_until). A trigger
  // before then is a repeat that the store folds into that incident: it is no new offence for
  // escalation and does not move the end. Swept like cooldowns.
  std::unordered_map<std::uint64_t, UnixMicros> open_until;
  std::size_t open_sweep_at = 1024;
  // Times the trigger fired: written on the engine's thread, read by the metrics scrape.
  std::atomic<std::uint64_t> triggers{0};
  // Events this playbook matched but did not count or reset: not verified, and the playbook
  // takes verified evidence only (Playbook::verified_evidence_only).
  std::atomic<std::uint64_t> unverified_ignored{0};
};

// The text of held record `rec`'s key, the text KeyText gave the event that inserted it; false
// when the record has none.
bool KeyTextOf(const Runtime& r, std::uint32_t rec, std::string* out) {
  if (r.key_by_address) {
    if (rec >= r.key_address.size()) return false;
    const IpAddress& a = r.key_address[rec];
    *out = IpPrefix(a, r.pb.key[0].LengthFor(a)).ToString();
    return true;
  }
  if (rec >= r.key_text.size()) return false;
  *out = r.key_text[rec];
  return true;
}

struct Offense {
  UnixMicros time;
  int playbook;  // -1: imported from a playbook no longer loaded
};

class Engine final : public PlaybookEngine {
 public:
  Engine(std::vector<Playbook> playbooks, const Config& config,
         const PlaybookEngineOptions& options)
      : journal_(options.evidence_lines, options.evidence_line_bytes),
        dry_run_(config.dry_run),
        evidence_raw_(config.evidence_raw) {
    seed_ = options.hash_seed;
    if (seed_ == 0) {
      std::random_device rd;
      seed_ = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ 0x5bd1e995ull;
    }
    allow_set_ = std::make_shared<const AllowSet>(AllowSet::Compile(config.allow_addresses, {}));
    for (const auto& u : config.allow_users) global_allow_.users.push_back(Lower(u));
    for (const auto& d : config.allow_domains) global_allow_.domains.push_back(Lower(d));
    std::vector<std::string> local_domains;
    for (const auto& d : config.local_domains) local_domains.push_back(Lower(d));
    for (auto& pb : playbooks) {
      for (auto* conditions : {&pb.match.conditions, &pb.trigger.reset.conditions}) {
        for (Condition& c : *conditions) {
          if (c.op == ConditionOp::kLocalDomain || c.op == ConditionOp::kNotLocalDomain) {
            c.values = local_domains;
          }
        }
      }
    }
    std::sort(playbooks.begin(), playbooks.end(),
              [](const Playbook& a, const Playbook& b) { return a.name < b.name; });
    for (auto& pb : playbooks) {
      auto r = std::make_unique<Runtime>();
      r->index = static_cast<int>(runtimes_.size());
      const Trigger& tr = pb.trigger;
      std::uint32_t words = kStateWord;
      UnixMicros idle = std::max<std::int64_t>(tr.window_seconds, 1);
      switch (tr.type) {
        case TriggerType::kCount:
        case TriggerType::kNovel:
          r->counter.emplace(tr.threshold, tr.window_seconds);
          words += r->counter->state_words();
          break;
        case TriggerType::kDistinct:
          r->distinct.emplace(tr.threshold, tr.window_seconds);
          words += r->distinct->state_words();
          break;
        case TriggerType::kConsecutive:
          words += 3;  // run length, last counted time
          idle = tr.window_seconds > 0 ? tr.window_seconds : 7 * 86400;
          break;
      }
      if (tr.min_addresses > 0) {
        r->addresses.emplace(tr.min_addresses, std::max<std::int64_t>(idle, 1));
        r->addresses_word = words;
        words += r->addresses->state_words();
      }
      if (tr.type == TriggerType::kNovel) {
        r->baseline.emplace(tr.baseline, tr.window_seconds);
        if (tr.fallback.enabled) {
          r->fallback.emplace(tr.fallback.over + 1, tr.fallback.window_seconds);
          r->fallback_word = words - kStateWord;
          words += r->fallback->state_words();
          idle = std::max<std::int64_t>(idle, tr.fallback.window_seconds);
        }
      }
      for (const KeyPart& k : pb.key) r->key_has_ip = r->key_has_ip || k.field == Field::kClientIp;
      r->key_by_address = pb.key.size() == 1 && pb.key[0].field == Field::kClientIp && !pb.shared;
      if (pb.shared && r->counter) {
        r->reset_word = words;
        words += 2;
      }
      r->words = words;
      r->table = std::make_unique<KeyTable>(words, pb.max_keys, idle * kMicrosPerSecond);
      for (int t = 0; t < kEventTypeCount; ++t) {
        std::uint8_t role = 0;
        if (pb.match.types[t]) role |= kRoleCount;
        if (tr.reset.types[t]) role |= kRoleReset;
        if (role) routes_[t].push_back(Route{r->index, role});
      }
      if (pb.escalation.enabled) {
        max_lookback_ = std::max(max_lookback_, pb.escalation.lookback_seconds);
      }
      r->pb = std::move(pb);
      runtimes_.push_back(std::move(r));
    }
  }

  void OnEvent(const Event& e, IncidentSink* sink) override {
    const auto& routes = routes_[static_cast<int>(e.type)];
    if (routes.empty()) return;
    ++stats_.events;
    journal_ref_valid_ = false;
    for (const Route& route : routes) {
      Runtime& r = *runtimes_[route.playbook];
      const bool counts = (route.role & kRoleCount) && r.pb.match.Matches(e);
      if (!counts && !((route.role & kRoleReset) && r.pb.trigger.reset.Matches(e))) continue;
      // Neither counted nor, as a forged "login succeeded", allowed to wipe a mailbox's failures.
      if (r.pb.verified_evidence_only && !e.verified) {
        Ignore(r);
      } else if (counts) {
        Count(r, e, sink);
      } else if (r.reset_word != 0 && shared_sink_ != nullptr) {
        ResetSharedKey(r, e);
      } else {
        ResetKey(r, e);
      }
    }
    // keys_held_ follows every insert and erase: summing the tables here, per event, was ~80
    // instructions a line on the attack corpora.
    stats_.tracked_keys = keys_held_;
    stats_.peak_keys = std::max(stats_.peak_keys, keys_held_);
  }

  std::vector<std::string_view> WatchingPlaybooks(const Event& e) const override {
    std::vector<std::string_view> names;
    for (const Route& route : routes_[static_cast<int>(e.type)]) {
      const Runtime& r = *runtimes_[route.playbook];
      if ((route.role & kRoleCount) && r.pb.match.Matches(e)) names.push_back(r.pb.name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  bool Watches(const Event& e) const override {
    for (const Route& route : routes_[static_cast<int>(e.type)]) {
      if ((route.role & kRoleCount) && runtimes_[route.playbook]->pb.match.Matches(e)) return true;
    }
    return false;
  }

  std::int64_t PolicyDelaySeconds(const Event& probe) const override {
    std::int64_t delay = 0;
    for (const Route& route : routes_[static_cast<int>(probe.type)]) {
      const Runtime& r = *runtimes_[route.playbook];
      const PolicyDelay& pd = r.pb.policy_delay;
      if (!(route.role & kRoleCount) || !pd.enabled() || pd.seconds <= delay) continue;
      if (!r.pb.match.Matches(probe) || Allowlisted(r, probe)) continue;
      std::uint64_t kh = 0;
      if (!KeyHash(r.pb, probe, &kh)) continue;
      if (auto c = r.cooldowns.find(kh); c != r.cooldowns.end() && probe.time < c->second) continue;
      const std::uint32_t rec = r.table->Find(kh);
      if (rec == KeyTable::kNone) continue;
      if (HeldAt(r, rec, probe.time) >= pd.from) delay = pd.seconds;
    }
    return delay;
  }

  std::vector<KeyStanding> ClosestKeys(std::size_t i, std::size_t n,
                                       UnixMicros now) const override {
    std::vector<KeyStanding> out;
    if (i >= runtimes_.size() || n == 0) return out;
    const Runtime& r = *runtimes_[i];
    r.table->ForEach([&](std::uint32_t rec) {
      std::uint64_t threshold = r.pb.trigger.threshold;
      std::uint64_t held = 0;
      if (r.fallback && !r.baseline->KeyWarm(r.table->hash(rec), now)) {
        // A novel key still warming up is judged by its fallback (Count).
        held = r.fallback->CountAt(r.table->record(rec) + kStateWord + r.fallback_word, now);
        threshold = r.pb.trigger.fallback.over + 1ull;
      } else {
        held = HeldAt(r, rec, now);
      }
      std::string key;
      if (held == 0 || !KeyTextOf(r, rec, &key)) return;
      out.push_back(KeyStanding{std::move(key), held, threshold, r.table->last_seen(rec)});
    });
    const auto closer = [](const KeyStanding& a, const KeyStanding& b) {
      const double fa = static_cast<double>(a.count) /
                        static_cast<double>(std::max<std::uint64_t>(a.threshold, 1));
      const double fb = static_cast<double>(b.count) /
                        static_cast<double>(std::max<std::uint64_t>(b.threshold, 1));
      if (fa != fb) return fa > fb;
      return a.last_seen > b.last_seen;
    };
    if (out.size() > n) {
      std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), out.end(),
                        closer);
      out.resize(n);
    } else {
      std::sort(out.begin(), out.end(), closer);
    }
    return out;
  }

  std::size_t playbook_count() const override { return runtimes_.size(); }
  const EngineStats& stats() const override { return stats_; }

  std::vector<std::string> playbook_names() const override {
    std::vector<std::string> out;
    for (const auto& r : runtimes_) out.push_back(r->pb.name);
    return out;
  }
  std::size_t window_keys(std::size_t i) const override {
    return i < runtimes_.size() ? runtimes_[i]->table->size() : 0;
  }
  std::uint64_t window_evictions(std::size_t i) const override {
    return i < runtimes_.size() ? runtimes_[i]->table->evictions() : 0;
  }
  std::uint64_t playbook_triggers(std::size_t i) const override {
    return i < runtimes_.size() ? runtimes_[i]->triggers.load(std::memory_order_relaxed) : 0;
  }
  std::uint64_t playbook_unverified_ignored(std::size_t i) const override {
    return i < runtimes_.size() ? runtimes_[i]->unverified_ignored.load(std::memory_order_relaxed)
                                : 0;
  }
  const Playbook* FindPlaybook(std::string_view name) const override {
    const Runtime* r = Find(name);
    return r ? &r->pb : nullptr;
  }

  std::vector<std::string> BaselinePlaybooks() const override {
    std::vector<std::string> out;
    for (const auto& r : runtimes_) {
      if (r->pb.trigger.type == TriggerType::kNovel) out.push_back(r->pb.name);
    }
    return out;
  }

  Status ImportBaselines(std::string_view playbook,
                         const std::vector<BaselineEntry>& entries) override {
    Runtime* r = const_cast<Runtime*>(Find(playbook));
    if (!r || r->pb.trigger.type != TriggerType::kNovel) {
      return Status::NotFound(fmt::format("no novel playbook named '{}'", playbook));
    }
    const NovelBaseline& baseline = *r->baseline;
    const std::size_t values = baseline.values_held();
    const std::uint64_t overflow = baseline.overflow();
    std::size_t bad = 0;
    for (const auto& entry : entries) {
      Event e;
      if (!EventFromKeyText(r->pb, entry.key, &e)) {
        ++bad;
        continue;
      }
      if (r->pb.trigger.field.field == Field::kClientIp) {
        IpPrefix p;
        if (!IpPrefix::Parse(entry.value, &p)) {
          ++bad;
          continue;
        }
        e.client_ip = p.address();
      } else {
        e.set(r->pb.trigger.field.field, entry.value);
      }
      std::uint64_t kh = 0, vh = 0;
      if (!KeyHash(r->pb, e, &kh) || !ValueHash(r->pb.trigger.field, e, &vh)) {
        ++bad;
        continue;
      }
      r->baseline->Import(kh, vh, entry.first_seen, entry.last_seen, EventEntryText(r->pb, e));
    }
    stats_.baseline_values += baseline.values_held() - values;
    stats_.baseline_overflow += baseline.overflow() - overflow;
    if (bad > 0) {
      return Status::InvalidArgument(fmt::format(
          "{} of {} baseline entries for '{}' did not fit its key", bad, entries.size(), playbook));
    }
    return Status::Ok();
  }

  std::vector<BaselineBatch> TakeDirtyBaselines() override {
    std::vector<BaselineBatch> out;
    for (auto& r : runtimes_) {
      if (!r->baseline) continue;
      BaselineBatch batch;
      batch.playbook = r->pb.name;
      r->baseline->TakeDirty(&batch.entries);
      if (!batch.entries.empty()) out.push_back(std::move(batch));
    }
    return out;
  }

  std::size_t AdoptState(PlaybookEngine& previous) override {
    auto* old = dynamic_cast<Engine*>(&previous);
    if (!old || old == this) return 0;
    // Keys are hashed with the seed: keep the old one so adopted tables still find their keys.
    seed_ = old->seed_;
    std::swap(journal_, old->journal_);
    offenses_ = std::move(old->offenses_);
    std::size_t kept = 0;
    for (auto& r : runtimes_) {
      for (auto& o : old->runtimes_) {
        if (o->pb.name != r->pb.name || o->pb.identity != r->pb.identity || !o->table) continue;
        r->table = std::move(o->table);
        r->key_text = std::move(o->key_text);
        r->key_address = std::move(o->key_address);
        r->baseline = std::move(o->baseline);
        r->cooldowns = std::move(o->cooldowns);
        r->open_until = std::move(o->open_until);
        ++kept;
      }
    }
    keys_held_ = 0;
    for (const auto& r : runtimes_) keys_held_ += r->table->size();
    return kept;
  }

  void UseSharedWindowSink(SharedWindowSink* sink) override { shared_sink_ = sink; }

  bool FoldRemoteCount(std::string_view playbook, std::string_view key, UnixMicros time,
                       std::uint32_t weight, std::string_view node, IncidentSink* sink) override {
    Runtime* r = Find(playbook);
    Event e;
    if (r == nullptr || !r->pb.shared || node.empty() || !EventFromKeyText(r->pb, key, &e)) {
      ++stats_.fold_refused;
      return false;
    }
    // An event of the first type the playbook counts: the allowlists judge it as they would
    // have judged the events of that key here.
    for (int i = 0; i < kEventTypeCount; ++i) {
      if (r->pb.match.types[i]) {
        e.type = static_cast<EventType>(i);
        break;
      }
    }
    e.time = time;
    e.weight = std::max<std::uint32_t>(weight, 1);
    e.verified = true;  // the other node counted it after its own evidence check
    const std::uint64_t folded = stats_.folded;
    folding_node_ = node;
    Count(*r, e, sink);
    folding_node_ = {};
    return stats_.folded > folded;
  }

  bool FoldRemoteReset(std::string_view playbook, std::string_view key, UnixMicros time,
                       std::string_view node) override {
    Runtime* r = Find(playbook);
    Event e;
    std::uint64_t kh = 0;
    if (r == nullptr || !r->pb.shared || r->reset_word == 0 || node.empty() ||
        !EventFromKeyText(r->pb, key, &e) || !KeyHash(r->pb, e, &kh)) {
      ++stats_.fold_refused;
      return false;
    }
    ++stats_.resets_folded;
    // A key not held here: nothing of it was counted here, nothing to reset.
    const std::uint32_t rec = r->table->Find(kh);
    if (rec != KeyTable::kNone) ApplyReset(*r, r->table->record(rec), time);
    return true;
  }

  bool IsShared(std::string_view playbook) const override {
    const Runtime* r = Find(playbook);
    return r != nullptr && r->pb.shared;
  }

  std::int64_t LongestSharedWindowSeconds() const override {
    std::int64_t longest = 0;
    for (const auto& r : runtimes_) {
      if (r->pb.shared) longest = std::max(longest, r->pb.trigger.window_seconds);
    }
    return longest;
  }

  void ImportPriorIncidents(const std::vector<PriorIncident>& incidents) override {
    for (const auto& p : incidents) {
      const Runtime* r = Find(p.playbook);
      RecordOffense(r ? r->index : -1, p.key_kind, p.key, p.time);
    }
  }

  std::size_t ImportOpenIncidents(const std::vector<PriorIncident>& incidents) override {
    std::size_t taken = 0;
    for (const auto& p : incidents) {
      Runtime* r = Find(p.playbook);
      if (r == nullptr || r->pb.key_kind != p.key_kind) continue;
      Event e;
      std::uint64_t kh = 0;
      if (!EventFromKeyText(r->pb, p.key, &e) || !KeyHash(r->pb, e, &kh)) continue;
      // Keyed by the same hash as a live trigger; swept like the others once ended (t = 0:
      // nothing is known to have ended yet).
      const auto known = r->open_until.find(kh);
      KeepOpenUntil(*r, kh, 0,
                    known == r->open_until.end() ? p.time : std::max(known->second, p.time));
      ++taken;
    }
    return taken;
  }

 private:
  static constexpr std::uint8_t kRoleCount = 1;
  static constexpr std::uint8_t kRoleReset = 2;
  struct Route {
    int playbook;
    std::uint8_t role;
  };

  const Runtime* Find(std::string_view name) const {
    for (const auto& r : runtimes_) {
      if (r->pb.name == name) return r.get();
    }
    return nullptr;
  }
  Runtime* Find(std::string_view name) {
    return const_cast<Runtime*>(std::as_const(*this).Find(name));
  }

  // For an event rebuilt from a key's text (folding_node_ set): the length of the key's client_ip
  // part, which its {client_ip} then prints as a prefix; -1 for an event seen here.
  int FoldedClientPrefix(const Playbook& pb, const Event& e) const {
    if (folding_node_.empty() || !e.client_ip.valid()) return -1;
    for (const KeyPart& k : pb.key) {
      if (k.field == Field::kClientIp) return k.LengthFor(e.client_ip);
    }
    return -1;
  }

  // Counted events (or distinct values, or the run) the key in record rec holds at t.
  static std::uint64_t HeldAt(const Runtime& r, std::uint32_t rec, UnixMicros t) {
    const std::uint32_t* st = r.table->record(rec) + kStateWord;
    if (r.counter) return r.counter->CountAt(st, t);
    if (r.distinct) return r.distinct->CountAt(st, t);
    // consecutive: the run, unless it was forgotten
    const std::int64_t window = r.pb.trigger.window_seconds;
    const bool forgotten = window > 0 && t - GetI64(st + 1) > window * kMicrosPerSecond;
    return forgotten ? 0 : st[0];
  }

  bool Allowlisted(const Runtime& r, const Event& e) const {
    return (r.key_has_ip && InGlobalCidrs(e.client_ip, e.time)) || global_allow_.Allows(e) ||
           r.pb.allow.Allows(e);
  }

  // Whether the address allowlist covers every address of the key's client_ip part(s) (a /24
  // key is not forgotten for one allowlisted address in it: the others counted too).
  bool WholeKeyAllowlisted(const Runtime& r, const Event& e) const {
    if (!e.client_ip.valid()) return false;
    for (const KeyPart& k : r.pb.key) {
      if (k.field != Field::kClientIp) continue;
      const int len = k.LengthFor(e.client_ip);
      const IpPrefix p(e.client_ip, len);
      if (!CurrentAllowSet().Contains(p.address(), e.time) ||
          !CurrentAllowSet().Contains(p.address().Filled(len), e.time)) {
        return false;
      }
    }
    return true;
  }

  bool InGlobalCidrs(const IpAddress& a, UnixMicros t) const {
    if (!a.valid()) return false;
    return CurrentAllowSet().Contains(a, t);
  }

  // The compiled allow set: the config's own until UseAllowSet(), then the handle's current one,
  // fetched again only when its version changed (one atomic load per lookup otherwise).
  const AllowSet& CurrentAllowSet() const {
    if (allow_handle_ && allow_handle_->version() != allow_version_) {
      allow_version_ = allow_handle_->version();
      allow_set_ = allow_handle_->Get();
    }
    return *allow_set_;
  }

  void UseAllowSet(std::shared_ptr<const AllowSetHandle> handle) override {
    allow_handle_ = std::move(handle);
    allow_version_ = 0;
  }

  bool KeyHash(const Playbook& pb, const Event& e, std::uint64_t* out) const {
    Hasher h{seed_};
    for (const KeyPart& p : pb.key) {
      if (!HashPart(p, e, &h)) return false;
    }
    *out = h.h;
    return true;
  }

  bool ValueHash(const KeyPart& field, const Event& e, std::uint64_t* out) const {
    Hasher h{seed_ ^ 0x7f4a7c159e3779b9ull};
    if (!HashPart(field, e, &h)) return false;
    *out = h.h;
    return true;
  }

  // Rebuilds an event carrying the key's parts from its text ("alice@example.org",
  // "198.51.100.0/24", "alice@example.org,192.0.2.7").
  static bool EventFromKeyText(const Playbook& pb, std::string_view text, Event* e) {
    for (std::size_t i = 0; i < pb.key.size(); ++i) {
      std::string_view part = text;
      if (i + 1 < pb.key.size()) {
        const std::size_t comma = text.find(',');
        if (comma == std::string_view::npos) return false;
        part = text.substr(0, comma);
        text = text.substr(comma + 1);
      }
      if (pb.key[i].field == Field::kClientIp) {
        IpPrefix p;
        if (!IpPrefix::Parse(part, &p)) return false;
        e->client_ip = p.address();
      } else {
        if (part.empty()) return false;
        e->set(pb.key[i].field, part);
      }
    }
    return true;
  }

  std::uint32_t JournalRef(const Event& e) {
    if (!journal_ref_valid_) {
      // The message with its header in one form ("host program[pid]: message"), whatever framing
      // the line came in (an RFC 5424 frame from rsyslog, a journal entry), unless [rules]
      // evidence = "raw" asks for the line as received.
      if (evidence_raw_ || e.message.empty()) {
        journal_ref_ = journal_.Append(e.line, e.time);
      } else {
        // A line from an authenticated node (a tls input's client certificate) starts with that
        // name in brackets: who delivered it, which the HOSTNAME after it only claims.
        const bool node = !e.node.empty(), host = !e.host.empty(), program = !e.program.empty(),
                   pid = !e.pid.empty();
        journal_ref_ = journal_.AppendParts(
            {node ? "[" : "", e.node, node ? "] " : "", e.host, host ? " " : "", e.program,
             program && pid ? "[" : "", program ? e.pid : "", program && pid ? "]" : "",
             program ? ": " : "", e.message},
            e.time);
      }
      journal_ref_valid_ = true;
    }
    return journal_ref_;
  }

  // Judges e against its key's baseline, then learns it. True when e's value is novel.
  bool JudgeAndLearn(Runtime& r, const Event& e, std::uint64_t kh) {
    std::uint64_t vh = 0;
    if (!ValueHash(r.pb.trigger.field, e, &vh)) return false;
    NovelBaseline& baseline = *r.baseline;
    const std::size_t values = baseline.values_held();
    const std::uint64_t overflow = baseline.overflow();
    const bool novel = baseline.JudgeAndLearn(kh, vh, e.time, EventEntryText(r.pb, e));
    stats_.baseline_values += baseline.values_held() - values;
    stats_.baseline_overflow += baseline.overflow() - overflow;
    return novel;
  }

  // An event a verified-evidence playbook leaves alone. Said once per playbook and engine (a
  // reload says it again), then only counted: a host whose inputs carry no provenance would
  // otherwise log it for every line.
  void Ignore(Runtime& r) {
    ++stats_.unverified;
    if (r.unverified_ignored.fetch_add(1, std::memory_order_relaxed) == 0) {
      spdlog::warn(
          "playbook {}: acts on mailboxes, so it counts only verified lines, and ignored one that "
          "was not (its writer unknown: a udp, tcp, tls or file input, or a policy request over "
          "TCP or without a secret). Read the journal or a unix socket input, mark the input "
          "`trusted = true`, or set `evidence = \"any\"` in {} "
          "(docs/ingest.md, \"Provenance\"); further ones are counted in "
          "mxward_playbook_unverified_events_total",
          r.pb.name, r.pb.file);
    }
  }

  // The event's key's record in the playbook's table, or KeyTable::kNone when the event has no
  // key or the key is not held.
  std::uint32_t HeldKey(Runtime& r, const Event& e) {
    std::uint64_t kh = 0;
    if (!KeyHash(r.pb, e, &kh)) return KeyTable::kNone;
    return r.table->Find(kh);
  }

  void ResetKey(Runtime& r, const Event& e) {
    const std::uint32_t rec = HeldKey(r, e);
    if (rec == KeyTable::kNone) return;
    std::uint32_t* w = r.table->record(rec);
    EvidenceRing(w + kEvidenceWord).Clear();
    std::memset(w + kStateWord, 0, (r.words - kStateWord) * sizeof(std::uint32_t));
  }

  // A reset of a shared playbook's window at the event's time (docs/cluster.md "Resets"): what
  // was counted up to then goes, and an event older than it that arrives later (another node's
  // row) is not counted; what is newer (another node's event folded before this one) stays, as
  // on the nodes that fold this reset. This node's evidence lines all came before this line.
  // Published only when the key is held here: every counted event of the cluster is folded into
  // every node's windows, so a key held nowhere here was counted nowhere, and a login success of
  // a user nobody attacked costs no row.
  void ResetSharedKey(Runtime& r, const Event& e) {
    const std::uint32_t rec = HeldKey(r, e);
    if (rec == KeyTable::kNone) return;
    std::uint32_t* w = r.table->record(rec);
    EvidenceRing(w + kEvidenceWord).Clear();
    const bool held = !r.counter->Empty(w + kStateWord);
    ApplyReset(r, w, e.time);
    if (held) shared_sink_->OnSharedReset(r.pb.name, r.key_text[rec], e.time);
  }

  void ApplyReset(Runtime& r, std::uint32_t* w, UnixMicros t) {
    if (r.counter->DropThrough(w + kStateWord, t) == 0) EvidenceRing(w + kEvidenceWord).Clear();
    SetI64(w + r.reset_word, std::max(GetI64(w + r.reset_word), t));
  }

  // folding_node_ empty: an event seen here; else another node's event (FoldRemoteCount),
  // which is neither published again nor an evidence line.
  void Count(Runtime& r, const Event& e, IncidentSink* sink) {
    const bool folded = !folding_node_.empty();
    // The global address allowlist protects addresses from what is done to them: it exempts events
    // from playbooks keyed on the address, not from those keyed on an account (webmail submits
    // from 127.0.0.1, and a compromised webmail account must still be caught).
    if (Allowlisted(r, e)) {
      ++stats_.allowlisted;
      if (folded) ++stats_.fold_refused;
      // What the key counted before it was allowlisted (`mxward allow add` while it was
      // building up) is forgotten at its first allowlisted event, when the allowlist covers the
      // whole key: after `allow remove` it starts from nothing, not from the old window.
      if (r.key_has_ip && WholeKeyAllowlisted(r, e)) ResetKey(r, e);
      return;
    }
    std::uint64_t kh = 0;
    if (!KeyHash(r.pb, e, &kh)) {
      ++stats_.no_key;
      return;
    }
    const Trigger& tr = r.pb.trigger;
    const UnixMicros t = e.time;
    // A novel trigger whose key (or install) is still warming up judges by its fallback, when
    // it has one; otherwise only a novel value counts.
    bool use_fallback = false;
    if (tr.type == TriggerType::kNovel) {
      const bool warm = r.baseline->KeyWarm(kh, t);  // before this event teaches it
      const bool novel = JudgeAndLearn(r, e, kh);
      use_fallback = r.fallback && !warm;
      if (use_fallback && !e.has(tr.fallback.field.field) &&
          !(tr.fallback.field.field == Field::kClientIp && e.client_ip.valid())) {
        ++stats_.no_key;
        return;
      }
      if (!use_fallback && !novel) return;
    }
    if (tr.type == TriggerType::kDistinct && !e.has(tr.field.field) &&
        !(tr.field.field == Field::kClientIp && e.client_ip.valid())) {
      ++stats_.no_key;
      return;
    }

    if (!r.cooldowns.empty()) {
      if (auto c = r.cooldowns.find(kh); c != r.cooldowns.end()) {
        if (t < c->second) {
          ++stats_.suppressed;
          if (folded) ++stats_.fold_refused;
          return;
        }
        r.cooldowns.erase(c);
      }
    }
    bool inserted = false;
    const std::uint64_t evictions = r.table->evictions(), expirations = r.table->expirations();
    const std::size_t held_before = r.table->size();
    const std::uint32_t rec = r.table->FindOrInsert(kh, t, &inserted);
    // An insert may also expire or evict other keys: the size's change is what counts.
    keys_held_ = keys_held_ - held_before + r.table->size();
    stats_.evictions += r.table->evictions() - evictions;
    stats_.expired += r.table->expirations() - expirations;
    if (inserted) {
      // Once per key, not per line: what `mxward status` shows for it (KeyTextOf).
      if (r.key_by_address) {
        if (rec >= r.key_address.size()) r.key_address.resize(std::size_t{rec} + 1);
        r.key_address[rec] = e.client_ip;
      } else {
        if (rec >= r.key_text.size()) r.key_text.resize(std::size_t{rec} + 1);
        r.key_text[rec] = KeyText(r.pb, e);
      }
    }
    std::uint32_t* w = r.table->record(rec);
    if (r.reset_word != 0 && t < GetI64(w + r.reset_word)) {
      // Older than the key's last reset (a row that arrived after it): that reset wiped it.
      ++stats_.before_reset;
      if (folded) ++stats_.fold_refused;
      return;
    }
    std::uint32_t* st = w + kStateWord;
    std::uint64_t count = 0;
    bool fresh = false;
    switch (tr.type) {
      case TriggerType::kNovel:
        if (use_fallback) {
          std::uint64_t vh = 0;
          ValueHash(tr.fallback.field, e, &vh);
          std::uint32_t* fst = st + r.fallback_word;
          fresh = r.fallback->Expire(fst, t) == 0;
          count = r.fallback->Add(fst, t, static_cast<std::uint32_t>(vh ^ (vh >> 32)));
          break;
        }
        [[fallthrough]];
      case TriggerType::kCount:
        fresh = r.counter->CountAt(st, t) == 0;
        count = r.counter->Add(st, t, std::max<std::uint32_t>(e.weight, 1));
        break;
      case TriggerType::kDistinct: {
        std::uint64_t vh = 0;
        ValueHash(tr.field, e, &vh);
        fresh = r.distinct->Expire(st, t) == 0;
        count = r.distinct->Add(st, t, static_cast<std::uint32_t>(vh ^ (vh >> 32)));
        break;
      }
      case TriggerType::kConsecutive: {
        const UnixMicros last = GetI64(st + 1);
        if (st[0] > 0 && tr.window_seconds > 0 && t - last > tr.window_seconds * kMicrosPerSecond) {
          st[0] = 0;
        }
        fresh = st[0] == 0;
        st[0] += std::max<std::uint32_t>(e.weight, 1);
        SetI64(st + 1, std::max(t, last));
        count = st[0];
        break;
      }
    }
    // A network key needs its clients too: until min_addresses of them (IPv4 addresses, IPv6
    // /64s, so one host rotating its /64 is still one) were counted in the window, the trigger
    // waits (its count stays at the threshold while events go on).
    bool enough_addresses = true;
    if (r.addresses) {
      Hasher h{seed_ ^ 0xa5a5a5a5ull};
      h.AddAddress(e.client_ip, ClientPrefixLength(e.client_ip));
      const std::uint32_t held =
          r.addresses->Add(w + r.addresses_word, t, static_cast<std::uint32_t>(h.h ^ (h.h >> 32)));
      enough_addresses = held >= tr.min_addresses;
    }
    EvidenceRing evidence(w + kEvidenceWord);
    if (fresh) {
      SetI64(w + kEpisodeWord, t);
      evidence.Clear();
    }
    if (folded) {
      ++stats_.folded;
    } else {
      evidence.Add(JournalRef(e));
      if (r.pb.shared && shared_sink_ != nullptr) {
        shared_sink_->OnSharedCount(r.pb.name, r.key_text[rec], t,
                                    std::max<std::uint32_t>(e.weight, 1));
      }
    }
    const std::uint64_t threshold = use_fallback ? tr.fallback.over + 1ull : tr.threshold;
    if (count >= threshold && enough_addresses) {
      // A repeat within the life of the key's last incident updates that incident in the store
      // (its ban is still in force): one offence, one ban, one life, however often it fires.
      const auto open = r.open_until.find(kh);
      const bool repeat = open != r.open_until.end() && t < open->second;
      std::int64_t cooldown = 0;
      Incident inc = BuildIncident(r, w, e, count, use_fallback ? &kh : nullptr, repeat, &cooldown);
      // Only when it does share (with [cluster]): alone, a shared playbook counts as any other.
      if (r.pb.shared && (folded || shared_sink_ != nullptr)) {
        inc.trigger += folded ? fmt::format(
                                    "; shared window: counted across the cluster, the last "
                                    "event from node {}",
                                    folding_node_)
                              : std::string("; shared window: counted across the cluster");
      }
      if (repeat) {
        inc.open_until = open->second;
      } else {
        inc.open_until = t + std::max(cooldown, LongestActionSeconds(inc)) * kMicrosPerSecond;
        if (inc.open_until > t) KeepOpenUntil(r, kh, t, inc.open_until);
        if (r.pb.escalation.enabled || max_lookback_ > 0) {
          RecordOffense(r.index, inc.key_kind, inc.key, t);
        }
      }
      ++stats_.triggers;
      r.triggers.store(r.triggers.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      sink->OnIncident(std::move(inc));
      r.table->Erase(rec);  // starts over after its cooldown
      --keys_held_;
      StartCooldown(r, kh, t, cooldown);
    }
  }

  // The longest duration among the incident's actions (a ban's, a suspension's), escalated.
  static std::int64_t LongestActionSeconds(const Incident& inc) {
    std::int64_t longest = 0;
    for (const ActionRequest& a : inc.actions) {
      const auto d = a.params.find("duration_s");
      if (d != a.params.end() && d->is_number_integer()) {
        longest = std::max(longest, d->get<std::int64_t>());
      }
    }
    return longest;
  }

  // Sets key -> until in a map of ends (cooldowns, open incidents), sweeping the ended ones
  // whenever the map has doubled since the last sweep: bounded without a timer.
  static void PutUntil(std::unordered_map<std::uint64_t, UnixMicros>* ends, std::size_t* sweep_at,
                       std::uint64_t kh, UnixMicros t, UnixMicros until) {
    (*ends)[kh] = until;
    if (ends->size() >= *sweep_at) {
      std::erase_if(*ends, [&](const auto& kv) { return kv.second <= t; });
      *sweep_at = std::max<std::size_t>(1024, 2 * ends->size());
    }
  }

  void KeepOpenUntil(Runtime& r, std::uint64_t kh, UnixMicros t, UnixMicros until) {
    PutUntil(&r.open_until, &r.open_sweep_at, kh, t, until);
  }

  void StartCooldown(Runtime& r, std::uint64_t kh, UnixMicros t, std::int64_t seconds) {
    if (seconds <= 0) return;
    PutUntil(&r.cooldowns, &r.cooldown_sweep_at, kh, t, t + seconds * kMicrosPerSecond);
  }

  // Earlier incidents of this key within the lookback (this playbook, or all when across).
  int PriorOffenses(const Runtime& r, const std::string& kind, const std::string& key,
                    UnixMicros t) const {
    const auto it = offenses_.find(OffenseKey(kind, key));
    if (it == offenses_.end()) return 0;
    int n = 0;
    for (const Offense& o : it->second) {
      if (o.time < t - r.pb.escalation.lookback_seconds * kMicrosPerSecond || o.time > t) continue;
      if (r.pb.escalation.across_playbooks || o.playbook == r.index) ++n;
    }
    return n;
  }

  std::uint64_t OffenseKey(const std::string& kind, const std::string& key) const {
    Hasher h{seed_ ^ 0x2545f4914f6cdd1dull};
    h.AddLower(kind);
    h.AddLower(key);
    return h.h;
  }

  void RecordOffense(int playbook, const std::string& kind, const std::string& key, UnixMicros t) {
    if (max_lookback_ == 0) return;
    auto& list = offenses_[OffenseKey(kind, key)];
    std::erase_if(list,
                  [&](const Offense& o) { return o.time < t - max_lookback_ * kMicrosPerSecond; });
    if (list.size() >= 32) list.erase(list.begin());
    list.push_back(Offense{t, playbook});
    // Keep the table bounded: an occasional sweep of entries past every lookback.
    if (++offense_inserts_ % 4096 == 0) {
      std::erase_if(offenses_, [&](const auto& kv) {
        return kv.second.empty() || kv.second.back().time < t - max_lookback_ * kMicrosPerSecond;
      });
    }
  }

  // The incident of a key whose trigger fired at e: what fired, the episode's evidence and the
  // actions to take, expanded for it. Repeat offenders get longer bans; *cooldown_seconds is the
  // key's cooldown, escalated alike. fallback_key: the key's hash when a novel trigger's warm-up
  // fallback fired (null otherwise), which the incident then names with its numbers.
  Incident BuildIncident(const Runtime& r, std::uint32_t* w, const Event& e, std::uint64_t count,
                         const std::uint64_t* fallback_key, bool repeat,
                         std::int64_t* cooldown_seconds) {
    const Playbook& pb = r.pb;
    const UnixMicros t = e.time;
    Incident inc;
    inc.playbook = pb.name;
    inc.description = pb.description;
    inc.severity = pb.severity;
    inc.mode = pb.mode;
    inc.key_kind = pb.key_kind;
    inc.key = KeyText(pb, e);
    inc.count = count;
    inc.window_seconds = pb.trigger.window_seconds;
    inc.first_seen = EpisodeStart(r, w, t, fallback_key != nullptr);
    inc.last_seen = t;
    inc.trigger = TriggerText(pb, count);
    if (fallback_key) {
      inc.window_seconds = pb.trigger.fallback.window_seconds;
      inc.trigger = FallbackTriggerText(pb, count, r.baseline->KeyLearningSince(*fallback_key), t,
                                        r.baseline->warmup_seconds());
    }
    // Evidence: the episode's first lines, then its last ones.
    stats_.evidence_dropped += EvidenceRing(w + kEvidenceWord).Copy(journal_, &inc.evidence);
    const RepeatOffenderScale scale = Escalate(r, repeat, &inc);
    const bool dry = dry_run_ || pb.mode == PlaybookMode::kDryRun;
    for (const ActionSpec& spec : pb.actions) {
      if (auto action = BuildAction(spec, pb, e, scale, dry, &inc)) {
        inc.actions.push_back(std::move(*action));
      }
    }
    *cooldown_seconds = scale.Apply(pb.cooldown_seconds);
    return inc;
  }

  // The first event of the key's episode still inside its window (t when none is known).
  UnixMicros EpisodeStart(const Runtime& r, const std::uint32_t* w, UnixMicros t,
                          bool fallback) const {
    const std::uint32_t* st = w + kStateWord;
    UnixMicros first = 0;
    switch (r.pb.trigger.type) {
      case TriggerType::kNovel:
        if (fallback) {
          first = r.fallback->Oldest(st + r.fallback_word);
          break;
        }
        [[fallthrough]];
      case TriggerType::kCount:
        first = r.counter->OldestAt(st, t);
        break;
      case TriggerType::kDistinct:
        first = r.distinct->Oldest(st);
        break;
      case TriggerType::kConsecutive:
        first = GetI64(w + kEpisodeWord);
        break;
    }
    return first == 0 || first > t ? t : first;
  }

  // Escalation: how much longer this key's bans are for its earlier incidents in the lookback,
  // which the incident's trigger text then mentions.
  // A repeat (within the life of the key's open incident) is that incident again: the open
  // incident is not an earlier one of it, so it escalates as that incident did.
  RepeatOffenderScale Escalate(const Runtime& r, bool repeat, Incident* inc) const {
    const Escalation& esc = r.pb.escalation;
    RepeatOffenderScale scale{1, esc.max_seconds};
    if (!esc.enabled) return scale;
    const int prior =
        std::max(0, PriorOffenses(r, inc->key_kind, inc->key, inc->last_seen) - (repeat ? 1 : 0));
    if (prior > 0) {
      scale.multiplier = std::pow(esc.factor, prior);
      inc->trigger += fmt::format("; repeat offender: {} earlier incident(s) in {}", prior,
                                  FormatDurationSeconds(esc.lookback_seconds));
    }
    return scale;
  }

  // The action spec asks for, its parameters expanded for *inc; none when it is a ban that would
  // not be safe, which is then said in inc->trigger (read by the later actions' templates too).
  std::optional<ActionRequest> BuildAction(const ActionSpec& spec, const Playbook& pb,
                                           const Event& e, const RepeatOffenderScale& scale,
                                           bool dry, Incident* inc) const {
    ActionRequest a;
    a.type = spec.type;
    a.dry_run = dry || spec.dry_run;
    for (const auto& [name, tpl] : spec.params) {
      std::string value = ExpandTemplate(tpl, pb, *inc, e, FoldedClientPrefix(pb, e));
      if (spec.type == "ban" && name == "address" &&
          !SafeBanAddress(&value, e.time, &inc->trigger)) {
        return std::nullopt;
      }
      a.params[name] = std::move(value);
    }
    if (spec.duration_seconds >= 0) a.params["duration_s"] = scale.Apply(spec.duration_seconds);
    if (spec.type == "hold_queue") {
      a.params["queue_ids"] = nlohmann::json::array();
      if (e.has(Field::kQueueId))
        a.params["queue_ids"].push_back(std::string(e.get(Field::kQueueId)));
    }
    return a;
  }

  // Re-prints a ban address from binary, so log text never reaches the firewall as text, and
  // refuses one that covers an allowlisted address (a tuple or template key could). A refusal is
  // appended to *trigger.
  bool SafeBanAddress(std::string* address, UnixMicros t, std::string* trigger) const {
    IpPrefix p;
    if (!IpPrefix::Parse(*address, &p)) {
      *trigger += fmt::format("; ban skipped: '{}' is not an address", *address);
      return false;
    }
    *address = p.ToString();
    if (CurrentAllowSet().FindOverlap(p, t) != nullptr) {
      *trigger += fmt::format("; ban skipped: {} covers an allowlisted address", *address);
      return false;
    }
    return true;
  }

  std::vector<std::unique_ptr<Runtime>> runtimes_;
  std::uint64_t keys_held_ = 0;  // the sum of the runtimes' table sizes, kept as they change
  std::array<std::vector<Route>, kEventTypeCount> routes_;
  Allowlist global_allow_;  // users and domains
  // Address allowlist: the static [allow] addresses, or the daemon's compiled set (static plus
  // runtime entries) once UseAllowSet() was called. Cached per version (CurrentAllowSet).
  std::shared_ptr<const AllowSetHandle> allow_handle_;
  mutable std::shared_ptr<const AllowSet> allow_set_;
  mutable std::uint64_t allow_version_ = 0;
  EvidenceJournal journal_;
  bool journal_ref_valid_ = false;
  std::uint32_t journal_ref_ = 0;
  bool dry_run_;
  bool evidence_raw_;  // [rules] evidence = "raw"
  std::uint64_t seed_ = 0;
  std::int64_t max_lookback_ = 0;
  std::unordered_map<std::uint64_t, std::vector<Offense>> offenses_;
  std::uint64_t offense_inserts_ = 0;
  SharedWindowSink* shared_sink_ = nullptr;
  // Inside FoldRemoteCount: the node whose event, rebuilt from a key's text, is being counted.
  std::string_view folding_node_;
  EngineStats stats_;
};

}  // namespace

std::unique_ptr<PlaybookEngine> PlaybookEngine::Create(std::vector<Playbook> playbooks,
                                                       const Config& config,
                                                       const PlaybookEngineOptions& options) {
  return std::make_unique<Engine>(std::move(playbooks), config, options);
}

Result<std::unique_ptr<PlaybookEngine>> PlaybookEngine::Load(const Config& config,
                                                             std::vector<Diagnostic>* diagnostics) {
  return Load(config, diagnostics, PlaybookEngineOptions{});
}

Result<std::unique_ptr<PlaybookEngine>> PlaybookEngine::Load(const Config& config,
                                                             std::vector<Diagnostic>* diagnostics,
                                                             const PlaybookEngineOptions& options) {
  namespace fs = std::filesystem;
  const std::size_t before = diagnostics->size();
  std::vector<Playbook> playbooks;
  std::map<std::string, std::string> seen;  // name -> file
  for (const auto& dir : config.rule_dirs) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".toml" && it->is_regular_file(ec)) files.push_back(it->path());
    }
    if (ec) {
      diagnostics->push_back(Diagnostic{dir, 0, 0, "cannot read directory: " + ec.message()});
      continue;
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      auto pb = CompilePlaybook(f.string(), diagnostics);
      if (!pb.ok()) continue;
      if (auto [it, fresh] = seen.emplace(pb->name, f.string()); !fresh) {
        diagnostics->push_back(Diagnostic{
            f.string(), 0, 0,
            fmt::format("playbook '{}' is already defined in {}", pb->name, it->second)});
        continue;
      }
      playbooks.push_back(std::move(*pb));
    }
  }
  if (diagnostics->size() > before) {
    return Status::InvalidArgument(
        fmt::format("{} error(s) in playbooks", diagnostics->size() - before));
  }
  return Create(std::move(playbooks), config, options);
}

}  // namespace mxward
