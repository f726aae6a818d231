#include "actions/nftables/nftables_blocker.h"

#include <nftables/libnftables.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <pthread.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actions/nftables/kernel_ban_audit.h"
#include "actions/nftables/wide_address.h"
#include "engine/base/settings_reader.h"

namespace mxward {

namespace {

// The narrowest prefixes a ban may cover: a typo or a template bug must not drop the world.
constexpr int kMinPrefixV4 = 8;
constexpr int kMinPrefixV6 = 16;
constexpr std::size_t kMaxDryRunCommands = 1000;
// IPv6 bans of exactly this length go to the hash set of /64 networks.
constexpr int kSlash64 = 64;
// nft refuses element timeouts much beyond a year and a half ("value too large"). Longer bans get
// a year in the kernel; the store keeps their real end, and Check() failing after that year makes
// the dispatcher call Start(), which puts them back with the remaining time.
constexpr std::int64_t kMaxKernelTimeoutS = 365 * 86400;
// An audit's finding is not applied to a ban the lane touched from this long before the audit
// read the store: the lane changes the kernel first and the store after, so a ban removed just
// before the read can still be in the store's snapshot while already gone from the kernel.
constexpr std::int64_t kTouchMarginS = 30;

// touched_'s key for the element of (scope, prefix): a collision only skips one repair until the
// next audit, so a hash is enough.
std::uint64_t TouchKey(const std::string& scope, const IpPrefix& prefix) {
  return std::hash<std::string>{}(scope)*31 + prefix.address().Hash() * 7 +
         static_cast<std::uint64_t>(prefix.length());
}

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

// A ban action's `ports` text, "" when it has none (PrepareBan refuses one that is not text).
std::string PortsText(const ActionRecord& action) {
  const auto it = action.params.find("ports");
  return it != action.params.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Every nft error message is "Error: <what>\n<the command>\n<carets>": keep the first line.
std::string FirstErrorLine(const char* buffer) {
  std::string_view s = buffer ? buffer : "";
  while (!s.empty() && (s.front() == '\n' || s.front() == ' ')) s.remove_prefix(1);
  if (auto nl = s.find('\n'); nl != std::string_view::npos) s = s.substr(0, nl);
  return std::string(s);
}

// The length of the prefix that is exactly [first, last], or -1 when the range is not one.
int PrefixLengthOf(const Wide& first, const Wide& last, int bits) {
  for (int len = bits; len >= 0; --len) {
    const Wide mask = HostMask(bits - len);
    if ((first.lo & mask.lo) != 0 || (first.hi & mask.hi) != 0) return -1;  // not aligned
    if ((first.lo | mask.lo) == last.lo && (first.hi | mask.hi) == last.hi) return len;
  }
  return -1;
}

Wide Previous(Wide w) {
  if (w.lo-- == 0) --w.hi;
  return w;
}

std::string WideText(const Wide& w, bool v4) {
  if (v4) return IpAddress::V4(static_cast<std::uint32_t>(w.lo)).ToString();
  unsigned char bytes[16];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(w.hi >> (56 - 8 * i));
  for (int i = 0; i < 8; ++i) bytes[8 + i] = static_cast<unsigned char>(w.lo >> (56 - 8 * i));
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, bytes, text, sizeof text);
  return text;
}

// A ban's end for comparisons: permanent (0) outlasts every timed one.
UnixMicros Effective(UnixMicros until) {
  return until == 0 ? std::numeric_limits<UnixMicros>::max() : until;
}

// The kernel timeout for a ban ending at `until`: the remaining time rounded down (a restored
// ban never outlives its record, but lives at least a second); 0 = none.
std::int64_t TimeoutFor(UnixMicros until, UnixMicros now) {
  if (until == 0) return 0;
  return std::max<std::int64_t>(1, (until - now) / kMicrosPerSecond);
}

// One range of the union of overlapping prefixes, with the longest end among those covering it.
struct CoverRange {
  Wide first, last;
  UnixMicros until;  // 0 = permanent
};

// The union of `bans` (prefix, until) as disjoint ranges, each with the longest `until` of the
// bans covering it; adjacent ranges with the same end are joined. A sweep over the prefixes'
// edges: O(n log n).
std::vector<CoverRange> LongestCover(const std::vector<std::pair<IpPrefix, UnixMicros>>& bans,
                                     bool v4) {
  // (position, +1 start / -1 end, effective until)
  std::vector<std::tuple<Wide, int, UnixMicros>> edges;
  for (const auto& [prefix, until] : bans) {
    const UnixMicros e = Effective(until);
    edges.emplace_back(ToWide(prefix.address()), +1, e);
    Wide after;
    if (Next(LastOf(prefix), v4, &after)) edges.emplace_back(after, -1, e);
  }
  std::sort(edges.begin(), edges.end());
  std::multiset<UnixMicros> open;
  std::vector<CoverRange> out;
  for (std::size_t i = 0; i < edges.size();) {
    const Wide at = std::get<0>(edges[i]);
    for (; i < edges.size() && std::get<0>(edges[i]) == at; ++i) {
      if (std::get<1>(edges[i]) > 0) {
        open.insert(std::get<2>(edges[i]));
      } else {
        open.erase(open.find(std::get<2>(edges[i])));
      }
    }
    if (open.empty()) continue;
    // This range runs to just before the next edge; the last one runs to the family's end.
    const Wide last =
        i < edges.size() ? Previous(std::get<0>(edges[i]))
                         : (v4 ? Wide{0, 0xffffffffu} : Wide{~std::uint64_t{0}, ~std::uint64_t{0}});
    const UnixMicros top = *open.rbegin();
    const UnixMicros until = top == std::numeric_limits<UnixMicros>::max() ? 0 : top;
    Wide joined;
    if (!out.empty() && out.back().until == until && Next(out.back().last, v4, &joined) &&
        joined == at) {
      out.back().last = last;
    } else {
      out.push_back({at, last, until});
    }
  }
  return out;
}

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

// A port group's name: it becomes part of set names after a '_', so it has none itself (the
// sets of a port list are "__80_443", never a group's).
bool IsGroupName(std::string_view s) {
  if (s.empty() || s.size() > 16 || s[0] < 'a' || s[0] > 'z') return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

// Ports a ban of an explicit list may name at most (the list is part of its sets' names).
constexpr std::size_t kMaxScopePorts = 16;

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
                    "priority", "ports", "port_groups", "aggregate_v4", "aggregate_v6",
                    "aggregate_threshold", "default_duration", "verify_interval"});
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
  if (const toml::table* groups = r.Table("port_groups")) {
    SettingsReader g(*groups, "[nftables.port_groups]", config.source, diagnostics);
    for (const auto& [key, value] : *groups) {
      const std::string name(key.str());
      if (!IsGroupName(name) || name == "all") {
        g.Error(value, fmt::format("port group '{}': a name is 1-16 lower-case letters and digits "
                                   "starting with a letter, and not \"all\" (built in)",
                                   name));
        continue;
      }
      std::vector<int> ports;
      if (g.IntArray(name, 1, 65535, &ports)) o.port_groups[name] = std::move(ports);
    }
  }
  r.Int("aggregate_v4", 0, 32, &o.aggregate_v4);
  r.Int("aggregate_v6", 0, 128, &o.aggregate_v6);
  r.Int("aggregate_threshold", 2, 1 << 16, &o.aggregate_threshold);
  r.Duration("default_duration", &o.default_duration_s);
  r.Duration("verify_interval", &o.verify_interval_s);
  if (o.aggregate_v4 != 0 && o.aggregate_v4 < kMinPrefixV4) {
    r.Error(*t->get("aggregate_v4"),
            fmt::format("'aggregate_v4' must be 0 (off) or at least {}", kMinPrefixV4));
  }
  if (o.aggregate_v6 != 0 && o.aggregate_v6 < kMinPrefixV6) {
    r.Error(*t->get("aggregate_v6"),
            fmt::format("'aggregate_v6' must be 0 (off) or at least {}", kMinPrefixV6));
  }
  // The derived sets (<set_v4>_net, <set_v6>_64, <set_v6>_net, and those of every port group)
  // must not collide either.
  std::set<std::string> names;
  std::size_t wanted = 0;
  std::vector<std::string> infixes = {"", "_all"};
  for (const auto& [group, ports] : o.Groups()) {
    if (group != "mail") infixes.push_back("_" + group);
  }
  for (const std::string& infix : infixes) {
    for (const std::string& n : {o.set_v4 + infix, o.set_v4 + infix + "_net", o.set_v6 + infix,
                                 o.set_v6 + infix + "_64", o.set_v6 + infix + "_net"}) {
      names.insert(n);
      ++wanted;
    }
  }
  if (names.size() != wanted) {
    r.Error(*t, fmt::format("'set_v4' and 'set_v6' must be different names, also with the "
                            "suffixes _64 and _net ({}, {}_net, {}, {}_64, {}_net)",
                            o.set_v4, o.set_v4, o.set_v6, o.set_v6, o.set_v6));
  }
  if (!r.ok()) {
    return Status::InvalidArgument(fmt::format("bad [nftables] section in {}", config.source));
  }
  return o;
}

