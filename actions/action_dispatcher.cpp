#include "mxward/action_dispatcher.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "config_section_reader.h"
#include "mxward/incident_store.h"
#include "mxward/rate_limited_log.h"

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

ActionRateCap::ActionRateCap(int default_cap, std::map<std::string, int> caps)
    : default_cap_(default_cap), caps_(caps.begin(), caps.end()) {}

int ActionRateCap::CapFor(std::string_view type) const {
  auto it = caps_.find(type);
  return it == caps_.end() ? default_cap_ : it->second;
}

bool ActionRateCap::Admit(std::string_view type, UnixMicros now) {
  const int cap = CapFor(type);
  if (cap <= 0) return true;
  auto it = starts_.find(type);
  if (it == starts_.end()) it = starts_.emplace(std::string(type), std::deque<UnixMicros>()).first;
  std::deque<UnixMicros>& starts = it->second;
  while (!starts.empty() && starts.front() <= now - 60 * kMicrosPerSecond) starts.pop_front();
  if (starts.size() >= static_cast<std::size_t>(cap)) return false;
  starts.push_back(now);
  return true;
}

namespace {

// The parameters that name what an action is about, in the order ActionOrderKey looks at them.
// The SQL in kClaimCandidatesSql computes the same key.
constexpr const char* kSubjectParams[] = {"target", "address", "user", "to"};

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

std::string ActionOrderKey(const ActionRecord& action) {
  std::string key = action.type;
  key += '\x1f';
  for (const char* name : kSubjectParams) {
    auto it = action.params.find(name);
    if (it != action.params.end() && it->is_string()) {
      key += it->get<std::string>();
      break;
    }
  }
  return key;
}

std::optional<std::string> AllowlistRefusal(const DispatcherOptions& options,
                                            const ActionRecord& action) {
  if (action.revert) return std::nullopt;  // undoing is always allowed
  if (action.type == "ban") {
    IpPrefix p;
    if (!IpPrefix::Parse(StringParam(action, "address"), &p)) return std::nullopt;
    for (const IpPrefix& allow : options.allow_addresses) {
      if (Overlaps(p, allow)) {
        return fmt::format("{} is allowlisted ({} in [allow] addresses)", p.ToString(),
                           allow.ToString());
      }
    }
    return std::nullopt;
  }
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
  const toml::node* node = config.document.get("dispatcher");
  if (!node) return o;
  const toml::table* t = node->as_table();
  if (!t) {
    diagnostics->push_back(
        MakeDiagnostic(config.source, node->source(), "[dispatcher] must be a table"));
    return Status::InvalidArgument(diagnostics->back().ToString());
  }
  ConfigSectionReader r(*t, "dispatcher", config.source, diagnostics);
  r.CheckKnownKeys({"workers", "max_attempts", "backoff_base", "backoff_max", "per_minute_cap",
                    "per_minute_caps", "claim_lease", "poll_interval", "claim_batch"});
  r.Int("workers", 1, 64, &o.workers);
  r.Int("max_attempts", 1, 1000, &o.max_attempts);
  std::int64_t s = o.base_backoff_ms / 1000;
  r.Duration("backoff_base", &s);
  o.base_backoff_ms = std::max<std::int64_t>(s, 1) * 1000;
  s = o.max_backoff_ms / 1000;
  r.Duration("backoff_max", &s);
  o.max_backoff_ms = std::max<std::int64_t>(s, 1) * 1000;
  r.Int("per_minute_cap", 0, 1'000'000, &o.default_per_minute_cap);
  s = o.claim_lease_ms / 1000;
  r.Duration("claim_lease", &s);
  o.claim_lease_ms = std::max<std::int64_t>(s, 1) * 1000;
  s = o.poll_interval_ms / 1000;
  r.Duration("poll_interval", &s);
  o.poll_interval_ms = std::max<std::int64_t>(s, 1) * 1000;
  r.Int("claim_batch", 1, 10000, &o.claim_batch);
  if (const toml::node* caps = t->get("per_minute_caps")) {
    if (const toml::table* ct = caps->as_table()) {
      for (const auto& [k, v] : *ct) {
        auto n = v.value_exact<std::int64_t>();
        if (std::find(std::begin(kKnownActionTypes), std::end(kKnownActionTypes), k.str()) ==
            std::end(kKnownActionTypes)) {
          r.Error(v, fmt::format("'{}' is not an action type", k.str()));
        } else if (!n || *n < 0 || *n > 1'000'000) {
          r.Error(v,
                  fmt::format("per_minute_caps.{} must be an integer from 0 to 1000000", k.str()));
        } else {
          o.per_minute_cap[std::string(k.str())] = static_cast<int>(*n);
        }
      }
    } else {
      r.Error(*caps, "'per_minute_caps' must be a table like { ban = 100, webhook = 30 }");
    }
  }
  if (!r.ok()) return Status::InvalidArgument("errors in [dispatcher]");
  return o;
}

// --- the dispatcher
// --------------------------------------------------------------------------------

namespace {

// Due, unclaimed pending actions, oldest first, leaving out types whose queue is full and subjects
// waiting behind an action in backoff (so neither can crowd out the rest), and ids already held
// in memory. The subject expression mirrors ActionOrderKey.
constexpr const char* kClaimCandidatesSql =
    "SELECT id FROM (SELECT id, next_attempt_at, type || char(31) || coalesce("
    "iif(json_type(params, '$.target') = 'text', json_extract(params, '$.target'), NULL), "
    "iif(json_type(params, '$.address') = 'text', json_extract(params, '$.address'), NULL), "
    "iif(json_type(params, '$.user') = 'text', json_extract(params, '$.user'), NULL), "
    "iif(json_type(params, '$.to') = 'text', json_extract(params, '$.to'), NULL), '') AS okey "
    "FROM actions WHERE status = 'pending' AND next_attempt_at <= ?1 "
    "AND type NOT IN (SELECT value FROM json_each(?2)) "
    "AND id NOT IN (SELECT value FROM json_each(?3))) AS c "
    "WHERE NOT EXISTS (SELECT 1 FROM json_each(?4) AS b WHERE b.key = c.okey AND b.value < c.id) "
    "ORDER BY next_attempt_at, id LIMIT ?5";
// Takes an action: only if it is still pending and due (nobody else took it in between).
constexpr const char* kClaimSql =
    "UPDATE actions SET next_attempt_at = ?1 WHERE id = ?2 AND status = 'pending' "
    "AND next_attempt_at <= ?3";
// Hands a claimed action back (stopping before it ran).
constexpr const char* kReleaseSql =
    "UPDATE actions SET next_attempt_at = ?1 WHERE id = ?2 AND status = 'pending'";

// One prepared statement, finalized on scope exit. The store's own statement cache is private;
// these three statements are the dispatcher's claim protocol and live here with it.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Status status(std::string_view doing) const {
    if (rc_ == SQLITE_OK) return Status::Ok();
    return Status::Unavailable(fmt::format("{}: {}", doing, sqlite3_errmsg(db_)));
  }
  sqlite3_stmt* get() { return stmt_; }
  void Bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

struct Lane {
  ActionExecutor* executor = nullptr;
  const DryRunExecutor* dry_run = nullptr;
  RetryAfterSource* retry_after = nullptr;
  bool started = false;            // executor Start() succeeded
  bool running = false;            // an action is being run (guarded by Shared::mu)
  std::deque<ActionRecord> queue;  // guarded by Shared::mu
  std::condition_variable cv;
  std::thread thread;
};

constexpr std::size_t kLaneQueueLimit = 256;

}  // namespace

