#include "mxward/input_config.h"

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "engine/base/parse_number.h"
#include "engine/base/settings_reader.h"
#include "mxward/ip_address.h"
#include "mxward/metrics_registry.h"

namespace mxward {

std::string_view InputTypeName(InputType type) {
  switch (type) {
    case InputType::kUdp:
      return "udp";
    case InputType::kTcp:
      return "tcp";
    case InputType::kUnixDgram:
      return "unix-dgram";
    case InputType::kUnixStream:
      return "unix-stream";
    case InputType::kFile:
      return "file";
    case InputType::kTls:
      return "tls";
    case InputType::kJournal:
      return "journal";
  }
  return "?";
}

std::string InputSpec::Describe() const {
  if (type == InputType::kUdp || type == InputType::kTcp || type == InputType::kTls) {
    const bool v6 = host.find(':') != std::string::npos;
    return fmt::format("{} {}{}{}:{}", InputTypeName(type), v6 ? "[" : "", host, v6 ? "]" : "",
                       port);
  }
  if (type == InputType::kJournal) {
    if (journal.dirs.empty()) return "journal (local)";
    std::string dirs;
    for (const auto& d : journal.dirs) dirs += (dirs.empty() ? "" : ",") + d;
    return "journal " + dirs;
  }
  return fmt::format("{} {}", InputTypeName(type), path);
}

std::vector<InputSpec> DefaultInputSpecs() {
  InputSpec udp;
  udp.type = InputType::kUdp;
  udp.name = "udp:127.0.0.1:5514";
  InputSpec tcp;
  tcp.type = InputType::kTcp;
  tcp.name = "tcp:127.0.0.1:5514";
  if (!DefaultToJournal()) return {udp, tcp};
  return {udp, tcp, DefaultJournalInputSpec()};
}

InputSpec DefaultJournalInputSpec() {
  InputSpec j;
  j.type = InputType::kJournal;
  j.name = "journal";
  j.journal.units = DefaultJournalUnits();
  j.journal.slices = DefaultJournalSlices();
  j.journal.identifiers = DefaultJournalIdentifiers();
  j.source = "built-in default (no rsyslog on this host)";
  return j;
}

bool DefaultToJournal() {
  if (const char* env = std::getenv("MXWARD_DEFAULT_JOURNAL"); env != nullptr && *env != '\0') {
    return std::string_view(env) != "0";
  }
  std::error_code ec;
  const bool journal = std::filesystem::is_directory("/run/systemd/journal", ec) ||
                       std::filesystem::is_directory("/var/log/journal", ec);
  return journal && !std::filesystem::exists("/usr/sbin/rsyslogd", ec);
}

std::vector<std::string> InputWarnings(const std::vector<InputSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& s : specs) {
    if (s.type == InputType::kJournal) {
      for (const auto& dir : s.journal.dirs) {
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec)) {
          out.push_back(fmt::format(
              "{}: warning: [[input]] journal_dirs: '{}' is not a directory (yet); the input "
              "reads nothing from it until it exists and mxward is restarted",
              s.source.empty() ? "mxward.toml" : s.source, dir));
        }
      }
      continue;
    }
    if (s.type != InputType::kUdp && s.type != InputType::kTcp) continue;
    if (!s.allowed_senders.empty()) continue;
    IpAddress ip;
    if (IpAddress::Parse(s.host, &ip) && ip.IsLoopback()) continue;
    out.push_back(fmt::format(
        "{}: warning: [[input]] {} listens on a non-loopback address and has no allowed_senders: "
        "anyone who can reach it can send forged lines and get any address banned; list the "
        "senders (allowed_senders = [\"192.0.2.10\"]) or use a tls input",
        s.source.empty() ? "mxward.toml" : s.source, s.Describe()));
  }
  return out;
}

