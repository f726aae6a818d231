#include "mxward/action_dispatcher.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "actions/common/unique_fd.h"
#include "actions/dispatch/action_valve.h"
#include "engine/base/one_line.h"
#include "engine/base/settings_reader.h"
#include "mxward/action_types.h"
#include "mxward/incident_store.h"
#include "mxward/rate_limited_log.h"
#include "mxward/thread_annotations.h"

namespace mxward {

// --- pure parts ----------------------------------------------------------------------------------

std::int64_t BackoffCeilingMs(const DispatcherOptions& options, int attempt) {
  const std::int64_t base = std::max<std::int64_t>(options.base_backoff_ms, 1);
  const std::int64_t cap = std::max(options.max_backoff_ms, base);
  std::int64_t d = base;
  for (int i = 1; i < attempt && d < cap; ++i) d *= 2;  // no overflow: stops at the cap
  return std::min(d, cap);
}

std::int64_t JitteredBackoffMs(const DispatcherOptions& options, int attempt, double uniform01) {
  const double u = std::clamp(uniform01, 0.0, 1.0);
  return static_cast<std::int64_t>(u * static_cast<double>(BackoffCeilingMs(options, attempt)));
}

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string StringParam(const ActionRecord& a, const char* name) {
  auto it = a.params.find(name);
  if (it == a.params.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

bool Overlaps(const IpPrefix& a, const IpPrefix& b) {
  if (a.address().family() != b.address().family()) return false;
  return a.Contains(b.address()) || b.Contains(a.address());
}

}  // namespace

std::string ActionOrderKey(const ActionRecord& action) { return ActionSubjectKey(action); }

std::optional<std::string> AllowlistRefusal(const DispatcherOptions& options,
                                            const ActionRecord& action, UnixMicros now) {
  if (action.revert) return std::nullopt;  // undoing is always allowed
  const ActionTypeInfo* info = FindActionType(action.type);
  if (info == nullptr) return std::nullopt;
  if (info->subject_param == "address") {
    IpPrefix p;
    if (!IpPrefix::Parse(StringParam(action, "address"), &p)) return std::nullopt;
    // The compiled set holds the [allow] addresses too (those of the running config, after a
    // reload as well); allow_addresses alone stand where no set was given.
    if (options.allow_set) {
      const auto set = options.allow_set->Get();
      if (const AllowEntry* e = set->FindOverlap(p, now); e != nullptr) {
        return fmt::format("{} is allowlisted ({}{})", p.ToString(), e->prefix.ToString(),
                           e->runtime ? ", mxward allow" : " in [allow] addresses");
      }
      return std::nullopt;
    }
    for (const IpPrefix& allow : options.allow_addresses) {
      if (Overlaps(p, allow)) {
        return fmt::format("{} is allowlisted ({} in [allow] addresses)", p.ToString(),
                           allow.ToString());
      }
    }
    return std::nullopt;
  }
  if (info->subject_param != "user") return std::nullopt;  // a notification: nothing to spare
  const std::string user = Lower(StringParam(action, "user"));
  if (user.empty()) return std::nullopt;
  for (const std::string& u : options.allow_users) {
    if (Lower(u) == user) return fmt::format("user {} is allowlisted", user);
  }
  const auto at = user.rfind('@');
  const std::string domain = at == std::string::npos ? user : user.substr(at + 1);
  for (const std::string& d : options.allow_domains) {
    if (Lower(d) == domain) return fmt::format("domain {} is allowlisted", domain);
  }
  return std::nullopt;
}

std::string DryRunExecutor::Reason(std::string_view type) const {
  auto it = reasons_.find(type);
  return it == reasons_.end() ? std::string("dry-run") : it->second;
}

// --- [dispatcher]
// ----------------------------------------------------------------------------------

Result<DispatcherOptions> DispatcherOptions::FromConfig(const Config& config,
                                                        std::vector<Diagnostic>* diagnostics) {
  DispatcherOptions o;
  o.allow_addresses = config.allow_addresses;
  o.allow_users = config.allow_users;
  o.allow_domains = config.allow_domains;
  if (!config.document.contains("dispatcher")) return o;
  const toml::table* t = SectionTable(config, "dispatcher", diagnostics);
  if (!t) return Status::InvalidArgument(diagnostics->back().ToString());
  SettingsReader r(*t, "[dispatcher]", config.source, diagnostics);
  r.CheckKnownKeys({"workers", "max_attempts", "backoff_base", "backoff_max", "per_minute_cap",
                    "per_minute_caps", "per_prefix_cap", "claim_lease", "poll_interval",
                    "claim_batch", "maintain_interval"});
  r.Int("workers", 1, 64, &o.workers);
  r.Int("max_attempts", 1, 1000, &o.max_attempts);
  r.DurationMillis("backoff_base", &o.base_backoff_ms);
  r.DurationMillis("backoff_max", &o.max_backoff_ms);
  r.Int("per_minute_cap", 0, 1'000'000, &o.default_per_minute_cap);
  r.Int("per_prefix_cap", 0, 1'000'000, &o.per_prefix_cap);
  r.DurationMillis("claim_lease", &o.claim_lease_ms);
  r.DurationMillis("poll_interval", &o.poll_interval_ms);
  r.DurationMillis("maintain_interval", &o.maintain_interval_ms);
  r.Int("claim_batch", 1, 10000, &o.claim_batch);
  if (const toml::table* ct = r.Table("per_minute_caps")) {
    SettingsReader caps(*ct, "[dispatcher] per_minute_caps", config.source, diagnostics);
    caps.CheckKnownKeys(kActionTypeNames);
    for (std::string_view type : kActionTypeNames) {
      int cap = 0;
      if (caps.Int(type, 0, 1'000'000, &cap)) o.per_minute_cap[std::string(type)] = cap;
    }
  }
  if (!r.ok()) return Status::InvalidArgument("errors in [dispatcher]");
  return o;
}

// --- the dispatcher
// --------------------------------------------------------------------------------

namespace {

// The liveness of claim owners (see "Crash recovery" in action_dispatcher.h): each dispatcher
// holds an open-file-description lock on one byte of "<store>-claims.lock", at the offset that is
// its owner token. The kernel drops the lock when the owner dies however it dies (kill -9
// included), and OFD locks conflict between two descriptions in one process too, so two
// dispatchers in one test binary see each other as alive.
class ClaimOwnerLock {
 public:
  static std::string PathFor(const std::string& store_path) { return store_path + "-claims.lock"; }

  // Opens the lock file and locks a random token's byte. On failure the dispatcher still works,
  // with owner 0: its claims are recovered only when their lease expires.
  Status Acquire(const std::string& store_path, std::mt19937_64& rng) {
    const std::string path = PathFor(store_path);
    fd_.Reset();
    *fd_.out() = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_.get() < 0) {
      return Status::IoError(fmt::format("opening {}: {}", path, std::strerror(errno)));
    }
    for (int attempt = 0; attempt < 8; ++attempt) {
      // Positive, below 2^62: a valid lock offset and never 0 (no owner).
      const std::int64_t token =
          static_cast<std::int64_t>(rng() & ((std::uint64_t{1} << 62) - 1)) | 1;
      struct flock l = Range(F_WRLCK, token);
      if (::fcntl(fd_.get(), F_OFD_SETLK, &l) == 0) {
        token_ = token;
        return Status::Ok();
      }
      if (errno != EAGAIN && errno != EACCES) break;  // taken: draw another token
    }
    Status s = Status::IoError(fmt::format("locking {}: {}", path, std::strerror(errno)));
    fd_.Reset();
    return s;
  }

  std::int64_t token() const { return token_; }

  // Whether a dispatcher (in any process) holds `token`'s lock. Errors count as alive: a claim
  // wrongly thought dead could run twice, one wrongly thought alive only waits for its lease.
  bool IsAlive(std::int64_t token) const {
    if (fd_.get() < 0 || token <= 0) return true;
    struct flock l = Range(F_WRLCK, token);
    if (::fcntl(fd_.get(), F_OFD_GETLK, &l) != 0) return true;
    return l.l_type != F_UNLCK;
  }

 private:
  static struct flock Range(short type, std::int64_t token) {
    struct flock l;
    std::memset(&l, 0, sizeof l);
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = static_cast<off_t>(token);
    l.l_len = 1;
    return l;  // l_pid stays 0, as OFD locks require
  }

  UniqueFd fd_;
  std::int64_t token_ = 0;
};

struct Lane {
  ActionExecutor* executor = nullptr;
  const DryRunExecutor* dry_run = nullptr;
  RetryAfterSource* retry_after = nullptr;
  BatchApplier* batch = nullptr;   // set when the executor applies several actions together
  bool started = false;            // executor Start() succeeded
  bool running = false;            // an action is being run (guarded by Shared::mu)
  std::deque<ActionRecord> queue;  // guarded by Shared::mu
  std::condition_variable_any cv;
  std::thread thread;
};

// Claimed actions waiting for a lane's worker. A lane whose executor applies in batches (nftables)
// may hold more: its worker takes them in one transaction, and a burst (a node catching up on the
// cluster's decisions, docs/cluster.md) is applied in a few large batches instead of many small
// ones, each of which costs a netlink round trip and a store commit.
constexpr std::size_t kLaneQueueLimit = 256;
constexpr std::size_t kBatchLaneQueueLimit = 8192;
// At most this many queued applies go to a BatchApplier together.
constexpr std::size_t kLaneBatchLimit = 4096;
// While claims come back full (a backlog), the claimer takes this many per transaction instead of
// [dispatcher] claim_batch: one claim transaction per few thousand actions.
constexpr int kBacklogClaimBatch = 4096;

std::size_t QueueLimit(const Lane& lane) {
  return lane.batch ? kBatchLaneQueueLimit : kLaneQueueLimit;
}

}  // namespace

namespace {

// "#12 ban 198.51.100.77 (incident #5)": an action as the audit lines name it. The subject is the
// parameter the catalogue names (an address, a mailbox, a target), made one line: a user name is
// the client's text.
std::string DescribeAction(const ActionRecord& a) {
  std::string subject;
  if (const ActionTypeInfo* info = FindActionType(a.type); info != nullptr) {
    auto it = a.params.find(std::string(info->subject_param));
    if (it != a.params.end() && it->is_string()) subject = OneLine(it->get<std::string>(), 256);
  }
  std::string out = fmt::format("#{} {}{}{}", a.id, a.revert ? "undo " : "", a.type,
                                subject.empty() ? "" : " " + subject);
  if (a.incident_id != 0) out += fmt::format(" (incident #{})", a.incident_id);
  return out;
}

constexpr std::size_t kOutcomeTypes = std::size(kActionTypes) + 1;  // the catalogue, then "other"

std::size_t OutcomeTypeIndex(std::string_view type) {
  const ActionTypeInfo* info = FindActionType(type);
  return info != nullptr ? static_cast<std::size_t>(info - kActionTypes) : std::size(kActionTypes);
}

}  // namespace

// Everything the threads use; shared so that a worker still stuck after Stop()'s drain can be
// detached and finish on its own without touching freed memory.
struct DispatcherShared {
  std::string store_path;
  std::vector<std::unique_ptr<ActionExecutor>> executors;
  DispatcherOptions options;
  const Clock* clock;
  // Called on a worker thread after an action was recorded done (SetDoneHook); set before
  // Start() and never changed while workers run.
  std::function<void(const ActionRecord&)> on_done;

