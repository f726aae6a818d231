#include "mxward/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mxward/time.h"

namespace mxward {

std::string Diagnostic::ToString() const {
  if (line > 0) return fmt::format("{}:{}:{}: error: {}", file, line, column, message);
  return fmt::format("{}: error: {}", file, message);
}

Diagnostic MakeDiagnostic(const std::string& file, const toml::source_region& where,
                          std::string message) {
  return Diagnostic{file, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column),
                    std::move(message)};
}

Config Config::Defaults() {
  Config c;
  IpPrefix p;
  IpPrefix::Parse("127.0.0.0/8", &p);
  c.allow_addresses.push_back(p);
  IpPrefix::Parse("::1", &p);
  c.allow_addresses.push_back(p);
  return c;
}

namespace {

// Reads an array of strings at key; records a diagnostic for anything else.
bool ReadStrings(const toml::table& t, std::string_view key, const std::string& file,
                 std::vector<std::string>* out, std::vector<Diagnostic>* diags) {
  const toml::node* n = t.get(key);
  if (!n) return true;
  const toml::array* arr = n->as_array();
  if (!arr) {
    diags->push_back(
        MakeDiagnostic(file, n->source(), fmt::format("'{}' must be an array of strings", key)));
    return false;
  }
  out->clear();
  for (const toml::node& e : *arr) {
    if (auto s = e.value<std::string>()) {
      out->push_back(*s);
    } else {
      diags->push_back(
          MakeDiagnostic(file, e.source(), fmt::format("'{}' must contain only strings", key)));
      return false;
    }
  }
  return true;
}

void CheckKnownKeys(const toml::table& t, std::initializer_list<std::string_view> known,
                    std::string_view section, const std::string& file,
                    std::vector<Diagnostic>* diags) {
  for (const auto& [k, v] : t) {
    bool ok = false;
    for (auto name : known) ok = ok || k.str() == name;
    if (!ok) {
      diags->push_back(MakeDiagnostic(
          file, v.source(), fmt::format("unknown setting '{}' in [{}]", k.str(), section)));
    }
  }
}

}  // namespace

Result<Config> Config::Load(const std::string& path, std::vector<Diagnostic>* diags) {
  Config c = Defaults();
  c.source = path;
  // Debian's toml++ is built with exceptions: a syntax error throws parse_error.
  try {
    c.document = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    diags->push_back(MakeDiagnostic(path, e.source(), std::string(e.description())));
    return Status::InvalidArgument(diags->back().ToString());
  }
  const std::size_t before = diags->size();

  // A misspelt section ([stor]) would otherwise leave the daemon silently on defaults for it.
  static constexpr std::string_view kTopLevel[] = {
      "store",      "rules",    "allow",        "dry_run", "control", "input", "metrics",
      "dispatcher", "nftables", "postfixadmin", "webhook", "mail",    "exec"};
  for (const auto& [k, v] : c.document) {
    bool known = false;
    for (auto name : kTopLevel) known = known || k.str() == name;
    if (!known) {
      diags->push_back(
          MakeDiagnostic(path, v.source(),
                         fmt::format("unknown section or setting '{}' (known: {})", k.str(),
                                     fmt::join(std::begin(kTopLevel), std::end(kTopLevel), ", "))));
    }
  }
  if (const toml::node* d = c.document.get("dry_run"); d && !d->is_boolean()) {
    diags->push_back(MakeDiagnostic(path, d->source(), "'dry_run' must be true or false"));
  }

  if (const toml::table* store = c.document["store"].as_table()) {
    CheckKnownKeys(*store, {"path", "retention"}, "store", path, diags);
    if (auto p = (*store)["path"].value<std::string>()) c.store_path = *p;
    if (const toml::node* r = store->get("retention")) {
      auto s = r->value<std::string>();
      auto d = s ? ParseDurationSeconds(*s)
                 : Result<std::int64_t>(
                       Status::InvalidArgument("'retention' must be a duration like \"90d\""));
      if (d.ok()) {
        c.retention_seconds = *d;
      } else {
        diags->push_back(MakeDiagnostic(path, r->source(), d.status().message()));
      }
    }
  }
  if (const toml::table* rules = c.document["rules"].as_table()) {
    CheckKnownKeys(*rules, {"dirs"}, "rules", path, diags);
    ReadStrings(*rules, "dirs", path, &c.rule_dirs, diags);
  }
  if (const toml::table* allow = c.document["allow"].as_table()) {
    CheckKnownKeys(*allow, {"addresses", "users", "domains", "own_addresses"}, "allow", path,
                   diags);
    std::vector<std::string> addrs;
    if (ReadStrings(*allow, "addresses", path, &addrs, diags) && allow->contains("addresses")) {
      c.allow_addresses.clear();
      const toml::array* arr = (*allow)["addresses"].as_array();
      for (std::size_t i = 0; i < addrs.size(); ++i) {
        IpPrefix p;
        if (IpPrefix::Parse(addrs[i], &p)) {
          c.allow_addresses.push_back(p);
        } else {
          diags->push_back(MakeDiagnostic(path, (*arr)[i].source(),
                                          fmt::format("'{}' is not an address or CIDR", addrs[i])));
        }
      }
    }
    ReadStrings(*allow, "users", path, &c.allow_users, diags);
    ReadStrings(*allow, "domains", path, &c.allow_domains, diags);
    if (auto b = (*allow)["own_addresses"].value<bool>()) c.allow_own_addresses = *b;
  }
  if (auto b = c.document["dry_run"].value<bool>()) c.dry_run = *b;
  if (const toml::table* control = c.document["control"].as_table()) {
    if (auto s = (*control)["socket"].value<std::string>()) c.control_socket = *s;
  }
  if (diags->size() > before) {
    return Status::InvalidArgument(fmt::format("{} error(s) in {}", diags->size() - before, path));
  }
  return c;
}

}  // namespace mxward