Status ParseHostPort(std::string_view text, std::string* host, std::uint16_t* port) {
  std::string_view h, p;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::InvalidArgument(
          fmt::format("'{}': expected [IPv6]:port, like \"[::1]:5514\"", text));
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) {
      return Status::InvalidArgument(fmt::format(
          "'{}': expected host:port, like \"127.0.0.1:5514\" (IPv6 in brackets: \"[::1]:5514\")",
          text));
    }
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  IpAddress ip;
  if (h != "localhost" && !IpAddress::Parse(h, &ip)) {
    return Status::InvalidArgument(fmt::format(
        "'{}': '{}' is not an IP address (names are not resolved; use 127.0.0.1, ::1, 0.0.0.0 "
        "or ::)",
        text, h));
  }
  const auto value = ParseNumber<unsigned>(p);
  if (!value || *value > 65535) {
    return Status::InvalidArgument(fmt::format("'{}': port must be 0..65535", text));
  }
  *host = h == "localhost" ? "127.0.0.1" : std::string(h);
  *port = static_cast<std::uint16_t>(*value);
  return Status::Ok();
}

namespace {

// "/var/log/mail.log" -> "var_log_mail.log": a file name for the position of a followed file.
std::string StateFileName(const std::string& path) {
  std::string out = "follow-";
  for (char c : path) {
    if (c == '/') {
      if (out.size() > 7) out += '_';
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '-' || c == '_') {
      out += c;
    } else {
      out += '_';
    }
  }
  return out + ".pos";
}

class SpecReader {
 public:
  SpecReader(const std::string& file, std::vector<Diagnostic>* diags) : file_(file), d_(diags) {}

  void Error(const toml::node& n, std::string msg) {
    d_->push_back(MakeDiagnostic(file_, n.source(), std::move(msg)));
  }
  bool failed() const { return failed_; }