  // mu guards the hand-over between the claimer and the workers (and each Lane's running and
  // queue, which the analysis cannot name from inside Lane); store_mu guards the one store
  // connection. Where both are held, store_mu is taken first.
  Mutex mu ACQUIRED_AFTER(store_mu);
  std::condition_variable_any claimer_cv;
  std::condition_variable_any idle_cv;
  bool notified GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;
  std::set<std::int64_t> in_flight GUARDED_BY(mu);             // claimed and not yet recorded
  std::map<std::string, std::int64_t> blocked GUARDED_BY(mu);  // order key -> id waiting to retry
  std::vector<std::unique_ptr<Lane>> lanes;                    // one per executor, same order
  std::map<std::string, Lane*, std::less<>> lane_by_type;
  ActionValve valve GUARDED_BY(mu);
  std::atomic<UnixMicros> last_deferred_at{0};
  std::mt19937_64 rng{std::random_device{}()};

  Mutex store_mu;  // one connection, short statements, shared by claimer and workers
  std::unique_ptr<IncidentStore> store GUARDED_BY(store_mu);
  ClaimOwnerLock owner;  // lives as long as a detached worker may still run an action

  std::atomic<std::uint64_t> maintained{0};
  // Actions ended, per catalogue type (then "other") and outcome; DispatcherStats' totals are its
  // column sums.
  std::array<std::array<std::atomic<std::uint64_t>, kActionOutcomeCount>, kOutcomeTypes> outcomes{};
  std::atomic<std::int64_t> outbox_depth{-1}, outbox_oldest_age_seconds{-1}, active_bans{-1};

