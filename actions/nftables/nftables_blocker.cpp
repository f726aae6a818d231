#include "actions/nftables/nftables_blocker.h"

#include <nftables/libnftables.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/base/settings_reader.h"

namespace mxward {

namespace {

// The narrowest prefixes a ban may cover: a typo or a template bug must not drop the world.
constexpr int kMinPrefixV4 = 8;
constexpr int kMinPrefixV6 = 16;
constexpr std::size_t kMaxDryRunCommands = 1000;
// nft refuses element timeouts much beyond a year and a half ("value too large"). Longer bans get
// a year in the kernel; the store keeps their real end, and Check() failing after that year makes
// the dispatcher call Start(), which puts them back with the remaining time.
constexpr std::int64_t kMaxKernelTimeoutS = 365 * 86400;

// Whether the effective capability set holds CAP_NET_ADMIN (bit 12), from /proc/self/status.
bool HasCapNetAdmin() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    std::uint64_t caps = std::strtoull(line.c_str() + 7, nullptr, 16);
    return (caps >> 12) & 1;
  }
  return false;
}

// Parses the "address" parameter of a ban into a prefix and checks it is one we may ban.
Result<IpPrefix> BanPrefix(const ActionRecord& action) {
  const auto it = action.params.find("address");
  if (it == action.params.end() || !it->is_string()) {
    return Status::InvalidArgument(
        fmt::format("ban action {} has no 'address' parameter", action.id));
  }
  const std::string& text = it->get_ref<const std::string&>();
  IpPrefix prefix;
  if (!IpPrefix::Parse(text, &prefix)) {
    return Status::InvalidArgument(
        fmt::format("ban action {}: '{}' is not an IP address or CIDR", action.id, text));
  }
  const int floor = prefix.address().is_v4() ? kMinPrefixV4 : kMinPrefixV6;
  if (prefix.length() < floor) {
    return Status::InvalidArgument(fmt::format("ban action {}: refusing to ban {}, wider than /{}",
                                               action.id, prefix.ToString(), floor));
  }
  return prefix;
}

// Every nft error message is "Error: <what>\n<the command>\n<carets>": keep the first line.
std::string FirstErrorLine(const char* buffer) {
  std::string_view s = buffer ? buffer : "";
  while (!s.empty() && (s.front() == '\n' || s.front() == ' ')) s.remove_prefix(1);
  if (auto nl = s.find('\n'); nl != std::string_view::npos) s = s.substr(0, nl);
  return std::string(s);
}

struct PrefixHash {
  std::size_t operator()(const IpPrefix& p) const noexcept {
    return p.address().Hash() * 131 + static_cast<std::size_t>(p.length());
  }
};

// Runs commands on *ctx (created with `output_flags` on first use) as one netlink batch: all or
// nothing. Errors carry nft's first error line; a missing table/set/chain is NotFound.
Status RunOn(nft_ctx** ctx, unsigned output_flags, const std::string& commands,
             std::string* output) {
  if (!*ctx) {
    *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!*ctx) return Status::Internal("nftables: cannot create a libnftables context");
    nft_ctx_output_set_flags(*ctx, output_flags);
    nft_ctx_buffer_output(*ctx);
    nft_ctx_buffer_error(*ctx);
  }
  const int rc = nft_run_cmd_from_buffer(*ctx, commands.c_str());
  // Taking the buffers empties them, so neither output nor a warning leaks into the next call.
  *output = nft_ctx_get_output_buffer(*ctx);
  const std::string error_text = nft_ctx_get_error_buffer(*ctx);
  if (rc != 0) {
    std::string error = FirstErrorLine(error_text.c_str());
    if (error.find("Operation not permitted") != std::string::npos) {
      return Status::PermissionDenied("nftables: " + error + " (needs CAP_NET_ADMIN)");
    }
    if (error.find("No such file or directory") != std::string::npos) {
      return Status::NotFound("nftables: " + error);
    }
    return Status::Internal("nftables: " + error);
  }
  return Status::Ok();
}

