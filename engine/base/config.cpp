#include "mxward/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "engine/base/settings_reader.h"

namespace mxward {
namespace {

// [allow] own_addresses: the addresses of this host's interfaces, as host prefixes. A forged line
// naming the server's own public address must not make it ban itself (or a policy server refuse
// its own submissions); read at start and at each reload, so a DHCP change is picked up by SIGHUP.
void AddOwnAddresses(std::vector<IpPrefix>* allow) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return;  // then only the configured addresses: never fatal
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    const int family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    const void* raw =
        family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr)
            : static_cast<const void*>(
                  &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr);
    char text[INET6_ADDRSTRLEN];
    IpAddress a;
    if (inet_ntop(family, raw, text, sizeof text) == nullptr || !IpAddress::Parse(text, &a)) {
      continue;
    }
    const IpPrefix host(a, a.bits());
    const bool covered =
        std::any_of(allow->begin(), allow->end(), [&](const IpPrefix& p) { return p.Contains(a); });
    if (!covered) allow->push_back(host);
  }
  freeifaddrs(list);
}

}  // namespace

std::string Diagnostic::ToString() const {
  if (line > 0) return fmt::format("{}:{}:{}: error: {}", file, line, column, message);
  return fmt::format("{}: error: {}", file, message);
}

Diagnostic MakeDiagnostic(const std::string& file, const toml::source_region& where,
                          std::string message) {
  return Diagnostic{file, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column),
                    std::move(message)};
}

Config Config::Defaults() {
  Config c;
  IpPrefix p;
  IpPrefix::Parse("127.0.0.0/8", &p);
  c.allow_addresses.push_back(p);
  IpPrefix::Parse("::1", &p);
  c.allow_addresses.push_back(p);
  c.trusted_proxies = c.allow_addresses;  // loopback: a proxy on the webmail's own host
  return c;
}

void AllowOwnAddresses(Config* config) {
  if (config->allow_own_addresses) AddOwnAddresses(&config->allow_addresses);
}

Result<Config> Config::Load(const std::string& path, std::vector<Diagnostic>* diags) {
  Config c = Defaults();
  c.source = path;
  if (Status st = ParseTomlFile(path, &c.document, diags); !st.ok()) return st;
  const std::size_t before = diags->size();

  // A misspelt section ([stor]) would otherwise leave the daemon silently on defaults for it.
  SettingsReader top(c.document, "the top level", path, diags);
  top.CheckKnownKeys({"store", "rules", "allow", "dry_run", "clock", "control", "input", "metrics",
                      "dispatcher", "nftables", "postfixadmin", "webhook", "mail", "exec", "policy",
                      "cluster", "provenance", "engine"});
  top.Bool("dry_run", &c.dry_run);

  if (const toml::table* store = top.Table("store")) {
    SettingsReader r(*store, "[store]", path, diags);
    r.CheckKnownKeys({"path", "retention", "max_held_incidents"});
    r.String("path", &c.store_path);
    r.Duration("retention", &c.retention_seconds, /*seconds_ok=*/false);
    r.Int("max_held_incidents", 1, 10'000'000, &c.max_held_incidents);
  }
  if (const toml::table* rules = top.Table("rules")) {
    SettingsReader r(*rules, "[rules]", path, diags);
    r.CheckKnownKeys({"dirs", "trusted_proxies", "evidence", "local_domains",
                      "local_domains_from_postfixadmin"});
    r.Strings("dirs", &c.rule_dirs);
    std::string evidence = c.evidence_raw ? "raw" : "message";
    if (r.Choice("evidence", {"message", "raw"}, &evidence)) c.evidence_raw = evidence == "raw";
    r.Strings("local_domains", &c.local_domains);
    r.Bool("local_domains_from_postfixadmin", &c.local_domains_from_postfixadmin);
    std::vector<IpPrefix> proxies;
    if (r.AddressPrefixes("trusted_proxies", &proxies)) c.trusted_proxies = std::move(proxies);
  }
  if (const toml::table* allow = top.Table("allow")) {
    SettingsReader r(*allow, "[allow]", path, diags);
    r.CheckKnownKeys({"addresses", "users", "domains", "own_addresses"});
    std::vector<IpPrefix> addresses;
    if (r.AddressPrefixes("addresses", &addresses)) c.allow_addresses = std::move(addresses);
    r.Strings("users", &c.allow_users);
    r.Strings("domains", &c.allow_domains);
    r.Bool("own_addresses", &c.allow_own_addresses);
  }
  if (const toml::table* clock = top.Table("clock")) {
    SettingsReader r(*clock, "[clock]", path, diags);
    r.CheckKnownKeys({"max_skew", "max_age"});
    r.Duration("max_skew", &c.max_clock_skew_seconds);
    r.Duration("max_age", &c.max_event_age_seconds);
    if (c.max_event_age_seconds < 3600 && clock->contains("max_age")) {
      r.Error(*clock->get("max_age"),
              "[clock] max_age must be at least 1h: a restart or a slow relay delivers lines "
              "that old, and they must still count");
    }
  }
  if (const toml::table* engine = top.Table("engine")) {
    SettingsReader r(*engine, "[engine]", path, diags);
    r.CheckKnownKeys({"parse_threads"});
    if (const toml::node* n = engine->get("parse_threads")) {
      constexpr int kMaxParseThreads = 64;
      if (const auto* s = n->as_string(); s != nullptr && s->get() == "auto") {
        c.parse_threads = -1;
      } else if (const auto* i = n->as_integer();
                 i != nullptr && i->get() >= 0 && i->get() <= kMaxParseThreads) {
        c.parse_threads = static_cast<int>(i->get());
      } else {
        r.Error(*n, fmt::format("[engine] parse_threads must be \"auto\" or a number of threads "
                                "from 0 to {}",
                                kMaxParseThreads));
      }
    }
  }
  // [control] is read in full by ControlServerOptions::FromConfig; the socket is here because
  // the CLI needs it without the server.
  if (const toml::table* control = c.document["control"].as_table()) {
    SettingsReader r(*control, "[control]", path, diags);
    r.String("socket", &c.control_socket);
  }
  if (diags->size() > before) {
    return Status::InvalidArgument(fmt::format("{} error(s) in {}", diags->size() - before, path));
  }
  return c;
}

}  // namespace mxward