  std::optional<InputSpec> Read(const toml::table& t, const std::string& store_path) {
    static constexpr std::string_view kKnown[] = {"type",
                                                  "address",
                                                  "name",
                                                  "path",
                                                  "mode",
                                                  "owner",
                                                  "group",
                                                  "max_message_size",
                                                  "max_connections",
                                                  "max_connections_per_peer",
                                                  "idle_timeout",
                                                  "receive_buffer",
                                                  "start_at",
                                                  "state_file",
                                                  "format",
                                                  "allowed_senders",
                                                  "cert_file",
                                                  "key_file",
                                                  "ca_file",
                                                  "allowed_peers",
                                                  "allowed_fingerprints",
                                                  "handshake_timeout",
                                                  "units",
                                                  "slices",
                                                  "identifiers",
                                                  "journal_dirs",
                                                  "trusted"};
    SettingsReader r(t, "[[input]]", file_, d_);
    r.CheckKnownKeys(kKnown);
    bool ok = r.ok();
    InputSpec s;
    const toml::node* type = t.get("type");
    if (type == nullptr) {
      Error(t,
            "[[input]]: 'type' is required (udp, tcp, tls, unix-dgram, unix-stream, file or "
            "journal)");
      failed_ = true;
      return std::nullopt;
    }
    std::string type_name;
    if (!r.String("type", &type_name)) {
      failed_ = true;
      return std::nullopt;
    }
    if (type_name == "udp") {
      s.type = InputType::kUdp;
    } else if (type_name == "tcp") {
      s.type = InputType::kTcp;
    } else if (type_name == "unix-dgram") {
      s.type = InputType::kUnixDgram;
    } else if (type_name == "unix-stream") {
      s.type = InputType::kUnixStream;
    } else if (type_name == "file") {
      s.type = InputType::kFile;
    } else if (type_name == "journal") {
      s.type = InputType::kJournal;
    } else if (type_name == "tls") {
      s.type = InputType::kTls;
      s.host = "0.0.0.0";
      s.port = 6514;
    } else {
      Error(*type, fmt::format("[[input]]: unknown type '{}' (use udp, tcp, tls, unix-dgram, "
                               "unix-stream, file or journal)",
                               type_name));
      failed_ = true;
      return std::nullopt;
    }
    const bool net =
        s.type == InputType::kUdp || s.type == InputType::kTcp || s.type == InputType::kTls;
    const bool unix_socket = s.type == InputType::kUnixDgram || s.type == InputType::kUnixStream;
    const bool journal = s.type == InputType::kJournal;

    auto str = [&](const char* key, std::string* out) -> const toml::node* {
      if (r.table().contains(key) && !r.String(key, out)) ok = false;
      return t.get(key);
    };
    auto integer = [&](const char* key, std::int64_t lo, std::int64_t hi, std::int64_t* out) {
      if (r.table().contains(key) && !r.Int(key, lo, hi, out)) ok = false;
    };
    auto only_for = [&](const char* key, bool allowed, std::string_view which) {
      if (const toml::node* n = t.get(key); n != nullptr && !allowed) {
        Error(*n, fmt::format("[[input]]: '{}' applies only to {} inputs, not {}", key, which,
                              type_name));
        ok = false;
      }
    };
    only_for("address", net, "udp/tcp/tls");
    only_for("path", !net && !journal, "unix-dgram/unix-stream/file");
    only_for("mode", unix_socket, "unix socket");
    only_for("owner", unix_socket, "unix socket");
    only_for("group", unix_socket, "unix socket");
    only_for("start_at", s.type == InputType::kFile || journal, "file and journal");
    for (const char* key : {"units", "slices", "identifiers", "journal_dirs"}) {
      only_for(key, journal, "journal");
    }
    only_for("state_file", s.type == InputType::kFile, "file");
    only_for("format", s.type == InputType::kFile, "file");
    const bool stream =
        s.type == InputType::kTcp || s.type == InputType::kUnixStream || s.type == InputType::kTls;
    for (const char* key : {"max_connections", "max_connections_per_peer", "idle_timeout"}) {
      only_for(key, stream, "stream");
    }
    only_for("receive_buffer", s.type == InputType::kUdp || s.type == InputType::kUnixDgram,
             "datagram");
    if (r.table().contains("trusted") && !r.Bool("trusted", &s.trusted)) ok = false;

    std::string address;
    if (net) {
      const toml::node* n = str("address", &address);
      if (n != nullptr && ok) {
        Status st = ParseHostPort(address, &s.host, &s.port);
        if (!st.ok()) {
          Error(*n, "[[input]]: address " + st.message());
          ok = false;
        }
      }
    } else if (!journal) {
      const toml::node* n = str("path", &s.path);
      if (n == nullptr) {
        Error(t, fmt::format("[[input]]: type '{}' needs 'path'", type_name));
        ok = false;
      } else if (ok && (s.path.empty() || s.path.front() != '/')) {
        Error(*n, "[[input]]: 'path' must be absolute");
        ok = false;
      } else if (ok && unix_socket && s.path.size() >= 108) {
        Error(*n, "[[input]]: a unix socket path must be shorter than 108 bytes");
        ok = false;
      }
    }
    std::string mode;
    if (const toml::node* n = str("mode", &mode); n != nullptr && ok) {
      const auto m = ParseNumber<std::uint32_t>(mode, 8);
      if (!m || *m > 07777) {
        Error(*n, fmt::format("[[input]]: mode '{}' must be an octal string like \"0660\"", mode));
        ok = false;
      } else {
        s.mode = *m;
      }
    }
    str("owner", &s.owner);
    str("group", &s.group);
    std::int64_t v = static_cast<std::int64_t>(s.max_message_size);
    integer("max_message_size", 64, 64 * 1024 * 1024, &v);
    s.max_message_size = static_cast<std::size_t>(v);
    v = static_cast<std::int64_t>(s.max_connections);
    integer("max_connections", 1, 1'000'000, &v);
    s.max_connections = static_cast<std::size_t>(v);
    v = static_cast<std::int64_t>(s.max_connections_per_peer);
    integer("max_connections_per_peer", 0, 1'000'000, &v);
    s.max_connections_per_peer = static_cast<std::size_t>(v);
    if (t.contains("idle_timeout") && !r.Duration("idle_timeout", &s.idle_timeout_seconds)) {
      ok = false;
    }
    v = s.receive_buffer;
    integer("receive_buffer", 4096, 1 << 30, &v);
    s.receive_buffer = static_cast<int>(v);
    std::string start_at;
    if (const toml::node* n = str("start_at", &start_at); n != nullptr && ok) {
      if (start_at == "end") {
        s.start_at_end = true;
        s.journal.start_at = JournalStart::kEnd;
      } else if (start_at == "beginning") {
        s.start_at_end = false;
        s.journal.start_at = JournalStart::kBeginning;
      } else if (journal && start_at.starts_with('-') &&
                 ParseDurationSeconds(std::string_view(start_at).substr(1)).ok() &&
                 *ParseDurationSeconds(std::string_view(start_at).substr(1)) > 0) {
        s.journal.start_at = JournalStart::kBack;
        s.journal.start_back_seconds = *ParseDurationSeconds(std::string_view(start_at).substr(1));
      } else {
        Error(*n, fmt::format("[[input]]: start_at '{}' must be \"end\" or \"beginning\"{}",
                              start_at, journal ? " or a time back from now like \"-2h\"" : ""));
        ok = false;
      }
    }
    str("state_file", &s.state_file);
    std::string format;
    if (const toml::node* n = str("format", &format); n != nullptr && ok) {
      if (!ParseLogFormat(format, &s.format)) {
        Error(*n,
              fmt::format("[[input]]: format '{}' must be \"syslog\", \"dovecot-log\" (Dovecot's "
                          "own log_path file), \"roundcube-log\" (Roundcube's logs/*.log) or "
                          "\"clamd-log\" (clamd's LogFile)",
                          format));
        ok = false;
      }
    }
    if (s.type == InputType::kFile && s.state_file.empty() && !s.path.empty()) {
      std::filesystem::path dir = std::filesystem::path(store_path).parent_path();
      if (dir.empty()) dir = ".";
      s.state_file = (dir / StateFileName(s.path)).string();
    }
    if (!ReadSendersAndTls(r, type_name, &s)) ok = false;
    if (journal && !ReadJournal(r, t, &s)) ok = false;
    s.source = fmt::format("{}:{}:{}", file_, t.source().begin.line, t.source().begin.column);
    const toml::node* name_node = str("name", &s.name);
    if (s.name.empty()) {
      s.name = net       ? fmt::format("{}:{}", InputTypeName(s.type),
                                 address.empty() ? (s.type == InputType::kTls ? "0.0.0.0:6514"
                                                                                    : "127.0.0.1:5514")
                                                       : address)
               : journal ? std::string("journal")
                         : fmt::format("{}:{}", InputTypeName(s.type), s.path);
      if (!MetricsRegistry::IsSafeLabelValue(s.name)) s.name = std::string(InputTypeName(s.type));
    } else if (!MetricsRegistry::IsSafeLabelValue(s.name)) {
      Error(*name_node, fmt::format("[[input]]: name '{}' must be at most 64 printable bytes "
                                    "without spaces or '@'",
                                    s.name));
      ok = false;
    }
    if (!ok) {
      failed_ = true;
      return std::nullopt;
    }
    return s;
  }