bool HasString(const nlohmann::json& object, const char* key, std::string_view value) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() && it->get_ref<const std::string&>() == value;
}

// Whether a rule's expressions (nft JSON) match the source address against @set and drop.
bool IsDropRuleFor(const nlohmann::json& expr, std::string_view set_ref) {
  if (!expr.is_array()) return false;
  bool matches_set = false, drops = false;
  for (const nlohmann::json& e : expr) {
    if (!e.is_object()) continue;
    if (const auto m = e.find("match"); m != e.end() && m->is_object()) {
      if (HasString(*m, "right", set_ref)) matches_set = true;
    }
    if (e.contains("drop")) drops = true;
  }
  return matches_set && drops;
}

}  // namespace

// --- options -------------------------------------------------------------------------------------

Result<NftablesOptions> NftablesOptions::FromConfig(const Config& config,
                                                    std::vector<Diagnostic>* diagnostics) {
  NftablesOptions o;
  if (!config.document.contains("nftables")) return o;
  const toml::table* t = SectionTable(config, "nftables", diagnostics);
  if (!t) return Status::InvalidArgument(diagnostics->back().ToString());
  SettingsReader r(*t, "[nftables]", config.source, diagnostics);
  r.CheckKnownKeys({"enabled", "dry_run", "family", "table", "chain", "set_v4", "set_v6", "hook",
                    "priority", "ports", "aggregate_v4", "aggregate_v6", "aggregate_threshold",
                    "default_duration"});
  r.Bool("enabled", &o.enabled);
  r.Bool("dry_run", &o.dry_run);
  r.Choice("family", {"inet", "ip", "ip6"}, &o.family);
  r.Identifier("table", &o.table);
  r.Identifier("chain", &o.chain);
  r.Identifier("set_v4", &o.set_v4);
  r.Identifier("set_v6", &o.set_v6);
  r.Choice("hook", {"input", "forward", "prerouting"}, &o.hook);
  r.Int("priority", -400, 400, &o.priority);
  r.IntArray("ports", 1, 65535, &o.ports);
  r.Int("aggregate_v4", 0, 32, &o.aggregate_v4);
  r.Int("aggregate_v6", 0, 128, &o.aggregate_v6);
  r.Int("aggregate_threshold", 2, 1 << 16, &o.aggregate_threshold);
  r.Duration("default_duration", &o.default_duration_s);
  if (o.aggregate_v4 != 0 && o.aggregate_v4 < kMinPrefixV4) {
    r.Error(*t->get("aggregate_v4"),
            fmt::format("'aggregate_v4' must be 0 (off) or at least {}", kMinPrefixV4));
  }
  if (o.aggregate_v6 != 0 && o.aggregate_v6 < kMinPrefixV6) {
    r.Error(*t->get("aggregate_v6"),
            fmt::format("'aggregate_v6' must be 0 (off) or at least {}", kMinPrefixV6));
  }
  if (o.set_v4 == o.set_v6) {
    r.Error(*t, "'set_v4' and 'set_v6' must be different names");
  }
  if (!r.ok()) {
    return Status::InvalidArgument(fmt::format("bad [nftables] section in {}", config.source));
  }
  return o;
}

// --- blocker -------------------------------------------------------------------------------------

NftablesBlocker::NftablesBlocker(NftablesOptions options, std::string store_path,
                                 const Clock* clock)
    : options_(std::move(options)), store_path_(std::move(store_path)), clock_(clock) {}

NftablesBlocker::~NftablesBlocker() { Stop(); }

bool NftablesBlocker::Handles(std::string_view type) const { return type == "ban"; }

Status NftablesBlocker::Run(const std::string& commands) {
  if (options_.dry_run) {
    if (dry_run_commands_.size() >= kMaxDryRunCommands) {
      dry_run_commands_.erase(dry_run_commands_.begin());
    }
    dry_run_commands_.push_back(commands);
    spdlog::info("nftables (dry-run): {}",
                 commands.size() > 300 ? commands.substr(0, 300) + "..." : commands);
    return Status::Ok();
  }
  return RunOn(&ctx_, 0, commands, &last_output_);
}

