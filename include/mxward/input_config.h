// InputSpec: one configured input (a syslog listener or a followed file), read from the
// `[[input]]` tables of mxward.toml by ParseInputSpecs().
//
//   [[input]]
//   type = "tcp"                    # "udp" | "tcp" | "unix-dgram" | "unix-stream" | "file"
//   address = "127.0.0.1:5514"      # udp/tcp: "host:port", "[v6]:port"; port 0 = any free port
//   name = "rsyslog"                # optional metrics label; default "<type>:<address|path>"
//   max_message_size = 65536        # bytes; longer stream messages close the connection
//   max_connections = 1024          # tcp / unix-stream / tls: past it, new ones wait unaccepted
//   max_connections_per_peer = 32   # per source address (tcp/tls, loopback exempt) or uid
//                                   # (unix-stream, root exempt); 0 = no per-peer cap
//   idle_timeout = "10m"            # stream: closed when no complete message came for so long
//   receive_buffer = 8388608        # udp / unix-dgram SO_RCVBUF (bytes)
//   trusted = false                 # true: lines whose writer is unknown count as verified
//                                   # evidence (account-level actions); see provenance.h
//
//   [[input]]
//   type = "unix-dgram"             # or "unix-stream"
//   path = "/run/mxward/log.sock"
//   mode = "0660"                   # octal string
//   owner = "root"                  # user and group names (applied with chown at start)
//   group = "adm"
//
//   [[input]]
//   type = "udp"                    # or "tcp"
//   allowed_senders = ["192.0.2.0/24", "2001:db8::7"]   # who may send; others refused, counted
//
//   [[input]]
//   type = "tls"                    # RFC 5425 (TLS 1.2/1.3); client certificate required
//   address = "0.0.0.0:6514"        # the default
//   cert_file = "/etc/mxward/tls/server.crt"   # PEM chain, re-read on SIGHUP
//   key_file = "/etc/mxward/tls/server.key"
//   ca_file = "/etc/mxward/tls/ca.crt"         # client certificates must chain to this
//   allowed_peers = ["mx1.example.net", "*.mx.example.net"]   # SAN dNSName (CN fallback)
//   allowed_fingerprints = ["sha256:AB:CD:..."]                # or pinned certificates
//
//   [[input]]
//   type = "journal"                # the systemd journal (journal_follower.h)
//   units = ["@default", "postfix@out.service"]   # _SYSTEMD_UNIT; "@default": Debian's list
//   slices = ["@default"]           # _SYSTEMD_SLICE
//   identifiers = ["@default", "myfilter"]        # SYSLOG_IDENTIFIER
//   journal_dirs = ["/var/log/journal/remote"]    # default: the local system journal
//   start_at = "end"                # first run only: "end", "beginning" or "-2h" (back from now)
//
//   [[input]]
//   type = "file"
//   path = "/var/log/mail.log"
//   start_at = "end"                # or "beginning"; used when no saved position applies
//   state_file = "/var/lib/mxward/follow-mail.log.pos"   # default: next to the store
//   format = "syslog"               # or "dovecot-log" (Dovecot's log_path), "roundcube-log"
//
// Without any [[input]] table the inputs are UDP and TCP on 127.0.0.1:5514 (DefaultInputSpecs),
// plus a journal input with the defaults on a host that has a systemd journal and no rsyslog
// (Debian 12's default install, where Postfix and Dovecot log only to the journal).
// Errors are Diagnostics with file:line:col; unknown keys are errors (a typo must not silently
// leave an input on its default).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/config.h"
#include "mxward/ip_address.h"
#include "mxward/journal_follower.h"
#include "mxward/log_format.h"
#include "mxward/status.h"