  void Count(const ActionRecord& a, ActionOutcome o) {
    outcomes[OutcomeTypeIndex(a.type)][static_cast<int>(o)].fetch_add(1, std::memory_order_relaxed);
  }
  RateLimitedLog log;

  DispatcherShared(std::string path, std::vector<std::unique_ptr<ActionExecutor>> execs,
                   DispatcherOptions opts, const Clock* c)
      : store_path(std::move(path)),
        executors(std::move(execs)),
        options(std::move(opts)),
        clock(c ? c : SystemClock::Instance()),
        valve(ValveLimits{options.default_per_minute_cap, options.per_minute_cap,
                          options.per_prefix_cap}) {
    for (auto& e : executors) {
      auto lane = std::make_unique<Lane>();
      lane->executor = e.get();
      lane->dry_run = dynamic_cast<const DryRunExecutor*>(e.get());
      lane->retry_after = dynamic_cast<RetryAfterSource*>(e.get());
      lane->batch = dynamic_cast<BatchApplier*>(e.get());
      lanes.push_back(std::move(lane));
    }
  }

  Status OpenStore() {
    MutexLock lk(store_mu);
    if (store) return Status::Ok();
    auto s = IncidentStore::Open(store_path);
    if (!s.ok()) return s.status().Annotate("action dispatcher");
    store = std::move(*s);
    Status locked;
    {
      MutexLock lk(mu);
      locked = owner.Acquire(store_path, rng);
    }
    if (!locked.ok()) {
      spdlog::warn(
          "dispatcher: {}; actions in flight when mxward dies re-run only after their claim "
          "lease ({} s)",
          locked.ToString(), options.claim_lease_ms / 1000);
    }
    return Status::Ok();
  }

  // Hands back at once the claims of dispatchers that died (crash, kill -9) instead of waiting
  // for their lease. A live owner's claims, in this process or another, are left alone.
  Status RecoverDeadClaims() {
    const UnixMicros now = clock->Now();
    MutexLock slk(store_mu);
    auto owners = store->ClaimOwners(now);
    if (!owners.ok()) return owners.status();
    for (std::int64_t token : *owners) {
      if (token == owner.token() || owner.IsAlive(token)) continue;
      auto n = store->ReleaseClaimsOf(token, now);
      if (!n.ok()) return n.status();
      if (*n > 0) {
        spdlog::info("dispatcher: {} action(s) claimed by a dispatcher that died run again now",
                     *n);
      }
    }
    return Status::Ok();
  }

  // Queues the revert of every timed suspension whose time is up (once each, durably).
  Status QueueExpiries() {
    const UnixMicros now = clock->Now();
    MutexLock slk(store_mu);
    auto ids = store->QueueExpiredSuspensionReverts(now);
    if (!ids.ok()) return ids.status();
    if (!ids->empty()) spdlog::info("dispatcher: {} suspension(s) expired, restoring", ids->size());
    return Status::Ok();
  }