std::string NftablesBlocker::TableCommands() const {
  const NftablesOptions& o = options_;
  const std::string where = fmt::format("{} {}", o.family, o.table);
  std::string ports;
  if (!o.ports.empty()) ports = fmt::format(" tcp dport {{ {} }}", fmt::join(o.ports, ", "));
  std::string out;
  // "add" then "delete" then "add" empties the table whether or not it existed: one transaction
  // that replaces whatever half-state a previous run or an admin left.
  out += fmt::format("add table {0}\ndelete table {0}\nadd table {0}\n", where);
  out += fmt::format("add chain {} {} {{ type filter hook {} priority {}; policy accept; }}\n",
                     where, o.chain, o.hook, o.priority);
  if (o.family != "ip6") {
    out += fmt::format("add set {} {} {{ type ipv4_addr; flags interval, timeout; }}\n", where,
                       o.set_v4);
    out += fmt::format("add rule {} {} ip saddr @{}{} counter drop\n", where, o.chain, o.set_v4,
                       ports);
  }
  if (o.family != "ip") {
    out += fmt::format("add set {} {} {{ type ipv6_addr; flags interval, timeout; }}\n", where,
                       o.set_v6);
    out += fmt::format("add rule {} {} ip6 saddr @{}{} counter drop\n", where, o.chain, o.set_v6,
                       ports);
  }
  return out;
}

std::string NftablesBlocker::ElementCommands(const std::vector<NftBan>& bans) const {
  // One "add element" per family with every element, so nft parses two commands, not 100,000.
  fmt::memory_buffer v4, v6;
  char addr[64];
  for (const NftBan& ban : bans) {
    const IpAddress& a = ban.prefix.address();
    if (a.is_v4() ? options_.family == "ip6" : options_.family == "ip") continue;
    fmt::memory_buffer& out = a.is_v4() ? v4 : v6;
    if (out.size() > 0) out.append(std::string_view(", "));
    out.append(std::string_view(addr, a.Format(addr)));
    if (!ban.prefix.IsHost()) fmt::format_to(std::back_inserter(out), "/{}", ban.prefix.length());
    if (ban.timeout_s > 0) {
      fmt::format_to(std::back_inserter(out), " timeout {}s",
                     std::min(ban.timeout_s, kMaxKernelTimeoutS));
    }
  }
  std::string out;
  if (v4.size() > 0) {
    out +=
        fmt::format("add element {} {} {} {{ ", options_.family, options_.table, options_.set_v4);
    out.append(v4.data(), v4.size());
    out += " }\n";
  }
  if (v6.size() > 0) {
    out +=
        fmt::format("add element {} {} {} {{ ", options_.family, options_.table, options_.set_v6);
    out.append(v6.data(), v6.size());
    out += " }\n";
  }
  return out;
}

Status NftablesBlocker::ApplyBatch(const std::vector<NftBan>& bans) {
  if (bans.empty()) return Status::Ok();
  // add (so that delete cannot fail), delete, add with the new timeout: refreshes the timeout of
  // an element already in the set, atomically, on every kernel.
  std::vector<NftBan> plain;
  plain.reserve(bans.size());
  for (const NftBan& b : bans) plain.push_back({b.prefix, 0});
  std::string commands = ElementCommands(plain);
  std::string deletes = commands;
  for (std::size_t pos = 0; (pos = deletes.find("add element", pos)) != std::string::npos;) {
    deletes.replace(pos, 3, "delete");
    pos += 6;
  }
  commands += deletes;
  commands += ElementCommands(bans);
  return Run(commands);
}

