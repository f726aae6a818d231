#include "engine/cli/fail2ban_import.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "mxward/ip_address.h"
#include "mxward/time.h"

namespace mxward {

namespace {

namespace fs = std::filesystem;

std::string Trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The INI dialect of fail2ban (Python's configparser with its tweaks).
class JailConfig {
 public:
  void ReadFile(const fs::path& p) {
    std::ifstream in(p);
    std::string line, section, key;
    while (std::getline(in, line)) {
      if (!line.empty() && (line[0] == ' ' || line[0] == '\t') && !key.empty() &&
          !Trim(line).empty() && Trim(line)[0] != '#' && Trim(line)[0] != ';') {
        sections_[section][key] += "\n" + StripComment(Trim(line));  // continuation
        continue;
      }
      const std::string t = Trim(line);
      if (t.empty() || t[0] == '#' || t[0] == ';') continue;
      if (t[0] == '[') {
        const auto close = t.find(']');
        section = Trim(t.substr(1, close == std::string::npos ? std::string::npos : close - 1));
        key.clear();
        continue;
      }
      const auto eq = t.find_first_of("=:");
      if (eq == std::string::npos || section.empty()) continue;
      key = Lower(Trim(t.substr(0, eq)));
      sections_[section][key] = StripComment(Trim(t.substr(eq + 1)));
    }
  }

  bool HasSection(const std::string& s) const { return sections_.count(s) > 0; }
  std::vector<std::string> Sections() const {
    std::vector<std::string> out;
    for (const auto& [name, kv] : sections_) out.push_back(name);
    return out;
  }
  // Set in the jail's own section (not inherited from [DEFAULT]).
  bool HasOwn(const std::string& s, const std::string& key) const {
    auto it = sections_.find(s);
    return it != sections_.end() && it->second.count(key) > 0;
  }
  std::optional<std::string> Get(const std::string& s, const std::string& key) const {
    return Interpolated(s, key, 0);
  }

 private:
  static std::string StripComment(std::string v) {
    for (std::size_t i = 1; i < v.size(); ++i) {
      if ((v[i] == '#' || v[i] == ';') && (v[i - 1] == ' ' || v[i - 1] == '\t')) {
        return Trim(v.substr(0, i));
      }
    }
    return v;
  }

  std::optional<std::string> Raw(const std::string& s, const std::string& key) const {
    if (key == "__name__") return s;
    for (const std::string& sec : {s, std::string("DEFAULT")}) {
      auto it = sections_.find(sec);
      if (it == sections_.end()) continue;
      auto kv = it->second.find(key);
      if (kv != it->second.end()) return kv->second;
    }
    return std::nullopt;
  }

  std::optional<std::string> Interpolated(const std::string& s, const std::string& key,
                                          int depth) const {
    auto raw = Raw(s, key);
    if (!raw || depth > 10) return raw;
    std::string out;
    const std::string& v = *raw;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '%' && i + 1 < v.size() && v[i + 1] == '(') {
        const auto close = v.find(")s", i);
        if (close != std::string::npos) {
          const std::string name = Lower(v.substr(i + 2, close - i - 2));
          auto sub = Interpolated(s, name, depth + 1);
          out += sub ? *sub : "";
          i = close + 1;
          continue;
        }
      }
      if (v[i] == '%' && i + 1 < v.size() && v[i + 1] == '%') ++i;
      out += v[i];
    }
    return out;
  }