std::map<std::string, std::vector<int>> NftablesOptions::Groups() const {
  std::map<std::string, std::vector<int>> out = {{"mail", ports}, {"web", {80, 443}}};
  for (const auto& [name, list] : port_groups) out[name] = list;
  for (auto& [name, list] : out) {
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
  }
  return out;
}

// --- blocker -------------------------------------------------------------------------------------

NftablesBlocker::NftablesBlocker(NftablesOptions options, std::string store_path,
                                 const Clock* clock)
    : options_(std::move(options)), store_path_(std::move(store_path)), clock_(clock) {
  for (const auto& [name, ports] : options_.Groups()) scopes_[name] = *ScopeOf(name);
  scopes_["all"] = *ScopeOf("all");
}

Result<BanScope> NftablesBlocker::ScopeOf(const std::string& name) const {
  if (name == "all") return BanScope{"all", "_all", {}};
  if (IsGroupName(name)) {
    const auto groups = options_.Groups();
    const auto it = groups.find(name);
    if (it == groups.end()) {
      return Status::NotFound(fmt::format("port group '{}' is not configured in [nftables]", name));
    }
    return BanScope{name, name == "mail" ? "" : "_" + name, it->second};
  }
  // A port list, as ResolveScope() writes it: "80,443".
  BanScope scope{name, "_", {}};
  std::string_view rest = name;
  while (!rest.empty()) {
    const std::string_view token = rest.substr(0, rest.find(','));
    rest.remove_prefix(std::min(rest.size(), token.size() + 1));
    int port = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), port);
    if (ec != std::errc() || end != token.data() + token.size() || port < 1 || port > 65535) {
      return Status::InvalidArgument(fmt::format("'{}' is not a port scope", name));
    }
    scope.ports.push_back(port);
    scope.infix += fmt::format("_{}", port);
  }
  if (scope.ports.empty() || scope.ports.size() > kMaxScopePorts ||
      !std::is_sorted(scope.ports.begin(), scope.ports.end())) {
    return Status::InvalidArgument(fmt::format("'{}' is not a port scope", name));
  }
  return scope;
}

Result<std::string> NftablesBlocker::ResolveScope(std::string_view text) const {
  return ResolveBanScope(options_, text);
}

Result<std::string> ResolveBanScope(const NftablesOptions& options, std::string_view text) {
  const auto groups = options.Groups();
  std::vector<std::string> names;
  std::set<int> ports;
  bool every = false;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find_first_of(", ", start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view token = text.substr(start, end - start);
    start = end + 1;
    if (token.empty()) continue;
    int port = 0;
    const auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), port);
    if (ec == std::errc() && p == token.data() + token.size()) {
      if (port < 1 || port > 65535) {
        return Status::InvalidArgument(fmt::format("port {} is not in 1-65535", token));
      }
      ports.insert(port);
      continue;
    }
    const std::string name(token);
    if (name == "all") {
      every = true;
      continue;
    }
    const auto it = groups.find(name);
    if (it == groups.end()) {
      std::vector<std::string> known = {"all"};
      for (const auto& [g, list] : groups) known.push_back(g);
      return Status::InvalidArgument(fmt::format(
          "unknown port group '{}' (known: {}, or port numbers)", name, fmt::join(known, ", ")));
    }
    if (it->second.empty()) every = true;
    ports.insert(it->second.begin(), it->second.end());
    names.push_back(name);
  }
  if (every) return std::string("all");
  if (ports.empty()) return std::string("mail");  // nothing named: the default
  if (names.size() == 1 &&
      ports == std::set<int>(groups.at(names[0]).begin(), groups.at(names[0]).end())) {
    return names[0];
  }
  // A list that is exactly one group's ports is that group ("mail" before the others).
  const std::vector<int> list(ports.begin(), ports.end());
  if (groups.at("mail") == list) return std::string("mail");
  for (const auto& [name, group] : groups) {
    if (group == list) return name;
  }
  if (list.size() > kMaxScopePorts) {
    return Status::InvalidArgument(fmt::format(
        "a ban may list at most {} ports; name a port group in [nftables.port_groups] instead",
        kMaxScopePorts));
  }
  return fmt::format("{}", fmt::join(list, ","));
}