  // The housekeeping of a claim pass: dead owners' claims and expired suspensions.
  void Housekeeping() {
    if (Status st = RecoverDeadClaims(); !st.ok()) {
      log.Warn("dispatcher.recover", "dispatcher: recovering claims: {}", st.ToString());
    }
    if (Status st = QueueExpiries(); !st.ok()) {
      log.Warn("dispatcher.expiry", "dispatcher: queueing expired suspensions: {}", st.ToString());
    }
    RefreshGauges();
  }

  // The outbox and ban gauges, read from the store here (the claimer, about once a second) so a
  // /metrics scrape never queries SQLite on the thread that reads the logs.
  void RefreshGauges() {
    const UnixMicros now = clock->Now();
    MutexLock slk(store_mu);
    if (auto ob = store->GetOutboxStats(); ob.ok()) {
      outbox_depth.store(ob->pending, std::memory_order_relaxed);
      outbox_oldest_age_seconds.store(
          ob->oldest_created_at == 0
              ? 0
              : std::max<std::int64_t>(0, (now - ob->oldest_created_at) / kMicrosPerSecond),
          std::memory_order_relaxed);
    }
    if (auto bans = store->CountActiveBans(now); bans.ok()) {
      active_bans.store(*bans, std::memory_order_relaxed);
    }
  }

  // Under mu.
  Lane* LaneFor(const std::string& type) {
    auto it = lane_by_type.find(type);
    if (it != lane_by_type.end()) return it->second;
    Lane* found = nullptr;
    for (auto& lane : lanes) {
      if (lane->executor->Handles(type)) {
        found = lane.get();
        break;
      }
    }
    lane_by_type.emplace(type, found);
    return found;
  }

  // Claims up to `limit` due actions in one transaction and decides the fate of those that never
  // reach an executor (refused by the valve or the allowlist, no executor). `exclude` are ids
  // this caller already handled (RunDueOnce); `bounded` applies the per-lane queue limit.
  Result<std::vector<std::pair<Lane*, ActionRecord>>> Claim(int limit,
                                                            const std::set<std::int64_t>& exclude,
                                                            bool bounded) {
    const UnixMicros now = clock->Now();
    ClaimRequest request;
    request.now = now;
    request.lease_until = now + options.claim_lease_ms * 1000;
    request.limit = limit;
    request.owner = owner.token();
    {
      MutexLock lk(mu);
      if (bounded) {
        for (const auto& [type, lane] : lane_by_type) {
          if (lane && lane->queue.size() >= QueueLimit(*lane)) request.skip_types.push_back(type);
        }
      }
      request.skip_ids.assign(in_flight.begin(), in_flight.end());
      request.blocked_subjects = blocked;
    }
    request.skip_ids.insert(request.skip_ids.end(), exclude.begin(), exclude.end());

    std::map<Lane*, std::size_t> added;
    std::map<std::int64_t, Lane*> lane_of;
    std::vector<std::pair<std::string, std::int64_t>> deferred;  // subject, id
    // Decides the fate of each candidate; runs inside the store's claim transaction (store_mu).
    auto decide = [&](const ActionRecord& a) REQUIRES(store_mu) -> ClaimVerdict {
      std::optional<std::string> refusal = AllowlistRefusal(options, a, now);
      // The valve guards against a flood of incidents: undo requests and what an admin asked
      // for by hand (no incident) are never held back.
      const bool valved = !refusal && !a.revert && a.incident_id != 0;
      std::string playbook;
      if (valved) {
        auto pb = store->IncidentPlaybook(a.incident_id);
        playbook = pb.ok() ? *pb : std::string();
      }
      Lane* lane = nullptr;
      ValveVerdict held;
      {
        MutexLock lk(mu);
        lane = LaneFor(a.type);
        if (lane && bounded && lane->queue.size() + added[lane] >= QueueLimit(*lane)) {
          return {ClaimVerdict::Kind::kSkipSubject, ActionStatus::kPending, "", 0};
        }
        if (valved && lane && !lane->dry_run) {
          held = valve.Admit(a.type, playbook, StringParam(a, "address"), now);
        }
      }
      if (!held.admitted) {
        Count(a, ActionOutcome::kDeferred);
        last_deferred_at.store(now, std::memory_order_relaxed);
        deferred.emplace_back(ActionOrderKey(a), a.id);
        const std::string why = "held back by the safety valve: " + held.reason;
        log.Warn("dispatcher.valve." + a.type, "action {} {}; it runs in {} s", DescribeAction(a),
                 why, std::max<UnixMicros>(0, held.retry_at - now) / kMicrosPerSecond);
        return {ClaimVerdict::Kind::kDefer, ActionStatus::kPending, why, held.retry_at};
      }
      if (refusal) {
        const std::string why = "refused: " + *refusal;
        Count(a, ActionOutcome::kRefused);
        log.Warn("dispatcher.allowlist", "action {} {}", DescribeAction(a), why);
        return {ClaimVerdict::Kind::kSettle, ActionStatus::kRefused, why, 0};
      }
      if (!lane) {
        Count(a, ActionOutcome::kFailed);
        return {ClaimVerdict::Kind::kSettle, ActionStatus::kFailed,
                fmt::format("no executor handles '{}' actions (unknown type)", a.type), 0};
      }
      ++added[lane];
      lane_of[a.id] = lane;
      return {ClaimVerdict::Kind::kClaim, ActionStatus::kPending, "", 0};
    };

    Result<ClaimOutcome> outcome = ClaimOutcome{};
    {
      MutexLock slk(store_mu);
      outcome = store->ClaimDueActions(request, decide);
    }
    if (!outcome.ok()) return outcome.status();
    std::vector<std::pair<Lane*, ActionRecord>> claimed;
    MutexLock lk(mu);
    // A deferred action holds its subject's later actions (a ban's removal) behind it, as one in
    // backoff does.
    for (const auto& [key, id] : deferred) {
      auto it = blocked.find(key);
      if (it == blocked.end() || it->second > id) blocked[key] = id;
    }
    for (std::int64_t id : outcome->stale_heads) {
      for (auto it = blocked.begin(); it != blocked.end(); ++it) {
        if (it->second == id) {
          blocked.erase(it);
          break;
        }
      }
    }
    for (ActionRecord& a : outcome->claimed) {
      Lane* lane = lane_of[a.id];
      in_flight.insert(a.id);
      if (bounded) lane->queue.push_back(a);
      claimed.emplace_back(lane, std::move(a));
    }
    return claimed;
  }