Status NftablesBlocker::RemoveBatch(const std::vector<IpPrefix>& prefixes) {
  if (prefixes.empty()) return Status::Ok();
  std::vector<NftBan> bans;
  for (const IpPrefix& p : prefixes) bans.push_back({p, 0});
  std::string adds = ElementCommands(bans);
  std::string deletes = adds;
  for (std::size_t pos = 0; (pos = deletes.find("add element", pos)) != std::string::npos;) {
    deletes.replace(pos, 3, "delete");
    pos += 6;
  }
  Status s = Run(adds + deletes);
  if (s.ok() || prefixes.size() == 1) {
    // A single element that cannot even be added overlaps a wider ban: it is not in the set as
    // such, so there is nothing to delete.
    if (!s.ok() && s.message().find("overlap") != std::string::npos) return Status::Ok();
    return s;
  }
  // One element overlapping a wider ban fails the whole batch: retry one by one.
  for (const IpPrefix& p : prefixes) MXWARD_RETURN_IF_ERROR(RemoveBatch({p}));
  return Status::Ok();
}

Status NftablesBlocker::RestoreBans(const std::vector<BanRecord>& bans, UnixMicros now) {
  // Interval sets refuse overlapping elements, so a ban inside a wider ban is left out (the wider
  // one covers it); duplicates keep the longest lifetime.
  std::unordered_map<IpPrefix, std::int64_t, PrefixHash> wanted;
  wanted.reserve(bans.size());
  std::set<std::pair<int, int>> wide_lengths;  // (family bits, length) of non-host prefixes
  for (const BanRecord& b : bans) {
    IpPrefix p;
    if (!IpPrefix::Parse(b.prefix, &p)) {
      spdlog::warn("nftables: skipping stored ban '{}': not an address or CIDR", b.prefix);
      continue;
    }
    std::int64_t timeout = 0;
    if (b.until != 0) {
      if (b.until <= now) continue;
      // Rounded down: a restored ban never outlives its record (but lives at least a second).
      timeout = std::max<std::int64_t>(1, (b.until - now) / kMicrosPerSecond);
    }
    auto [it, inserted] = wanted.emplace(p, timeout);
    if (!inserted && it->second != 0 && (timeout == 0 || timeout > it->second)) {
      it->second = timeout;
    }
    if (!p.IsHost()) wide_lengths.insert({p.address().bits(), p.length()});
  }
  std::vector<NftBan> elements;
  elements.reserve(wanted.size());
  for (const auto& [prefix, timeout] : wanted) {
    bool covered = false;
    for (const auto& [bits, len] : wide_lengths) {
      if (bits != prefix.address().bits() || len >= prefix.length()) continue;
      if (wanted.count(IpPrefix(prefix.address(), len))) {
        covered = true;
        break;
      }
    }
    if (!covered) elements.push_back({prefix, timeout});
  }
  return Run(TableCommands() + ElementCommands(elements));
}

