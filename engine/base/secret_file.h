// ReadSecretFile: the one way mxward reads a secret (webhook HMAC key, SMTP password, PostfixAdmin
// database password) from a file. The file must be a regular file (not a symlink: O_NOFOLLOW),
// not readable or writable by "other" and not writable by the group, or it is refused with a
// message naming the file and its mode, never its content. Trailing newlines are dropped.
#pragma once

#include <string>
#include <string_view>

#include "engine/base/settings_reader.h"
#include "mxward/status.h"

namespace mxward {

Result<std::string> ReadSecretFile(const std::string& path);

// The secret in the file a setting names (password_file = "/etc/mxward/smtp.secret") into *out.
// A wrong type or a file ReadSecretFile refuses is a diagnostic at the setting; an absent or
// empty setting leaves *out as it was.
void ReadSecretSetting(SettingsReader& r, std::string_view key, std::string* out);

}  // namespace mxward