  void Release(const std::vector<std::int64_t>& ids) {
    if (ids.empty()) return;
    const UnixMicros now = clock->Now();
    MutexLock slk(store_mu);
    if (!store) return;
    Status s = store->ReleaseActions(ids, now);
    if (!s.ok()) {
      spdlog::warn(
          "dispatcher: could not hand {} claimed actions back ({}); they run again "
          "when their claim expires",
          ids.size(), s.ToString());
    }
  }

  // Runs claimed applies through the lane's BatchApplier together (one nftables transaction
  // for a burst of bans) and records each action's own outcome, as Execute() would.
  void ExecuteMany(Lane* lane, const std::vector<ActionRecord>& actions) {
    std::vector<const ActionRecord*> run;
    std::vector<std::string> keys;
    for (const ActionRecord& a : actions) {
      std::string key = ActionOrderKey(a);
      if (IsBehindBackoff(key, a.id)) {
        Release({a.id});
        MutexLock lk(mu);
        in_flight.erase(a.id);
        continue;
      }
      run.push_back(&a);
      keys.push_back(std::move(key));
    }
    if (run.empty()) return;
    Status st = EnsureStarted(lane);
    std::vector<Status> results;
    if (st.ok()) results = lane->batch->ApplyMany(run);
    results.resize(run.size(), st.ok() ? Status::Internal("no outcome from the executor") : st);
    std::vector<std::size_t> done;
    for (std::size_t i = 0; i < run.size(); ++i) {
      if (results[i].ok()) {
        done.push_back(i);
      } else {
        Record(*run[i], keys[i], results[i], lane->retry_after, "");
      }
    }
    RecordDone(run, keys, done);
  }

  // Records the applies at `done` in `run` as done in ONE store transaction: a batch of a few
  // thousand costs one commit, not one each (the bulk of a cluster catch-up's time before).
  void RecordDone(const std::vector<const ActionRecord*>& run, const std::vector<std::string>& keys,
                  const std::vector<std::size_t>& done) {
    if (done.empty()) return;
    const UnixMicros now = clock->Now();
    std::vector<std::int64_t> ids;
    ids.reserve(done.size());
    for (const std::size_t i : done) ids.push_back(run[i]->id);
    Status s;
    {
      MutexLock slk(store_mu);
      s = store->MarkActionsDone(ids, now);
    }
    if (!s.ok()) {
      // The outcomes are lost; the actions stay claimed and run again when their claim expires
      // (a ban applied twice is the same element in the set).
      spdlog::error("dispatcher: could not record {} applied actions as done: {}", ids.size(),
                    s.ToString());
    }
    for (const std::size_t i : done) {
      const ActionRecord& a = *run[i];
      if (s.ok()) {
        Count(a, ActionOutcome::kApplied);
        spdlog::info("action {} applied", DescribeAction(a));
        if (on_done) on_done(a);
      }
      MutexLock lk(mu);
      in_flight.erase(a.id);
      auto it = blocked.find(keys[i]);
      if (it != blocked.end() && it->second == a.id) blocked.erase(it);
    }
  }

  // Starts the lane's executor before its first use (and again after a failed start).
  static Status EnsureStarted(Lane* lane) {
    if (lane->started) return Status::Ok();
    Status st = lane->executor->Start();
    if (!st.ok()) return st.Annotate("starting the executor");
    lane->started = true;
    return st;
  }

  // Runs one claimed action through its lane's executor and records the outcome.
  void Execute(Lane* lane, const ActionRecord& a) {
    const std::string key = ActionOrderKey(a);
    if (IsBehindBackoff(key, a.id)) {
      // An earlier action of the same subject went into backoff after this one was claimed.
      Release({a.id});
      MutexLock lk(mu);
      in_flight.erase(a.id);
      return;
    }
    if (lane->dry_run) {
      Record(a, key, Status::Ok(), nullptr, /*dry_run_reason=*/lane->dry_run->Reason(a.type));
      return;
    }
    Status st = EnsureStarted(lane);
    if (st.ok()) st = a.revert ? lane->executor->Revert(a) : lane->executor->Apply(a);
    Record(a, key, st, lane->retry_after, "");
  }