// Everything the threads use; shared so that a worker still stuck after Stop()'s drain can be
// detached and finish on its own without touching freed memory.
struct DispatcherShared {
  std::string store_path;
  std::vector<std::unique_ptr<ActionExecutor>> executors;
  DispatcherOptions options;
  const Clock* clock;

  std::mutex mu;
  std::condition_variable claimer_cv;
  std::condition_variable idle_cv;
  bool notified = false;
  bool stopping = false;
  std::set<std::int64_t> in_flight;             // claimed and not yet recorded
  std::map<std::string, std::int64_t> blocked;  // order key -> id waiting for a retry
  std::vector<std::unique_ptr<Lane>> lanes;     // one per executor, same order
  std::map<std::string, Lane*, std::less<>> lane_by_type;
  ActionRateCap cap;
  std::mt19937_64 rng{std::random_device{}()};

  std::mutex store_mu;  // one connection, short statements, shared by claimer and workers
  std::unique_ptr<IncidentStore> store;

  std::atomic<std::uint64_t> applied{0}, retried{0}, failed{0}, refused{0}, reverted{0}, dry_run{0};
  RateLimitedLog log;

  DispatcherShared(std::string path, std::vector<std::unique_ptr<ActionExecutor>> execs,
                   DispatcherOptions opts, const Clock* c)
      : store_path(std::move(path)),
        executors(std::move(execs)),
        options(std::move(opts)),
        clock(c ? c : SystemClock::Instance()),
        cap(options.default_per_minute_cap, options.per_minute_cap) {
    for (auto& e : executors) {
      auto lane = std::make_unique<Lane>();
      lane->executor = e.get();
      lane->dry_run = dynamic_cast<const DryRunExecutor*>(e.get());
      lane->retry_after = dynamic_cast<RetryAfterSource*>(e.get());
      lanes.push_back(std::move(lane));
    }
  }

