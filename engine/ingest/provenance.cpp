#include "mxward/provenance.h"

#include <pwd.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "engine/base/parse_number.h"
#include "engine/base/settings_reader.h"

namespace mxward {

ProvenanceSettings DefaultProvenanceSettings() {
  ProvenanceSettings s;
  s.writers = {
      {"postfix", {"postfix"}},
      {"dovecot", {"dovecot", "dovenull"}},
      {"roundcube", {"www-data"}},
      {"opendkim", {"opendkim"}},
      {"opendmarc", {"opendmarc"}},
      {"rspamd", {"_rspamd"}},
      {"amavis", {"amavis"}},
      {"clamav", {"clamav"}},
      {"policyd-spf", {"policyd-spf", "nobody"}},
      {"policyd-spf-perl", {"policyd-spf", "nobody"}},
  };
  return s;
}

Status ReadProvenanceSettings(const Config& config, ProvenanceSettings* out,
                              std::vector<Diagnostic>* diagnostics) {
  *out = DefaultProvenanceSettings();
  const std::size_t before = diagnostics->size();
  const toml::table* section = SectionTable(config, "provenance", diagnostics);
  if (section == nullptr)
    return diagnostics->size() == before ? Status::Ok()
                                         : Status::InvalidArgument("[provenance] is invalid");
  out->source = fmt::format("{}:{}:{}", config.source, section->source().begin.line,
                            section->source().begin.column);
  SettingsReader r(*section, "[provenance]", config.source, diagnostics);
  r.CheckKnownKeys({"enforce", "forwarders", "writers"});
  r.Bool("enforce", &out->enforce);
  out->forwarders_configured = r.Strings("forwarders", &out->forwarders);
  if (const toml::table* writers = r.Table("writers")) {
    SettingsReader w(*writers, "[provenance.writers]", config.source, diagnostics);
    for (const auto& [key, node] : *writers) {
      const std::string parser(key.str());
      std::vector<std::string> users;
      if (!w.Strings(parser, &users, /*single_ok=*/true)) continue;
      out->configured.push_back(parser);
      auto it = std::find_if(out->writers.begin(), out->writers.end(),
                             [&](const auto& e) { return e.first == parser; });
      if (it == out->writers.end()) {
        out->writers.emplace_back(parser, std::move(users));
      } else {
        it->second = std::move(users);
      }
    }
  }
  return diagnostics->size() == before ? Status::Ok()
                                       : Status::InvalidArgument("[provenance] is invalid");
}

namespace {

// The uid of a user name, from the host's user database.
bool LookUpUid(const std::string& name, std::uint32_t* uid) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return false;
  }
  *uid = pw.pw_uid;
  return true;
}