Result<std::string> NftablesBlocker::FindDamage() {
  if (options_.dry_run) return std::string();
  // Terse: libnftables then fetches tables, chains, sets and rules but no set elements, so this
  // costs the same with 100,000 bans as with none ("list tables" and "list chain" fetch every
  // element in nftables 1.0.6). Only this family's tables are listed.
  std::string output;
  MXWARD_RETURN_IF_ERROR(RunOn(&watch_ctx_, NFT_CTX_OUTPUT_TERSE | NFT_CTX_OUTPUT_JSON,
                               fmt::format("list ruleset {}", options_.family), &output));
  const nlohmann::json doc = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  const auto items = doc.is_object() ? doc.find("nftables") : doc.end();
  if (items == doc.end() || !items->is_array()) {
    return Status::Internal("nftables: cannot read the ruleset listing (not nft's JSON)");
  }
  const NftablesOptions& o = options_;
  const bool want_v4 = o.family != "ip6", want_v6 = o.family != "ip";
  const std::string ref_v4 = "@" + o.set_v4, ref_v6 = "@" + o.set_v6;
  bool table = false, chain = false, set_v4 = false, set_v6 = false, rule_v4 = false,
       rule_v6 = false;
  for (const nlohmann::json& item : *items) {
    if (!item.is_object() || item.size() != 1) continue;
    const std::string& kind = item.begin().key();
    const nlohmann::json& body = item.begin().value();
    if (!body.is_object() || !HasString(body, "family", o.family)) continue;
    if (kind == "table") {
      table = table || HasString(body, "name", o.table);
      continue;
    }
    if (!HasString(body, "table", o.table)) continue;
    if (kind == "chain") {
      chain = chain || (HasString(body, "name", o.chain) && HasString(body, "hook", o.hook) &&
                        HasString(body, "type", "filter"));
    } else if (kind == "set") {
      // Without both flags every "add element ... timeout" would fail: as good as missing.
      const auto flags = body.find("flags");
      const bool usable = flags != body.end() && flags->is_array() &&
                          std::count(flags->begin(), flags->end(), "interval") == 1 &&
                          std::count(flags->begin(), flags->end(), "timeout") == 1;
      set_v4 = set_v4 || (usable && HasString(body, "name", o.set_v4));
      set_v6 = set_v6 || (usable && HasString(body, "name", o.set_v6));
    } else if (kind == "rule" && HasString(body, "chain", o.chain)) {
      const auto expr = body.find("expr");
      if (expr == body.end()) continue;
      rule_v4 = rule_v4 || IsDropRuleFor(*expr, ref_v4);
      rule_v6 = rule_v6 || IsDropRuleFor(*expr, ref_v6);
    }
  }
  if (!table) return fmt::format("table {} {}", o.family, o.table);
  if (!chain) return fmt::format("chain {} (hook {})", o.chain, o.hook);
  if (want_v4 && !set_v4) return fmt::format("set {}", o.set_v4);
  if (want_v6 && !set_v6) return fmt::format("set {}", o.set_v6);
  if (want_v4 && !rule_v4) return fmt::format("the drop rule for {}", ref_v4);
  if (want_v6 && !rule_v6) return fmt::format("the drop rule for {}", ref_v6);
  return std::string();
}

Result<IncidentStore*> NftablesBlocker::Store() {
  if (!store_) {
    auto store = IncidentStore::Open(store_path_);
    if (!store.ok()) return store.status().Annotate("nftables: opening the incident store");
    store_ = std::move(store).value();
  }
  return store_.get();
}

Status NftablesBlocker::RestoreFromStore(const std::string& why) {
  const auto started = std::chrono::steady_clock::now();
  auto store = Store();
  if (!store.ok()) return store.status();
  const UnixMicros now = clock_->Now();
  auto bans = (*store)->ActiveBans(now);
  if (!bans.ok()) return bans.status().Annotate("nftables: reading active bans");
  MXWARD_RETURN_IF_ERROR(RestoreBans(*bans, now));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  if (why.empty()) {
    spdlog::info("nftables: created table {} {} with {} stored ban(s) in {} ms", options_.family,
                 options_.table, bans->size(), ms);
  } else {
    // `why` names the table itself, or a part of it.
    const std::string table = fmt::format("table {} {}", options_.family, options_.table);
    spdlog::warn(
        "nftables: {}{} is gone (ruleset flushed or nftables reloaded?); re-created the "
        "table with {} stored ban(s) in {} ms",
        why, why == table ? "" : " of " + table, bans->size(), ms);
  }
  return Status::Ok();
}

Status NftablesBlocker::EnsureTable(bool* recreated) {
  if (recreated) *recreated = false;
  auto damage = FindDamage();
  if (!damage.ok()) return damage.status();
  if (damage->empty()) return Status::Ok();
  MXWARD_RETURN_IF_ERROR(RestoreFromStore(*damage));
  if (recreated) *recreated = true;
  return Status::Ok();
}