  Status OpenStore() {
    std::lock_guard<std::mutex> lk(store_mu);
    if (store) return Status::Ok();
    auto s = IncidentStore::Open(store_path);
    if (!s.ok()) return s.status().Annotate("action dispatcher");
    store = std::move(*s);
    return Status::Ok();
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
    nlohmann::json full_types = nlohmann::json::array();
    nlohmann::json held = nlohmann::json::array();
    std::map<std::string, std::int64_t> heads;  // order key -> id waiting for its retry
    {
      std::lock_guard<std::mutex> lk(mu);
      if (bounded) {
        for (const auto& [type, lane] : lane_by_type) {
          if (lane && lane->queue.size() >= kLaneQueueLimit) full_types.push_back(type);
        }
      }
      for (std::int64_t id : in_flight) held.push_back(id);
      heads = blocked;
    }
    for (std::int64_t id : exclude) held.push_back(id);

    std::vector<std::pair<Lane*, ActionRecord>> claimed;
    std::lock_guard<std::mutex> slk(store_mu);
    IncidentStore* st = store.get();
    Status s = st->InTransaction([&]() -> Status {
      // A head that is no longer pending (another process ran it, an admin deleted it) must not
      // hold its subject back.
      nlohmann::json blocked_keys = nlohmann::json::object();
      for (const auto& [key, id] : heads) {
        auto head = st->GetAction(id);
        if (head.ok() && head->status == ActionStatus::kPending) {
          blocked_keys[key] = id;
          continue;
        }
        if (!head.ok() && head.status().code() != Status::Code::kNotFound) return head.status();
        std::lock_guard<std::mutex> lk(mu);
        if (auto it = blocked.find(key); it != blocked.end() && it->second == id) blocked.erase(it);
      }
      std::vector<std::int64_t> ids;
      {
        Statement q(st->db(), kClaimCandidatesSql);
        MXWARD_RETURN_IF_ERROR(q.status("reading the outbox"));
        q.Bind(1, now);
        q.Bind(2, full_types.dump());
        q.Bind(3, held.dump());
        q.Bind(4, blocked_keys.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        q.Bind(5, static_cast<std::int64_t>(limit));
        int rc;
        while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
          ids.push_back(sqlite3_column_int64(q.get(), 0));
        }
        if (rc != SQLITE_DONE) {
          return Status::Unavailable(
              fmt::format("reading the outbox: {}", sqlite3_errmsg(st->db())));
        }
      }
      Statement claim(st->db(), kClaimSql);
      MXWARD_RETURN_IF_ERROR(claim.status("claiming an action"));
      std::set<std::string> skipped_keys;  // a lane filled up: keep later ones of a key behind
      std::map<Lane*, std::size_t> added;
      for (std::int64_t id : ids) {
        auto a = st->GetAction(id);
        if (!a.ok()) return a.status();
        const std::string key = ActionOrderKey(*a);
        if (skipped_keys.count(key)) continue;
        Lane* lane = nullptr;
        std::optional<std::string> refusal = AllowlistRefusal(options, *a);
        bool capped = false;
        {
          std::lock_guard<std::mutex> lk(mu);
          lane = LaneFor(a->type);
          if (lane && bounded && lane->queue.size() + added[lane] >= kLaneQueueLimit) {
            skipped_keys.insert(key);
            continue;
          }
          // The valve guards against a flood of incidents: undo requests and what an admin
          // asked for by hand (no incident) are never refused.
          if (!refusal && lane && !lane->dry_run && !a->revert && a->incident_id != 0 &&
              !cap.Admit(a->type, now)) {
            capped = true;
          }
        }
        if (refusal || capped) {
          const std::string why =
              refusal ? "refused: " + *refusal
                      : fmt::format(
                            "refused by the safety valve: more than {} '{}' actions in "
                            "one minute ([dispatcher] per_minute_caps)",
                            cap.CapFor(a->type), a->type);
          MXWARD_RETURN_IF_ERROR(st->MarkActionFinal(id, ActionStatus::kRefused, why, now));
          ++refused;
          log.Warn(capped ? "dispatcher.valve." + a->type : "dispatcher.allowlist",
                   "action #{} ({}) {}", id, a->type, why);
          continue;
        }
        if (!lane) {
          MXWARD_RETURN_IF_ERROR(st->MarkActionFinal(
              id, ActionStatus::kFailed,
              fmt::format("no executor handles '{}' actions (unknown type)", a->type), now));
          ++failed;
          continue;
        }
        sqlite3_reset(claim.get());
        claim.Bind(1, now + options.claim_lease_ms * 1000);
        claim.Bind(2, id);
        claim.Bind(3, now);
        if (sqlite3_step(claim.get()) != SQLITE_DONE) {
          return Status::Unavailable(
              fmt::format("claiming action {}: {}", id, sqlite3_errmsg(st->db())));
        }
        if (sqlite3_changes(st->db()) != 1) continue;  // someone else took it
        ++added[lane];
        claimed.emplace_back(lane, std::move(*a));
      }
      return Status::Ok();
    });
    if (!s.ok()) return s;
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [lane, a] : claimed) {
      in_flight.insert(a.id);
      if (bounded) lane->queue.push_back(a);
    }
    return claimed;
  }

  void Release(const std::vector<std::int64_t>& ids) {
    if (ids.empty()) return;
    const UnixMicros now = clock->Now();
    std::lock_guard<std::mutex> slk(store_mu);
    if (!store) return;
    Status s = store->InTransaction([&]() -> Status {
      Statement q(store->db(), kReleaseSql);
      MXWARD_RETURN_IF_ERROR(q.status("handing actions back"));
      for (std::int64_t id : ids) {
        sqlite3_reset(q.get());
        q.Bind(1, now);
        q.Bind(2, id);
        if (sqlite3_step(q.get()) != SQLITE_DONE) {
          return Status::Unavailable(sqlite3_errmsg(store->db()));
        }
      }
      return Status::Ok();
    });
    if (!s.ok()) {
      spdlog::warn(
          "dispatcher: could not hand {} claimed actions back ({}); they run again "
          "when their claim expires",
          ids.size(), s.ToString());
    }
  }

  // Runs one claimed action through its lane's executor and records the outcome.
  void Execute(Lane* lane, const ActionRecord& a) {
    const std::string key = ActionOrderKey(a);
    if (IsBehindBackoff(key, a.id)) {
      // An earlier action of the same subject went into backoff after this one was claimed.
      Release({a.id});
      std::lock_guard<std::mutex> lk(mu);
      in_flight.erase(a.id);
      return;
    }
    if (lane->dry_run) {
      Record(a, key, Status::Ok(), nullptr, /*dry_run_reason=*/lane->dry_run->Reason(a.type));
      return;
    }
    Status st;
    if (!lane->started) {
      st = lane->executor->Start();
      if (st.ok()) {
        lane->started = true;
      } else {
        st = st.Annotate("starting the executor");
      }
    }
    if (st.ok()) st = a.revert ? lane->executor->Revert(a) : lane->executor->Apply(a);
    Record(a, key, st, lane->retry_after, "");
  }

  bool IsBehindBackoff(const std::string& key, std::int64_t id) {
    std::lock_guard<std::mutex> lk(mu);
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
      std::lock_guard<std::mutex> slk(store_mu);
      s = store->MarkActionFinal(a.id, ActionStatus::kDryRun, dry_run_reason, now);
      ++dry_run;
    } else if (result.ok()) {
      std::lock_guard<std::mutex> slk(store_mu);
      s = store->MarkActionDone(a.id, now);
      ++(a.revert ? reverted : applied);
    } else if (result.transient() && attempt < options.max_attempts) {
      double u;
      {
        std::lock_guard<std::mutex> lk(mu);
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
        std::lock_guard<std::mutex> slk(store_mu);
        s = store->MarkActionRetry(a.id, error, now + delay_ms * 1000, now);
      }
      ++retried;
      unblock = false;
      log.Warn("dispatcher.retry." + a.type, "action #{} ({}) will be retried in {} ms: {}", a.id,
               a.type, delay_ms, error);
    } else {
      const std::string error = result.transient() ? fmt::format("gave up after {} attempts: {}",
                                                                 attempt, result.ToString())
                                                   : result.ToString();
      {
        std::lock_guard<std::mutex> slk(store_mu);
        s = store->MarkActionFinal(a.id, ActionStatus::kFailed, error, now);
      }
      ++failed;
      log.Warn("dispatcher.failed." + a.type, "action #{} ({}) failed: {}", a.id, a.type, error);
    }
    if (!s.ok()) {
      // The outcome is lost; the action is still claimed and runs again when the claim expires
      // (executors are idempotent).
      spdlog::error("dispatcher: could not record the outcome of action #{}: {}", a.id,
                    s.ToString());
    }
    std::lock_guard<std::mutex> lk(mu);
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
    std::lock_guard<std::mutex> slk(store_mu);
    auto pending = store->DueActions(std::numeric_limits<UnixMicros>::max(), 1'000'000);
    if (!pending.ok()) return pending.status();
    const UnixMicros now = clock->Now();
    std::lock_guard<std::mutex> lk(mu);
    for (const ActionRecord& a : *pending) {
      if (a.next_attempt_at <= now) continue;
      const std::string key = ActionOrderKey(a);
      auto it = blocked.find(key);
      if (it == blocked.end() || it->second > a.id) blocked[key] = a.id;
    }
    return Status::Ok();
  }

  void WorkerLoop(Lane* lane) {
    for (;;) {
      ActionRecord a;
      {
        std::unique_lock<std::mutex> lk(mu);
        lane->cv.wait(lk, [&] { return stopping || !lane->queue.empty(); });
        if (stopping) break;
        a = std::move(lane->queue.front());
        lane->queue.pop_front();
        lane->running = true;
      }
      Execute(lane, a);
      {
        std::lock_guard<std::mutex> lk(mu);
        lane->running = false;
        notified = true;  // room in the queue: claim more
      }
      idle_cv.notify_all();
      claimer_cv.notify_one();
    }
    if (lane->started) lane->executor->Stop();
    lane->started = false;
    {
      std::lock_guard<std::mutex> lk(mu);
      lane->running = false;
    }
    idle_cv.notify_all();
  }

  void ClaimerLoop() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(mu);
        if (stopping) return;
        notified = false;
      }
      auto claimed = Claim(options.claim_batch, {}, /*bounded=*/true);
      bool more = false;
      if (!claimed.ok()) {
        log.Warn("dispatcher.claim", "dispatcher: {}", claimed.status().ToString());
      } else {
        std::set<Lane*> woken;
        for (auto& [lane, a] : *claimed) woken.insert(lane);
        for (Lane* lane : woken) lane->cv.notify_one();
        more = static_cast<int>(claimed->size()) >= options.claim_batch;
      }
      std::unique_lock<std::mutex> lk(mu);
      if (more) continue;
      claimer_cv.wait_for(lk, std::chrono::milliseconds(options.poll_interval_ms),
                          [&] { return stopping || notified; });
    }
  }
};