bool Contains(const std::vector<std::uint32_t>& v, std::uint32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

ProvenancePolicy ProvenancePolicy::Resolve(const ProvenanceSettings& settings,
                                           std::vector<std::string>* warnings,
                                           std::vector<std::string>* notes) {
  ProvenancePolicy p;
  p.enforce_ = settings.enforce;
  p.forwarders_.push_back(0);  // root: it may write anything anyway
  for (const auto& name : settings.forwarders) {
    std::uint32_t uid = 0;
    if (LookUpUid(name, &uid)) {
      if (!Contains(p.forwarders_, uid)) p.forwarders_.push_back(uid);
    } else if (warnings != nullptr && settings.forwarders_configured) {
      warnings->push_back(fmt::format(
          "{}: warning: [provenance] forwarder '{}' is not a user on this host; ignored",
          settings.source, name));
    }
  }
  for (const auto& [parser, users] : settings.writers) {
    std::vector<std::uint32_t> uids;
    std::vector<std::string> missing;
    for (const auto& name : users) {
      std::uint32_t uid = 0;
      if (!LookUpUid(name, &uid)) {
        missing.push_back(name);
      } else if (uid != 0 && !Contains(uids, uid)) {
        uids.push_back(uid);
      }
    }
    const bool configured = std::find(settings.configured.begin(), settings.configured.end(),
                                      parser) != settings.configured.end();
    std::vector<std::string>* out = configured ? warnings : notes;
    if (out != nullptr) {
      for (const auto& name : missing) {
        out->push_back(fmt::format(
            "{}{}[provenance] user '{}' (a writer of {} lines) is not a user on this host; {} "
            "lines are believed from {}",
            configured ? settings.source : "", configured ? ": warning: " : "", name, parser,
            parser, uids.empty() ? "root only" : "root and the other users listed"));
      }
    }
    p.writers_.emplace_back(parser, std::move(uids));
  }
  return p;
}

bool ProvenancePolicy::IsForwarder(std::uint32_t uid) const {
  return uid == 0 || Contains(forwarders_, uid);
}

const std::vector<std::uint32_t>* ProvenancePolicy::Writers(std::string_view parser) const {
  for (const auto& [name, uids] : writers_) {
    if (name == parser) return &uids;
  }
  return nullptr;
}

namespace {

bool Decimal(std::string_view s, std::int64_t max, std::int64_t* out) {
  const auto v = ParseNumber<std::int64_t>(s);
  if (!v || *v < 0 || *v > max) return false;
  *out = *v;
  return true;
}

}  // namespace

bool ParseStatedWriter(std::string_view sd, std::uint32_t* uid, std::int64_t* pid) {
  // [mxward@32473 uid="110" pid="1234" ...]: PARAM-VALUEs are quoted, '"', '\' and ']' escaped.
  // Checked in place: this runs for every line a forwarder sends.
  if (sd.size() < kProvenanceSdId.size() + 2 || sd[0] != '[' ||
      sd.substr(1, kProvenanceSdId.size()) != kProvenanceSdId ||
      sd[kProvenanceSdId.size() + 1] != ' ') {
    return false;
  }
  std::size_t i = kProvenanceSdId.size() + 2;
  bool have_uid = false;
  std::int64_t stated_pid = -1;
  std::int64_t stated_uid = -1;
  while (i < sd.size()) {
    if (sd[i] == ']') break;
    if (sd[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t eq = sd.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= sd.size() || sd[eq + 1] != '"') return false;
    const std::string_view name = sd.substr(i, eq - i);
    std::string value;
    std::size_t j = eq + 2;
    for (; j < sd.size() && sd[j] != '"'; ++j) {
      if (sd[j] == '\\' && j + 1 < sd.size()) ++j;
      value.push_back(sd[j]);
    }
    if (j >= sd.size()) return false;  // unterminated value
    i = j + 1;
    if (name == "uid") {
      // Stated twice: the element is not what our template writes.
      if (have_uid || !Decimal(value, 0xfffffffe, &stated_uid)) return false;
      have_uid = true;
    } else if (name == "pid") {
      if (!Decimal(value, INT64_MAX, &stated_pid)) stated_pid = -1;
    }
  }
  if (i >= sd.size() || !have_uid) return false;
  *uid = static_cast<std::uint32_t>(stated_uid);
  *pid = stated_pid;
  return true;
}

ProvenanceVerdict ProvenancePolicy::Judge(std::string_view parser, const LineOrigin& origin,
                                          std::string_view structured_data) const {
  ProvenanceVerdict v;
  switch (origin.transport) {
    case LineOrigin::Transport::kNone:
      return v;
    case LineOrigin::Transport::kJournal:
      v.writer_known = true;
      v.writer_uid = origin.uid;
      v.writer_pid = origin.pid;
      break;
    case LineOrigin::Transport::kPeer:
      if (IsForwarder(origin.uid)) {
        std::uint32_t uid = 0;
        std::int64_t pid = -1;
        if (!ParseStatedWriter(structured_data, &uid, &pid)) return v;  // not stated: unverified
        v.writer_known = true;
        v.writer_uid = uid;
        v.writer_pid = pid;
        v.via_forwarder = true;
      } else {
        v.writer_known = true;
        v.writer_uid = origin.uid;
        v.writer_pid = origin.pid;
      }
      break;
  }
  if (parser.empty()) return v;  // no parser takes the program: no event can come of it
  const std::vector<std::uint32_t>* writers = Writers(parser);
  if (v.writer_uid == 0) {
    v.kind = ProvenanceVerdict::Kind::kVerified;
  } else if (writers == nullptr) {
    v.kind = ProvenanceVerdict::Kind::kUnverified;  // nobody listed: nothing to hold it to
  } else {
    v.kind = Contains(*writers, v.writer_uid) ? ProvenanceVerdict::Kind::kVerified
                                              : ProvenanceVerdict::Kind::kForged;
  }
  return v;
}

}  // namespace mxward
