#include "actions/nftables/kernel_ban_audit.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "actions/nftables/wide_address.h"

namespace mxward {

namespace {

// One set of the listing: its single elements and its ranges (an interval set lists a prefix as
// {"prefix": ...}, a range as {"range": [...]}, a one-address range as a plain string).
struct ListedSet {
  bool interval = false;
  std::unordered_set<IpAddress> addresses;
  std::vector<std::pair<Wide, Wide>> ranges;  // sorted by first address before use
};

bool ParseRange(const nlohmann::json& value, bool* v4, std::pair<Wide, Wide>* out) {
  IpAddress a, b;
  if (value.is_string()) {
    if (!IpAddress::Parse(value.get_ref<const std::string&>(), &a)) return false;
    *v4 = a.is_v4();
    *out = {ToWide(a), ToWide(a)};
    return true;
  }
  if (!value.is_object()) return false;
  if (const auto p = value.find("prefix"); p != value.end() && p->is_object()) {
    const auto addr = p->find("addr");
    const auto len = p->find("len");
    if (addr == p->end() || !addr->is_string() || len == p->end() || !len->is_number_integer() ||
        !IpAddress::Parse(addr->get_ref<const std::string&>(), &a)) {
      return false;
    }
    const IpPrefix prefix(a, len->get<int>());
    *v4 = a.is_v4();
    *out = {ToWide(prefix.address()), LastOf(prefix)};
    return true;
  }
  if (const auto r = value.find("range"); r != value.end() && r->is_array() && r->size() == 2) {
    if (!(*r)[0].is_string() || !(*r)[1].is_string() ||
        !IpAddress::Parse((*r)[0].get_ref<const std::string&>(), &a) ||
        !IpAddress::Parse((*r)[1].get_ref<const std::string&>(), &b)) {
      return false;
    }
    *v4 = a.is_v4();
    *out = {ToWide(a), ToWide(b)};
    return true;
  }
  return false;
}

// Whether the sorted `ranges` cover every address of [first, last].
bool Covers(const std::vector<std::pair<Wide, Wide>>& ranges, Wide first, const Wide& last,
            bool v4) {
  Wide cursor = first;
  while (true) {
    // The last range starting at or before the cursor.
    auto it = std::upper_bound(ranges.begin(), ranges.end(), cursor,
                               [](const Wide& w, const auto& r) { return w < r.first; });
    if (it == ranges.begin()) return false;
    --it;
    if (it->second < cursor) return false;
    if (!(it->second < last)) return true;
    if (!Next(it->second, v4, &cursor)) return true;
  }
}

}  // namespace

Result<MissingBans> FindMissingBans(const std::vector<BanRecord>& bans, std::string_view listing,
                                    const SetOfBan& set_of, UnixMicros now) {
  const nlohmann::json doc = nlohmann::json::parse(listing, nullptr, /*allow_exceptions=*/false);
  const auto items = doc.is_object() ? doc.find("nftables") : doc.end();
  if (items == doc.end() || !items->is_array()) {
    return Status::InvalidArgument("nftables: cannot read the table listing (not nft's JSON)");
  }
  std::unordered_map<std::string, ListedSet> sets;
  for (const nlohmann::json& item : *items) {
    if (!item.is_object() || item.size() != 1 || item.begin().key() != "set") continue;
    const nlohmann::json& body = item.begin().value();
    const auto name = body.find("name");
    if (name == body.end() || !name->is_string()) continue;
    ListedSet& set = sets[name->get<std::string>()];
    if (const auto flags = body.find("flags"); flags != body.end() && flags->is_array()) {
      set.interval = std::count(flags->begin(), flags->end(), "interval") > 0;
    }
    const auto elements = body.find("elem");
    if (elements == body.end() || !elements->is_array()) continue;
    for (const nlohmann::json& e : *elements) {
      // {"elem": {"val": V, "timeout": .., "expires": ..}} when the element has a timeout, else V.
      const nlohmann::json* value = &e;
      if (e.is_object()) {
        if (const auto wrapped = e.find("elem"); wrapped != e.end() && wrapped->is_object()) {
          const auto val = wrapped->find("val");
          if (val == wrapped->end()) continue;
          value = &*val;
        }
      }
      if (!set.interval) {
        IpAddress a;
        if (value->is_string() && IpAddress::Parse(value->get_ref<const std::string&>(), &a)) {
          set.addresses.insert(a);
        }
        continue;
      }
      bool v4 = false;
      std::pair<Wide, Wide> range;
      if (ParseRange(*value, &v4, &range)) set.ranges.push_back(range);
    }
  }
  for (auto& [name, set] : sets) std::sort(set.ranges.begin(), set.ranges.end());

  MissingBans out;
  out.store_read_at = now;
  for (const BanRecord& b : bans) {
    if (b.until != 0 && b.until - now < kSoonSeconds * kMicrosPerSecond) continue;
    IpPrefix prefix;
    if (!IpPrefix::Parse(b.prefix, &prefix)) continue;
    const std::string name = set_of(b.ports, prefix);
    const auto set = name.empty() ? sets.end() : sets.find(name);
    if (set == sets.end()) continue;
    ++out.compared;
    const bool v4 = prefix.address().is_v4();
    if (set->second.interval) {
      if (!Covers(set->second.ranges, ToWide(prefix.address()), LastOf(prefix), v4)) {
        out.nets.insert({b.ports, v4 ? 4 : 6});
      }
    } else if (!set->second.addresses.count(prefix.address())) {
      const std::int64_t timeout_s =
          b.until == 0 ? 0 : (b.until - now + kMicrosPerSecond - 1) / kMicrosPerSecond;
      out.hosts.push_back({prefix, timeout_s, b.ports});
    }
  }
  return out;
}

MissingBans ConfirmedMissingBans(MissingBans first, const MissingBans& second) {
  std::set<std::pair<std::string, std::string>> again;
  for (const NftBan& b : second.hosts) again.insert({b.scope, b.prefix.ToString()});
  std::erase_if(first.hosts, [&](const NftBan& b) {
    return !again.count({b.scope, b.prefix.ToString()});
  });
  std::erase_if(first.nets, [&](const auto& net) { return !second.nets.count(net); });
  return first;
}

}  // namespace mxward
