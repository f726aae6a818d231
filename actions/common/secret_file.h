// ReadSecretFile: the one way mxward reads a secret (webhook HMAC key, SMTP password, PostfixAdmin
// database password) from a file. The file must be a regular file (not a symlink: O_NOFOLLOW),
// not readable or writable by "other" and not writable by the group, or it is refused with a
// message naming the file and its mode, never its content. Trailing newlines are dropped.
#pragma once

#include <string>

#include "mxward/status.h"

namespace mxward {

Result<std::string> ReadSecretFile(const std::string& path);

}  // namespace mxward
