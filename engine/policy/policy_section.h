// The [policy.NAME] tables of mxward.toml ([policy.dovecot], [policy.postfix]), for the servers'
// FromConfig readers. Used when the daemon starts and by `mxward check`.
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

}  // namespace mxward
