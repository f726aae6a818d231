// The [policy.NAME] tables of mxward.toml ([policy.dovecot], [policy.postfix]) and the pieces of
// them both servers read the same way. Used when the daemon starts and by `mxward check`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/base/settings_reader.h"
#include "mxward/config.h"

namespace mxward {

// The table [policy.<name>], or nullptr when absent (or not a table: reported). Unknown keys of
// [policy] itself are reported when name is "dovecot" (once, by the reader that runs first).
const toml::table* PolicySection(const Config& config, std::string_view name,
                                 std::vector<Diagnostic>* diagnostics);

// The secret in the file at r's key (its first line, without the newline), or false with a
// Diagnostic when the file cannot be read or is empty.
bool ReadSecretFile(SettingsReader& r, std::string_view key, std::string* out);

}  // namespace mxward