Status NftablesBlocker::AddScope(const std::string& name, bool* added) {
  *added = false;
  if (scopes_.count(name)) return Status::Ok();
  auto scope = ScopeOf(name);
  if (!scope.ok()) return scope.status();
  scopes_[name] = std::move(*scope);
  *added = true;
  return Status::Ok();
}

std::string NftablesBlocker::SetName(const BanScope& scope, const IpPrefix& prefix) const {
  return (prefix.address().is_v4() ? options_.set_v4 : options_.set_v6) + scope.infix +
         SetSuffix(prefix);
}

std::string NftablesBlocker::SetOfBan(const std::string& scope, const IpPrefix& prefix) const {
  auto resolved = ScopeOf(scope);
  return resolved.ok() ? SetName(*resolved, prefix) : std::string();
}

void NftablesBlocker::Touch(const std::string& scope, const IpPrefix& prefix, UnixMicros now) {
  if (options_.verify_interval_s > 0 || audited_.load(std::memory_order_relaxed)) {
    touched_[TouchKey(scope, prefix)] = now;
  }
}

NftablesBlocker::~NftablesBlocker() { Stop(); }

bool NftablesBlocker::Handles(std::string_view type) const {
  return type == "ban" || type == "cluster_batch";
}

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

const char* NftablesBlocker::SetSuffix(const IpPrefix& prefix) const {
  if (prefix.IsHost()) return "";
  if (prefix.address().is_v6() && prefix.length() == kSlash64) return "_64";
  return "_net";
}

std::string NftablesBlocker::TableCommands() const {
  const NftablesOptions& o = options_;
  const std::string where = fmt::format("{} {}", o.family, o.table);
  std::string out;
  // "add" then "delete" then "add" empties the table whether or not it existed: one transaction
  // that replaces whatever half-state a previous run or an admin left (an older mxward's single
  // interval sets included).
  out += fmt::format("add table {0}\ndelete table {0}\nadd table {0}\n", where);
  out += fmt::format("add chain {} {} {{ type filter hook {} priority {}; policy accept; }}\n",
                     where, o.chain, o.hook, o.priority);
  for (const BanScope* scope : OrderedScopes()) out += ScopeCommands(*scope);
  return out;
}

std::vector<const BanScope*> NftablesBlocker::OrderedScopes() const {
  std::vector<const BanScope*> out;
  if (const auto mail = scopes_.find("mail"); mail != scopes_.end()) out.push_back(&mail->second);
  for (const auto& [name, scope] : scopes_) {
    if (name != "mail") out.push_back(&scope);
  }
  return out;
}

std::string NftablesBlocker::ScopeCommands(const BanScope& scope) const {
  const NftablesOptions& o = options_;
  const std::string where = fmt::format("{} {}", o.family, o.table);
  std::string ports;
  if (!scope.ports.empty()) {
    ports = fmt::format(" tcp dport {{ {} }}", fmt::join(scope.ports, ", "));
  }
  std::string out;
  auto set = [&](const std::string& name, const char* type, bool interval, const char* match) {
    out += fmt::format("add set {} {} {{ type {}; flags {}timeout; }}\n", where, name, type,
                       interval ? "interval, " : "");
    out +=
        fmt::format("add rule {} {} {} @{}{} counter drop\n", where, o.chain, match, name, ports);
  };
  const std::string v4 = o.set_v4 + scope.infix, v6 = o.set_v6 + scope.infix;
  if (o.family != "ip6") {
    set(v4, "ipv4_addr", false, "ip saddr");
    set(v4 + "_net", "ipv4_addr", true, "ip saddr");
  }
  if (o.family != "ip") {
    set(v6, "ipv6_addr", false, "ip6 saddr");
    set(v6 + "_64", "ipv6_addr", false, "ip6 saddr & ffff:ffff:ffff:ffff::");
    set(v6 + "_net", "ipv6_addr", true, "ip6 saddr");
  }
  return out;
}

std::string NftablesBlocker::ElementCommands(const std::vector<NftBan>& bans) const {
  // One "add element" per set with every element, so nft parses three commands per scope, not
  // 100,000.
  std::map<std::string, fmt::memory_buffer> by_set;
  char addr[64];
  for (const NftBan& ban : bans) {
    const IpAddress& a = ban.prefix.address();
    if (a.is_v4() ? options_.family == "ip6" : options_.family == "ip") continue;
    const char* suffix = SetSuffix(ban.prefix);
    if (std::string_view(suffix) == "_net") continue;  // prefixes: NetCommands
    const auto scope = scopes_.find(ban.scope);
    if (scope == scopes_.end()) continue;  // ApplyBatch/RestoreBans add every scope they use
    fmt::memory_buffer& out = by_set[SetName(scope->second, ban.prefix)];
    if (out.size() > 0) out.append(std::string_view(", "));
    out.append(std::string_view(addr, a.Format(addr)));  // a /64 is its (masked) first address
    if (ban.timeout_s > 0) {
      fmt::format_to(std::back_inserter(out), " timeout {}s",
                     std::min(ban.timeout_s, kMaxKernelTimeoutS));
    }
  }
  std::string out;
  for (const auto& [set, elements] : by_set) {
    out += fmt::format("add element {} {} {} {{ ", options_.family, options_.table, set);
    out.append(elements.data(), elements.size());
    out += " }\n";
  }
  return out;
}