  bool IsBehindBackoff(const std::string& key, std::int64_t id) {
    MutexLock lk(mu);
    auto it = blocked.find(key);
    return it != blocked.end() && it->second < id;
  }

  void Record(const ActionRecord& a, const std::string& key, const Status& result,
              RetryAfterSource* retry_after, const std::string& dry_run_reason) {
    const UnixMicros now = clock->Now();
    Status s;
    bool unblock = true;
    const int attempt = a.attempts + 1;
    if (!dry_run_reason.empty()) {
      MutexLock slk(store_mu);
      s = store->MarkActionFinal(a.id, ActionStatus::kDryRun, dry_run_reason, now);
      Count(a, ActionOutcome::kDryRun);
      spdlog::info("action {} recorded as dry-run: {}", DescribeAction(a), dry_run_reason);
    } else if (result.ok()) {
      MutexLock slk(store_mu);
      s = store->MarkActionDone(a.id, now);
      Count(a, a.revert ? ActionOutcome::kReverted : ActionOutcome::kApplied);
      spdlog::info("action {} {}", DescribeAction(a), a.revert ? "reverted" : "applied");
      if (s.ok() && on_done) on_done(a);
    } else if (result.transient() && attempt < options.max_attempts) {
      double u;
      {
        MutexLock lk(mu);
        u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      }
      std::int64_t delay_ms = JitteredBackoffMs(options, attempt, u);
      if (retry_after) {
        if (auto ra = retry_after->TakeRetryAfter(a.id)) {
          // The server said when; honour it, within reason (a day).
          delay_ms =
              std::max<std::int64_t>(delay_ms, std::min<std::int64_t>(ra->count(), 86'400'000));
        }
      }
      const std::string error =
          fmt::format("attempt {} of {}: {}", attempt, options.max_attempts, result.ToString());
      {
        MutexLock slk(store_mu);
        s = store->MarkActionRetry(a.id, error, now + delay_ms * 1000, now);
      }
      Count(a, ActionOutcome::kRetried);
      unblock = false;
      log.Warn("dispatcher.retry." + a.type, "action {} will be retried in {} ms: {}",
               DescribeAction(a), delay_ms, error);
    } else {
      const std::string error = result.transient() ? fmt::format("gave up after {} attempts: {}",
                                                                 attempt, result.ToString())
                                                   : result.ToString();
      {
        MutexLock slk(store_mu);
        s = store->MarkActionFinal(a.id, ActionStatus::kFailed, error, now);
      }
      Count(a, ActionOutcome::kFailed);
      log.Warn("dispatcher.failed." + a.type, "action {} failed: {}", DescribeAction(a), error);
    }
    if (!s.ok()) {
      // The outcome is lost; the action is still claimed and runs again when the claim expires
      // (executors are idempotent).
      spdlog::error("dispatcher: could not record the outcome of action #{}: {}", a.id,
                    s.ToString());
    }
    MutexLock lk(mu);
    in_flight.erase(a.id);
    auto it = blocked.find(key);
    if (unblock) {
      if (it != blocked.end() && it->second == a.id) blocked.erase(it);
    } else if (it == blocked.end() || it->second > a.id) {
      blocked[key] = a.id;
    }
  }

  // Subjects waiting behind an action in backoff, from the outbox (after a restart).
  Status LoadBlocked() {
    MutexLock slk(store_mu);
    auto pending = store->DueActions(std::numeric_limits<UnixMicros>::max(), 1'000'000);
    if (!pending.ok()) return pending.status();
    const UnixMicros now = clock->Now();
    MutexLock lk(mu);
    for (const ActionRecord& a : *pending) {
      if (a.next_attempt_at <= now) continue;
      const std::string key = ActionOrderKey(a);
      auto it = blocked.find(key);
      if (it == blocked.end() || it->second > a.id) blocked[key] = a.id;
    }
    return Status::Ok();
  }

  // Starts the lane's executor if needed, then runs its Maintain(); on the lane's worker thread.
  void Maintain(Lane* lane, std::size_t index) {
    if (lane->dry_run) return;
    Status st = EnsureStarted(lane);
    if (st.ok()) st = lane->executor->Maintain();
    if (!st.ok()) {
      // The key names the lane by position, never by anything read from outside.
      log.Warn(fmt::format("dispatcher.maintain.{}", index),
               "dispatcher: maintenance of executor {} failed (tried again in {} ms): {}", index,
               options.maintain_interval_ms, st.ToString());
    }
    ++maintained;
  }

