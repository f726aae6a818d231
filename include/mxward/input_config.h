// InputSpec: one configured input (a syslog listener or a followed file), read from the
// `[[input]]` tables of mxward.toml by ParseInputSpecs().
//
//   [[input]]
//   type = "tcp"                    # "udp" | "tcp" | "unix-dgram" | "unix-stream" | "file"
//   address = "127.0.0.1:5514"      # udp/tcp: "host:port", "[v6]:port"; port 0 = any free port
//   name = "rsyslog"                # optional metrics label; default "<type>:<address|path>"
//   max_message_size = 65536        # bytes; longer stream messages close the connection
//   max_connections = 1024          # tcp / unix-stream
//   receive_buffer = 8388608        # udp / unix-dgram SO_RCVBUF (bytes)
//
//   [[input]]
//   type = "unix-dgram"             # or "unix-stream"
//   path = "/run/mxward/log.sock"
//   mode = "0660"                   # octal string
//   owner = "root"                  # user and group names (applied with chown at start)
//   group = "adm"
//
//   [[input]]
//   type = "file"
//   path = "/var/log/mail.log"
//   start_at = "end"                # or "beginning"; used when no saved position applies
//   state_file = "/var/lib/mxward/follow-mail.log.pos"   # default: next to the store
//
// Without any [[input]] table the inputs are UDP and TCP on 127.0.0.1:5514 (DefaultInputSpecs).
// Errors are Diagnostics with file:line:col; unknown keys are errors (a typo must not silently
// leave an input on its default).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/config.h"
#include "mxward/status.h"

namespace mxward {

enum class InputType { kUdp, kTcp, kUnixDgram, kUnixStream, kFile };

std::string_view InputTypeName(InputType type);  // "udp", "tcp", "unix-dgram", ...

struct InputSpec {
  InputType type = InputType::kUdp;
  std::string name;  // label for metrics and logs; printable, no spaces (checked)
  // udp / tcp: the host as written (an IP address literal, or "localhost") and the port.
  std::string host = "127.0.0.1";
  std::uint16_t port = 5514;
  std::string path;                   // unix sockets and files
  std::optional<std::uint32_t> mode;  // unix sockets: chmod after bind
  std::string owner, group;           // unix sockets: chown after bind (names)
  std::size_t max_message_size = 64 * 1024;
  std::size_t max_connections = 1024;
  int receive_buffer = 8 * 1024 * 1024;  // SO_RCVBUF for datagram inputs (SO_RCVBUFFORCE as root)
  bool start_at_end = true;              // file
  std::string state_file;                // file: where the read position is kept

  // "udp 127.0.0.1:5514", "unix-stream /run/mxward/log.sock", "file /var/log/mail.log".
  std::string Describe() const;
};

// UDP and TCP on 127.0.0.1:5514.
std::vector<InputSpec> DefaultInputSpecs();

// The inputs of config.document's [[input]] array, or the defaults when there is none. File
// inputs without state_file get one in the store's directory. Errors are appended to
// *diagnostics and the result is InvalidArgument.
Result<std::vector<InputSpec>> ParseInputSpecs(const Config& config,
                                               std::vector<Diagnostic>* diagnostics);

// Splits "127.0.0.1:5514", "[::1]:5514", "localhost:514" into host and port. The host must be an
// IP literal or "localhost"; no DNS at start-up.
Status ParseHostPort(std::string_view text, std::string* host, std::uint16_t* port);

}  // namespace mxward