std::string NftablesBlocker::NetCommands(const std::set<std::pair<std::string, int>>& which,
                                         UnixMicros now, bool fresh) const {
  std::string out;
  for (const auto& [scope_name, family] : which) {
    const bool v4 = family == 4;
    if (v4 ? options_.family == "ip6" : options_.family == "ip") continue;
    const auto scope = scopes_.find(scope_name);
    if (scope == scopes_.end()) continue;
    const std::string set = (v4 ? options_.set_v4 : options_.set_v6) + scope->second.infix + "_net";
    if (!fresh) out += fmt::format("flush set {} {} {}\n", options_.family, options_.table, set);
    std::vector<std::pair<IpPrefix, UnixMicros>> bans;
    for (const auto& [key, until] : network_bans_) {
      const auto& [name, address, length] = key;
      if (name != scope_name || address.is_v4() != v4 || (until != 0 && until <= now)) continue;
      bans.emplace_back(IpPrefix(address, length), until);
    }
    const std::vector<CoverRange> ranges = LongestCover(bans, v4);
    if (ranges.empty()) continue;
    out += fmt::format("add element {} {} {} {{ ", options_.family, options_.table, set);
    const int bits = v4 ? 32 : 128;
    for (std::size_t i = 0; i < ranges.size(); ++i) {
      const CoverRange& r = ranges[i];
      if (i > 0) out += ", ";
      out += WideText(r.first, v4);
      // A range that is one prefix prints as the prefix, as nft itself lists it.
      const int length = PrefixLengthOf(r.first, r.last, bits);
      if (length < 0) {
        out += "-" + WideText(r.last, v4);
      } else if (length < bits) {
        out += fmt::format("/{}", length);
      }
      if (r.until != 0) {
        out += fmt::format(" timeout {}s", std::min(TimeoutFor(r.until, now), kMaxKernelTimeoutS));
      }
    }
    out += " }\n";
  }
  return out;
}

Status NftablesBlocker::LoadNetworkBans() {
  if (network_bans_loaded_) return Status::Ok();
  if (options_.dry_run) {
    network_bans_loaded_ = true;  // nothing in the kernel to agree with
    return Status::Ok();
  }
  auto store = Store();
  if (!store.ok()) return store.status();
  auto bans = (*store)->ActiveBans(clock_->Now());
  if (!bans.ok()) return bans.status().Annotate("nftables: reading active bans");
  network_bans_.clear();
  for (const BanRecord& b : *bans) {
    IpPrefix p;
    if (!IpPrefix::Parse(b.prefix, &p) || std::string_view(SetSuffix(p)) != "_net") continue;
    if (!scopes_.count(b.ports)) continue;  // a group no longer configured: not in the table
    UnixMicros& until = network_bans_[{b.ports, p.address(), p.length()}];
    if (Effective(b.until) > Effective(until) || until == 0) until = b.until;
  }
  network_bans_loaded_ = true;
  return Status::Ok();
}

Status NftablesBlocker::ApplyBatch(const std::vector<NftBan>& bans) {
  if (bans.empty()) return Status::Ok();
  const UnixMicros now = clock_->Now();
  // add (so that delete cannot fail), delete, add with the new timeout: refreshes the timeout of
  // an element already in a hash set, atomically, on every kernel.
  std::vector<NftBan> plain;
  plain.reserve(bans.size());
  std::set<std::pair<std::string, int>> nets;
  // A port list seen for the first time gets its sets and rules in the same transaction.
  std::string commands;
  std::vector<std::string> new_scopes;
  for (const NftBan& b : bans) {
    bool added = false;
    MXWARD_RETURN_IF_ERROR(AddScope(b.scope, &added));
    if (added) {
      new_scopes.push_back(b.scope);
      commands += ScopeCommands(scopes_.at(b.scope));
    }
  }
  for (const NftBan& b : bans) {
    if (std::string_view(SetSuffix(b.prefix)) == "_net") {
      MXWARD_RETURN_IF_ERROR(LoadNetworkBans());
      break;
    }
  }
  const auto saved = network_bans_;
  for (const NftBan& b : bans) {
    if (std::string_view(SetSuffix(b.prefix)) != "_net") {
      if (b.refresh) plain.push_back({b.prefix, 0, b.scope});
      continue;
    }
    nets.insert({b.scope, b.prefix.address().is_v4() ? 4 : 6});
    network_bans_[{b.scope, b.prefix.address(), b.prefix.length()}] =
        b.timeout_s == 0 ? 0 : now + b.timeout_s * kMicrosPerSecond;
  }
  if (!plain.empty()) {
    const std::string adds = ElementCommands(plain);
    std::string deletes = adds;
    for (std::size_t pos = 0; (pos = deletes.find("add element", pos)) != std::string::npos;) {
      deletes.replace(pos, 3, "delete");
      pos += 6;
    }
    commands += adds + deletes;
  }
  commands += ElementCommands(bans);
  commands += NetCommands(nets, now, /*fresh=*/false);
  Status s = Run(commands);
  if (!s.ok()) {
    network_bans_ = saved;
    for (const std::string& name : new_scopes) scopes_.erase(name);
  }
  for (const NftBan& b : bans) Touch(b.scope, b.prefix, now);
  return s;
}

Status NftablesBlocker::RemoveBatch(const std::vector<IpPrefix>& prefixes,
                                    const std::string& scope) {
  if (prefixes.empty()) return Status::Ok();
  // Only scopes whose sets are in the table: a scope never used has nothing to remove.
  std::vector<std::string> scopes;
  if (scope == "*") {
    for (const auto& [name, s] : scopes_) scopes.push_back(name);
  } else if (scopes_.count(scope)) {
    scopes.push_back(scope);
  }
  std::vector<NftBan> bans;
  std::set<std::pair<std::string, int>> nets;
  for (const IpPrefix& p : prefixes) {
    if (std::string_view(SetSuffix(p)) == "_net") {
      MXWARD_RETURN_IF_ERROR(LoadNetworkBans());
      break;
    }
  }
  const auto saved = network_bans_;
  for (const std::string& name : scopes) {
    for (const IpPrefix& p : prefixes) {
      if (std::string_view(SetSuffix(p)) != "_net") {
        bans.push_back({p, 0, name});
        continue;
      }
      nets.insert({name, p.address().is_v4() ? 4 : 6});
      network_bans_.erase({name, p.address(), p.length()});
    }
  }
  // add then delete: deleting an element that is not there (expired, never added) is not an
  // error, and the transaction stays all or nothing.
  std::string adds = ElementCommands(bans);
  std::string deletes = adds;
  for (std::size_t pos = 0; (pos = deletes.find("add element", pos)) != std::string::npos;) {
    deletes.replace(pos, 3, "delete");
    pos += 6;
  }
  const UnixMicros now = clock_->Now();
  Status s = Run(adds + deletes + NetCommands(nets, now, /*fresh=*/false));
  if (!s.ok()) network_bans_ = saved;
  for (const std::string& name : scopes) {
    for (const IpPrefix& p : prefixes) Touch(name, p, now);
  }
  return s;
}

