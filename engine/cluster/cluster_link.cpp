#include "engine/cluster/cluster_link.h"

#include <poll.h>
#include <sqlite3.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/cluster/decision_log.h"
#include "mxward/incident_store.h"
#include "mxward/ip_address.h"
#include "mxward/time.h"

namespace mxward {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;

constexpr int kReadBatch = 2'000;
// At most about this many (plus one read batch) decisions of other nodes wait in the outbox: the
// dispatcher's claim costs grow with the outbox, so a node catching up reads the log as fast as it
// applies. Large enough that the dispatcher always has a few thousand to apply in one nftables
// transaction (its bulk path: one netlink batch and one store commit per batch).
constexpr std::int64_t kMaxPendingQueued = 6'000;
// The bulk path: at most this many read batches (cluster_batch actions) wait for the kernel,
// about as many decisions as kMaxPendingQueued; the link prepares the next batches while the
// nftables worker applies one.
constexpr std::int64_t kMaxPendingBatches = 3;
constexpr int kPublishBatch = 500;
// A moved cursor is written to the node table at most this often (and at each safety tick).
constexpr auto kHeartbeatEvery = std::chrono::seconds(2);
constexpr auto kPruneEvery = std::chrono::hours(1);
// Other nodes' window events read per statement; events older than the longest shared window
// plus this margin are neither read nor kept (late rows within it still land in their window).
constexpr int kWindowReadBatch = 5'000;
constexpr std::int64_t kWindowMarginS = 600;
// Incidents published per transaction, and per pass of the loop (the rest at the next pass).
constexpr int kIncidentBatch = 100;
constexpr int kIncidentBatchesPerPass = 10;
constexpr int kRequestBatch = 100;

// Made by the cluster link (another node's decision), not by a local admin.
bool IsFromCluster(std::string_view by) { return by.rfind("cluster:", 0) == 0; }

// Another node's allowlist change, written to this node's store as that node's.
Status ApplyAllowRow(IncidentStore& store, const DecisionRow& r, const IpPrefix& prefix) {
  const UnixMicros now = SystemClock::Instance()->Now();
  const std::string by = "cluster:" + r.node;
  if (r.kind == "unallow") {
    Status st = store.RemoveAllow(prefix.ToString(), now, by);
    return st.code() == Status::Code::kNotFound ? Status::Ok() : st;
  }
  if (r.has_expiry && r.remaining_s <= 0) return Status::Ok();  // expired before we read it
  AllowRecord entry;
  entry.prefix = prefix.ToString();
  entry.created_at = now;
  entry.expires_at = r.has_expiry ? now + r.remaining_s * kMicrosPerSecond : 0;
  entry.note = r.note;
  entry.created_by = by;
  auto id = store.AddAllow(entry);
  return id.ok() ? Status::Ok() : id.status();
}

}  // namespace

struct ClusterLink::State {
  std::unique_ptr<IncidentStore> store;
  std::unique_ptr<DecisionLog> log;
  std::int64_t floor = 0;
  std::int64_t cursor = 0;
  // The allowlist rows published: the highest id seen and the latest removal time seen.
  std::int64_t allow_id_mark = 0;
  UnixMicros allow_removed_mark = 0;
};

ClusterLink::ClusterLink(ClusterOptions options, std::string store_path,
                         std::function<void()> on_queued, std::function<void()> on_allow_changed)
    : options_(std::move(options)),
      store_path_(std::move(store_path)),
      on_queued_(std::move(on_queued)),
      on_allow_changed_(std::move(on_allow_changed)) {}