namespace mxward {

enum class InputType { kUdp, kTcp, kUnixDgram, kUnixStream, kFile, kTls, kJournal };

std::string_view InputTypeName(InputType type);  // "udp", "tcp", "unix-dgram", ...

// A `tls` input's credentials and who may use it. A client must present a certificate that
// chains to ca_file (and is within its validity) AND either carries one of allowed_peers as a
// SAN dNSName (the CN only when the certificate has no dNSName; "*.example.net" matches exactly
// one left-most label) or has one of allowed_fingerprints (SHA-256 of the DER certificate). At
// least one of the two lists is required: a CA alone authorises no one.
struct TlsSettings {
  std::string cert_file, key_file, ca_file;
  std::vector<std::string> allowed_peers;         // lower-case
  std::vector<std::string> allowed_fingerprints;  // 64 lower-case hex digits, no colons
  int handshake_timeout_seconds = 10;
};

// A `journal` input's matches and start. units/slices/identifiers are the lists after "@default"
// was expanded; empty lists match nothing of that field (all three empty is refused).
struct JournalSettings {
  std::vector<std::string> units, slices, identifiers;
  std::vector<std::string> dirs;  // empty: the local system journal
  JournalStart start_at = JournalStart::kEnd;
  std::int64_t start_back_seconds = 0;
};

struct InputSpec {
  InputType type = InputType::kUdp;
  std::string name;  // label for metrics and logs; printable, no spaces (checked)
  // udp / tcp: the host as written (an IP address literal, or "localhost") and the port.
  std::string host = "127.0.0.1";
  std::uint16_t port = 5514;
  std::string path;                   // unix sockets and files
  std::optional<std::uint32_t> mode;  // unix sockets: chmod after bind
  std::string owner, group;           // unix sockets: chown after bind (names)
  std::size_t max_message_size = 64 * 1024;
  // Stream inputs. At max_connections the listener stops accepting (new connections wait in the
  // kernel's backlog, nothing they send is lost) until one closes. max_connections_per_peer caps
  // one source address (tcp/tls; loopback addresses are every local user at once, so they are
  // exempt: provenance needs a unix socket) or one uid (unix-stream, SO_PEERCRED; root exempt);
  // a connection over it is closed at once and counted. idle_timeout closes a connection that
  // delivered no complete message for that long (a slowloris holds a slot otherwise); 0 = never.
  std::size_t max_connections = 1024;
  std::size_t max_connections_per_peer = 32;
  std::int64_t idle_timeout_seconds = 600;
  int receive_buffer = 8 * 1024 * 1024;   // SO_RCVBUF for datagram inputs (SO_RCVBUFFORCE as root)
  bool start_at_end = true;               // file
  std::string state_file;                 // file: where the read position is kept
  LogFormat format = LogFormat::kSyslog;  // file: how its lines are written (log_format.h)
  // udp / tcp / tls: the source addresses allowed to send; empty = anyone who can reach the
  // socket. Others' datagrams and connections are refused and counted (InputCounters::refused).
  std::vector<IpPrefix> allowed_senders;
  // Lines nobody vouches for (udp, tcp, tls, file, a forwarder that states no writer) are
  // unverified evidence: they may ban an address but never take an account-level action. true
  // makes them verified: the administrator vouches for every writer who can reach the input. A
  // writer the provenance policy knows and refuses is refused whatever this says.
  bool trusted = false;
  TlsSettings tls;          // tls
  JournalSettings journal;  // journal
  std::string source;       // "mxward.toml:12:1": where the [[input]] table is (for warnings)

  // "udp 127.0.0.1:5514", "unix-stream /run/mxward/log.sock", "file /var/log/mail.log".
  std::string Describe() const;
};

// UDP and TCP on 127.0.0.1:5514, and the journal input when DefaultToJournal().
std::vector<InputSpec> DefaultInputSpecs();
// A journal input with Debian's matches, starting at the end on a first run.
InputSpec DefaultJournalInputSpec();
// True when this host has a systemd journal (/run/systemd/journal or /var/log/journal) and no
// rsyslog (/usr/sbin/rsyslogd): nothing else would bring the mail logs to mxward.
// MXWARD_DEFAULT_JOURNAL=0/1 in the environment overrides the check (tests, packaging).
bool DefaultToJournal();

// The inputs of config.document's [[input]] array, or the defaults when there is none. File
// inputs without state_file get one in the store's directory. Errors are appended to
// *diagnostics and the result is InvalidArgument.
Result<std::vector<InputSpec>> ParseInputSpecs(const Config& config,
                                               std::vector<Diagnostic>* diagnostics);

// Problems that are not errors, one "file:line:col: warning: ..." string each: a udp or tcp
// input on a non-loopback address without allowed_senders accepts forged lines from anyone who
// can reach it. `mxward check` prints them; `serve` logs them at start.
std::vector<std::string> InputWarnings(const std::vector<InputSpec>& specs);

// Splits "127.0.0.1:5514", "[::1]:5514", "localhost:514" into host and port. The host must be an
// IP literal or "localhost"; no DNS at start-up.
Status ParseHostPort(std::string_view text, std::string* host, std::uint16_t* port);

}  // namespace mxward
