#include "engine/base/settings_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mxward/time.h"

namespace mxward {

std::string_view TomlTypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
}

namespace {

bool IsBareWordChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// toml++ reads `threshold = twenty` as a boolean that went wrong ("Error while parsing boolean:
// expected 'true', saw 'tw'"), which sends a person looking for a boolean. When the line the
// error is on is `key = word`, say what is wrong: the text lacks quotes.
std::optional<Diagnostic> BareWordDiagnostic(std::string_view text, const std::string& file,
                                             const toml::source_region& where) {
  std::size_t line_start = 0;
  for (std::uint32_t line = 1; line < where.begin.line; ++line) {
    line_start = text.find('\n', line_start);
    if (line_start == std::string_view::npos) return std::nullopt;
    ++line_start;
  }
  std::string_view line = text.substr(line_start);
  line = line.substr(0, line.find('\n'));
  std::size_t i = 0;
  auto skip_blanks = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  };
  skip_blanks();
  const std::size_t key_begin = i;
  while (i < line.size() && IsBareWordChar(line[i])) ++i;
  const std::string_view key = line.substr(key_begin, i - key_begin);
  skip_blanks();
  if (key.empty() || i >= line.size() || line[i] != '=') return std::nullopt;
  ++i;
  skip_blanks();
  const std::size_t value_begin = i;
  const char first = i < line.size() ? line[i] : '\0';
  if (!((first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z'))) return std::nullopt;
  while (i < line.size() && IsBareWordChar(line[i])) ++i;
  const std::string_view word = line.substr(value_begin, i - value_begin);
  skip_blanks();
  if (i < line.size() && line[i] != '#' && line[i] != '\r') return std::nullopt;
  if (word == "true" || word == "false" || word == "inf" || word == "nan") return std::nullopt;
  return Diagnostic{file, static_cast<int>(where.begin.line), static_cast<int>(value_begin + 1),
                    fmt::format("'{}': expected a value, got the bare word {} (text needs "
                                "quotes: \"{}\")",
                                key, word, word)};
}

}  // namespace

Status ParseToml(std::string_view text, const std::string& file, toml::table* out,
                 std::vector<Diagnostic>* diagnostics) {
  // Debian's toml++ is built with exceptions: a syntax error throws parse_error.
  try {
    *out = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    if (auto d = BareWordDiagnostic(text, file, e.source())) {
      diagnostics->push_back(std::move(*d));
    } else {
      diagnostics->push_back(MakeDiagnostic(file, e.source(), std::string(e.description())));
    }
    return Status::InvalidArgument(diagnostics->back().ToString());
  }
  return Status::Ok();
}

Result<std::string> ReadTextFile(const std::string& path, std::vector<Diagnostic>* diagnostics) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    diagnostics->push_back(Diagnostic{
        path, 0, 0,
        err != 0 ? fmt::format("cannot read file: {}", std::strerror(err)) : "cannot read file"});
    return Status::NotFound("cannot read " + path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status ParseTomlFile(const std::string& path, toml::table* out,
                     std::vector<Diagnostic>* diagnostics) {
  auto text = ReadTextFile(path, diagnostics);
  if (!text.ok()) return text.status();
  return ParseToml(*text, path, out, diagnostics);
}

void SortByPosition(std::vector<Diagnostic>* diagnostics, std::size_t from) {
  std::stable_sort(diagnostics->begin() + static_cast<std::ptrdiff_t>(from), diagnostics->end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                   });
}

SettingsReader::SettingsReader(const toml::table& table, std::string where, std::string file,
                               std::vector<Diagnostic>* diagnostics)
    : table_(table),
      where_(std::move(where)),
      file_(std::move(file)),
      diags_(diagnostics),
      errors_before_(diagnostics->size()) {}

void SettingsReader::CheckKnownKeys(std::initializer_list<std::string_view> known) {
  CheckKnownKeys(std::span<const std::string_view>(known.begin(), known.size()));
}

void SettingsReader::CheckKnownKeys(std::span<const std::string_view> known) {
  for (const auto& [k, v] : table_) {
    if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
    Error(k.source(), fmt::format("unknown key '{}' in {}; known keys: {}", k.str(), where_,
                                  fmt::join(known, ", ")));
  }
}

template <typename T>
std::optional<T> SettingsReader::Value(std::string_view key, std::string_view expected,
                                       const toml::node** node) {
  *node = table_.get(key);
  if (!*node) return std::nullopt;
  auto v = (*node)->value_exact<T>();
  if (!v) TypeError(**node, key, expected);
  return v;
}

bool SettingsReader::Bool(std::string_view key, bool* out) {
  const toml::node* n = nullptr;
  auto v = Value<bool>(key, "true or false", &n);
  if (v) *out = *v;
  return v.has_value();
}

bool SettingsReader::String(std::string_view key, std::string* out) {
  const toml::node* n = nullptr;
  auto v = Value<std::string>(key, "a string", &n);
  if (v) *out = std::move(*v);
  return v.has_value();
}

bool SettingsReader::Int(std::string_view key, std::int64_t min, std::int64_t max,
                         std::int64_t* out) {
  const toml::node* n = nullptr;
  auto v = Value<std::int64_t>(key, "an integer", &n);
  if (!v) return false;
  if (*v < min || *v > max) {
    Error(*n, fmt::format("'{}': expected an integer from {} to {}, got {}", key, min, max, *v));
    return false;
  }
  *out = *v;
  return true;
}

bool SettingsReader::Int(std::string_view key, int min, int max, int* out) {
  std::int64_t v = *out;
  if (!Int(key, static_cast<std::int64_t>(min), static_cast<std::int64_t>(max), &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

bool SettingsReader::Number(std::string_view key, double* out) {
  const toml::node* n = table_.get(key);
  if (!n) return false;
  if (auto i = n->value_exact<std::int64_t>()) {
    *out = static_cast<double>(*i);
    return true;
  }
  if (auto f = n->value_exact<double>()) {
    *out = *f;
    return true;
  }
  TypeError(*n, key, "a number");
  return false;
}

bool SettingsReader::Duration(std::string_view key, std::int64_t* out_seconds, bool seconds_ok) {
  const toml::node* n = table_.get(key);
  if (!n) return false;
  if (auto i = n->value_exact<std::int64_t>(); i && seconds_ok) {
    if (*i < 0) {
      Error(*n, fmt::format("'{}': expected a duration of 0 seconds or more, got {}", key, *i));
      return false;
    }
    *out_seconds = *i;
    return true;
  }
  auto s = n->value_exact<std::string>();
  if (!s) {
    TypeError(*n, key, "a duration like \"10m\"");
    return false;
  }
  auto d = ParseDurationSeconds(*s);
  if (!d.ok()) {
    Error(*n, fmt::format("'{}': {}", key, d.status().message()));
    return false;
  }
  *out_seconds = *d;
  return true;
}

bool SettingsReader::DurationBetween(std::string_view key, std::int64_t min_seconds,
                                     std::int64_t max_seconds, int* out_seconds) {
  std::int64_t seconds = 0;
  if (!Duration(key, &seconds)) return false;
  if (seconds < min_seconds || seconds > max_seconds) {
    Error(*table_.get(key),
          fmt::format("'{}': expected between {} and {}", key, FormatDurationSeconds(min_seconds),
                      FormatDurationSeconds(max_seconds)));
    return false;
  }
  *out_seconds = static_cast<int>(seconds);
  return true;
}

bool SettingsReader::DurationMillis(std::string_view key, std::int64_t* out_ms) {
  std::int64_t seconds = 0;
  if (!Duration(key, &seconds)) return false;
  *out_ms = std::max<std::int64_t>(seconds, 1) * 1000;
  return true;
}

bool SettingsReader::Strings(std::string_view key, std::vector<std::string>* out, bool single_ok) {
  const toml::node* n = table_.get(key);
  if (!n) return false;
  if (auto s = n->value_exact<std::string>(); s && single_ok) {
    *out = {*s};
    return true;
  }
  const toml::array* arr = n->as_array();
  if (!arr) {
    TypeError(*n, key, single_ok ? "a string or an array of strings" : "an array of strings");
    return false;
  }
  std::vector<std::string> values;
  bool ok = true;
  for (const toml::node& e : *arr) {
    if (auto s = e.value_exact<std::string>()) {
      values.push_back(*s);
    } else {
      TypeError(e, key, "only strings in the array");
      ok = false;
    }
  }
  if (ok) *out = std::move(values);
  return ok;
}

bool SettingsReader::IntArray(std::string_view key, int min, int max, std::vector<int>* out) {
  const toml::node* n = table_.get(key);
  if (!n) return false;
  const toml::array* arr = n->as_array();
  if (!arr) {
    TypeError(*n, key, "an array of integers");
    return false;
  }
  std::vector<int> values;
  for (const toml::node& e : *arr) {
    auto v = e.value_exact<std::int64_t>();
    if (!v) {
      TypeError(e, key, "only integers in the array");
      return false;
    }
    if (*v < min || *v > max) {
      Error(e, fmt::format("'{}': expected integers from {} to {}, got {}", key, min, max, *v));
      return false;
    }
    values.push_back(static_cast<int>(*v));
  }
  *out = std::move(values);
  return true;
}

bool SettingsReader::AddressPrefixes(std::string_view key, std::vector<IpPrefix>* out,
                                     bool single_ok, bool strict) {
  const toml::node* n = table_.get(key);
  if (!n) return false;
  bool ok = true;
  auto one = [&](const toml::node& e, std::string_view expected) {
    auto s = e.value_exact<std::string>();
    IpPrefix p;
    if (!s) {
      TypeError(e, key, expected);
    } else if (!IpPrefix::Parse(*s, &p, strict)) {
      Error(e,
            strict && IpPrefix::Parse(*s, &p)
                ? fmt::format("'{}': '{}' has bits set after the prefix length (did you mean "
                              "{}?)",
                              key, *s, p.ToString())
                : fmt::format("'{}': '{}' is not an address or CIDR (like 192.0.2.0/24)", key, *s));
    } else {
      out->push_back(p);
      return;
    }
    ok = false;
  };
  if (const toml::array* arr = n->as_array()) {
    for (const toml::node& e : *arr) one(e, "only strings in the array");
  } else if (single_ok && n->is_string()) {
    one(*n, "a string");
  } else {
    TypeError(*n, key,
              single_ok ? "an address, a CIDR or an array of them" : "an array of strings");
    ok = false;
  }
  return ok;
}

bool SettingsReader::Identifier(std::string_view key, std::string* out, bool allow_empty) {
  const toml::node* n = nullptr;
  auto s = Value<std::string>(key, "a string", &n);
  if (!s) return false;
  if (!(IsIdentifier(*s) || (allow_empty && s->empty()))) {
    Error(*n, fmt::format("'{}' must be a name of letters, digits and '_' starting with a "
                          "letter, at most 32 characters",
                          key));
    return false;
  }
  *out = *s;
  return true;
}

bool SettingsReader::Choice(std::string_view key, std::initializer_list<std::string_view> choices,
                            std::string* out) {
  const toml::node* n = nullptr;
  auto s = Value<std::string>(key, "a string", &n);
  if (!s) return false;
  if (std::find(choices.begin(), choices.end(), *s) == choices.end()) {
    Error(*n, fmt::format("'{}' must be one of: {}", key, fmt::join(choices, ", ")));
    return false;
  }
  *out = *s;
  return true;
}

const toml::table* SettingsReader::Table(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (!n) return nullptr;
  if (const toml::table* t = n->as_table()) return t;
  TypeError(*n, key, "a table");
  return nullptr;
}

void SettingsReader::Error(const toml::node& where, std::string message) {
  Error(where.source(), std::move(message));
}

void SettingsReader::Error(const toml::source_region& where, std::string message) {
  diags_->push_back(MakeDiagnostic(file_, where, std::move(message)));
}

void SettingsReader::TypeError(const toml::node& n, std::string_view key,
                               std::string_view expected) {
  Error(n, fmt::format("'{}': expected {}, got {}", key, expected, TomlTypeName(n)));
}

bool SettingsReader::IsIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  if (!alpha(s[0])) return false;
  for (char c : s) {
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '_') return false;
  }
  return true;
}

const toml::table* SectionTable(const Config& config, std::string_view name,
                                std::vector<Diagnostic>* diagnostics) {
  return SettingsReader(config.document, "mxward.toml", config.source, diagnostics).Table(name);
}

bool ForEachNamedTable(const toml::table& document, std::string_view parent,
                       std::string_view example, const std::string& file,
                       std::vector<Diagnostic>* diagnostics,
                       const std::function<void(std::string_view name, SettingsReader& r)>& read) {
  const toml::node* node = document.get(parent);
  if (!node) return true;
  const toml::table* all = node->as_table();
  if (!all) {
    diagnostics->push_back(
        MakeDiagnostic(file, node->source(),
                       fmt::format("'{}': expected tables like [{}.{}], got {}", parent, parent,
                                   example, TomlTypeName(*node))));
    return false;
  }
  bool ok = true;
  for (const auto& [name, value] : *all) {
    const std::string section = fmt::format("{}.{}", parent, name.str());
    const toml::table* t = value.as_table();
    if (!t) {
      diagnostics->push_back(MakeDiagnostic(file, value.source(),
                                            fmt::format("'{}': expected a table like [{}], got {}",
                                                        section, section, TomlTypeName(value))));
      ok = false;
      continue;
    }
    SettingsReader r(*t, "[" + section + "]", file, diagnostics);
    read(name.str(), r);
  }
  return ok;
}

}  // namespace mxward