struct ActionDispatcher::Impl {
  std::shared_ptr<DispatcherShared> shared;
  std::thread claimer;
  bool started = false;
};

ActionDispatcher::ActionDispatcher(std::string store_path,
                                   std::vector<std::unique_ptr<ActionExecutor>> executors,
                                   DispatcherOptions options, const Clock* clock)
    : impl_(std::make_unique<Impl>()) {
  impl_->shared = std::make_shared<DispatcherShared>(std::move(store_path), std::move(executors),
                                                     std::move(options), clock);
}

ActionDispatcher::~ActionDispatcher() {
  if (impl_->started) {
    Stop(std::chrono::milliseconds(0));
    return;
  }
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
    std::lock_guard<std::mutex> lk(s->mu);
    if (s->stopping) return Status::InvalidArgument("a stopped dispatcher cannot be restarted");
  }
  MXWARD_RETURN_IF_ERROR(s->OpenStore());
  MXWARD_RETURN_IF_ERROR(s->LoadBlocked());
  for (auto& lane : s->lanes) {
    Lane* l = lane.get();
    l->thread = std::thread([s, l] { s->WorkerLoop(l); });
  }
  impl_->claimer = std::thread([s] { s->ClaimerLoop(); });
  impl_->started = true;
  return Status::Ok();
}

void ActionDispatcher::Notify() {
  auto& s = impl_->shared;
  {
    std::lock_guard<std::mutex> lk(s->mu);
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
    std::lock_guard<std::mutex> lk(s->mu);
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
    std::unique_lock<std::mutex> lk(s->mu);
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
      std::lock_guard<std::mutex> lk(s->mu);
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
  auto& s = impl_->shared;
  MXWARD_RETURN_IF_ERROR(s->OpenStore());
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
  out.applied = s->applied;
  out.retried = s->retried;
  out.failed = s->failed;
  out.refused = s->refused;
  out.reverted = s->reverted;
  out.dry_run = s->dry_run;
  return out;
}

}  // namespace mxward
