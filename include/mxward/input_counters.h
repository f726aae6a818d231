// InputCounters: what one input (a listener, a followed file) has received, for the metrics
// endpoint. Written by the input's thread, read by any thread: relaxed atomics, no lock.
#pragma once

#include <atomic>
#include <cstdint>

namespace mxward {

struct InputCounters {
  std::atomic<std::uint64_t> messages{0};  // lines handed to the LineSink
  std::atomic<std::uint64_t> bytes{0};     // payload bytes of those lines
  // Framing errors we could attribute (an empty datagram, a line over the size limit that was
  // cut, a stream that sent garbage). Syslog-level malformation is counted by the pipeline.
  std::atomic<std::uint64_t> malformed{0};
  // Messages lost: UDP datagrams the kernel dropped because the receive queue was full
  // (SO_RXQ_OVFL) plus anything we had to discard (e.g. a truncated datagram's rest).
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> dropped_kernel{0};      // the part of `dropped` the kernel reported
  std::atomic<std::uint64_t> connections{0};         // stream connections accepted, total
  std::atomic<std::uint64_t> open_connections{0};    // stream connections open now
  std::atomic<std::uint64_t> closed_bad_framing{0};  // streams closed for garbage or oversize
  std::atomic<std::uint64_t> closed_idle{0};         // streams closed after idle_timeout
  // Stream connections closed at once because their peer (address or uid) already had
  // max_connections_per_peer open.
  std::atomic<std::uint64_t> refused_peer_limit{0};
  // Times the listener stopped accepting at max_connections (it resumes when one closes).
  std::atomic<std::uint64_t> accept_paused{0};
  std::atomic<std::uint64_t> rotations{0};  // file follower: rotations/truncations seen
  // udp/tcp/tls with allowed_senders: datagrams and connections from other addresses, refused.
  std::atomic<std::uint64_t> refused_sender{0};
  // tls: handshakes that failed (no, unverifiable, expired or self-signed certificate, not TLS at
  // all, timeout), and among them those whose certificate was valid but not on the allow list.
  std::atomic<std::uint64_t> tls_handshake_failed{0};
  std::atomic<std::uint64_t> tls_peer_not_allowed{0};
  std::atomic<std::uint64_t> tls_authorised{0};  // tls: connections authorised
  // Stream inputs: bytes of the connections' framing buffers now (at most max_message_size + 32
  // per connection, whatever the sender does): what ingest holds in memory, for tests and sizing.
  std::atomic<std::uint64_t> buffer_bytes{0};

  void Add(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  static std::uint64_t Get(const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  }
};

}  // namespace mxward
