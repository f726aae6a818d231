#include "engine/policy/policy_section.h"

#include <fmt/format.h>

namespace mxward {

const toml::table* PolicySection(const Config& config, std::string_view name,
                                 std::vector<Diagnostic>* diagnostics) {
  if (!config.document.contains("policy")) return nullptr;
  const toml::table* policy = SectionTable(config, "policy", diagnostics);
  if (policy == nullptr) return nullptr;
  SettingsReader r(*policy, "[policy]", config.source, diagnostics);
  if (name == "dovecot") r.CheckKnownKeys({"dovecot", "postfix"});
  if (!policy->contains(name)) return nullptr;
  return r.Table(name);
}

bool ReadSecretFile(SettingsReader& r, std::string_view key, std::string* out) {
  std::string path;
  if (!r.String(key, &path)) return false;
  std::vector<Diagnostic> file_diags;
  auto text = ReadTextFile(path, &file_diags);
  const toml::node& at = *r.table().get(key);
  if (!text.ok()) {
    r.Error(at, fmt::format("'{}': cannot read {}", key, path));
    return false;
  }
  std::string secret = text->substr(0, text->find('\n'));
  if (!secret.empty() && secret.back() == '\r') secret.pop_back();
  if (secret.empty()) {
    r.Error(at, fmt::format("'{}': {} holds no secret on its first line", key, path));
    return false;
  }
  *out = std::move(secret);
  return true;
}

}  // namespace mxward