 private:
  // units, slices, identifiers ("@default" expands to Debian's list; absent = the defaults) and
  // journal_dirs. False after reporting an error.
  bool ReadJournal(SettingsReader& r, const toml::table& t, InputSpec* s) {
    bool ok = true;
    auto list = [&](const char* key, const std::vector<std::string>& defaults,
                    std::vector<std::string>* out) {
      if (t.get(key) == nullptr) {
        *out = defaults;
        return;
      }
      std::vector<std::string> values;
      if (!r.Strings(key, &values)) {
        ok = false;
        return;
      }
      for (const auto& v : values) {
        if (v == "@default") {
          out->insert(out->end(), defaults.begin(), defaults.end());
          continue;
        }
        // A match is FIELD=VALUE; a value with '=' or control characters cannot be meant.
        bool valid = !v.empty() && v.size() <= 256;
        for (char c : v) valid = valid && static_cast<unsigned char>(c) > 0x20 && c != '=';
        if (!valid) {
          Error(*t.get(key), fmt::format("[[input]]: {}: '{}' is not a name (no spaces, '=' or "
                                         "control characters; \"@default\" adds the built-in "
                                         "list)",
                                         key, v));
          ok = false;
        } else {
          out->push_back(v);
        }
      }
    };
    list("units", DefaultJournalUnits(), &s->journal.units);
    list("slices", DefaultJournalSlices(), &s->journal.slices);
    list("identifiers", DefaultJournalIdentifiers(), &s->journal.identifiers);
    if (ok && s->journal.units.empty() && s->journal.slices.empty() &&
        s->journal.identifiers.empty()) {
      Error(t, "[[input]]: a journal input with no units, slices or identifiers reads nothing");
      ok = false;
    }
    if (const toml::node* n = t.get("journal_dirs"); n != nullptr) {
      if (!r.Strings("journal_dirs", &s->journal.dirs)) return false;
      for (const auto& d : s->journal.dirs) {
        if (d.empty() || d.front() != '/' || d.find('\t') != std::string::npos ||
            d.find('\n') != std::string::npos) {
          Error(*n, fmt::format("[[input]]: journal_dirs: '{}' must be an absolute path", d));
          ok = false;
        }
      }
      if (ok && s->journal.dirs.empty()) {
        Error(*n, "[[input]]: journal_dirs is empty (remove it to read the local journal)");
        ok = false;
      }
    }
    return ok;
  }