Status NftablesBlocker::RestoreBans(const std::vector<BanRecord>& bans, UnixMicros now) {
  // Hosts and IPv6 /64s go to the hash sets, every other prefix to the interval sets as the
  // ranges of their union (LongestCover). Duplicates keep the longest lifetime.
  // Per scope: the configured groups and "all" always, a port list when a stored ban uses it.
  // A stored ban of a group no longer in [nftables] is left out (and said so once per group):
  // guessing wider ports could lock out what the admin meant to leave open.
  scopes_.clear();
  for (const auto& [name, ports] : options_.Groups()) scopes_[name] = *ScopeOf(name);
  scopes_["all"] = *ScopeOf("all");
  std::map<std::string, std::unordered_map<IpAddress, UnixMicros>> hosts, slash64s;
  network_bans_.clear();
  std::set<std::string> unknown;
  for (const BanRecord& b : bans) {
    IpPrefix p;
    if (!IpPrefix::Parse(b.prefix, &p)) {
      spdlog::warn("nftables: skipping stored ban '{}': not an address or CIDR", b.prefix);
      continue;
    }
    if (b.until != 0 && b.until <= now) continue;
    bool added = false;
    if (Status s = AddScope(b.ports, &added); !s.ok()) {
      if (unknown.insert(b.ports).second) {
        spdlog::warn("nftables: not restoring the bans of ports '{}': {}", b.ports, s.message());
      }
      continue;
    }
    const char* suffix = SetSuffix(p);
    UnixMicros* until = nullptr;
    bool inserted = false;
    if (std::string_view(suffix) == "_net") {
      auto [it, fresh] =
          network_bans_.emplace(std::make_tuple(b.ports, p.address(), p.length()), b.until);
      until = &it->second;
      inserted = fresh;
    } else {
      auto& by_address = (*suffix ? slash64s : hosts)[b.ports];
      if (by_address.empty()) by_address.reserve(bans.size());
      auto [it, fresh] = by_address.emplace(p.address(), b.until);
      until = &it->second;
      inserted = fresh;
    }
    if (!inserted && Effective(b.until) > Effective(*until)) *until = b.until;
  }
  network_bans_loaded_ = true;
  std::vector<NftBan> elements;
  elements.reserve(bans.size());
  for (const auto& [scope, by_address] : hosts) {
    for (const auto& [address, until] : by_address) {
      elements.push_back({IpPrefix(address, address.bits()), TimeoutFor(until, now), scope});
    }
  }
  for (const auto& [scope, by_address] : slash64s) {
    for (const auto& [address, until] : by_address) {
      elements.push_back({IpPrefix(address, kSlash64), TimeoutFor(until, now), scope});
    }
  }
  std::set<std::pair<std::string, int>> nets;
  for (const auto& [name, scope] : scopes_) {
    nets.insert({name, 4});
    nets.insert({name, 6});
  }
  rebuilt_at_ = clock_->Now();
  return Run(TableCommands() + ElementCommands(elements) + NetCommands(nets, now, /*fresh=*/true));
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
  // Every set the layout needs, whether it is an interval set, and whether its set and its drop
  // rule were seen.
  struct Part {
    std::string set;
    bool interval;
    bool has_set = false, has_rule = false, old_form = false;
  };
  std::vector<Part> parts;
  for (const BanScope* scope : OrderedScopes()) {
    const std::string v4 = o.set_v4 + scope->infix, v6 = o.set_v6 + scope->infix;
    if (o.family != "ip6") {
      parts.push_back({v4, false});
      parts.push_back({v4 + "_net", true});
    }
    if (o.family != "ip") {
      parts.push_back({v6, false});
      parts.push_back({v6 + "_64", false});
      parts.push_back({v6 + "_net", true});
    }
  }
  bool table = false, chain = false;
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
      // Without `timeout` every "add element ... timeout" would fail; a hash set that became an
      // interval set (or the reverse) would refuse or mis-store elements: as good as missing.
      // The single interval sets of an older mxward are found here and rebuilt, not half-used.
      const auto flags = body.find("flags");
      const bool has_flags = flags != body.end() && flags->is_array();
      const bool timeout = has_flags && std::count(flags->begin(), flags->end(), "timeout") == 1;
      const bool interval = has_flags && std::count(flags->begin(), flags->end(), "interval") == 1;
      for (Part& p : parts) {
        if (!HasString(body, "name", p.set)) continue;
        p.has_set = p.has_set || (timeout && interval == p.interval);
        p.old_form = p.old_form || (!p.interval && interval);
      }
    } else if (kind == "rule" && HasString(body, "chain", o.chain)) {
      const auto expr = body.find("expr");
      if (expr == body.end()) continue;
      for (Part& p : parts) p.has_rule = p.has_rule || IsDropRuleFor(*expr, "@" + p.set);
    }
  }
  if (!table) return fmt::format("table {} {}", o.family, o.table);
  if (!chain) return fmt::format("chain {} (hook {})", o.chain, o.hook);
  for (const Part& p : parts) {
    if (p.old_form) return fmt::format("set {} (an interval set of an older mxward)", p.set);
  }
  for (const Part& p : parts) {
    if (!p.has_set) return fmt::format("set {}", p.set);
  }
  for (const Part& p : parts) {
    if (!p.has_rule) return fmt::format("the drop rule for @{}", p.set);
  }
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
  if (why.find("older mxward") != std::string::npos) {
    spdlog::warn(
        "nftables: {} found; rebuilt table {} {} in the current layout with {} stored "
        "ban(s) in {} ms",
        why, options_.family, options_.table, bans->size(), ms);
  } else if (why.empty()) {
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
  if (!recreated) return RepairFound();
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
  // A store without one active ban beside an intact table is a store that was lost or moved
  // aside as corrupt (the daemon then starts on a fresh one): rebuilding would unban everyone the
  // kernel still holds. The table is kept as it is; its elements end at their own timeouts.
  if (auto store = Store(); store.ok()) {
    auto bans = (*store)->ActiveBans(clock_->Now());
    auto damage = FindDamage();
    if (bans.ok() && bans->empty() && damage.ok() && damage->empty()) {
      spdlog::warn(
          "nftables: the store holds no active ban but table {} {} is in place: kept as it is "
          "(a new or recreated store must not unban what the kernel holds)",
          options_.family, options_.table);
      StartAudits();
      return Status::Ok();
    }
  }
  // Otherwise rebuild: the chain's hook, priority or ports may have changed in the config.
  MXWARD_RETURN_IF_ERROR(RestoreFromStore(""));
  StartAudits();
  return Status::Ok();
}