Status NftablesBlocker::Maintain() {
  if (options_.dry_run) return Status::Ok();
  if (maintain_paused_until_ != 0 && clock_->Now() < maintain_paused_until_) return Status::Ok();
  maintain_paused_until_ = 0;
  bool recreated = false;
  MXWARD_RETURN_IF_ERROR(EnsureTable(&recreated));
  if (!recreated) return Status::Ok();
  // A rebuild that still looks damaged would otherwise be repeated every second, forever.
  auto damage = FindDamage();
  if (!damage.ok()) return damage.status();
  if (!damage->empty()) {
    maintain_paused_until_ = clock_->Now() + 60 * kMicrosPerSecond;
    return Status::Internal(fmt::format(
        "nftables: re-created table {} {} but {} still looks missing; not rebuilding again for "
        "a minute",
        options_.family, options_.table, *damage));
  }
  return Status::Ok();
}

Status NftablesBlocker::Start() {
  if (options_.dry_run) return Status::Ok();
  // Always rebuild on start: the chain's hook, priority or ports may have changed in the config.
  return RestoreFromStore("");
}

Status NftablesBlocker::Apply(const ActionRecord& action) {
  auto prefix = BanPrefix(action);
  if (!prefix.ok()) return prefix.status();
  std::int64_t duration = options_.default_duration_s;
  if (auto it = action.params.find("duration_s"); it != action.params.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0) {
      return Status::InvalidArgument(
          fmt::format("ban action {}: 'duration_s' must be a whole number of seconds", action.id));
    }
    duration = it->get<std::int64_t>();
  }
  const UnixMicros now = clock_->Now();
  BanRecord record;
  record.prefix = prefix->ToString();
  record.created_at = now;
  record.until = duration == 0 ? 0 : now + duration * kMicrosPerSecond;
  record.incident_id = action.incident_id;
  record.reason = action.params.value("reason", "");
  if (record.reason.empty()) {
    record.reason = action.incident_id ? fmt::format("incident {}", action.incident_id) : "manual";
  }

  std::vector<NftBan> batch = {{*prefix, duration}};
  // Interval sets refuse overlapping elements: narrower bans inside a new wider one leave the set
  // in the same transaction (their store records stay, for `bans list` and a later restore).
  std::vector<IpPrefix> replaced;
  const int agg_len = prefix->address().is_v4() ? options_.aggregate_v4 : options_.aggregate_v6;
  const bool aggregate = agg_len > 0 && prefix->length() > agg_len;
  if ((aggregate || !prefix->IsHost()) && !options_.dry_run) {
    auto store = Store();
    if (!store.ok()) return store.status();
    auto active = (*store)->ActiveBans(now);
    if (!active.ok()) return active.status().Annotate("nftables: reading active bans");
    if (!prefix->IsHost()) {
      for (const BanRecord& b : *active) {
        IpPrefix p;
        if (IpPrefix::Parse(b.prefix, &p) && p.length() > prefix->length() &&
            prefix->Contains(p.address())) {
          replaced.push_back(p);
        }
      }
    }
  }
  if (aggregate && !options_.dry_run) {
    auto store = Store();
    if (!store.ok()) return store.status();
    auto active = (*store)->ActiveBans(now);
    if (!active.ok()) return active.status().Annotate("nftables: reading active bans");
    const IpPrefix wide(prefix->address(), agg_len);
    std::int64_t wide_until = record.until;
    std::vector<IpPrefix> members = {*prefix};
    for (const BanRecord& b : *active) {
      IpPrefix p;
      if (!IpPrefix::Parse(b.prefix, &p) || p == *prefix || p.length() <= agg_len ||
          !wide.Contains(p.address())) {
        continue;
      }
      members.push_back(p);
      if (wide_until != 0 && (b.until == 0 || b.until > wide_until)) wide_until = b.until;
    }
    if (static_cast<int>(members.size()) >= options_.aggregate_threshold) {
      const std::int64_t wide_timeout =
          wide_until == 0 ? 0 : (wide_until - now + kMicrosPerSecond - 1) / kMicrosPerSecond;
      batch = {{wide, wide_timeout}};
      replaced = std::move(members);
      record.prefix = wide.ToString();
      record.until = wide_until;
      record.reason =
          fmt::format("{} addresses in {} ({})", replaced.size(), record.prefix, record.reason);
    }
  }

  auto run = [&]() -> Status {
    if (!replaced.empty()) MXWARD_RETURN_IF_ERROR(RemoveBatch(replaced));
    return ApplyBatch(batch);
  };
  Status s = run();
  if (s.code() == Status::Code::kNotFound) {
    // The table is gone (ruleset flushed): re-create it with the stored bans, then try again.
    MXWARD_RETURN_IF_ERROR(EnsureTable(nullptr));
    s = run();
  }
  if (!s.ok() && s.message().find("overlap") != std::string::npos) {
    // A wider ban already covers it: the address is blocked, keep the record for when that ends.
    auto covered = IsBanned(prefix->address());
    if (covered.ok() && *covered) s = Status::Ok();
  }
  if (!s.ok()) return s.Annotate(fmt::format("banning {}", record.prefix));
  if (options_.dry_run) return Status::Ok();
  auto store = Store();
  if (!store.ok()) return store.status();
  return (*store)->UpsertBan(record);
}