  // allowed_senders (udp, tcp, tls) and the tls keys. False after reporting an error.
  bool ReadSendersAndTls(SettingsReader& r, std::string_view type_text, InputSpec* s) {
    const toml::table& t = r.table();
    bool ok = true;
    const bool tls = s->type == InputType::kTls;
    const bool senders_apply = s->type == InputType::kUdp || s->type == InputType::kTcp || tls;
    if (const toml::node* n = t.get("allowed_senders"); n != nullptr) {
      if (!senders_apply) {
        Error(*n, fmt::format("[[input]]: 'allowed_senders' applies only to udp, tcp and tls "
                              "inputs, not {}",
                              type_text));
        ok = false;
      } else if (!r.AddressPrefixes("allowed_senders", &s->allowed_senders, /*single_ok=*/false,
                                    /*strict=*/true)) {
        ok = false;
      } else if (s->allowed_senders.empty()) {
        Error(*n,
              "[[input]]: allowed_senders is empty: nobody could send (remove the key to "
              "allow anyone)");
        ok = false;
      }
    }
    for (const char* key : {"cert_file", "key_file", "ca_file", "allowed_peers",
                            "allowed_fingerprints", "handshake_timeout"}) {
      if (const toml::node* n = t.get(key); n != nullptr && !tls) {
        Error(*n,
              fmt::format("[[input]]: '{}' applies only to tls inputs, not {}", key, type_text));
        ok = false;
      }
    }
    if (!tls) return ok;
    for (const auto& [key, out] :
         {std::pair<const char*, std::string*>{"cert_file", &s->tls.cert_file},
          {"key_file", &s->tls.key_file},
          {"ca_file", &s->tls.ca_file}}) {
      const toml::node* n = t.get(key);
      if (n == nullptr) {
        Error(t, fmt::format("[[input]]: a tls input needs '{}'", key));
        ok = false;
      } else if (!r.String(key, out)) {
        ok = false;
      } else if (out->empty() || out->front() != '/') {
        Error(*n, fmt::format("[[input]]: '{}' must be an absolute path", key));
        ok = false;
      }
    }
    std::vector<std::string> peers, prints;
    const toml::node* peers_node = t.get("allowed_peers");
    const toml::node* prints_node = t.get("allowed_fingerprints");
    if (peers_node != nullptr && !r.Strings("allowed_peers", &peers)) ok = false;
    if (prints_node != nullptr && !r.Strings("allowed_fingerprints", &prints)) ok = false;
    for (auto& p : peers) {
      std::string lower;
      for (char c : p) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      // A name: labels of [a-z0-9-_], an optional "*." first label, nothing else.
      bool valid = !lower.empty() && lower.size() <= 253;
      std::string_view rest = lower;
      if (rest.starts_with("*.")) rest.remove_prefix(2);
      valid = valid && !rest.empty() && rest.front() != '.' && rest.back() != '.' &&
              rest.find("..") == std::string_view::npos;
      for (char c : rest) {
        valid = valid && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                          c == '_' || c == '.');
      }
      if (!valid) {
        Error(*peers_node, fmt::format("[[input]]: allowed_peers: '{}' is not a host name (a "
                                       "'*.' wildcard is allowed only as the first label)",
                                       p));
        ok = false;
      }
      s->tls.allowed_peers.push_back(lower);
    }
    for (const auto& f : prints) {
      std::string_view v = f;
      if (v.starts_with("sha256:") || v.starts_with("SHA256:")) v.remove_prefix(7);
      std::string hex;
      bool valid = true;
      for (char c : v) {
        if (c == ':') continue;
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
        valid = valid && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        hex += c;
      }
      if (!valid || hex.size() != 64) {
        Error(*prints_node, fmt::format("[[input]]: allowed_fingerprints: '{}' is not a SHA-256 "
                                        "fingerprint (64 hex digits, colons allowed)",
                                        f));
        ok = false;
      }
      s->tls.allowed_fingerprints.push_back(hex);
    }
    if (t.contains("handshake_timeout") &&
        !r.Int("handshake_timeout", 1, 300, &s->tls.handshake_timeout_seconds)) {
      ok = false;
    }
    if (peers_node == nullptr && prints_node == nullptr) {
      Error(t,
            "[[input]]: a tls input needs allowed_peers or allowed_fingerprints: a certificate "
            "from the CA alone authorises no one");
      ok = false;
    } else if (ok && s->tls.allowed_peers.empty() && s->tls.allowed_fingerprints.empty()) {
      Error(peers_node != nullptr ? *peers_node : *prints_node,
            "[[input]]: allowed_peers and allowed_fingerprints are empty: nobody could send");
      ok = false;
    }
    return ok;
  }

