// PlaybookEngine: the compiled playbooks of rules.d/*.toml and their window state.
//
// Load() compiles the TOML into plain objects once (playbook.h); OnEvent() routes an event to the
// playbooks that watch its type (an array indexed by EventType), updates their per-key window
// state and, when a trigger fires, hands an Incident to the IncidentSink. Owned and called by one
// thread (the pipeline's); no I/O inside OnEvent and no allocation on the common path: keys are
// seeded 64-bit hashes of the binary address or prefix or of the lower-cased field bytes, and
// memory is allocated only when a key is seen for the first time.
//
// Per-key state lives in bounded KeyTables (key_table.h): idle keys expire, and at a playbook's
// max_keys the oldest idle key is evicted and counted (EngineStats::evictions).
//
// Evidence: the lines of counted events go into a fixed-size journal shared by all playbooks (by
// default the last 32768 counted lines, each cut at 384 bytes); a key holds only references to
// the first and last five lines of its episode. An incident copies those lines out; a line that
// has already left the journal (a very slow attack on a busy server) is reported as dropped.
//
// State the engine cannot keep across restarts by itself is exported and imported as plain data,
// so the caller decides when to do I/O: `novel` baselines (TakeDirtyBaselines / ImportBaselines,
// written with IncidentStore::SaveBaselines/LoadBaselines) and the earlier incidents escalation
// counts (ImportPriorIncidents, from IncidentStore::ListIncidents), and the incidents still in
// their life (ImportOpenIncidents, from IncidentStore::IncidentsInTheirLife).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/allow_set.h"
#include "mxward/baseline.h"
#include "mxward/config.h"
#include "mxward/event.h"
#include "mxward/incident.h"
#include "mxward/playbook.h"
#include "mxward/status.h"

namespace mxward {

struct EngineStats {
  std::uint64_t events = 0;             // events routed to at least one playbook
  std::uint64_t triggers = 0;           // incidents opened
  std::uint64_t tracked_keys = 0;       // keys currently held, all playbooks (updated per event)
  std::uint64_t peak_keys = 0;          // the most tracked_keys ever was
  std::uint64_t evictions = 0;          // keys dropped at a max_keys cap (oldest idle first)
  std::uint64_t allowlisted = 0;        // matched events an allowlist exempted
  std::uint64_t suppressed = 0;         // matched events for a key in its cooldown
  std::uint64_t no_key = 0;             // matched events missing a key field (no client_ip, ...)
  std::uint64_t unverified = 0;         // matched events not counted: not verified (evidence)
  std::uint64_t expired = 0;            // idle keys expired
  std::uint64_t evidence_dropped = 0;   // evidence lines no longer in the journal at a trigger
  std::uint64_t baseline_values = 0;    // learned (key, value) pairs held by novel playbooks
  std::uint64_t baseline_overflow = 0;  // values not learned because a baseline cap was reached
  std::uint64_t folded = 0;  // other nodes' events counted into shared windows (FoldRemoteCount)
  std::uint64_t fold_refused = 0;   // other nodes' events not counted: no such shared playbook,
                                    // a key that does not fit it, allowlisted or in cooldown
  std::uint64_t resets_folded = 0;  // other nodes' resets of shared windows applied here
  // Events of shared playbooks not counted: older than their key's last (shared) reset.
  std::uint64_t before_reset = 0;
};

// Shared windows (docs/cluster.md): where the engine reports each event it counted for a playbook
// with `shared = true`, for publication to the other nodes of the cluster. Called on the engine's
// thread inside OnEvent, so an implementation does no I/O and does not block; `key` is the key's
// text as incidents name it ("203.0.113.7") and is valid only during the call.
class SharedWindowSink {
 public:
  virtual ~SharedWindowSink() = default;
  virtual void OnSharedCount(std::string_view playbook, std::string_view key, UnixMicros time,
                             std::uint32_t weight) = 0;
  // A reset of the key's window at `time` ([trigger.reset], e.g. a login success), reported
  // when this node holds the key (docs/cluster.md "Resets").
  virtual void OnSharedReset(std::string_view playbook, std::string_view key, UnixMicros time) = 0;
};

// A key and how far it has come towards its playbook's trigger (`mxward status`).
struct KeyStanding {
  std::string key;              // as incidents name it: "203.0.113.7", "alice@example.org"
  std::uint64_t count = 0;      // held in the window now (distinct values for distinct triggers)
  std::uint64_t threshold = 0;  // the trigger fires at this count
  UnixMicros last_seen = 0;     // event time of the key's last counted event
};

struct PlaybookEngineOptions {
  std::size_t evidence_lines = 32768;     // journal of counted lines shared by every playbook
  std::size_t evidence_line_bytes = 384;  // a longer line is cut (and marked with "...")
  std::uint64_t hash_seed = 0;            // 0: random per engine, so keys cannot be aimed
};

// An incident opened before this engine started (from the store), for escalation.
struct PriorIncident {
  std::string playbook;
  std::string key_kind;
  std::string key;
  UnixMicros time = 0;
};

class PlaybookEngine {
 public:
  // Compiles every playbook *.toml directly inside the config's rule_dirs (parsers/ is not read).
  // Problems go to diagnostics (file:line:col), all of them, and make it return InvalidArgument.
  static Result<std::unique_ptr<PlaybookEngine>> Load(const Config& config,
                                                      std::vector<Diagnostic>* diagnostics);
  static Result<std::unique_ptr<PlaybookEngine>> Load(const Config& config,
                                                      std::vector<Diagnostic>* diagnostics,
                                                      const PlaybookEngineOptions& options);
  // An engine over playbooks compiled elsewhere (tests, `mxward import` self-check). Uses the
  // config's global allowlist and dry_run only.
  static std::unique_ptr<PlaybookEngine> Create(std::vector<Playbook> playbooks,
                                                const Config& config,
                                                const PlaybookEngineOptions& options = {});
  virtual ~PlaybookEngine() = default;

