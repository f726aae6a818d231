// SyslogListener: every configured input (InputSpec) on one boost::asio::io_context, delivering
// complete log lines to one LineSink.
//
//   - udp: IPv4 or IPv6, one message per datagram (up to 64 KiB). A large SO_RCVBUF is set and the
//     kernel's count of datagrams dropped for a full receive queue (SO_RXQ_OVFL) is added to the
//     input's `dropped` counter; UDP cannot push back, so this is where loss becomes visible.
//     Datagrams are read in batches with recvmmsg.
//   - tcp and unix-stream: RFC 6587 framing, detected per connection from its first bytes:
//     octet-counted ("123 <34>1 ...") when it starts with digits and a space, otherwise
//     LF-terminated (NUL and CRLF accepted too). A connection that sends a length over
//     max_message_size, an unterminated line longer than that, or a bad octet count is closed and
//     counted in closed_bad_framing; the others are unaffected.
//     Backpressure: LineSink::OnLine runs synchronously on the io thread and a connection reads
//     again only after all lines of its last read were processed, so a slow engine fills the
//     kernel buffers and the sender (rsyslog's queue) waits; nothing accepted is dropped, and
//     memory per connection is bounded by max_message_size.
//   - unix-dgram (like /dev/log) and unix-stream: a socket file created at start (a stale one is
//     replaced, a live one is an error), chmod/chown as configured, removed at Stop().
//   - tls: RFC 5425, a tcp input with TLS 1.2/1.3 (OpenSSL). The client must present a
//     certificate that chains to ca_file and is admitted by allowed_peers/allowed_fingerprints
//     (tls_peer.h), checked during the handshake, which is aborted otherwise; refusals are counted
//     (tls_handshake_failed, tls_peer_not_allowed) and logged rate-limited with the peer address
//     and reason. Lines are framed as on tcp and delivered with LineSink::OnLineFrom carrying the
//     authorised certificate name. Backpressure is the same as tcp's.
//   - udp, tcp and tls with allowed_senders: datagrams and connections from other addresses are
//     refused before anything is read (refused_sender).
//   - file: a FileFollower (file_follower.h) on the same io_context.
//   - journal: a JournalFollower (journal_follower.h) on the same io_context; its cursor is
//     loaded and saved through the InputCursorHooks (the daemon keeps it in the store).
//
// The line handed to the sink has its framing removed (no trailing LF/CR/NUL). input_index is
// the input's position in the vector given to the constructor.
//
// Threading: Start(), Stop() and all delivery happen on the io_context's thread (Start may also
// be called before io_context::run). counters() are atomics readable from any thread.
// Lifetime: call Stop() (or destroy the listener) before destroying the sink; after Stop() no
// line is delivered.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "mxward/input_config.h"
#include "mxward/input_counters.h"
#include "mxward/line_sink.h"
#include "mxward/metrics_registry.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

// Where journal inputs keep their position, by input name. All are called on the io thread:
// load at Start(), begin before and save after each batch of delivered lines
// (journal_follower.h). Without hooks a journal input starts at its start_at every time.
struct InputCursorHooks {
  std::function<std::optional<std::string>(const std::string& input)> load;
  std::function<void(const std::string& input)> begin;
  std::function<void(const std::string& input, std::string_view cursor)> save;
};

class SyslogListener {
 public:
  // clock: received_at for the lines; nullptr = the system clock.
  SyslogListener(boost::asio::io_context& io, std::vector<InputSpec> inputs, LineSink* sink,
                 const Clock* clock = nullptr);
  ~SyslogListener();
  SyslogListener(const SyslogListener&) = delete;
  SyslogListener& operator=(const SyslogListener&) = delete;

  // Before Start(): how journal inputs load and save their cursor.
  void SetCursorHooks(InputCursorHooks hooks) { cursor_hooks_ = std::move(hooks); }

  // Opens every input. On the first failure the inputs opened so far are closed again and the
  // error names the input: "tcp 127.0.0.1:5514: cannot bind: Address already in use (is another
  // syslog server or mxward running?)".
  Status Start();
  // Closes every socket and connection, stops followers, removes unix socket files we created.
  void Stop();
  // SIGHUP: tls inputs re-read cert_file, key_file and ca_file; new connections use them, open
  // ones keep theirs. On an error (the first is returned, naming the input) that input keeps its
  // running credentials. Call on the io_context's thread.
  Status ReloadCredentials();

  // "udp 127.0.0.1:5514, tcp 127.0.0.1:5514" with the ports actually bound.
  std::string Describe() const;
  // The port input `index` is bound to (useful with port 0); 0 for non-network inputs.
  std::uint16_t bound_port(std::size_t index) const;
  const std::vector<InputSpec>& inputs() const { return specs_; }
  const InputCounters& counters(std::size_t index) const;

  // Adds the per-input samples (mxward_input_*{input="<name>"}) to registry; the handles must be
  // dropped before the listener is destroyed.
  void RegisterMetrics(MetricsRegistry* registry,
                       std::vector<MetricsRegistry::Handle>* handles) const;

  class Input;  // one per InputSpec (implementation detail)

 private:
  boost::asio::io_context& io_;
  std::vector<InputSpec> specs_;
  LineSink* sink_;
  const Clock* clock_;
  std::vector<std::shared_ptr<Input>> inputs_;
  InputCursorHooks cursor_hooks_;
};

}  // namespace mxward
