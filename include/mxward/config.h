// Config: mxward.toml, loaded once at start (and on SIGHUP). Holds the settings every part shares
// and the parsed TOML document, from which each subsystem reads its own section ([[input]],
// [nftables], [postfixadmin], [webhook.NAME], [mail], [exec.NAME], [metrics], [control]) with its
// own FromConfig() function, so this header does not grow with every action type.
//
// Without a file, Config::Defaults() gives the embedded defaults: SQLite under /var/lib/mxward,
// rules from /etc/mxward/rules.d, syslog on 127.0.0.1:5514 (UDP and TCP).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "mxward/diagnostic.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"

namespace mxward {

struct Config {
  std::string source;  // the file it came from, empty for defaults
  std::string store_path = "/var/lib/mxward/mxward.db";
  std::int64_t retention_seconds = 90 * 86400;  // resolved incidents older than this are pruned
  // [store] max_held_incidents: incidents the daemon holds in memory while the store cannot be
  // written, before it drops new ones (incident_recorder.h; ~2 KB each with shed evidence).
  std::int64_t max_held_incidents = 50'000;
  std::vector<std::string> rule_dirs = {"/etc/mxward/rules.d"};  // playbooks; parsers/ inside
  // [rules] trusted_proxies: reverse proxies whose X-Forwarded-For / X-Real-IP name the client
  // in webmail lines (ParserPackOptions). Default loopback, set by Defaults().
  std::vector<IpPrefix> trusted_proxies;
  // [rules] evidence = "raw": incidents keep each evidence line as received (an RFC 5424 frame,
  // ...) instead of "host program[pid]: message" (the default, "message").
  bool evidence_raw = false;
  // [rules] local_domains: the mail domains this platform hosts (and their subdomains), for the
  // `{ local = true }` condition of the sender-authentication playbooks. Empty: they match nothing.
  std::vector<std::string> local_domains;
  // [rules] local_domains_from_postfixadmin: add PostfixAdmin's active domains (its `domain`
  // table, read through [postfixadmin]) to local_domains when the playbooks are loaded.
  bool local_domains_from_postfixadmin = false;
  std::vector<IpPrefix> allow_addresses;  // global allowlist: never acted on
  std::vector<std::string> allow_users;
  std::vector<std::string> allow_domains;
  bool allow_own_addresses = true;  // serve adds the host's interface addresses (AllowOwnAddresses)
  bool dry_run = false;             // global: record actions but run none
  std::string control_socket = "/run/mxward/control.sock";
  // [clock]: how far a live line's own time is believed. Ahead of its arrival by more than
  // max_skew: counted at its arrival time. Older than max_age: skipped. `replay` believes it.
  std::int64_t max_clock_skew_seconds = 300;
  std::int64_t max_event_age_seconds = 7 * 86400;
  // [engine] parse_threads: worker threads for the stateless stage of live lines in `serve`
  // (syslog header, routing, pattern match: parallel_lines.h). 0 (the default): none, the io
  // thread does it all; -1 is "auto": the cores this process may run on minus one, at most 3.
  // Off by default: on two cores a worker made serve slower and cost +50-70% CPU time
  // (docs/benchmarks.md, "serve with parse workers"). Applied at start only.
  int parse_threads = 0;
  toml::table document;  // the whole file, for the subsystems' own sections

  // The defaults, with loopback as the only allowlisted addresses (the same on every host).
  static Config Defaults();
  // Reads and validates the core settings. Errors are Diagnostics with file:line:col.
  static Result<Config> Load(const std::string& path, std::vector<Diagnostic>* diagnostics);
};

// [allow] own_addresses, for the daemon: when config->allow_own_addresses, adds this host's
// interface addresses to allow_addresses (at start and at each reload, so SIGHUP picks up a
// changed address). Not in Load: replay, explain and the other commands read logs of any host.
void AllowOwnAddresses(Config* config);

// Location of a TOML node as a Diagnostic prefix.
Diagnostic MakeDiagnostic(const std::string& file, const toml::source_region& where,
                          std::string message);

}  // namespace mxward