void NftablesBlocker::StartAudits() {
  if (options_.verify_interval_s > 0 && !audit_thread_.joinable()) {
    {
      MutexLock lock(audit_mu_);
      audit_stop_ = false;
    }
    audit_thread_ = std::thread([this] { RunAudits(); });
  }
}

void NftablesBlocker::RunAudits() {
  pthread_setname_np(pthread_self(), "mxw-nft-audit");
  while (true) {
    {
      MutexLock lock(audit_mu_);
      audit_wake_.wait_for(lock, std::chrono::seconds(options_.verify_interval_s),
                           [&]() REQUIRES(audit_mu_) { return audit_stop_; });
      if (audit_stop_) return;
    }
    if (Status s = AuditElements(); !s.ok()) {
      spdlog::warn("nftables: checking the kernel's ban elements against the store failed: {}",
                   s.ToString());
    }
  }
}

void NftablesBlocker::StopAudits() {
  if (!audit_thread_.joinable()) return;
  {
    MutexLock lock(audit_mu_);
    audit_stop_ = true;
  }
  audit_wake_.notify_all();
  audit_thread_.join();
}

Status NftablesBlocker::AuditElements() {
  if (options_.dry_run) return Status::Ok();
  audited_.store(true, std::memory_order_relaxed);
  const UnixMicros now = clock_->Now();
  {
    MutexLock lock(audit_mu_);
    audit_running_since_ = now;
  }
  const auto started = std::chrono::steady_clock::now();
  auto found = [&]() -> Result<MissingBans> {
    if (!audit_store_) {
      auto store = IncidentStore::Open(store_path_, StoreOptions{.read_only = true});
      if (!store.ok()) return store.status().Annotate("nftables: opening the incident store");
      audit_store_ = std::move(store).value();
    }
    auto bans = audit_store_->ActiveBans(now);
    if (!bans.ok()) return bans.status().Annotate("nftables: reading active bans");
    const std::string list_table = fmt::format("list table {} {}", options_.family, options_.table);
    std::string listing;
    Status listed = RunOn(&audit_ctx_, NFT_CTX_OUTPUT_JSON, list_table, &listing);
    // No table: Maintain() rebuilds it with every ban, nothing to compare.
    if (listed.code() == Status::Code::kNotFound) return MissingBans{};
    MXWARD_RETURN_IF_ERROR(listed);
    // Scope names repeat across bans: resolve each once.
    std::map<std::string, std::optional<BanScope>> scopes;
    auto set_of = [&](const std::string& name, const IpPrefix& prefix) -> std::string {
      auto it = scopes.find(name);
      if (it == scopes.end()) {
        auto resolved = ScopeOf(name);
        it = scopes.emplace(name, resolved.ok() ? std::optional<BanScope>(*resolved) : std::nullopt)
                 .first;
      }
      return it->second ? SetName(*it->second, prefix) : std::string();
    };
    auto first = FindMissingBans(*bans, listing, set_of, now);
    if (!first.ok() || (first->hosts.empty() && first->nets.empty())) return first;
    // A dump of a large hash set is not a snapshot: it spans many netlink messages, each resuming
    // its walk of the kernel's hash table by position, and the kernel grows that table in the
    // background after a bulk insert (a restore of every ban, a burst). A dump that crosses a
    // resize skips some elements and repeats others (seen in CI: 98,413 of 100,000 elements
    // listed right after a restore). So what one listing misses is confirmed by a second, and
    // only what both miss is reported.
    listed = RunOn(&audit_ctx_, NFT_CTX_OUTPUT_JSON, list_table, &listing);
    if (listed.code() == Status::Code::kNotFound) return MissingBans{};
    MXWARD_RETURN_IF_ERROR(listed);
    auto second = FindMissingBans(*bans, listing, set_of, now);
    if (!second.ok()) return second;
    return ConfirmedMissingBans(*std::move(first), *std::move(second));
  }();
  MutexLock lock(audit_mu_);
  audit_running_since_ = 0;
  if (!found.ok()) return found.status();
  spdlog::debug("nftables: compared {} stored ban(s) with the kernel's sets in {} ms: {} missing",
                found->compared,
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count(),
                found->hosts.size() + found->nets.size());
  if (found->hosts.empty() && found->nets.empty()) return Status::Ok();
  audit_found_ = std::make_unique<MissingBans>(std::move(*found));
  return Status::Ok();
}

Status NftablesBlocker::RepairFound() {
  std::unique_ptr<MissingBans> found;
  UnixMicros running_since = 0;
  {
    MutexLock lock(audit_mu_);
    found = std::move(audit_found_);
    running_since = audit_running_since_;
  }
  const UnixMicros now = clock_->Now();
  const UnixMicros margin = kTouchMarginS * kMicrosPerSecond;
  // Forget the touches that neither the audit running now nor the finding at hand can need.
  if (!touched_.empty()) {
    UnixMicros floor = now;
    if (running_since != 0) floor = std::min(floor, running_since);
    if (found) floor = std::min(floor, found->store_read_at);
    floor -= margin;
    std::erase_if(touched_, [floor](const auto& entry) { return entry.second < floor; });
  }
  if (!found) return Status::Ok();
  const UnixMicros since = found->store_read_at - margin;
  if (rebuilt_at_ >= since) return Status::Ok();  // a rebuild since then put every ban back
  std::vector<NftBan> hosts;
  for (NftBan& b : found->hosts) {
    const auto touched = touched_.find(TouchKey(b.scope, b.prefix));
    if (touched != touched_.end() && touched->second >= since) continue;
    if (b.timeout_s > 0) {
      const std::int64_t left = b.timeout_s - (now - found->store_read_at) / kMicrosPerSecond;
      if (left < kSoonSeconds) continue;
      b.timeout_s = left;
    }
    hosts.push_back(b);
  }
  // Plain "add element": an element that is there after all keeps its own timeout.
  std::string commands = ElementCommands(hosts);
  if (!found->nets.empty()) {
    MXWARD_RETURN_IF_ERROR(LoadNetworkBans());
    commands += NetCommands(found->nets, now, /*fresh=*/false);
  }
  if (commands.empty()) return Status::Ok();
  MXWARD_RETURN_IF_ERROR(Run(commands));
  elements_repaired_ += hosts.size();
  std::string examples;
  for (std::size_t i = 0; i < hosts.size() && i < 3; ++i) {
    examples += (i ? ", " : "") + hosts[i].prefix.ToString();
  }
  if (hosts.size() > 3) examples += ", ...";
  std::string nets;
  for (const auto& [scope, family] : found->nets) {
    nets += fmt::format("{}{} IPv{}", nets.empty() ? "" : ", ", scope, family);
  }
  spdlog::warn(
      "nftables: {} ban(s) were missing from the sets of table {} {} (deleted outside mxward?): "
      "put back{}{}{}",
      hosts.size(), options_.family, options_.table, examples.empty() ? "" : " (" + examples + ")",
      nets.empty() ? "" : "; prefix sets rewritten: ", nets);
  return Status::Ok();
}