  const std::string& file_;
  std::vector<Diagnostic>* d_;
  bool failed_ = false;
};

}  // namespace

Result<std::vector<InputSpec>> ParseInputSpecs(const Config& config,
                                               std::vector<Diagnostic>* diagnostics) {
  const toml::node* inputs = config.document.get("input");
  if (inputs == nullptr) return DefaultInputSpecs();
  const std::string file = config.source.empty() ? "<config>" : config.source;
  const toml::array* arr = inputs->as_array();
  if (arr == nullptr) {
    diagnostics->push_back(
        MakeDiagnostic(file, inputs->source(),
                       "'input' must be an array of tables: write [[input]], not [input]"));
    return Status::InvalidArgument("bad [[input]] configuration");
  }
  SpecReader reader(file, diagnostics);
  std::vector<InputSpec> specs;
  for (const toml::node& n : *arr) {
    const toml::table* t = n.as_table();
    if (t == nullptr) {
      reader.Error(n, "'input' must be an array of tables: write [[input]]");
      continue;
    }
    if (auto s = reader.Read(*t, config.store_path)) specs.push_back(std::move(*s));
  }
  if (reader.failed() || specs.size() != arr->size()) {
    return Status::InvalidArgument("bad [[input]] configuration");
  }
  // Two inputs on the same socket would fail at bind with a less helpful message.
  for (std::size_t i = 0; i < specs.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (specs[i].Describe() == specs[j].Describe() && specs[i].port != 0) {
        diagnostics->push_back(
            MakeDiagnostic(file, (*arr)[i].source(),
                           fmt::format("[[input]]: {} is configured twice", specs[i].Describe())));
        return Status::InvalidArgument("bad [[input]] configuration");
      }
    }
  }
  // A journal input's cursor is kept in the store under its name.
  for (std::size_t i = 0; i < specs.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (specs[i].type == InputType::kJournal && specs[j].type == InputType::kJournal &&
          specs[i].name == specs[j].name) {
        diagnostics->push_back(MakeDiagnostic(
            file, (*arr)[i].source(),
            fmt::format("[[input]]: two journal inputs are named '{}': give each its own name "
                        "(its position in the journal is kept under it)",
                        specs[i].name)));
        return Status::InvalidArgument("bad [[input]] configuration");
      }
    }
  }
  if (specs.empty()) {
    diagnostics->push_back(
        Diagnostic{file, 0, 0, "[[input]] is empty: at least one input is needed"});
    return Status::InvalidArgument("bad [[input]] configuration");
  }
  return specs;
}

}  // namespace mxward
