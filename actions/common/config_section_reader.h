// ConfigSectionReader: reads the typed settings of one mxward.toml section ([nftables],
// [postfixadmin], ...) and reports every unknown key and wrong type as a Diagnostic with
// file:line:col, so one run shows all mistakes at once. Internal to actions/.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mxward/config.h"
#include "mxward/time.h"

namespace mxward {

class ConfigSectionReader {
 public:
  ConfigSectionReader(const toml::table& table, std::string section, std::string file,
                      std::vector<Diagnostic>* diagnostics)
      : table_(table),
        section_(std::move(section)),
        file_(std::move(file)),
        diags_(diagnostics),
        errors_before_(diagnostics->size()) {}

  bool ok() const { return diags_->size() == errors_before_; }

  void CheckKnownKeys(std::initializer_list<std::string_view> known) {
    for (const auto& [k, v] : table_) {
      bool found = false;
      for (std::string_view name : known) found = found || k.str() == name;
      if (!found) Error(v, fmt::format("unknown setting '{}' in [{}]", k.str(), section_));
    }
  }

  void Bool(std::string_view key, bool* out) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    if (auto b = n->value_exact<bool>()) {
      *out = *b;
    } else {
      Error(*n, fmt::format("'{}' must be true or false", key));
    }
  }

  void Int(std::string_view key, std::int64_t min, std::int64_t max, std::int64_t* out) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    auto v = n->value_exact<std::int64_t>();
    if (!v || *v < min || *v > max) {
      Error(*n, fmt::format("'{}' must be an integer from {} to {}", key, min, max));
      return;
    }
    *out = *v;
  }

  void Int(std::string_view key, int min, int max, int* out) {
    std::int64_t v = *out;
    Int(key, static_cast<std::int64_t>(min), static_cast<std::int64_t>(max), &v);
    *out = static_cast<int>(v);
  }

  void String(std::string_view key, std::string* out) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    if (auto s = n->value_exact<std::string>()) {
      *out = *s;
    } else {
      Error(*n, fmt::format("'{}' must be a string", key));
    }
  }

  // A string that becomes part of a command or statement text: ^[A-Za-z][A-Za-z0-9_]{0,31}$.
  // allow_empty for optional prefixes.
  void Identifier(std::string_view key, std::string* out, bool allow_empty = false) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    auto s = n->value_exact<std::string>();
    if (!s || !(IsIdentifier(*s) || (allow_empty && s->empty()))) {
      Error(*n, fmt::format("'{}' must be a name of letters, digits and '_' starting with a "
                            "letter, at most 32 characters",
                            key));
      return;
    }
    *out = *s;
  }

  // One of the given words.
  void Choice(std::string_view key, std::initializer_list<std::string_view> choices,
              std::string* out) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    auto s = n->value_exact<std::string>();
    bool found = false;
    if (s) {
      for (std::string_view c : choices) found = found || *s == c;
    }
    if (!found) {
      Error(*n, fmt::format("'{}' must be one of: {}", key, fmt::join(choices, ", ")));
      return;
    }
    *out = *s;
  }

  // "1h", "90s", "2d" or an integer number of seconds.
  void Duration(std::string_view key, std::int64_t* out_seconds) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    if (auto i = n->value_exact<std::int64_t>(); i && *i >= 0) {
      *out_seconds = *i;
      return;
    }
    if (auto s = n->value_exact<std::string>()) {
      auto d = ParseDurationSeconds(*s);
      if (d.ok()) {
        *out_seconds = *d;
        return;
      }
    }
    Error(*n, fmt::format("'{}' must be a duration like \"1h\" or \"90s\"", key));
  }

  void IntArray(std::string_view key, int min, int max, std::vector<int>* out) {
    const toml::node* n = table_.get(key);
    if (!n) return;
    const toml::array* arr = n->as_array();
    if (!arr) {
      Error(*n, fmt::format("'{}' must be an array of integers", key));
      return;
    }
    std::vector<int> values;
    for (const toml::node& e : *arr) {
      auto v = e.value_exact<std::int64_t>();
      if (!v || *v < min || *v > max) {
        Error(e, fmt::format("'{}' must contain integers from {} to {}", key, min, max));
        return;
      }
      values.push_back(static_cast<int>(*v));
    }
    *out = std::move(values);
  }

  void Error(const toml::node& where, std::string message) {
    diags_->push_back(MakeDiagnostic(file_, where.source(), std::move(message)));
  }

  static bool IsIdentifier(std::string_view s) {
    if (s.empty() || s.size() > 32) return false;
    auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
    if (!alpha(s[0])) return false;
    for (char c : s) {
      if (!alpha(c) && !(c >= '0' && c <= '9') && c != '_') return false;
    }
    return true;
  }

 private:
  const toml::table& table_;
  std::string section_;
  std::string file_;
  std::vector<Diagnostic>* diags_;
  std::size_t errors_before_;
};

}  // namespace mxward
