// SettingsReader: reads the typed settings of one TOML table (a mxward.toml section such as
// [store] or [nftables], one [[input]], a playbook's [trigger], a parser's [[pattern]]) and
// reports every unknown key and wrong type as a Diagnostic with file:line:col, so one run shows
// all mistakes at once. Every reader of a TOML file in mxward uses it, so the same mistake reads
// the same everywhere:
//
//   mxward.toml:3:11: error: 'workers': expected an integer, got a string
//   mxward.toml:4:1: error: unknown key 'wokers' in [dispatcher]; known keys: workers, ...
//
// A getter leaves *out untouched when the key is absent or wrong, so callers set defaults first.
// It returns true only when the key is present and valid; absence is table().contains(key).
// Not thread-safe; one reader per table, used on the loading thread.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/config.h"
#include "mxward/ip_address.h"

namespace mxward {

// "a string", "an integer", "a table", ...: what a value is, for "got ..." in messages.
std::string_view TomlTypeName(const toml::node& n);

// The bytes of the file at path; a file that cannot be read is a Diagnostic "cannot read file".
Result<std::string> ReadTextFile(const std::string& path, std::vector<Diagnostic>* diagnostics);

// Parses TOML text (or a file) into *out. A syntax error becomes one Diagnostic; an unquoted
// word as a value (threshold = twenty), which toml++ reports as a failed boolean or value, is
// reported as the type error it is.
Status ParseToml(std::string_view text, const std::string& file, toml::table* out,
                 std::vector<Diagnostic>* diagnostics);
Status ParseTomlFile(const std::string& path, toml::table* out,
                     std::vector<Diagnostic>* diagnostics);

// Orders diagnostics [from, end) by line and column: toml++ iterates keys sorted by name, people
// read a file top to bottom.
void SortByPosition(std::vector<Diagnostic>* diagnostics, std::size_t from);

class SettingsReader {
 public:
  // where names the table in messages: "[dispatcher]", "[[input]]", "the playbook".
  SettingsReader(const toml::table& table, std::string where, std::string file,
                 std::vector<Diagnostic>* diagnostics);

  // No diagnostic was added through this reader's file since it was made.
  bool ok() const { return diags_->size() == errors_before_; }
  const toml::table& table() const { return table_; }
  const std::string& where() const { return where_; }
  const std::string& file() const { return file_; }

  // "unknown key 'x' in [where]; known keys: a, b, c", located at the key.
  void CheckKnownKeys(std::initializer_list<std::string_view> known);
  void CheckKnownKeys(std::span<const std::string_view> known);

  bool Bool(std::string_view key, bool* out);
  bool String(std::string_view key, std::string* out);
  bool Int(std::string_view key, std::int64_t min, std::int64_t max, std::int64_t* out);
  bool Int(std::string_view key, int min, int max, int* out);
  // An integer or a floating-point number.
  bool Number(std::string_view key, double* out);
  // A Duration kept in milliseconds, at least one second: timeouts, backoffs, intervals.
  bool DurationMillis(std::string_view key, std::int64_t* out_ms);
  // "1h", "90s", "2d" or, with seconds_ok, a whole number of seconds (0 or more). Without it a
  // bare number is refused: `retention = 90` means days to a person and seconds to us.
  bool Duration(std::string_view key, std::int64_t* out_seconds, bool seconds_ok = true);
  // A Duration between min_seconds and max_seconds inclusive (timeouts): out of range is an error
  // naming both bounds ("'request_timeout': expected between 1s and 1h"), *out left alone.
  bool DurationBetween(std::string_view key, std::int64_t min_seconds, std::int64_t max_seconds,
                       int* out_seconds);
  // An array of strings; with single_ok a lone string counts as an array of one. Replaces *out.
  bool Strings(std::string_view key, std::vector<std::string>* out, bool single_ok = false);
  bool IntArray(std::string_view key, int min, int max, std::vector<int>* out);
  // Addresses or CIDR prefixes ("192.0.2.0/24", "::1"), an array or (single_ok) one string.
  // Appends to *out. strict refuses host bits after the prefix ("192.0.2.1/24"): where the list
  // says who may do something, a typo must not silently widen or shift it.
  bool AddressPrefixes(std::string_view key, std::vector<IpPrefix>* out, bool single_ok = false,
                       bool strict = false);
  // A string that becomes part of a command or statement text: ^[A-Za-z][A-Za-z0-9_]{0,31}$.
  // allow_empty for optional prefixes.
  bool Identifier(std::string_view key, std::string* out, bool allow_empty = false);
  // One of the given words.
  bool Choice(std::string_view key, std::initializer_list<std::string_view> choices,
              std::string* out);
  // The sub-table at key, or nullptr (absent, or not a table: reported).
  const toml::table* Table(std::string_view key);

  void Error(const toml::node& where, std::string message);
  void Error(const toml::source_region& where, std::string message);
  // "'key': expected <what>, got <what n is>" at n.
  void TypeError(const toml::node& n, std::string_view key, std::string_view expected);

  static bool IsIdentifier(std::string_view s);

 private:
  // The value at key as T, with its node in *node; nullopt when absent, or of another type
  // (reported as "expected <expected>").
  template <typename T>
  std::optional<T> Value(std::string_view key, std::string_view expected, const toml::node** node);

  const toml::table& table_;
  std::string where_;
  std::string file_;
  std::vector<Diagnostic>* diags_;
  std::size_t errors_before_;
};

// The mxward.toml section [name], or nullptr when it is absent or not a table (reported as
// "'name': expected a table, got ...").
const toml::table* SectionTable(const Config& config, std::string_view name,
                                std::vector<Diagnostic>* diagnostics);

// Reads [parent.NAME] sections ([webhook.ops], [exec.ticket]): calls read(name, reader) for each
// NAME whose value is a table, and reports a parent that is not a table of tables. example is a
// NAME for the message ("ops"). Returns false when it added a diagnostic of its own.
bool ForEachNamedTable(const toml::table& document, std::string_view parent,
                       std::string_view example, const std::string& file,
                       std::vector<Diagnostic>* diagnostics,
                       const std::function<void(std::string_view name, SettingsReader& r)>& read);

}  // namespace mxward
