#include "engine/cluster/cluster_incidents.h"

#include <charconv>

namespace mxward {
namespace {

// The node name's characters (ClusterOptions: [A-Za-z0-9._-]{1,64}).
bool IsNodeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// The length of the UTF-8 sequence at s[i] that PostgreSQL accepts, 0 if it is not one (NUL,
// a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF, cut short).
std::size_t ValidSequence(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    return 0;
  }
  return len;
}

// Every string (and object key) of j made PostgresSafeText, in place.
void SafeStrings(nlohmann::json& j) {
  if (j.is_string()) {
    j = PostgresSafeText(j.get_ref<const std::string&>());
  } else if (j.is_array()) {
    for (auto& e : j) SafeStrings(e);
  } else if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto& [k, v] : j.items()) {
      SafeStrings(v);
      out[PostgresSafeText(k)] = std::move(v);
    }
    j = std::move(out);
  }
}

nlohmann::json ParseArray(std::string_view json) {
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  return j.is_array() ? j : nlohmann::json::array();
}

std::int64_t IntField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

std::string TextField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

bool ParseIncidentRef(std::string_view text, std::string* node, std::int64_t* id) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 64) return false;
  const std::string_view name = text.substr(0, colon);
  const std::string_view number = text.substr(colon + 1);
  for (char c : name) {
    if (!IsNodeChar(c)) return false;
  }
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || value <= 0) {
    return false;
  }
  *node = std::string(name);
  *id = value;
  return true;
}

bool FitsPostgresText(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = ValidSequence(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string PostgresSafeText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = ValidSequence(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

std::string EvidenceColumn(const std::vector<EvidenceLine>& evidence) {
  nlohmann::json j = nlohmann::json::array();
  for (const EvidenceLine& e : evidence) {
    j.push_back({{"time", e.time}, {"line", PostgresSafeText(e.text)}});
  }
  return j.dump();
}

std::string ActionsColumn(const std::vector<ActionRecord>& actions) {
  nlohmann::json j = nlohmann::json::array();
  for (const ActionRecord& a : actions) {
    nlohmann::json params = a.params;
    SafeStrings(params);
    j.push_back({{"id", a.id},
                 {"type", PostgresSafeText(a.type)},
                 {"status", ActionStatusName(a.status)},
                 {"revert", a.revert},
                 {"attempts", a.attempts},
                 {"last_error", PostgresSafeText(a.last_error)},
                 {"updated_at", a.updated_at},
                 {"params", std::move(params)}});
  }
  return j.dump();
}

std::string NotesColumn(const std::vector<IncidentNote>& notes) {
  nlohmann::json j = nlohmann::json::array();
  for (const IncidentNote& n : notes) {
    j.push_back(
        {{"time", n.time}, {"kind", PostgresSafeText(n.kind)}, {"text", PostgresSafeText(n.text)}});
  }
  return j.dump();
}

std::vector<EvidenceLine> EvidenceFromColumn(std::string_view json) {
  std::vector<EvidenceLine> out;
  for (const auto& e : ParseArray(json)) {
    if (e.is_object()) out.push_back({IntField(e, "time"), TextField(e, "line")});
  }
  return out;
}

std::vector<ActionRecord> ActionsFromColumn(std::string_view json) {
  std::vector<ActionRecord> out;
  for (const auto& e : ParseArray(json)) {
    if (!e.is_object()) continue;
    ActionRecord a;
    a.id = IntField(e, "id");
    a.type = TextField(e, "type");
    ParseActionStatus(TextField(e, "status"), &a.status);
    if (auto it = e.find("revert"); it != e.end() && it->is_boolean()) a.revert = it->get<bool>();
    a.attempts = static_cast<int>(IntField(e, "attempts"));
    a.last_error = TextField(e, "last_error");
    a.updated_at = IntField(e, "updated_at");
    if (auto it = e.find("params"); it != e.end() && it->is_object()) a.params = *it;
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<IncidentNote> NotesFromColumn(std::string_view json) {
  std::vector<IncidentNote> out;
  for (const auto& e : ParseArray(json)) {
    if (e.is_object())
      out.push_back({IntField(e, "time"), TextField(e, "kind"), TextField(e, "text")});
  }
  return out;
}

}  // namespace mxward