  virtual void OnEvent(const Event& event, IncidentSink* sink) = 0;
  // True when some playbook counts this event (used by `explain` for "matched").
  virtual bool Watches(const Event& event) const = 0;
  // The names of the playbooks that count this event, in name order (`explain` shows them).
  virtual std::vector<std::string_view> WatchingPlaybooks(const Event& event) const = 0;
  virtual std::size_t playbook_count() const = 0;
  virtual const EngineStats& stats() const = 0;

  // The delay to answer an attempt not yet made (a Dovecot policy `allow`): the longest
  // [policy] delay of the playbooks that would count `probe` (at probe.time) and whose key
  // already holds at least its delay_from events in the window; 0 when none. Reads only: no key
  // is created, no window moves, nothing is counted. Allowlisted attempts and keys in their
  // cooldown (already decided) get 0.
  virtual std::int64_t PolicyDelaySeconds(const Event& probe) const = 0;

  virtual std::vector<std::string> playbook_names() const = 0;
  virtual const Playbook* FindPlaybook(std::string_view name) const = 0;
  // Keys held in the i-th playbook's window table (playbook_names() order) and how many its
  // max_keys cap evicted: the per-playbook mxward_window_keys / _evictions_total metrics.
  virtual std::size_t window_keys(std::size_t i) const = 0;
  virtual std::uint64_t window_evictions(std::size_t i) const = 0;
  // What is building up: the n keys of the i-th playbook that stand closest to its trigger at
  // `now` (highest count first; ties: most recent first), leaving out keys that hold nothing in
  // the window any more. Reads only, like PolicyDelaySeconds; the key text was kept when the key
  // was first counted, so this builds no text from log lines. Call it on the engine's thread.
  virtual std::vector<KeyStanding> ClosestKeys(std::size_t i, std::size_t n,
                                               UnixMicros now) const = 0;
  // Times the i-th playbook's trigger fired (mxward_playbook_triggers_total). Any thread.
  virtual std::uint64_t playbook_triggers(std::size_t i) const = 0;
  // Events the i-th playbook matched and left uncounted because they were not verified and it
  // takes verified evidence only (mxward_playbook_unverified_events_total). Any thread.
  virtual std::uint64_t playbook_unverified_ignored(std::size_t i) const = 0;

