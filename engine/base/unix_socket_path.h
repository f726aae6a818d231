// PrepareUnixSocketPath: makes a unix socket path ready to bind, for every server that listens on
// one (syslog inputs, the Postfix policy service). Creates the parent directory; removes a stale
// socket file left by a crash; refuses a live socket (someone accepts connections on it: another
// mxward), a file that is not a socket and a path too long for sockaddr_un (107 bytes), with a
// message that says which. Call before bind.
#pragma once

#include <string>

#include "mxward/status.h"

namespace mxward {

// sock_type: SOCK_STREAM or SOCK_DGRAM, the type the live-socket probe connects with.
Status PrepareUnixSocketPath(const std::string& path, int sock_type);

}  // namespace mxward
