// LineOrigin: who handed a log line to mxward, as the transport (never the line) says. An input
// fills it from what the kernel or journald vouches for, and the Pipeline checks it against the
// provenance policy (provenance.h) for the program the line claims. The views are valid only
// during the LineSink call that carries the origin.
#pragma once

#include <cstdint>
#include <string_view>

namespace mxward {

struct LineOrigin {
  enum class Transport : std::uint8_t {
    kNone,     // udp, tcp, tls, files, stdin: nothing is known about the writer
    kPeer,     // unix-stream (SO_PEERCRED) or unix-dgram (SCM_CREDENTIALS): the socket's peer,
               // the writer itself or a forwarder that names the writer in the line (provenance.h)
    kJournal,  // journald's trusted _UID of the entry: the writer; never a forwarder
  };
  Transport transport = Transport::kNone;
  std::uint32_t uid = 0;  // kPeer, kJournal
  std::int64_t pid = -1;  // for the log; -1 unknown
  std::string_view comm;  // journal _COMM (for the log), may be empty
  std::string_view exe;   // journal _EXE (for the log), may be empty

  static LineOrigin Peer(std::uint32_t uid, std::int64_t pid) {
    LineOrigin o;
    o.transport = Transport::kPeer;
    o.uid = uid;
    o.pid = pid;
    return o;
  }
};

}  // namespace mxward
