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

}  // namespace mxward