  // --- novel baselines -----------------------------------------------------------------------
  // The playbooks with a `novel` trigger: what to LoadBaselines for at start.
  virtual std::vector<std::string> BaselinePlaybooks() const = 0;
  // Adds stored entries (not marked dirty). NotFound when no novel playbook has that name.
  virtual Status ImportBaselines(std::string_view playbook,
                                 const std::vector<BaselineEntry>& entries) = 0;
  // Entries learned, or used again at least an hour after they were last exported, since the
  // previous call; clears those marks. Call it from the pipeline's thread (hourly, at shutdown)
  // and hand the result to the store writer.
  virtual std::vector<BaselineBatch> TakeDirtyBaselines() = 0;

  // --- reload (SIGHUP) ---------------------------------------------------------------------
  // Takes over the state of `previous` (the engine being replaced) for every playbook whose name
  // and file text are unchanged: its keys, windows, cooldowns and baseline; plus the evidence
  // journal and the escalation history. Playbooks that changed start empty. Call it before the
  // first OnEvent; `previous` must not be used afterwards. Returns how many playbooks kept state.
  virtual std::size_t AdoptState(PlaybookEngine& previous) = 0;

  // --- address allowlist ---------------------------------------------------------------------
  // From now on the address allowlist is handle's current set (the daemon's static [allow]
  // addresses plus the runtime `mxward allow` entries), instead of the config's addresses given
  // at Load/Create: an entry added while the daemon runs applies to the next event, and one
  // that expired (its expiry at or before the event's time) no longer does. The handle may be
  // swapped from another thread (AllowSetHandle::Set); the engine reads it on its own thread.
  virtual void UseAllowSet(std::shared_ptr<const AllowSetHandle> handle) = 0;

  // --- shared windows (cluster) ---------------------------------------------------------------
  // From now on every event counted for a shared playbook is reported to sink (not owned; null:
  // none). Reports only events seen here, never folded ones.
  virtual void UseSharedWindowSink(SharedWindowSink* sink) = 0;
  // Another node's counted event of a shared playbook: counted into that playbook's window for
  // the key (its text as incidents name it) at `time`, as if seen here, but never reported to the
  // SharedWindowSink and never attached as an evidence line. When it takes the key to the
  // threshold the incident goes to sink as any other (its trigger text names `node`). Returns
  // false, counted in EngineStats::fold_refused, when no shared playbook has that name, the key
  // does not fit its key, the address allowlist covers it or the key is in its cooldown.
  virtual bool FoldRemoteCount(std::string_view playbook, std::string_view key, UnixMicros time,
                               std::uint32_t weight, std::string_view node, IncidentSink* sink) = 0;
  // Another node's reset of a shared playbook's window for the key at `time`: what this node
  // counted for the key up to `time` is dropped, what is newer stays, and an event older than
  // `time` that arrives later is not counted (EngineStats::before_reset). Never reported to the
  // SharedWindowSink. False (fold_refused) for what FoldRemoteCount refuses, but not for a key
  // this node does not hold (nothing to reset: true).
  virtual bool FoldRemoteReset(std::string_view playbook, std::string_view key, UnixMicros time,
                               std::string_view node) = 0;
  // Whether the named playbook is loaded with `shared = true`.
  virtual bool IsShared(std::string_view playbook) const = 0;
  // The longest window among the shared playbooks; 0 when there is none.
  virtual std::int64_t LongestSharedWindowSeconds() const = 0;

  // --- escalation ----------------------------------------------------------------------------
  virtual void ImportPriorIncidents(const std::vector<PriorIncident>& incidents) = 0;
  // Incidents still in their life (IncidentStore::IncidentsInTheirLife), with `time` their end
  // (Incident::open_until): a trigger of the same playbook and key before then is a repeat of
  // that incident, as it would have been had the engine not restarted, so it neither counts as
  // another offence nor escalates. Incidents of a playbook no longer loaded, or whose key kind
  // changed, are skipped. Returns how many were taken.
  virtual std::size_t ImportOpenIncidents(const std::vector<PriorIncident>& incidents) = 0;
};

}  // namespace mxward
