// KernelSetElements: the elements of one of mxward's nftables sets as the kernel has them
// ("192.0.2.7", "198.51.100.0/24", "10.0.0.0-10.0.4.255", "2001:db8::1"), each with its remaining
// timeout in seconds (0 when it has none), read with `nft -j list set`. Tests compare these with
// what mxward meant to ban; the one JSON walk lives here so every test reads the kernel the same
// way.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "support/subprocess.h"

namespace mxward::testing {

// Empty when the set (or the table) does not exist; *exists says which, when given.
inline std::map<std::string, std::int64_t> KernelSetElements(const std::string& set,
                                                             bool* exists = nullptr,
                                                             const std::string& table = "mxward") {
  const auto r = RunCommand({"nft", "-j", "list", "set", "inet", table, set});
  if (exists) *exists = r.exit_code == 0;
  std::map<std::string, std::int64_t> out;
  if (r.exit_code != 0) return out;
  const auto doc = nlohmann::json::parse(r.out, nullptr, false);
  if (doc.is_discarded()) return out;
  for (const auto& item : doc["nftables"]) {
    if (!item.contains("set")) continue;
    for (const auto& e : item["set"].value("elem", nlohmann::json::array())) {
      const nlohmann::json* val = &e;
      std::int64_t timeout = 0;
      if (e.is_object() && e.contains("elem")) {
        timeout = e["elem"].value("timeout", 0);
        val = &e["elem"]["val"];
      }
      if (val->is_string()) {
        out[val->get<std::string>()] = timeout;
      } else if (val->is_object() && val->contains("prefix")) {
        const auto& p = (*val)["prefix"];
        out[p["addr"].get<std::string>() + "/" + std::to_string(p["len"].get<int>())] = timeout;
      } else if (val->is_object() && val->contains("range")) {
        const auto& r = (*val)["range"];
        out[r[0].get<std::string>() + "-" + r[1].get<std::string>()] = timeout;
      }
    }
  }
  return out;
}

// One dump of a large hash set is not a snapshot of it: the dump spans many netlink messages, each
// resuming the walk of the kernel's hash table by position, and the kernel grows that table in
// the background after a bulk insert, so a dump that crosses a resize skips some elements and
// repeats others (CI saw 98,413 of 100,000 right after a restore). A test that must see every
// element of a set it has just filled reads it up to `listings` times and keeps what any listing
// showed (the first timeout seen), stopping once it has `expected`. Only for sets nothing removes
// elements from meanwhile: then the union is what the kernel holds. *listed: how many it took.
inline std::map<std::string, std::int64_t> KernelSetElementsUnion(const std::string& set,
                                                                  std::size_t expected,
                                                                  int listings = 5,
                                                                  int* listed = nullptr) {
  std::map<std::string, std::int64_t> out;
  int n = 0;
  while (n < listings && out.size() < expected) {
    ++n;
    out.merge(KernelSetElements(set));
  }
  if (listed) *listed = n;
  return out;
}

// The same, addresses only.
inline std::set<std::string> KernelSetAddresses(const std::string& set) {
  std::set<std::string> out;
  for (const auto& [address, timeout] : KernelSetElements(set)) out.insert(address);
  return out;
}

}  // namespace mxward::testing