  void WorkerLoop(Lane* lane, std::size_t index) {
    // Named for top -H, perf and the latency bench's CPU per thread ("mxw-lane-0" is the first
    // executor's worker: nftables when it is configured).
    pthread_setname_np(pthread_self(), fmt::format("mxw-lane-{}", index % 100).c_str());
    using SteadyClock = std::chrono::steady_clock;
    const auto interval =
        std::chrono::milliseconds(std::max<std::int64_t>(options.maintain_interval_ms, 1));
    auto next_maintain = SteadyClock::now();  // the first tick starts the executor at once
    for (;;) {
      std::optional<ActionRecord> a;
      std::vector<ActionRecord> batch;  // applies for a BatchApplier, taken together
      {
        MutexLock lk(mu);
        lane->cv.wait_until(lk, next_maintain,
                            [&]() REQUIRES(mu) { return stopping || !lane->queue.empty(); });
        if (stopping) break;
        if (lane->batch && !lane->dry_run) {
          while (!lane->queue.empty() && lane->batch->Batchable(lane->queue.front()) &&
                 batch.size() < kLaneBatchLimit) {
            batch.push_back(std::move(lane->queue.front()));
            lane->queue.pop_front();
          }
        }
        if (batch.empty() && !lane->queue.empty()) {
          a = std::move(lane->queue.front());
          lane->queue.pop_front();
        }
        if (a || !batch.empty()) lane->running = true;
      }
      if (a || !batch.empty()) {
        if (batch.size() > 1) {
          ExecuteMany(lane, batch);
        } else {
          Execute(lane, a ? *a : batch.front());
        }
        {
          MutexLock lk(mu);
          lane->running = false;
          notified = true;  // room in the queue: claim more
        }
        idle_cv.notify_all();
        claimer_cv.notify_one();
      }
      // Checked after every action too, so a steady stream of actions does not starve it.
      if (SteadyClock::now() >= next_maintain) {
        // Counts as running: Stop()'s drain waits for it, and detaches a tick that hangs.
        {
          MutexLock lk(mu);
          if (stopping) break;
          lane->running = true;
        }
        Maintain(lane, index);
        {
          MutexLock lk(mu);
          lane->running = false;
        }
        idle_cv.notify_all();
        next_maintain = SteadyClock::now() + interval;
      }
    }
    if (lane->started) lane->executor->Stop();
    lane->started = false;
    {
      MutexLock lk(mu);
      lane->running = false;
    }
    idle_cv.notify_all();
  }

