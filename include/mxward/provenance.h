// Provenance: which users may write the lines of each program, and the verdict on one line.
//
// The program a line claims (syslog tag, SYSLOG_IDENTIFIER) picks its parser, so whoever may
// claim "postfix/smtpd" may get addresses banned and accounts suspended. Where the transport
// knows the writer (LineOrigin: journald's _UID, a unix socket's peer credentials, or the uid a
// trusted forwarder states in the line), the writer's uid is checked against the users listed
// for the parser the line's program picks ([provenance] of mxward.toml, keyed by parser name as
// in rules.d/parsers, so the table covers exactly the programs that can produce events):
//
//   [provenance]
//   enforce = true                # false: count and log mismatches, drop nothing
//   forwarders = ["root"]         # peers whose stated writer is believed (plus root, always)
//   [provenance.writers]          # replaces the default list of each parser named
//   postfix = ["postfix"]
//   dovecot = ["dovecot", "dovenull"]
//
// Root always passes: root can write any log anyway (and Postfix's master, Dovecot's log
// process run as root). A forwarder (a unix-socket peer in `forwarders`, root by default) states
// the writer in an RFC 5424 structured-data element its template writes before MSG,
// `[mxward@32473 uid="110" pid="1234"]` (32473: RFC 5424's example enterprise number, registered
// to no one), and that element is believed only as the FIRST element of the header's SD, only
// from such a peer: text in MSG, or the same element over udp/tcp/tls/files, is never believed.
//
// Verdicts: kVerified (the writer is known and listed for the parser, or root), kForged (known
// and not listed: counted and dropped when enforce), kUnverified (no writer known: udp, tcp,
// tls, files, a forwarder line without the element; or a program whose parser has no entry).
//
// A ProvenancePolicy is immutable once resolved; the pipeline's thread reads it. Resolve() reads
// the user database (getpwnam_r), so it runs at start and at reload, never per line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mxward/config.h"
#include "mxward/diagnostic.h"
#include "mxward/line_origin.h"
#include "mxward/status.h"

namespace mxward {

inline constexpr std::string_view kProvenanceSdId = "mxward@32473";

struct ProvenanceSettings {
  bool enforce = true;
  std::vector<std::string> forwarders = {"root"};
  // Parser name -> user names allowed to write its lines (Debian's users by default).
  std::vector<std::pair<std::string, std::vector<std::string>>> writers;
  std::string source = "built-in defaults";  // where [provenance] is, for warnings
  // The parsers [provenance.writers] names, and whether `forwarders` was written: a user these
  // name that the host lacks is a warning; a default user the host lacks (the program is not
  // installed) is a note, and its parser allows root only.
  std::vector<std::string> configured;
  bool forwarders_configured = false;
};

// Debian 12's users: postfix -> postfix (its daemons run as mail_owner; master as root);
// dovecot -> dovecot, dovenull (Dovecot's log process, which writes every process's lines to
// syslog, runs as root: service log has user = ""); roundcube -> www-data; opendkim, opendmarc,
// amavis -> their own users; rspamd -> _rspamd; clamav -> clamav; policyd-spf and
// policyd-spf-perl -> policyd-spf, nobody (the users their Debian READMEs put in master.cf).
ProvenanceSettings DefaultProvenanceSettings();

// [provenance] of config.document, over the defaults. Unknown keys and wrong types are
// Diagnostics (file:line:col); the result is InvalidArgument then.
Status ReadProvenanceSettings(const Config& config, ProvenanceSettings* out,
                              std::vector<Diagnostic>* diagnostics);

struct ProvenanceVerdict {
  enum class Kind : std::uint8_t { kUnverified, kVerified, kForged };
  Kind kind = Kind::kUnverified;
  bool writer_known = false;
  std::uint32_t writer_uid = 0;
  bool via_forwarder = false;  // the writer is what a forwarder stated
  std::int64_t writer_pid = -1;
};

class ProvenancePolicy {
 public:
  // Nothing listed, nothing enforced: every line unverified unless root wrote it (tests, replay).
  ProvenancePolicy() = default;

  // Resolves every user name to its uid. A name this host does not have is left out (a parser
  // left with no user allows root only) and named once: in *warnings when mxward.toml names it
  // ("check" prints them, "serve" logs them), in *notes when it is a default.
  static ProvenancePolicy Resolve(const ProvenanceSettings& settings,
                                  std::vector<std::string>* warnings,
                                  std::vector<std::string>* notes = nullptr);

  // The verdict on a line whose program picks `parser` (empty: no parser takes the program),
  // that arrived with `origin` and whose RFC 5424 header had `structured_data` (may be empty).
  ProvenanceVerdict Judge(std::string_view parser, const LineOrigin& origin,
                          std::string_view structured_data) const;

  bool enforce() const { return enforce_; }
  bool IsForwarder(std::uint32_t uid) const;
  // The uids listed for parser (root not included), or nullptr when it has no entry.
  const std::vector<std::uint32_t>* Writers(std::string_view parser) const;

 private:
  bool enforce_ = true;
  std::vector<std::uint32_t> forwarders_;
  std::vector<std::pair<std::string, std::vector<std::uint32_t>>> writers_;
};

// The writer a forwarder stated: the first SD element of structured_data when its id is
// kProvenanceSdId and it has a decimal uid="..." (pid="..." optional). False otherwise.
bool ParseStatedWriter(std::string_view structured_data, std::uint32_t* uid, std::int64_t* pid);

}  // namespace mxward