  std::map<std::string, std::map<std::string, std::string>> sections_;
};

// fail2ban's time syntax: "600", "10m", "1h 30m", "1d", "1w", "-1" (forever). Seconds.
std::optional<std::int64_t> Fail2banSeconds(std::string v) {
  v = Trim(v);
  if (v == "-1") return -1;
  // Spaces go; fail2ban's "min"/"mins" become "m" (mxward's parser takes s m h d w). Built in one
  // pass rather than with std::string::replace, which g++ 12 -O3 flags with a false -Wrestrict.
  const std::string_view in = v;
  std::string compact;
  for (std::size_t i = 0; i < in.size();) {
    if (in[i] == ' ') {
      ++i;
    } else if (in.substr(i, 3) == "min") {
      compact += 'm';
      i += in.substr(i, 4) == "mins" ? 4 : 3;
    } else {
      compact += in[i++];
    }
  }
  auto d = ParseDurationSeconds(compact);
  if (!d.ok()) return std::nullopt;
  return *d;
}

bool Truthy(const std::optional<std::string>& v) {
  if (!v) return false;
  const std::string s = Lower(Trim(*v));
  return s == "true" || s == "yes" || s == "1" || s == "on";
}

// "postfix[mode=auth]" -> name "postfix", params {mode: auth}.
void ParseFilter(const std::string& text, std::string* name,
                 std::map<std::string, std::string>* params) {
  const std::string t = Trim(text);
  const auto open = t.find('[');
  *name = Trim(t.substr(0, open));
  if (open == std::string::npos) return;
  const auto close = t.rfind(']');
  std::stringstream ss(
      t.substr(open + 1, close == std::string::npos ? std::string::npos : close - open - 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) continue;
    std::string v = Trim(item.substr(eq + 1));
    if (v.size() >= 2 && (v[0] == '"' || v[0] == '\'')) v = v.substr(1, v.size() - 2);
    (*params)[Lower(Trim(item.substr(0, eq)))] = v;
  }
}

std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string List(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + TomlString(items[i]);
  return out + "]";
}

// What one jail watches, in mxward's terms.
struct JailShape {
  std::string playbook;  // the shipped playbook it corresponds to
  std::string filter;    // the fail2ban filter it must use
  std::string description;
  std::vector<std::string> events;
  std::vector<std::string> services;  // empty: any
  std::string key = "client_ip";
  bool ban = true;
};

const std::vector<std::string> kRejects = {"relay_denied", "unknown_recipient", "helo_reject",
                                           "sender_reject"};
const std::vector<std::string> kSmtp = {"smtpd", "submission", "smtps"};

// postfix's modes (filter.d/postfix.conf): which mdre-* regexes it uses.
std::optional<JailShape> PostfixMode(const std::string& mode) {
  JailShape s{"postfix", "postfix", "", {}, {}, "client_ip", true};
  if (mode == "normal" || mode == "more") {
    s.events = kRejects;
    s.description = "Client repeatedly rejected by Postfix (imported from fail2ban)";
  } else if (mode == "rbl") {
    s.playbook = "postfix-rbl";
    s.events = {"rbl_reject"};
    s.description = "Client listed on a DNS blocklist (imported from fail2ban)";
  } else if (mode == "auth") {
    s.playbook = "postfix-sasl";
    s.events = {"auth_failure"};
    s.services = kSmtp;
    s.description = "SASL authentication failures (imported from fail2ban)";
  } else if (mode == "ddos" || mode == "errors") {
    s.events = {"protocol_abuse"};
    s.services = {"smtpd", "submission", "smtps", "postscreen"};
    s.description = "SMTP protocol abuse (imported from fail2ban)";
  } else if (mode == "extra" || mode == "aggressive") {
    s.events = kRejects;
    s.events.push_back("auth_failure");
    if (mode == "aggressive") s.events.push_back("protocol_abuse");
    s.services = {"smtpd", "submission", "smtps", "postscreen"};
    s.description = "Postfix rejects and SASL failures (imported from fail2ban)";
  } else {
    return std::nullopt;
  }
  return s;
}

}  // namespace