  void ClaimerLoop() {
    pthread_setname_np(pthread_self(), "mxw-claimer");
    auto next_housekeeping = std::chrono::steady_clock::now();
    int limit = options.claim_batch;
    for (;;) {
      {
        MutexLock lk(mu);
        if (stopping) return;
        notified = false;
      }
      if (std::chrono::steady_clock::now() >= next_housekeeping) {
        Housekeeping();
        next_housekeeping = std::chrono::steady_clock::now() +
                            std::chrono::milliseconds(std::min<std::int64_t>(
                                std::max<std::int64_t>(options.poll_interval_ms, 1), 1000));
      }
      auto claimed = Claim(limit, {}, /*bounded=*/true);
      bool more = false;
      if (!claimed.ok()) {
        log.Warn("dispatcher.claim", "dispatcher: {}", claimed.status().ToString());
      } else {
        std::set<Lane*> woken;
        for (auto& [lane, a] : *claimed) woken.insert(lane);
        for (Lane* lane : woken) lane->cv.notify_one();
        more = static_cast<int>(claimed->size()) >= limit;
        // A full claim means a backlog: take it in large claims until one comes back short.
        limit = more ? std::max(options.claim_batch, kBacklogClaimBatch) : options.claim_batch;
      }
      MutexLock lk(mu);
      if (more) continue;
      claimer_cv.wait_for(lk, std::chrono::milliseconds(options.poll_interval_ms),
                          [&]() REQUIRES(mu) { return stopping || notified; });
    }
  }
};

struct ActionDispatcher::Impl {
  std::shared_ptr<DispatcherShared> shared;
  std::thread claimer;
  bool started = false;
  // Set once Start() has launched the worker threads. From then on each Lane's `started` belongs
  // to its worker (a worker detached by Stop() may still be writing it), so neither the
  // destructor nor RunDueOnce may touch the lanes again.
  bool workers_ran = false;
};

ActionDispatcher::ActionDispatcher(std::string store_path,
                                   std::vector<std::unique_ptr<ActionExecutor>> executors,
                                   DispatcherOptions options, const Clock* clock)
    : impl_(std::make_unique<Impl>()) {
  impl_->shared = std::make_shared<DispatcherShared>(std::move(store_path), std::move(executors),
                                                     std::move(options), clock);
}

ActionDispatcher::~ActionDispatcher() {
  if (impl_->started) Stop(std::chrono::milliseconds(0));
  // Each worker stops its own executor on its way out: a joined one already has, a detached one
  // will when its stuck action returns.
  if (impl_->workers_ran) return;
  // RunDueOnce started executors on the caller's thread.
  for (auto& lane : impl_->shared->lanes) {
    if (lane->started) lane->executor->Stop();
    lane->started = false;
  }
}

Status ActionDispatcher::Start() {
  if (impl_->started) return Status::Ok();
  auto& s = impl_->shared;
  {
    MutexLock lk(s->mu);
    if (s->stopping) return Status::InvalidArgument("a stopped dispatcher cannot be restarted");
  }
  MXWARD_RETURN_IF_ERROR(s->OpenStore());
  if (Status st = s->RecoverDeadClaims(); !st.ok()) {
    // Not fatal: those actions still run when their lease expires.
    spdlog::warn("dispatcher: recovering the claims of a dead dispatcher: {}", st.ToString());
  }
  MXWARD_RETURN_IF_ERROR(s->LoadBlocked());
  (void)spdlog::default_logger_raw();  // built before the threads: see IncidentRecorder's ctor
  for (std::size_t i = 0; i < s->lanes.size(); ++i) {
    Lane* l = s->lanes[i].get();
    l->thread = std::thread([s, l, i] { s->WorkerLoop(l, i); });
  }
  impl_->claimer = std::thread([s] { s->ClaimerLoop(); });
  impl_->started = true;
  impl_->workers_ran = true;
  return Status::Ok();
}

void ActionDispatcher::SetDoneHook(std::function<void(const ActionRecord&)> hook) {
  impl_->shared->on_done = std::move(hook);
}

void ActionDispatcher::Notify() {
  auto& s = impl_->shared;
  {
    MutexLock lk(s->mu);
    s->notified = true;
  }
  s->claimer_cv.notify_one();
}

void ActionDispatcher::Stop(std::chrono::milliseconds drain) {
  if (!impl_->started) return;
  impl_->started = false;
  auto& s = impl_->shared;
  std::vector<std::int64_t> unstarted;
  {
    MutexLock lk(s->mu);
    s->stopping = true;
    for (auto& lane : s->lanes) {
      for (const ActionRecord& a : lane->queue) {
        unstarted.push_back(a.id);
        s->in_flight.erase(a.id);
      }
      lane->queue.clear();
    }
  }
  s->claimer_cv.notify_all();
  for (auto& lane : s->lanes) lane->cv.notify_all();
  if (impl_->claimer.joinable()) impl_->claimer.join();
  s->Release(unstarted);
  {
    MutexLock lk(s->mu);
    s->idle_cv.wait_for(lk, drain, [&] {
      for (auto& lane : s->lanes) {
        if (lane->running) return false;
      }
      return true;
    });
  }
  for (auto& lane : s->lanes) {
    bool running;
    {
      MutexLock lk(s->mu);
      running = lane->running;
    }
    if (!lane->thread.joinable()) continue;
    if (running) {
      spdlog::warn(
          "dispatcher: an action is still running after the drain period; leaving it "
          "to finish (it runs again after a restart if it never completes)");
      lane->thread.detach();
    } else {
      lane->thread.join();
    }
  }
  // `stopping` stays set: a worker detached above still needs to see it when it returns.
}

Status ActionDispatcher::RunDueOnce() {
  if (impl_->started) {
    return Status::InvalidArgument("RunDueOnce: the dispatcher's workers are running");
  }
  if (impl_->workers_ran) {
    // A worker detached by Stop() may still own its lane; RunDueOnce would share it.
    return Status::InvalidArgument("RunDueOnce: this dispatcher's workers have run; use a new one");
  }
  auto& s = impl_->shared;
  MXWARD_RETURN_IF_ERROR(s->OpenStore());
  MXWARD_RETURN_IF_ERROR(s->RecoverDeadClaims());
  MXWARD_RETURN_IF_ERROR(s->QueueExpiries());
  MXWARD_RETURN_IF_ERROR(s->LoadBlocked());
  std::set<std::int64_t> done;
  for (;;) {
    auto claimed = s->Claim(s->options.claim_batch, done, /*bounded=*/false);
    if (!claimed.ok()) return claimed.status();
    if (claimed->empty()) return Status::Ok();
    for (auto& [lane, a] : *claimed) {
      done.insert(a.id);
      s->Execute(lane, a);
    }
  }
}

DispatcherStats ActionDispatcher::stats() const {
  const auto& s = impl_->shared;
  DispatcherStats out;
  auto total = [&](ActionOutcome o) {
    std::uint64_t n = 0;
    for (const auto& row : s->outcomes)
      n += row[static_cast<int>(o)].load(std::memory_order_relaxed);
    return n;
  };
  out.applied = total(ActionOutcome::kApplied);
  out.retried = total(ActionOutcome::kRetried);
  out.failed = total(ActionOutcome::kFailed);
  out.refused = total(ActionOutcome::kRefused);
  out.reverted = total(ActionOutcome::kReverted);
  out.dry_run = total(ActionOutcome::kDryRun);
  out.deferred = total(ActionOutcome::kDeferred);
  out.last_deferred_at = s->last_deferred_at.load(std::memory_order_relaxed);
  out.maintained = s->maintained;
  out.outbox_depth = s->outbox_depth.load(std::memory_order_relaxed);
  out.outbox_oldest_age_seconds = s->outbox_oldest_age_seconds.load(std::memory_order_relaxed);
  out.active_bans = s->active_bans.load(std::memory_order_relaxed);
  return out;
}

std::uint64_t ActionDispatcher::outcome_count(std::string_view type, ActionOutcome outcome) const {
  return impl_->shared->outcomes[OutcomeTypeIndex(type)][static_cast<int>(outcome)].load(
      std::memory_order_relaxed);
}

std::string_view ActionOutcomeName(ActionOutcome outcome) {
  switch (outcome) {
    case ActionOutcome::kApplied:
      return "applied";
    case ActionOutcome::kReverted:
      return "reverted";
    case ActionOutcome::kFailed:
      return "failed";
    case ActionOutcome::kRefused:
      return "refused";
    case ActionOutcome::kDryRun:
      return "dry_run";
    case ActionOutcome::kRetried:
      return "retried";
    case ActionOutcome::kDeferred:
      return "deferred";
  }
  return "failed";
}

}  // namespace mxward