Result<NftablesBlocker::PreparedBan> NftablesBlocker::PrepareBan(const ActionRecord& action) {
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
  std::string ports_text;
  if (auto it = action.params.find("ports"); it != action.params.end()) {
    if (!it->is_string()) {
      return Status::InvalidArgument(
          fmt::format("ban action {}: 'ports' must be text (\"web\", \"mail,8080\")", action.id));
    }
    ports_text = it->get<std::string>();
  }
  auto scope = ResolveScope(ports_text);
  if (!scope.ok()) return scope.status().Annotate(fmt::format("ban action {}", action.id));
  const UnixMicros now = clock_->Now();
  PreparedBan ban{{*prefix, duration, *scope}, {}};
  BanRecord& record = ban.record;
  record.prefix = prefix->ToString();
  record.ports = *scope;
  record.created_at = now;
  record.until = duration == 0 ? 0 : now + duration * kMicrosPerSecond;
  record.incident_id = action.incident_id;
  record.reason = action.params.value("reason", "");
  if (record.reason.empty()) {
    record.reason = action.incident_id ? fmt::format("incident {}", action.incident_id) : "manual";
  }

  // Aggregation: enough banned addresses in one prefix ban the prefix. The member bans stay in
  // the kernel as they are (a member banned for longer than the prefix keeps its longer ban).
  const int agg_len = prefix->address().is_v4() ? options_.aggregate_v4 : options_.aggregate_v6;
  if (agg_len > 0 && prefix->length() > agg_len && !options_.dry_run) {
    auto store = Store();
    if (!store.ok()) return store.status();
    auto active = (*store)->ActiveBans(now);
    if (!active.ok()) return active.status().Annotate("nftables: reading active bans");
    const IpPrefix wide(prefix->address(), agg_len);
    std::int64_t wide_until = record.until;
    std::size_t members = 1;
    for (const BanRecord& b : *active) {
      IpPrefix p;
      if (!IpPrefix::Parse(b.prefix, &p) || p == *prefix || p.length() <= agg_len ||
          !wide.Contains(p.address()) || b.ports != record.ports) {
        continue;
      }
      ++members;
      if (wide_until != 0 && (b.until == 0 || b.until > wide_until)) wide_until = b.until;
    }
    if (static_cast<int>(members) >= options_.aggregate_threshold) {
      const std::int64_t wide_timeout =
          wide_until == 0 ? 0 : (wide_until - now + kMicrosPerSecond - 1) / kMicrosPerSecond;
      ban.kernel = {wide, wide_timeout, record.ports};
      record.prefix = wide.ToString();
      record.until = wide_until;
      record.reason = fmt::format("{} addresses in {} ({})", members, record.prefix, record.reason);
    }
  }
  return ban;
}

Status NftablesBlocker::ApplyPrepared(const std::vector<PreparedBan>& bans) {
  std::vector<NftBan> batch;
  batch.reserve(bans.size());
  for (const PreparedBan& b : bans) batch.push_back(b.kernel);
  Status s = ApplyBatch(batch);
  if (s.code() == Status::Code::kNotFound) {
    // The table is gone (ruleset flushed): re-create it with the stored bans, then try again.
    MXWARD_RETURN_IF_ERROR(EnsureTable(nullptr));
    s = ApplyBatch(batch);
  }
  if (!s.ok() || options_.dry_run) return s;
  auto store = Store();
  if (!store.ok()) return store.status();
  return (*store)->InTransaction([&]() -> Status {
    for (const PreparedBan& b : bans) MXWARD_RETURN_IF_ERROR((*store)->UpsertBan(b.record));
    return Status::Ok();
  });
}

Status NftablesBlocker::ApplyClusterBatch(const ActionRecord& action) {
  if (options_.dry_run) return Status::Ok();
  auto store = Store();
  if (!store.ok()) return store.status();
  auto ops = (*store)->ClusterBatchOps(action.id);
  if (!ops.ok()) return ops.status();
  const UnixMicros now = clock_->Now();
  // Removals first, one transaction per scope (RemoveBatch takes one), in the order met; then
  // every ban in one transaction. NetClusterOps made this order give the log's end state.
  std::vector<std::pair<std::string, std::vector<IpPrefix>>> removals;
  std::vector<NftBan> bans;
  bans.reserve(ops->size());
  std::map<std::string, bool, std::less<>> valid_scopes;
  std::size_t skipped = 0;
  for (const ClusterBatchOp& op : *ops) {
    IpPrefix prefix;
    if (!IpPrefix::Parse(op.prefix, &prefix, /*strict=*/true)) {
      ++skipped;
      continue;
    }
    if (op.remove) {
      auto it = std::find_if(removals.begin(), removals.end(),
                             [&](const auto& r) { return r.first == op.ports; });
      if (it == removals.end()) it = removals.insert(removals.end(), {op.ports, {}});
      it->second.push_back(prefix);
      continue;
    }
    // The time left now: an action that waited (a crash, a retry) does not ban for longer.
    std::int64_t timeout = 0;
    if (op.until != 0) {
      if (op.until <= now) continue;  // ended while it waited
      timeout = (op.until - now + kMicrosPerSecond - 1) / kMicrosPerSecond;
    }
    // A configured group, "all" or a port list (whose sets come with the add); not a group no
    // longer configured here (a reload since the link resolved it). Asked once per scope.
    auto known = valid_scopes.find(op.ports);
    if (known == valid_scopes.end()) {
      known = valid_scopes.emplace(op.ports, op.ports != "*" && ScopeOf(op.ports).ok()).first;
    }
    if (known->second) {
      bans.push_back({prefix, timeout, op.ports, op.refresh});
    } else {
      ++skipped;
    }
  }
  for (const auto& [scope, prefixes] : removals) {
    Status s = RemoveBatch(prefixes, scope);
    // A missing table or set means there is nothing to remove.
    if (!s.ok() && s.code() != Status::Code::kNotFound) {
      return s.Annotate(fmt::format("cluster batch: lifting {} ban(s)", prefixes.size()));
    }
  }
  Status s = ApplyBatch(bans);
  if (s.code() == Status::Code::kNotFound) {
    // The table is gone (ruleset flushed): re-created with the stored bans, which hold these.
    MXWARD_RETURN_IF_ERROR(EnsureTable(nullptr));
    s = ApplyBatch(bans);
  }
  if (!s.ok()) return s.Annotate(fmt::format("cluster batch: banning {} address(es)", bans.size()));
  if (skipped > 0) {
    spdlog::warn(
        "nftables: cluster batch #{}: {} element(s) skipped (not an address or prefix, "
        "or a port group this node no longer defines)",
        action.id, skipped);
  }
  // Forgotten once in the kernel; a crash before this only applies them again (idempotent).
  return (*store)->ForgetClusterBatchOps(action.id);
}