Status NftablesBlocker::Revert(const ActionRecord& action) {
  auto prefix = BanPrefix(action);
  if (!prefix.ok()) return prefix.status();
  Status s = RemoveBatch({*prefix});
  // A missing table or set means there is nothing to remove.
  if (!s.ok() && s.code() != Status::Code::kNotFound) {
    return s.Annotate(fmt::format("unbanning {}", prefix->ToString()));
  }
  if (options_.dry_run) return Status::Ok();
  auto store = Store();
  if (!store.ok()) return store.status();
  return (*store)->RemoveBan(prefix->ToString());
}

Result<bool> NftablesBlocker::IsBanned(const IpAddress& address) {
  if (options_.dry_run) return true;
  const bool v4 = address.is_v4();
  if (v4 ? options_.family == "ip6" : options_.family == "ip") return false;
  Status s = Run(fmt::format("get element {} {} {} {{ {} }}", options_.family, options_.table,
                             v4 ? options_.set_v4 : options_.set_v6, address.ToString()));
  if (s.ok()) return true;
  if (s.code() == Status::Code::kNotFound) return false;
  return s;
}

Result<bool> NftablesBlocker::Check(const ActionRecord& action) {
  auto prefix = BanPrefix(action);
  if (!prefix.ok()) return prefix.status();
  if (options_.dry_run) return true;  // nothing was put in place, nothing to repair
  MXWARD_RETURN_IF_ERROR(EnsureTable(nullptr));
  return IsBanned(prefix->address());
}

void NftablesBlocker::Stop() {
  // The table and its bans stay: they expire in the kernel on their own.
  if (ctx_) nft_ctx_free(ctx_);
  ctx_ = nullptr;
  if (watch_ctx_) nft_ctx_free(watch_ctx_);
  watch_ctx_ = nullptr;
  store_.reset();
}

Result<std::unique_ptr<ActionExecutor>> MakeNftablesBlocker(const Config& config,
                                                            const std::string& store_path,
                                                            std::vector<Diagnostic>* diagnostics,
                                                            std::vector<std::string>* notes) {
  if (!config.document["nftables"].as_table()) return std::unique_ptr<ActionExecutor>();
  auto options = NftablesOptions::FromConfig(config, diagnostics);
  if (!options.ok()) return options.status();
  if (!options->enabled) return std::unique_ptr<ActionExecutor>();
  if (config.dry_run && !options->dry_run) {
    options->dry_run = true;
    notes->push_back("nftables: dry-run (dry_run = true in the config)");
  } else if (options->dry_run) {
    notes->push_back("nftables: dry-run ([nftables] dry_run = true)");
  } else if (!HasCapNetAdmin()) {
    options->dry_run = true;
    notes->push_back("nftables: dry-run (no CAP_NET_ADMIN)");
  }
  return std::unique_ptr<ActionExecutor>(
      std::make_unique<NftablesBlocker>(std::move(*options), store_path, SystemClock::Instance()));
}

}  // namespace mxward