ClusterLink::~ClusterLink() {
  Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status ClusterLink::Start() {
  auto store = IncidentStore::Open(store_path_);
  if (!store.ok()) return store.status();
  // A catch-up writes 2,000 `bans` rows and 2,000 random uuids into cluster_applied per
  // transaction: with SQLite's default 2 MB page cache most of those pages were read back from
  // the file for each batch (pread was 15 % of node c's CPU in the 100,000 catch-up). 32 MB
  // holds the pages of about a million bans; SQLite takes it only as the file needs it.
  (void)sqlite3_exec((*store)->db(), "PRAGMA cache_size=-32768", nullptr, nullptr, nullptr);
  state_ = std::make_unique<State>();
  state_->store = std::move(*store);
  auto floor = state_->store->LoadClusterValue("publish_floor");
  if (!floor.ok()) return floor.status();
  if (floor->has_value()) {
    state_->floor = **floor;
  } else {
    // Joining a cluster: what this node did before is not published.
    auto max = state_->store->MaxActionId();
    if (!max.ok()) return max.status();
    state_->floor = *max;
    MXWARD_RETURN_IF_ERROR(state_->store->SaveClusterValue("publish_floor", state_->floor));
  }
  // Joining a cluster: the entries already on this node's allowlist are published (unlike its
  // past bans, they say what must never be banned, now).
  for (const char* key : {"allow_id_mark", "allow_removed_mark"}) {
    auto mark = state_->store->LoadClusterValue(key);
    if (!mark.ok()) return mark.status();
    (std::string_view(key) == "allow_id_mark" ? state_->allow_id_mark
                                              : state_->allow_removed_mark) = mark->value_or(0);
  }
  state_->log = MakeDecisionLog(options_);
  // From now on the store marks every change of an incident for publication (schema v10);
  // incidents that did not change since before the node joined are not published.
  MXWARD_RETURN_IF_ERROR(state_->store->StartRecordingIncidentChanges());
  auto cursor = state_->store->LoadClusterValue("cursor");
  if (!cursor.ok()) return cursor.status();
  state_->cursor = cursor->value_or(0);
  counters_.cursor = state_->cursor;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return Status::Internal("eventfd failed");
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void ClusterLink::Notify() {
  if (wake_fd_ < 0) return;
  const std::uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

void ClusterLink::EnableSharedWindows(SharedWindowHooks hooks) { shared_ = std::move(hooks); }

void ClusterLink::Claim(Incident incident) {
  {
    MutexLock lock(claims_mu_);
    claims_.push_back(std::move(incident));
    ++claims_queued_;
  }
  Notify();
}

std::size_t ClusterLink::FlushClaims(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Incident> left;
  std::uint64_t in_flight = 0;
  {
    MutexLock lock(claims_mu_);
    const std::uint64_t target = claims_queued_;
    if (claims_settled_ >= target) return 0;
    spdlog::info("cluster: settling {} claim(s) of shared windows before stopping",
                 target - claims_settled_);
    if (thread_.joinable()) {
      Notify();
      claims_settled_cv_.wait_until(
          lock, deadline, [&]() REQUIRES(claims_mu_) { return claims_settled_ >= target; });
    }
    if (claims_settled_ >= target) return 0;
    // The link is stuck (a statement that does not come back): what it has not taken yet is
    // opened here alone; what it holds is lost with this process.
    left.swap(claims_);
    claims_settled_ += left.size();
    in_flight = target - claims_settled_;
  }
  for (Incident& inc : left) {
    spdlog::warn(
        "cluster: {} {}: the shared window's claim was not settled within {} ms of the "
        "stop; opened here alone",
        inc.playbook, inc.key, timeout.count());
    ++counters_.claims_alone;
    if (shared_.on_claimed) shared_.on_claimed(std::move(inc), true, options_.node);
  }
  if (in_flight > 0) {
    spdlog::error("cluster: {} claim(s) of shared windows still in a statement at the stop: lost",
                  in_flight);
  }
  return static_cast<std::size_t>(in_flight);
}

void ClusterLink::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  Notify();
  thread_.join();
}

ClusterLink::View ClusterLink::view() const {
  MutexLock lock(view_mu_);
  return view_;
}

void ClusterLink::Run() {
  State& s = *state_;
  DecisionLog& log = *s.log;
  const auto tick = milliseconds(options_.safety_tick_ms);
  const auto poll_every = milliseconds(std::max<std::int64_t>(5, options_.publish_poll_ms));
  // Without doorbells (MariaDB) the rows after the cursor are read every poll_interval.
  const bool doorbells = log.has_doorbells();
  const auto log_poll_every = milliseconds(std::max<std::int64_t>(5, options_.poll_interval_ms));
  SteadyTime next_log_poll{};
  milliseconds backoff(options_.retry_min_ms);
  SteadyTime next_connect{};
  SteadyTime next_tick{};
  bool need_read = true;
  bool backlogged = false;  // rows left unread because the outbox is full of queued decisions
  bool was_down_logged = false;
  const std::string_view role = options_.role == ClusterRole::kEnforcer ? "enforcer" : "full";
  SteadyTime last_heartbeat{};
  std::int64_t heartbeat_cursor = -1;
  SteadyTime next_prune{};
  // Shared windows: the link's spent batch (exchanged for the filled one) and its cursor. The
  // cursor starts at 0 at every start: the read skips rows older than the longest window, so a
  // restarted node folds what its windows should hold, its own rows of before the restart
  // included (its windows died with the process: the engine keeps them in memory only, and the
  // store does not restore them). Until that first read is complete nothing of this run is
  // published (the batch waits), so the own rows it reads are all from before the start and each
  // is counted once; afterwards own rows are skipped: they were counted live.
  std::vector<WindowEvent> spent_batch;
  std::int64_t window_cursor = 0;
  bool need_window_read = true;
  bool own_rows_read_back = false;
  bool need_requests = true;

  // This node's row (role, cursor) and the log's view for `status`; a failure is only logged
  // as a lost connection like any other statement's.
  auto heartbeat = [&](bool connected) -> Status {
    MXWARD_RETURN_IF_ERROR(log.Heartbeat(s.cursor, role, connected));
    last_heartbeat = std::chrono::steady_clock::now();
    heartbeat_cursor = s.cursor;
    auto v = log.ReadView();
    if (!v.ok()) return v.status();
    MutexLock lock(view_mu_);
    view_.read = true;
    view_.log = std::move(*v);
    return Status::Ok();
  };

  auto lost = [&](const Status& st, const char* doing) {
    counters_.connected = 0;
    spdlog::warn("cluster: {} failed, retrying in {} ms: {}", doing, backoff.count(),
                 st.ToString());
    next_connect = std::chrono::steady_clock::now() + backoff;
    backoff = std::min(backoff * 2, milliseconds(options_.retry_max_ms));
  };

  const bool bulk = static_cast<bool>(bulk_.resolve_scope);
  std::vector<ReceivedDecision> received;  // the bulk path's batch, its strings' room kept
  // Allowlist entries of other nodes written by this read batch: the daemon compiles them into
  // its allow set on its own thread, maybe after this batch's bans are checked.
  std::vector<std::pair<IpPrefix, UnixMicros>> batch_allows;

  // A read batch's decisions of other nodes, the bulk path: refusals decided here, then bans
  // rows, uuids, cursor and the batch's one action in one store transaction.
  auto apply_bulk = [&](const std::vector<DecisionRow>& rows, std::int64_t cursor) -> Status {
    const UnixMicros now = SystemClock::Instance()->Now();
    std::size_t n = 0;
    for (const DecisionRow& r : rows) {
      if (r.node == options_.node || r.kind == "allow" || r.kind == "unallow") continue;
      IpPrefix prefix;
      if (!IpPrefix::Parse(r.scope, &prefix, /*strict=*/true)) continue;  // counted by the caller
      const bool remove = r.kind == "unban";
      if (!remove && r.has_expiry && r.remaining_s <= 0) continue;  // expired before we read it
      if (received.size() <= n) received.emplace_back();
      ReceivedDecision& d = received[n++];
      d.uuid = r.uuid;
      d.seq = r.seq;
      d.node = r.node;
      d.playbook = r.playbook;
      d.remove = remove;
      d.prefix = prefix.ToString();
      d.refusal.clear();
      d.reason.clear();
      d.until = 0;
      if (remove && r.ports == "*") {
        d.ports = "*";
      } else if (auto scope = bulk_.resolve_scope(r.ports); scope.ok()) {
        d.ports = std::move(*scope);
      } else {
        d.ports = r.ports;
        d.refusal = scope.status().message();
      }
      if (remove) continue;
      d.reason =
          r.playbook.empty() ? "cluster: " + r.node : "cluster: " + r.node + " " + r.playbook;
      if (r.has_expiry) {
        d.until = now + r.remaining_s * kMicrosPerSecond;
      } else if (!r.permanent) {
        d.until = now + bulk_.default_duration_s * kMicrosPerSecond;
      }
      if (!d.refusal.empty()) continue;
      std::optional<std::string> why = bulk_.refusal ? bulk_.refusal(prefix, now) : std::nullopt;
      for (const auto& [allowed, until] : batch_allows) {
        if (why) break;
        if ((until == 0 || until > now) &&
            (allowed.Contains(prefix.address()) || prefix.Contains(allowed.address()))) {
          why = fmt::format("{} is allowlisted ({}, mxward allow on node cluster)",
                            prefix.ToString(), allowed.ToString());
        }
      }
      if (why) d.refusal = std::move(*why);
    }
    received.resize(n);
    auto outcome = s.store->ApplyClusterBatch(received, cursor, now);
    if (!outcome.ok()) {
      spdlog::error("cluster: cannot apply received decisions in the store: {}",
                    outcome.status().ToString());
      return outcome.status();
    }
    counters_.queued += outcome->bans + outcome->removals;
    counters_.refused += outcome->refused;
    if (outcome->refused > 0) {
      for (const ReceivedDecision& d : received) {
        if (d.refusal.empty()) continue;
        spdlog::warn("cluster: {}'s {} of {} refused here: {} (action #{})", d.node,
                     d.remove ? "ban removal" : "ban", d.prefix, d.refusal, outcome->action_id);
      }
    }
    if (outcome->action_id != 0 && outcome->bans + outcome->removals > 0 && on_queued_) {
      on_queued_();
    }
    return Status::Ok();
  };

  // Every row after the cursor, in batches; the other nodes' decisions into the outbox.
  auto read_all = [&]() -> Status {
    backlogged = false;
    for (;;) {
      // The link reads no further ahead of the kernel than this: a few batches (bulk), or a
      // few thousand actions (one each), so the dispatcher always has some to take at once.
      auto pending =
          bulk ? s.store->CountPendingClusterBatches() : s.store->CountPendingClusterActions();
      if (pending.ok() && *pending >= (bulk ? kMaxPendingBatches : kMaxPendingQueued)) {
        backlogged = true;
        return Status::Ok();
      }
      auto rows = log.ReadAfter(s.cursor, kReadBatch);
      if (!rows.ok()) return rows.status();
      if (rows->empty()) return Status::Ok();
      counters_.rows_read += static_cast<std::int64_t>(rows->size());
      std::vector<ClusterDecision> decisions;
      bool allow_changed = false;
      batch_allows.clear();
      for (const DecisionRow& r : *rows) {
        if (r.node == options_.node) continue;  // ours: applied here before it was published
        IpPrefix prefix;
        if (!IpPrefix::Parse(r.scope, &prefix, /*strict=*/true)) {
          ++counters_.invalid;
          continue;
        }
        if (r.kind == "allow" || r.kind == "unallow") {
          // Before the bans of this batch are queued, in log order: the dispatcher then treats
          // them as the deciding node did (it refuses a ban the allowlist covers).
          Status st = ApplyAllowRow(*s.store, r, prefix);
          if (!st.ok()) {
            spdlog::error("cluster: cannot apply {}'s allowlist change of {}: {}", r.node, r.scope,
                          st.ToString());
            return Status::Ok();  // the cursor stays; the next read tries again
          }
          allow_changed = true;
          if (r.kind == "allow") {
            batch_allows.emplace_back(prefix, r.has_expiry ? SystemClock::Instance()->Now() +
                                                                 r.remaining_s * kMicrosPerSecond
                                                           : 0);
          }
          continue;
        }
        if (bulk) continue;  // apply_bulk below
        ClusterDecision d;
        d.uuid = r.uuid;
        d.seq = r.seq;
        d.request.type = "ban";
        d.request.params["address"] = prefix.ToString();
        // The deciding node's port scope (mail, web, all, a group or ports); the executor here
        // resolves it against this node's [nftables] and refuses a group it does not define.
        if (!r.ports.empty()) d.request.params["ports"] = r.ports;
        if (r.kind == "unban") {
          d.revert = true;
        } else {
          if (r.has_expiry) {
            if (r.remaining_s <= 0) continue;  // expired before we read it
            d.request.params["duration_s"] = r.remaining_s;
          } else if (r.permanent) {
            d.request.params["duration_s"] = 0;
          }
          d.request.params["reason"] =
              r.playbook.empty() ? "cluster: " + r.node : "cluster: " + r.node + " " + r.playbook;
        }
        d.request.params["cluster_node"] = r.node;
        decisions.push_back(std::move(d));
      }
      if (allow_changed && on_allow_changed_) on_allow_changed_();
      const std::int64_t cursor = rows->back().seq;
      if (bulk) {
        if (!apply_bulk(*rows, cursor).ok()) return Status::Ok();  // the cursor stays: read again
        s.cursor = cursor;
        counters_.cursor = cursor;
        if (static_cast<int>(rows->size()) < kReadBatch) return Status::Ok();
        continue;
      }
      auto ids = s.store->QueueClusterDecisions(decisions, cursor, SystemClock::Instance()->Now());
      if (!ids.ok()) {
        spdlog::error("cluster: cannot queue decisions in the store: {}", ids.status().ToString());
        return Status::Ok();  // the cursor stays; the next read tries again
      }
      s.cursor = cursor;
      counters_.cursor = cursor;
      counters_.queued += static_cast<std::int64_t>(ids->size());
      if (!ids->empty() && on_queued_) on_queued_();
      if (static_cast<int>(rows->size()) < kReadBatch) return Status::Ok();
    }
  };

  const auto window_keep_s = [&] {
    return longest_shared_window_s_.load(std::memory_order_relaxed) + kWindowMarginS;
  };

  // This node's counted events of shared playbooks into the log, one statement per batch.
  auto publish_window_events = [&]() -> Status {
    if (shared_.batch == nullptr) return Status::Ok();
    // Connected, but the start's read of this node's own rows is not complete: the events wait
    // in the batch (read_window_events would read them back and count them a second time).
    if (log.connected() && !own_rows_read_back) return Status::Ok();
    const std::size_t n = shared_.batch->Take(&spent_batch);
    if (n == 0) return Status::Ok();
    if (!log.connected()) {
      counters_.window_events_unpublished += static_cast<std::int64_t>(n);
      return Status::Ok();
    }
    auto written = log.PublishWindowEvents(spent_batch, n);
    if (!written.ok()) {
      counters_.window_events_unpublished += static_cast<std::int64_t>(n);
      return written.status();
    }
    counters_.window_events_published += *written;
    // Keys PostgreSQL cannot hold as text (not UTF-8): counted only on this node.
    counters_.window_events_unpublished += static_cast<std::int64_t>(n) - *written;
    return Status::Ok();
  };

  // The other nodes' events after the window cursor, to the daemon.
  auto read_window_events = [&]() -> Status {
    if (shared_.batch == nullptr) return Status::Ok();
    for (;;) {
      auto rows = log.ReadWindowEventsAfter(window_cursor, window_keep_s(), kWindowReadBatch,
                                            /*include_own=*/!own_rows_read_back);
      if (!rows.ok()) return rows.status();
      const std::size_t n = rows->size();
      if (n > 0) {
        window_cursor = rows->back().id;
        const std::int64_t own =
            own_rows_read_back
                ? 0
                : std::count_if(rows->begin(), rows->end(), [&](const RemoteWindowEvent& r) {
                    return r.node == options_.node;
                  });
        counters_.window_events_read_back += own;
        counters_.window_events_received += static_cast<std::int64_t>(n) - own;
        if (shared_.on_remote) shared_.on_remote(std::move(*rows));
      }
      if (static_cast<int>(n) < kWindowReadBatch) {
        own_rows_read_back = true;
        return Status::Ok();
      }
    }
  };

  // Incidents of shared playbooks: open here only when this node's claim wins; decided alone
  // when the database cannot be asked.
  auto settle_claims = [&]() -> Status {
    std::vector<Incident> claims;
    {
      MutexLock lock(claims_mu_);
      claims.swap(claims_);
    }
    // Opened on this node without a claim (counted as claims_alone).
    const auto open_alone = [&](Incident& inc) {
      ++counters_.claims_alone;
      if (shared_.on_claimed) shared_.on_claimed(std::move(inc), true, options_.node);
    };
    Status failed = Status::Ok();
    for (Incident& inc : claims) {
      if (log.connected() && failed.ok()) {
        auto claim = log.ClaimWindow(inc.playbook, inc.key, ClaimLeaseSeconds(inc));
        if (claim.ok()) {
          if (claim->won) {
            ++counters_.claims_won;
          } else {
            ++counters_.claims_lost;
            spdlog::info("cluster: {} {}: incident already opened by node {} (shared window)",
                         inc.playbook, inc.key, claim->holder);
          }
          if (shared_.on_claimed) shared_.on_claimed(std::move(inc), claim->won, claim->holder);
          continue;
        }
        if (claim.status().code() == Status::Code::kInvalidArgument) {
          open_alone(inc);  // a key the database cannot hold; the connection is fine
          continue;
        }
        failed = claim.status();
      }
      spdlog::warn("cluster: {} {}: cannot claim the shared window ({}); opened here alone",
                   inc.playbook, inc.key,
                   failed.ok() ? "decision log unreachable" : failed.message());
      open_alone(inc);
    }
    if (!claims.empty()) {
      {
        MutexLock lock(claims_mu_);
        claims_settled_ += claims.size();
      }
      claims_settled_cv_.notify_all();  // FlushClaims at a stop
    }
    return failed;
  };

  // The doorbells libpq has queued: which channel rang says what to read. True when one rang.
  auto take_notifications = [&]() -> bool {
    auto rang = log.ConsumeNotifications();
    if (!rang.ok()) {
      lost(rang.status(), "listening");
      return false;
    }
    if (*rang == 0) return false;
    ++counters_.notifications;
    need_read = need_read || (*rang & DecisionLog::kDecisionsRang) != 0;
    need_window_read = need_window_read || (*rang & DecisionLog::kWindowsRang) != 0;
    need_requests = need_requests || (*rang & DecisionLog::kRequestsRang) != 0;
    return true;
  };

  // Decisions into the log, counted.
  auto publish_rows = [&](const std::vector<DecisionToPublish>& out) -> Status {
    if (out.empty()) return Status::Ok();
    auto seq = log.Publish(out);
    if (!seq.ok()) {
      ++counters_.publish_failures;
      return seq.status();
    }
    counters_.published += static_cast<std::int64_t>(out.size());
    return Status::Ok();
  };

  // The local bans done since the floor, into the log.
  auto publish = [&]() -> Status {
    for (;;) {
      auto pending = s.store->UnpublishedBanActions(s.floor, kPublishBatch);
      if (!pending.ok()) {
        spdlog::error("cluster: cannot read bans to publish: {}", pending.status().ToString());
        return Status::Ok();
      }
      std::vector<DecisionToPublish> out;
      std::vector<std::int64_t> ids;
      std::map<std::int64_t, std::string> playbooks;  // incident id -> its playbook
      for (const ActionRecord& a : pending->actions) {
        ids.push_back(a.id);
        // An enforcer publishes what an admin does by hand, not what its playbooks decide.
        if (options_.role == ClusterRole::kEnforcer && a.incident_id != 0) continue;
        IpPrefix prefix;
        const std::string address = a.params.value("address", "");
        if (!IpPrefix::Parse(address, &prefix, /*strict=*/false)) continue;
        DecisionToPublish d;
        d.kind = a.revert ? "unban" : "ban";
        d.scope = prefix.ToString();
        if (auto it = a.params.find("ports"); it != a.params.end() && it->is_string()) {
          d.ports = it->get<std::string>();
        }
        if (auto it = a.params.find("duration_s");
            it != a.params.end() && it->is_number_integer()) {
          d.duration_s = it->get<std::int64_t>();
        }
        if (a.incident_id != 0) {
          auto it = playbooks.find(a.incident_id);
          if (it == playbooks.end()) {
            auto incident = s.store->GetIncident(a.incident_id);
            it = playbooks.emplace(a.incident_id, incident.ok() ? incident->playbook : "").first;
          }
          d.playbook = it->second;
        }
        d.incident_id = a.incident_id;
        d.origin_action_id = a.id;
        out.push_back(std::move(d));
      }
      counters_.unpublished = static_cast<std::int64_t>(out.size());
      MXWARD_RETURN_IF_ERROR(publish_rows(out));
      counters_.unpublished = 0;
      if (pending->floor != s.floor || !ids.empty()) {
        Status st = s.store->MarkBansPublished(ids, pending->floor);
        if (!st.ok()) {
          spdlog::error("cluster: cannot record published bans: {}", st.ToString());
          return Status::Ok();  // published again later: one row in the log
        }
        s.floor = pending->floor;
      }
      if (static_cast<int>(pending->actions.size()) < kPublishBatch) return Status::Ok();
    }
  };

  // This node's allowlist changes (adds and removals by its admins) since the marks, into the log.
  auto publish_allow = [&]() -> Status {
    const UnixMicros now = SystemClock::Instance()->Now();
    auto rows = s.store->ListAllow(now, /*all=*/true);
    if (!rows.ok()) {
      spdlog::error("cluster: cannot read the allowlist: {}", rows.status().ToString());
      return Status::Ok();
    }
    std::vector<DecisionToPublish> out;
    std::int64_t max_id = s.allow_id_mark;
    UnixMicros max_removed = s.allow_removed_mark;
    for (const AllowRecord& a : *rows) {
      const bool added = a.id > s.allow_id_mark;
      const bool removed = a.removed_at != 0 && a.removed_at > s.allow_removed_mark;
      if (added) max_id = std::max(max_id, a.id);
      if (removed) max_removed = std::max(max_removed, a.removed_at);
      if (added && !IsFromCluster(a.created_by)) {
        DecisionToPublish d;
        d.kind = "allow";
        d.scope = a.prefix;
        d.note = a.note;
        d.duration_s = 0;
        if (a.expires_at != 0) {
          if (a.expires_at <= now) continue;
          d.duration_s = (a.expires_at - now + kMicrosPerSecond - 1) / kMicrosPerSecond;
        }
        d.origin_action_id = -2 * a.id;
        out.push_back(std::move(d));
      }
      // A removal that is a replacement (the newer entry is published) or came from the cluster
      // is not published.
      if (removed && !IsFromCluster(a.removed_by) &&
          std::none_of(rows->begin(), rows->end(), [&](const AllowRecord& b) {
            return b.id > a.id && b.prefix == a.prefix && b.created_at == a.removed_at;
          })) {
        DecisionToPublish d;
        d.kind = "unallow";
        d.scope = a.prefix;
        d.origin_action_id = -2 * a.id - 1;
        out.push_back(std::move(d));
      }
    }
    if (max_id == s.allow_id_mark && max_removed == s.allow_removed_mark) return Status::Ok();
    // In the order they happened (ListAllow is newest first): a removal before a re-add.
    std::reverse(out.begin(), out.end());
    MXWARD_RETURN_IF_ERROR(publish_rows(out));
    Status st = s.store->SaveClusterValue("allow_id_mark", max_id);
    if (st.ok()) st = s.store->SaveClusterValue("allow_removed_mark", max_removed);
    if (!st.ok()) {
      spdlog::error("cluster: cannot record published allowlist changes: {}", st.ToString());
      return Status::Ok();  // published again later: one row in the log (node, origin)
    }
    s.allow_id_mark = max_id;
    s.allow_removed_mark = max_removed;
    return Status::Ok();
  };

  // This node's incidents changed since their last publication, into the database; with it
  // down, only counted (the marks wait in the store).
  auto publish_incidents = [&]() -> Status {
    for (int pass = 0; pass < kIncidentBatchesPerPass; ++pass) {
      auto changed = s.store->ChangedIncidents(kIncidentBatch);
      if (!changed.ok()) {
        spdlog::error("cluster: cannot read changed incidents: {}", changed.status().ToString());
        return Status::Ok();
      }
      counters_.incidents_unpublished = changed->total;
      if (changed->changes.empty() || !log.connected()) return Status::Ok();
      std::vector<SharedIncident> out;
      for (const IncidentChange& c : changed->changes) {
        auto inc = s.store->GetIncident(c.incident_id);
        if (!inc.ok()) {
          if (inc.status().code() == Status::Code::kNotFound) continue;  // pruned: forgotten
          spdlog::error("cluster: cannot read incident {}: {}", c.incident_id,
                        inc.status().ToString());
          return Status::Ok();
        }
        if (inc->origin != IncidentOrigin::kLive) continue;  // replays stay on this node
        auto actions = s.store->ActionsForIncident(c.incident_id);
        auto notes = s.store->NotesForIncident(c.incident_id);
        if (!actions.ok() || !notes.ok()) {
          spdlog::error("cluster: cannot read incident {}'s actions and notes: {}", c.incident_id,
                        (actions.ok() ? notes.status() : actions.status()).ToString());
          return Status::Ok();
        }
        SharedIncident shared;
        shared.node = options_.node;
        shared.incident = std::move(*inc);
        shared.actions = std::move(*actions);
        shared.notes = std::move(*notes);
        out.push_back(std::move(shared));
      }
      MXWARD_RETURN_IF_ERROR(log.PublishIncidents(out));
      counters_.incidents_published += static_cast<std::int64_t>(out.size());
      // A mark whose version moved while this ran stays: the incident goes again next pass.
      if (Status st = s.store->ForgetIncidentChanges(changed->changes); !st.ok()) {
        spdlog::error("cluster: cannot record published incidents: {}", st.ToString());
        return Status::Ok();  // published again later: the same row replaced
      }
      counters_.incidents_unpublished = std::max<std::int64_t>(
          0, changed->total - static_cast<std::int64_t>(changed->changes.size()));
      if (static_cast<int>(changed->changes.size()) < kIncidentBatch) return Status::Ok();
    }
    return Status::Ok();
  };

  // Other nodes' requests for this node's incidents, applied to its store in the order asked.
  // A request applied just before a crash (its outcome not recorded) is applied again at the
  // next start: an ack or resolve of an incident already so changes nothing but adds its note,
  // and a revert queues no undo already queued.
  auto apply_requests = [&]() -> Status {
    if (!incident_requests_) return Status::Ok();
    auto requests = log.PendingIncidentRequests(kRequestBatch);
    if (!requests.ok()) return requests.status();
    for (const IncidentRequest& r : *requests) {
      IncidentRequestOutcome outcome;
      if (r.kind != "ack" && r.kind != "resolve") {
        outcome.text = "unknown request '" + r.kind + "'";
      } else {
        outcome = incident_requests_(*s.store, r);
      }
      ++counters_.incident_requests;
      spdlog::info("cluster: {} {}{} of incident {} asked by {} on node {}: {}", r.kind,
                   r.revert ? "with revert " : "", outcome.ok ? "applied" : "refused",
                   r.incident_id, r.requested_user.empty() ? "?" : r.requested_user, r.requested_by,
                   outcome.text);
      MXWARD_RETURN_IF_ERROR(log.FinishIncidentRequest(r.id, outcome));
    }
    if (static_cast<int>(requests->size()) == kRequestBatch) need_requests = true;
    return Status::Ok();
  };

  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    if (!log.connected() && now >= next_connect) {
      Status st = log.Connect();
      if (st.ok()) {
        ++counters_.connects;
        counters_.connected = 1;
        backoff = milliseconds(options_.retry_min_ms);
        need_read = true;
        need_window_read = true;
        need_requests = true;
        if (was_down_logged) spdlog::info("cluster: connected to the decision log again");
        was_down_logged = false;
        spdlog::info("cluster: node {} connected to the decision log; cursor {}", options_.node,
                     s.cursor);
        if (Status hb = heartbeat(/*connected=*/true); !hb.ok()) lost(hb, "recording this node");
      } else {
        ++counters_.connect_failures;
        if (!was_down_logged) {
          was_down_logged = true;
          spdlog::warn("cluster: decision log unreachable; local bans go on, publication waits");
        }
        lost(st, "connecting");
      }
    }
    if (log.connected() && !doorbells && now >= next_log_poll) {
      // No doorbell (MariaDB): every poll reads what a doorbell would have announced, the
      // decisions, the requests for this node's incidents and, while a playbook shares its
      // window, the other nodes' window events.
      next_log_poll = now + log_poll_every;
      need_read = true;
      need_requests = true;
      if (longest_shared_window_s_.load(std::memory_order_relaxed) > 0) need_window_read = true;
    }
    if (log.connected()) {
      if (need_read || backlogged || now >= next_tick) {
        const bool ticked = now >= next_tick;
        need_read = false;
        // A read on a doorbell puts the safety tick off; the reads of a polled engine, every
        // poll_interval, must not (the tick would never come: no heartbeat, no view for
        // `status`).
        if (ticked || doorbells) next_tick = now + tick;
        if (Status st = read_all(); !st.ok()) lost(st, "reading decisions");
        need_window_read = need_window_read || ticked;
        need_requests = need_requests || ticked;
        if (log.connected() &&
            (ticked || (s.cursor != heartbeat_cursor && now - last_heartbeat >= kHeartbeatEvery))) {
          if (Status hb = heartbeat(/*connected=*/false); !hb.ok()) lost(hb, "recording this node");
        }
      }
    }
    // Claims first: an incident waits for its claim, events only feed windows.
    if (Status st = settle_claims(); !st.ok()) lost(st, "claiming a shared window");
    if (Status st = publish_window_events(); !st.ok()) lost(st, "publishing window events");
    if (log.connected() && need_window_read) {
      need_window_read = false;
      if (Status st = read_window_events(); !st.ok()) lost(st, "reading window events");
    }
    if (log.connected() && now >= next_prune) {
      next_prune = now + kPruneEvery;
      // This node's own record of what it applied, kept an hour past its cursor.
      auto forgot =
          s.store->PruneClusterApplied(SystemClock::Instance()->Now() - 3600 * kMicrosPerSecond);
      if (!forgot.ok()) {
        spdlog::warn("cluster: pruning the applied decisions' record: {}",
                     forgot.status().ToString());
      }
      auto pruned = log.Prune(options_.log_retention_s);
      if (!pruned.ok()) {
        lost(pruned.status(), "pruning the decision log");
      } else if (*pruned > 0) {
        counters_.pruned += *pruned;
        spdlog::info("cluster: pruned {} decision(s) that ended more than {} ago", *pruned,
                     FormatDurationSeconds(options_.log_retention_s));
      }
      if (log.connected()) {
        auto gone = log.PruneIncidents(options_.log_retention_s);
        if (!gone.ok()) lost(gone.status(), "pruning incidents");
      }
      if (log.connected() && shared_.batch != nullptr) {
        auto gone = log.PruneWindowEvents(window_keep_s());
        if (!gone.ok()) {
          lost(gone.status(), "pruning window events");
        } else {
          counters_.window_events_pruned += *gone;
        }
      }
    }
    if (log.connected() && need_requests) {
      need_requests = false;
      if (Status st = apply_requests(); !st.ok()) lost(st, "applying incident requests");
    }
    if (log.connected()) {
      if (Status st = publish(); !st.ok()) lost(st, "publishing");
    }
    if (Status st = publish_incidents(); !st.ok()) lost(st, "publishing incidents");
    if (log.connected()) {
      if (Status st = publish_allow(); !st.ok()) lost(st, "publishing the allowlist");
    }
    // A doorbell that arrived while this loop ran statements (a publication, the heartbeat, the
    // pruning) was read off the socket by libpq then and waits in its queue: poll() would not
    // see it, and the rows it announces would wait for the safety tick.
    if (log.connected() && take_notifications() &&
        (need_read || need_window_read || need_requests)) {
      continue;
    }
    // Wait for the doorbell, a Notify(), the publish poll or the reconnect time.
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {log.socket(), POLLIN, 0}};
    const nfds_t n = log.connected() && log.socket() >= 0 ? 2 : 1;
    auto wait = backlogged ? milliseconds(20) : poll_every;
    if (log.connected() && !doorbells) {
      wait = std::clamp(std::chrono::duration_cast<milliseconds>(next_log_poll -
                                                                 std::chrono::steady_clock::now()),
                        milliseconds(1), wait);
    }
    if (!log.connected()) {
      wait = std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(
                                           next_connect - std::chrono::steady_clock::now()));
      wait = std::min(wait, milliseconds(1000));
    }
    if (poll(fds, n, static_cast<int>(wait.count())) > 0) {
      if (fds[0].revents & POLLIN) {
        std::uint64_t v;
        (void)!read(wake_fd_, &v, sizeof v);
      }
      if (n == 2 && (fds[1].revents & (POLLIN | POLLERR | POLLHUP))) {
        take_notifications();
      }
    }
  }
  // Bans the dispatcher finished while the daemon drained: into the log before we go (if not,
  // the next start publishes them).
  if (log.connected()) (void)publish();
  if (log.connected()) (void)publish_incidents();
  // The shared windows' last events (at most a publish poll's): a restart reads them back.
  if (log.connected()) (void)publish_window_events();
  log.Disconnect();
  counters_.connected = 0;
}

}  // namespace mxward