Result<Fail2banImport> ImportFail2ban(const std::string& dir) {
  Fail2banImport out;
  const fs::path base(dir);
  std::error_code ec;
  if (!fs::exists(base / "jail.conf", ec)) {
    return Status::NotFound(fmt::format("{} has no jail.conf: not a fail2ban configuration", dir));
  }
  JailConfig cfg;
  auto read = [&](const fs::path& p) {
    cfg.ReadFile(p);
    out.files_read.push_back(p.string());
  };
  auto read_dir = [&](const std::string& ext) {
    std::vector<fs::path> files;
    for (fs::directory_iterator it(base / "jail.d", ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ext) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) read(f);
  };
  read(base / "jail.conf");
  read_dir(".conf");
  if (fs::exists(base / "jail.local", ec)) read(base / "jail.local");
  read_dir(".local");

  // How far back fail2ban remembers bans (bantime.increment searches its database).
  JailConfig f2b;
  for (const char* name : {"fail2ban.conf", "fail2ban.local"}) {
    if (fs::exists(base / name, ec)) f2b.ReadFile(base / name);
  }
  std::int64_t dbpurgeage = 86400;
  if (auto v = f2b.Get("DEFAULT", "dbpurgeage")) {
    if (auto s = Fail2banSeconds(*v)) dbpurgeage = *s;
  }

  // recidive: repeat offenders across jails, carried as escalation on every imported playbook.
  std::optional<std::pair<std::int64_t, std::int64_t>> recidive;  // lookback, max
  if (cfg.HasSection("recidive") && Truthy(cfg.Get("recidive", "enabled"))) {
    auto find = Fail2banSeconds(cfg.Get("recidive", "findtime").value_or("1d"));
    auto ban = Fail2banSeconds(cfg.Get("recidive", "bantime").value_or("1w"));
    recidive = {find.value_or(86400),
                ban.value_or(7 * 86400) < 0 ? 365 * 86400 : ban.value_or(7 * 86400)};
    out.not_carried.push_back(fmt::format(
        "[recidive] maxretry = {}: mxward has no jail of jails; it is carried as escalation on "
        "every imported playbook (each earlier incident of the address within {} doubles the "
        "ban, up to {})",
        Trim(cfg.Get("recidive", "maxretry").value_or("5")), FormatDurationSeconds(recidive->first),
        FormatDurationSeconds(recidive->second)));
  }

  const std::map<std::string, JailShape> shapes = {
      {"postfix-rbl", *PostfixMode("rbl")},
      {"postfix-sasl", *PostfixMode("auth")},
      {"dovecot",
       {"dovecot-auth",
        "dovecot",
        "IMAP/POP3 login failures (imported from fail2ban)",
        {"auth_failure"},
        {"imap", "pop3", "submission"},
        "client_ip",
        true}},
      {"sieve",
       {"sieve-auth",
        "sieve",
        "ManageSieve login failures (imported from fail2ban)",
        {"auth_failure"},
        {"managesieve"},
        "client_ip",
        true}},
      {"roundcube-auth",
       {"roundcube-login",
        "roundcube-auth",
        "Failed webmail logins (imported from fail2ban)",
        {"auth_failure"},
        {"webmail"},
        "user",
        false}},
  };

  bool any_mail = false;
  for (const std::string& jail : cfg.Sections()) {
    if (jail == "DEFAULT" || jail == "INCLUDES" || jail == "recidive") continue;
    const bool known = jail == "postfix" || shapes.count(jail) > 0;
    if (!Truthy(cfg.Get(jail, "enabled"))) continue;
    if (!known) {
      const std::string lj = Lower(jail);
      if (lj.find("postfix") != std::string::npos || lj.find("dovecot") != std::string::npos ||
          lj.find("sasl") != std::string::npos || lj.find("sieve") != std::string::npos ||
          lj.find("roundcube") != std::string::npos || lj.find("mail") != std::string::npos ||
          lj.find("smtp") != std::string::npos || lj.find("imap") != std::string::npos) {
        out.not_carried.push_back(fmt::format(
            "[{}]: a jail mxward does not know; write a playbook for it by hand", jail));
      }
      continue;
    }
    any_mail = true;
    std::string filter_name;
    std::map<std::string, std::string> params;
    ParseFilter(cfg.Get(jail, "filter").value_or(jail), &filter_name, &params);
    JailShape shape;
    if (jail == "postfix") {
      const std::string mode =
          Lower(params.count("mode") ? params["mode"] : cfg.Get(jail, "mode").value_or("more"));
      auto s = PostfixMode(mode);
      if (!s) {
        out.not_carried.push_back(
            fmt::format("[postfix] mode = {}: unknown mode, jail skipped", mode));
        continue;
      }
      shape = *s;
    } else {
      shape = shapes.at(jail);
    }
    if (filter_name != shape.filter) {
      out.not_carried.push_back(fmt::format(
          "[{}] filter = {}: a custom filter; jail skipped (mxward's parser pack reads the "
          "logs: write a playbook over its events instead)",
          jail, filter_name));
      continue;
    }
    if (cfg.HasOwn(jail, "failregex") || cfg.HasOwn(jail, "ignoreregex") ||
        fs::exists(base / "filter.d" / (filter_name + ".local"), ec)) {
      out.not_carried.push_back(fmt::format(
          "[{}]: failregex/ignoreregex or filter.d/{}.local customise the filter; those lines "
          "are not carried over (the playbook counts mxward's own events)",
          jail, filter_name));
    }

    std::string why;
    auto seconds = [&](const char* key, std::int64_t fallback) {
      auto v = cfg.Get(jail, key);
      if (!v) return fallback;
      auto s = Fail2banSeconds(*v);
      if (!s) {
        out.not_carried.push_back(
            fmt::format("[{}] {} = {}: not a time mxward understands, used {}", jail, key, *v,
                        FormatDurationSeconds(fallback)));
        return fallback;
      }
      return *s;
    };
    std::int64_t maxretry = 5;
    if (auto v = cfg.Get(jail, "maxretry")) {
      try {
        maxretry = std::stoll(Trim(*v));
      } catch (...) {
        out.not_carried.push_back(
            fmt::format("[{}] maxretry = {}: not a number, used 5", jail, *v));
      }
    }
    maxretry = std::clamp<std::int64_t>(maxretry, 1, 65535);
    const std::int64_t findtime = std::max<std::int64_t>(seconds("findtime", 600), 1);
    std::int64_t bantime = seconds("bantime", 600);
    if (bantime < 0) {
      out.not_carried.push_back(fmt::format(
          "[{}] bantime = {}: permanent bans become 365d bans (undo with `mxward bans remove`)",
          jail, Trim(cfg.Get(jail, "bantime").value_or("-1"))));
      bantime = 365 * 86400;
    }

    std::vector<std::string> allow;
    if (auto v = cfg.Get(jail, "ignoreip")) {
      std::string item;
      std::stringstream ss(*v);
      while (ss >> item) {
        for (std::stringstream parts(item); std::getline(parts, item, ',');) {
          if (item.empty()) continue;
          IpPrefix p;
          if (IpPrefix::Parse(item, &p)) {
            allow.push_back(p.ToString());
          } else {
            out.not_carried.push_back(fmt::format(
                "[{}] ignoreip {}: host names are not resolved by mxward (attackers control "
                "DNS of their own addresses); list its addresses instead",
                jail, item));
          }
        }
      }
    }
    if (auto v = cfg.Get(jail, "ignoreself"); v && !Truthy(v)) {
      out.not_carried.push_back(
          fmt::format("[{}] ignoreself = false: mxward's own-address allowlist is global ([allow] "
                      "own_addresses in mxward.toml)",
                      jail));
    }
    for (const char* key : {"ignorecommand", "ignorecache", "maxmatches"}) {
      if (cfg.HasOwn(jail, key) && !Trim(cfg.Get(jail, key).value_or("")).empty()) {
        out.not_carried.push_back(fmt::format("[{}] {}: no mxward equivalent", jail, key));
      }
    }
    for (const char* key : {"action", "banaction"}) {
      if (cfg.HasOwn(jail, key)) {
        out.not_carried.push_back(fmt::format(
            "[{}] {} = {}: fail2ban actions are not carried; mxward bans through nftables "
            "([nftables] in mxward.toml); add [[action]] mail or webhook tables to notify",
            jail, key, Trim(*cfg.Get(jail, key))));
      }
    }

    // Escalation: bantime.increment, or recidive.
    const bool increment = Truthy(cfg.Get(jail, "bantime.increment"));
    std::string escalation;
    if (increment) {
      std::int64_t maxtime = 7 * 86400;
      if (cfg.Get(jail, "bantime.maxtime") && !Trim(*cfg.Get(jail, "bantime.maxtime")).empty()) {
        maxtime = seconds("bantime.maxtime", maxtime);
      } else {
        out.not_carried.push_back(fmt::format(
            "[{}] bantime.maxtime unset: fail2ban grows bans without a bound; mxward caps them "
            "at 1w",
            jail));
      }
      double factor = 2;
      if (auto f = cfg.Get(jail, "bantime.factor"); f && !Trim(*f).empty() && Trim(*f) != "1") {
        out.not_carried.push_back(fmt::format(
            "[{}] bantime.factor = {}: mxward doubles the ban per earlier incident (fail2ban's "
            "default formula with factor 1)",
            jail, Trim(*f)));
      }
      for (const char* key : {"bantime.formula", "bantime.multipliers", "bantime.rndtime"}) {
        if (auto v = cfg.Get(jail, key); v && !Trim(*v).empty()) {
          out.not_carried.push_back(
              fmt::format("[{}] {} = {}: not carried; mxward multiplies by 2 per earlier incident",
                          jail, key, Trim(*v)));
        }
      }
      // bantime.increment counts this jail's earlier bans (all jails' with overalljails); an
      // enabled [recidive] also counts every jail's, with its own findtime and bantime. Both on:
      // the address's incidents of every playbook count, over the longer lookback, up to the
      // longer ban, so neither fail2ban mechanism is weakened by the merge.
      const bool overall = Truthy(cfg.Get(jail, "bantime.overalljails"));
      std::int64_t lookback = dbpurgeage;
      std::string why = fmt::format(
          "# bantime.increment = true: each earlier incident of the address within {} "
          "(fail2ban's dbpurgeage)\n# multiplies the ban by {}, up to bantime.maxtime{}.\n",
          FormatDurationSeconds(dbpurgeage), factor,
          overall ? "; bantime.overalljails = true: incidents of every playbook count" : "");
      if (recidive) {
        lookback = std::max(lookback, recidive->first);
        maxtime = std::max(maxtime, recidive->second);
        why += fmt::format(
            "# [recidive] is enabled: incidents of every playbook count, within {}, up to {}.\n",
            FormatDurationSeconds(lookback), FormatDurationSeconds(maxtime));
      }
      escalation = fmt::format(
          "\n{}[escalation]\nfactor = {}\nmax = \"{}\"\nlookback = \"{}\"\nacross_playbooks = "
          "{}\n",
          why, factor, FormatDurationSeconds(maxtime), FormatDurationSeconds(lookback),
          overall || recidive ? "true" : "false");
    } else if (recidive && shape.ban) {
      escalation = fmt::format(
          "\n# From [recidive]: repeat offenders across all jails get longer bans.\n"
          "[escalation]\nfactor = 2\nmax = \"{}\"\nlookback = \"{}\"\nacross_playbooks = true\n",
          FormatDurationSeconds(recidive->second), FormatDurationSeconds(recidive->first));
    }

    std::string toml = fmt::format(
        "# Imported from fail2ban jail [{}] by `mxward import fail2ban {}`.\n"
        "# maxretry = {}, findtime = {}, bantime = {}{}.\n",
        jail, dir, maxretry, FormatDurationSeconds(findtime), FormatDurationSeconds(bantime),
        jail == "postfix" ? ", filter " + cfg.Get(jail, "filter").value_or("postfix") : "");
    if (!shape.ban) {
      toml +=
          "# fail2ban bans the address Roundcube logs, which comes from X-Forwarded-For and can\n"
          "# be written by the client: mxward counts failures per account and notifies instead.\n";
      out.not_carried.push_back(fmt::format(
          "[{}] bans by address: mxward counts per account and mails postmaster instead (the "
          "logged address can be client-written)",
          jail));
    }
    toml += fmt::format("description = {}\nseverity = \"medium\"\nmode = \"enforce\"\nkey = {}\n",
                        TomlString(shape.description), TomlString(shape.key));
    toml += fmt::format("\n[match]\nevents = {}\n", List(shape.events));
    if (!shape.services.empty()) toml += fmt::format("service = {}\n", List(shape.services));
    toml += fmt::format("\n[trigger]\ntype = \"count\"\nthreshold = {}\nwindow = \"{}\"\n",
                        maxretry, FormatDurationSeconds(findtime));
    if (!allow.empty()) toml += fmt::format("\n# ignoreip\n[allow]\ncidrs = {}\n", List(allow));
    if (shape.ban) toml += escalation;
    if (shape.ban) {
      toml += fmt::format(
          "\n[[action]]\ntype = \"ban\"\naddress = \"{{client_ip}}\"\nduration = \"{}\"\n",
          FormatDurationSeconds(bantime));
    } else {
      toml +=
          "\n[[action]]\ntype = \"mail\"\nto = \"postmaster\"\nsubject = \"[mxward] webmail "
          "account {key} under attack: {trigger}\"\nbody = \"{evidence}\"\n";
    }
    out.playbooks.push_back(ImportedPlaybook{shape.playbook, jail, std::move(toml)});
  }
  if (!any_mail) {
    out.not_carried.push_back(
        "no mail jail is enabled (postfix, postfix-rbl, postfix-sasl, dovecot, sieve, "
        "roundcube-auth): nothing to import");
  }
  // Two jails onto one playbook name (postfix with mode=auth and postfix-sasl): keep the first.
  std::map<std::string, std::string> taken;
  std::vector<ImportedPlaybook> unique;
  for (auto& p : out.playbooks) {
    if (auto [it, fresh] = taken.emplace(p.name, p.jail); !fresh) {
      out.not_carried.push_back(fmt::format(
          "[{}]: watches what [{}] already does ({}.toml); skipped", p.jail, it->second, p.name));
      continue;
    }
    unique.push_back(std::move(p));
  }
  out.playbooks = std::move(unique);
  return out;
}

}  // namespace mxward