Status NftablesBlocker::Apply(const ActionRecord& action) {
  if (action.type == "cluster_batch") return ApplyClusterBatch(action);
  auto ban = PrepareBan(action);
  if (!ban.ok()) return ban.status();
  Status s = ApplyPrepared({*ban});
  if (!s.ok()) return s.Annotate(fmt::format("banning {}", ban->record.prefix));
  return s;
}

std::vector<Status> NftablesBlocker::ApplyMany(const std::vector<const ActionRecord*>& actions) {
  std::vector<Status> out(actions.size());
  // Aggregation counts the members already in the store, which a batch's own members are not
  // yet: with it on, one at a time.
  if (actions.size() == 1 || options_.aggregate_v4 > 0 || options_.aggregate_v6 > 0) {
    for (std::size_t i = 0; i < actions.size(); ++i) out[i] = Apply(*actions[i]);
    return out;
  }
  std::vector<PreparedBan> prepared;
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i < actions.size(); ++i) {
    auto ban = PrepareBan(*actions[i]);
    if (!ban.ok()) {
      out[i] = ban.status();
      continue;
    }
    prepared.push_back(std::move(*ban));
    index.push_back(i);
  }
  if (prepared.empty()) return out;
  Status s = ApplyPrepared(prepared);
  if (s.ok()) return out;
  // One transaction for all failed: each action on its own, so each gets its own outcome.
  for (const std::size_t i : index) out[i] = Apply(*actions[i]);
  return out;
}

Status NftablesBlocker::Revert(const ActionRecord& action) {
  auto prefix = BanPrefix(action);
  if (!prefix.ok()) return prefix.status();
  // "*": every scope (`mxward bans remove`); otherwise the scope the ban action named.
  std::string scope = "*";
  const std::string ports = PortsText(action);
  if (ports != "*") {
    auto resolved = ResolveScope(ports);
    if (!resolved.ok()) return resolved.status();
    scope = *resolved;
  }
  Status s = RemoveBatch({*prefix}, scope);
  // A missing table or set means there is nothing to remove.
  if (!s.ok() && s.code() != Status::Code::kNotFound) {
    return s.Annotate(fmt::format("unbanning {}", prefix->ToString()));
  }
  if (options_.dry_run) return Status::Ok();
  auto store = Store();
  if (!store.ok()) return store.status();
  return (*store)->RemoveBan(prefix->ToString(), scope == "*" ? "" : scope);
}

Result<bool> NftablesBlocker::IsBanned(const IpAddress& address, const std::string& scope) {
  if (options_.dry_run) return true;
  const bool v4 = address.is_v4();
  if (v4 ? options_.family == "ip6" : options_.family == "ip") return false;
  // Per scope: the host set, the /64 set (by the address's /64) and the prefix set, in that order.
  std::vector<std::pair<std::string, IpAddress>> lookups;
  for (const auto& [name, s] : scopes_) {
    if (scope != "*" && scope != name) continue;
    const std::string base = (v4 ? options_.set_v4 : options_.set_v6) + s.infix;
    lookups.push_back({base, address});
    if (!v4) lookups.push_back({base + "_64", address.Masked(kSlash64)});
    lookups.push_back({base + "_net", address});
  }
  for (const auto& [set, key] : lookups) {
    Status s = Run(fmt::format("get element {} {} {} {{ {} }}", options_.family, options_.table,
                               set, key.ToString()));
    if (s.ok()) return true;
    if (s.code() != Status::Code::kNotFound) return s;
  }
  return false;
}

Result<bool> NftablesBlocker::Check(const ActionRecord& action) {
  auto prefix = BanPrefix(action);
  if (!prefix.ok()) return prefix.status();
  if (options_.dry_run) return true;  // nothing was put in place, nothing to repair
  auto scope = ResolveScope(PortsText(action));
  if (!scope.ok()) return scope.status();
  MXWARD_RETURN_IF_ERROR(EnsureTable(nullptr));
  return IsBanned(prefix->address(), *scope);
}

void NftablesBlocker::Stop() {
  // The table and its bans stay: they expire in the kernel on their own.
  StopAudits();
  if (audit_ctx_) nft_ctx_free(audit_ctx_);
  audit_ctx_ = nullptr;
  audit_store_.reset();
  network_bans_.clear();
  network_bans_loaded_ = false;
  if (ctx_) nft_ctx_free(ctx_);
  ctx_ = nullptr;
  if (watch_ctx_) nft_ctx_free(watch_ctx_);
  watch_ctx_ = nullptr;
  store_.reset();
}

std::optional<NftablesOptions> KernelNftablesOptions(const Config& config) {
  if (!config.document["nftables"].as_table() || config.dry_run) return std::nullopt;
  std::vector<Diagnostic> ignored;
  auto options = NftablesOptions::FromConfig(config, &ignored);
  if (!options.ok() || !options->enabled || options->dry_run || !HasCapNetAdmin()) {
    return std::nullopt;
  }
  return *std::move(options);
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
