// SyslogListener: the inputs. Datagram inputs drain their socket with recvmmsg after asio says it
// is readable (asio has no access to SO_RXQ_OVFL's control message); stream inputs are asio
// acceptors with one StreamSession per connection that frames RFC 6587 messages in a bounded
// buffer and reads again only after the sink processed everything it had.
#include "mxward/syslog_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/base/tcp_listen.h"
#include "engine/base/unix_socket_path.h"
#include "engine/ingest/stream_framer.h"
#include "engine/ingest/tls_peer.h"
#include "mxward/file_follower.h"
#include "mxward/journal_follower.h"
#include "mxward/rate_limited_log.h"

namespace mxward {

namespace asio = boost::asio;

namespace {

RateLimitedLog& InputLog() {
  static RateLimitedLog log(RateLimitedLogOptions{60, 3, 256});
  return log;
}

// Framing leftovers a sender may put at the end of a message.
std::string_view StripFraming(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == '\0')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string BindHint(const boost::system::error_code& ec) {
  if (ec == asio::error::address_in_use) {
    return " (is another syslog server or mxward already listening there?)";
  }
  if (ec == asio::error::access_denied)
    return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
  if (ec == boost::system::errc::address_not_available)
    return " (no local interface has that address)";
  return "";
}

// asio opens and accepts without SOCK_CLOEXEC: without this, every child the daemon starts
// (actions run argv commands) would inherit the listening sockets and keep the port open.
void SetCloseOnExec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

Status SetReceiveBuffer(int fd, int bytes) {
  // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; fall back to SO_RCVBUF.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) == 0) return Status::Ok();
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) == 0) return Status::Ok();
  return Status::IoError(fmt::format("SO_RCVBUF: {}", std::strerror(errno)));
}

Status ApplyOwnership(const InputSpec& spec) {
  if (spec.mode && ::chmod(spec.path.c_str(), static_cast<mode_t>(*spec.mode)) != 0) {
    return Status::PermissionDenied(
        fmt::format("chmod {:o} {}: {}", *spec.mode, spec.path, std::strerror(errno)));
  }
  if (spec.owner.empty() && spec.group.empty()) return Status::Ok();
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  char buf[16384];
  if (!spec.owner.empty()) {
    passwd pw{};
    passwd* found = nullptr;
    if (getpwnam_r(spec.owner.c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) {
      return Status::NotFound(fmt::format("{}: no such user '{}'", spec.path, spec.owner));
    }
    uid = pw.pw_uid;
  }
  if (!spec.group.empty()) {
    group gr{};
    group* found = nullptr;
    if (getgrnam_r(spec.group.c_str(), &gr, buf, sizeof buf, &found) != 0 || found == nullptr) {
      return Status::NotFound(fmt::format("{}: no such group '{}'", spec.path, spec.group));
    }
    gid = gr.gr_gid;
  }
  if (::chown(spec.path.c_str(), uid, gid) != 0) {
    return Status::PermissionDenied(
        fmt::format("chown {}:{} {}: {}", spec.owner, spec.group, spec.path, std::strerror(errno)));
  }
  return Status::Ok();
}

// The address of a datagram's or connection's sender, for allowed_senders.
IpAddress SenderAddress(const sockaddr* sa) {
  char text[INET6_ADDRSTRLEN] = {};
  IpAddress ip;
  if (sa->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, text, sizeof text);
  } else if (sa->sa_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, text, sizeof text);
  } else {
    return ip;
  }
  IpAddress::Parse(text, &ip);
  return ip;
}

// True when the input takes anyone, or the address is in one of its allowed_senders prefixes.
bool SenderAllowed(const InputSpec& spec, const IpAddress& ip) {
  if (spec.allowed_senders.empty()) return true;
  if (!ip.valid()) return false;
  for (const auto& prefix : spec.allowed_senders) {
    if (prefix.Contains(ip)) return true;
  }
  return false;
}

// A tls input's server context from its files: TLS 1.2 or 1.3, a client certificate required and
// verified against ca_file, no session resumption (every connection is verified and authorised
// by a full handshake).
Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const InputSpec& spec) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                   asio::ssl::context::single_dh_use);
  SSL_CTX_set_options(native,
                      SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(native, 0);
  boost::system::error_code ec;
  auto fail = [&](const std::string& key, const std::string& file) {
    return Status::InvalidArgument(fmt::format("{} {}: {}", key, file, ec.message()));
  };
  ctx->use_certificate_chain_file(spec.tls.cert_file, ec);
  if (ec) return fail("cert_file", spec.tls.cert_file);
  ctx->use_private_key_file(spec.tls.key_file, asio::ssl::context::pem, ec);
  if (ec) return fail("key_file", spec.tls.key_file);
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument(fmt::format("key_file {} does not belong to cert_file {}",
                                               spec.tls.key_file, spec.tls.cert_file));
  }
  ctx->load_verify_file(spec.tls.ca_file, ec);
  if (ec) return fail("ca_file", spec.tls.ca_file);
  // Tell clients which CA to pick a certificate for (rsyslog ignores it; other clients use it).
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(spec.tls.ca_file.c_str())) {
    SSL_CTX_set_client_CA_list(native, names);
  }
  ERR_clear_error();
  ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  return ctx;
}

template <typename Endpoint>
Result<Endpoint> IpEndpoint(const InputSpec& spec) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(spec.host, ec);
  if (ec) return Status::InvalidArgument(fmt::format("bad address '{}'", spec.host));
  return Endpoint(addr, spec.port);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class SyslogListener::Input : public std::enable_shared_from_this<SyslogListener::Input> {
 public:
  Input(asio::io_context& io, const InputSpec& spec, int index, LineSink* sink, const Clock* clock)
      : io_(io), spec_(spec), index_(index), sink_(sink), clock_(clock) {}
  virtual ~Input() = default;

  virtual Status Start() = 0;
  virtual void Stop() = 0;
  virtual std::uint16_t port() const { return 0; }
  virtual const InputCounters& counters() const { return counters_; }
  // SIGHUP: re-read certificate and key files (tls inputs); others have nothing to reload.
  virtual Status ReloadCredentials() { return Status::Ok(); }

  const InputSpec& spec() const { return spec_; }
  bool stopped() const { return stopped_; }
  InputCounters& mutable_counters() { return counters_; }
  UnixMicros Now() const { return clock_->Now(); }

  void Deliver(std::string_view line, UnixMicros now) {
    counters_.Add(counters_.messages);
    counters_.Add(counters_.bytes, line.size());
    sink_->OnLine(line, now, index_);
  }
  void DeliverFrom(std::string_view line, UnixMicros now, std::string_view node) {
    counters_.Add(counters_.messages);
    counters_.Add(counters_.bytes, line.size());
    sink_->OnLineFrom(line, now, index_, node);
  }
  void DeliverWithOrigin(std::string_view line, UnixMicros now, const LineOrigin& origin) {
    counters_.Add(counters_.messages);
    counters_.Add(counters_.bytes, line.size());
    sink_->OnLineWithOrigin(line, now, index_, origin);
  }

 protected:
  asio::io_context& io_;
  InputSpec spec_;
  int index_;
  LineSink* sink_;
  const Clock* clock_;
  InputCounters counters_;
  bool stopped_ = false;
};

namespace {

using Input = SyslogListener::Input;

// The credentials a unix socket's peer had at connect() (SO_PEERCRED); none when the kernel
// gives none. Read once per connection, at accept: for the per-uid cap and as the writer of its
// lines.
std::optional<ucred> PeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  return cred;
}

// ---------------------------------------------------------------------------------------------
// Datagram inputs: udp and unix-dgram.

template <typename Protocol>
class DatagramInput final : public Input {
 public:
  static constexpr unsigned kBatch = 32;        // datagrams per recvmmsg
  static constexpr int kBatchesPerWakeup = 16;  // then yield to the other inputs

  using Input::Input;

  Status Start() override {
    boost::system::error_code ec;
    typename Protocol::endpoint endpoint;
    if constexpr (std::is_same_v<Protocol, asio::ip::udp>) {
      auto ep = IpEndpoint<typename Protocol::endpoint>(spec_);
      if (!ep.ok()) return ep.status();
      endpoint = *ep;
    } else {
      MXWARD_RETURN_IF_ERROR(PrepareUnixSocketPath(spec_.path, SOCK_DGRAM));
      endpoint = typename Protocol::endpoint(spec_.path);
    }
    socket_.open(endpoint.protocol(), ec);
    if (ec) return Status::IoError(fmt::format("cannot open socket: {}", ec.message()));
    SetCloseOnExec(socket_.native_handle());
    if constexpr (std::is_same_v<Protocol, asio::ip::udp>) {
      // v4 and v6 are separate inputs: a [::] socket must not also take the v4 port.
      if (endpoint.address().is_v6()) socket_.set_option(asio::ip::v6_only(true), ec);
    }
    socket_.bind(endpoint, ec);
    if (ec) {
      return Status::Unavailable(fmt::format("cannot bind: {}{}", ec.message(), BindHint(ec)));
    }
    if constexpr (!std::is_same_v<Protocol, asio::ip::udp>) {
      created_path_ = true;
      MXWARD_RETURN_IF_ERROR(ApplyOwnership(spec_));
    }
    const int fd = socket_.native_handle();
    if (Status st = SetReceiveBuffer(fd, spec_.receive_buffer); !st.ok()) {
      spdlog::warn("{}: {}", spec_.Describe(), st.message());
    }
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0) {
      spdlog::warn("{}: SO_RXQ_OVFL unavailable ({}); kernel drops will not be counted",
                   spec_.Describe(), std::strerror(errno));
    }
    if constexpr (!std::is_same_v<Protocol, asio::ip::udp>) {
      // Each datagram then carries its sender's credentials (SCM_CREDENTIALS), which the kernel
      // checks: the writer the provenance policy holds to the program the line claims.
      if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
        return Status::IoError(fmt::format("{}: cannot enable SO_PASSCRED: {}", spec_.Describe(),
                                           std::strerror(errno)));
      }
    }
    socket_.non_blocking(true, ec);
    if constexpr (std::is_same_v<Protocol, asio::ip::udp>) {
      port_ = socket_.local_endpoint(ec).port();
      spec_.port = port_;  // log messages name the real port when 0 was asked for
    }
    // UDP payloads are at most 65,507 bytes; unix datagrams may be as large as configured.
    buffer_size_ = std::is_same_v<Protocol, asio::ip::udp>
                       ? 65536
                       : std::max<std::size_t>(spec_.max_message_size, 65536);
    buffers_.reset(new char[buffer_size_ * kBatch]);
    Wait();
    return Status::Ok();
  }

  void Stop() override {
    stopped_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
    if (created_path_) {
      ::unlink(spec_.path.c_str());
      created_path_ = false;
    }
  }

  std::uint16_t port() const override { return port_; }

 private:
  void Wait() {
    socket_.async_wait(asio::socket_base::wait_read,
                       [self = shared_from_this(), this](const boost::system::error_code& ec) {
                         if (ec || stopped_) return;
                         Drain();
                         if (!stopped_) Wait();
                       });
  }

  void Drain() {
    mmsghdr msgs[kBatch];
    iovec iovs[kBatch];
    alignas(cmsghdr) char
        control[kBatch][CMSG_SPACE(sizeof(std::uint32_t)) + CMSG_SPACE(sizeof(struct ucred))];
    sockaddr_storage names[kBatch];
    for (int round = 0; round < kBatchesPerWakeup && !stopped_; ++round) {
      for (unsigned i = 0; i < kBatch; ++i) {
        iovs[i] = {buffers_.get() + i * buffer_size_, buffer_size_};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control[i];
        msgs[i].msg_hdr.msg_controllen = sizeof control[i];
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof names[i];
      }
      const int n = ::recvmmsg(socket_.native_handle(), msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          InputLog().Warn("input.recv", "{}: receive failed: {}", spec_.Describe(),
                          std::strerror(errno));
        }
        return;
      }
      const UnixMicros now = Now();
      for (int i = 0; i < n && !stopped_; ++i) {
        msghdr& h = msgs[i].msg_hdr;
        bool have_credentials = false;
        struct ucred credentials {};
        for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
              c->cmsg_len >= CMSG_LEN(sizeof credentials)) {
            std::memcpy(&credentials, CMSG_DATA(c), sizeof credentials);
            have_credentials = true;
          }
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            std::uint32_t drops = 0;
            std::memcpy(&drops, CMSG_DATA(c), sizeof drops);
            const std::uint32_t delta = drops - kernel_drops_;  // wraps correctly
            if (delta != 0 && delta < 0x80000000u) {
              counters_.Add(counters_.dropped, delta);
              counters_.Add(counters_.dropped_kernel, delta);
              kernel_drops_ = drops;
              InputLog().Warn("input.kernel_drop",
                              "{}: the kernel dropped {} datagrams (receive queue full); raise "
                              "receive_buffer or reduce load",
                              spec_.Describe(), delta);
            }
          }
        }
        if constexpr (std::is_same_v<Protocol, asio::ip::udp>) {
          if (!spec_.allowed_senders.empty()) {
            const IpAddress from = SenderAddress(reinterpret_cast<const sockaddr*>(&names[i]));
            if (!SenderAllowed(spec_, from)) {
              counters_.Add(counters_.refused_sender);
              InputLog().Warn("input.sender",
                              "{}: refused a datagram from {}: not in "
                              "allowed_senders",
                              spec_.Describe(), from.valid() ? from.ToString() : "?");
              continue;
            }
          }
        }
        if (h.msg_flags & MSG_TRUNC) counters_.Add(counters_.malformed);  // delivered cut
        const std::string_view line =
            StripFraming(std::string_view(static_cast<const char*>(iovs[i].iov_base),
                                          std::min<std::size_t>(msgs[i].msg_len, buffer_size_)));
        if (line.empty()) {
          counters_.Add(counters_.malformed);
          continue;
        }
        if constexpr (!std::is_same_v<Protocol, asio::ip::udp>) {
          if (have_credentials) {
            DeliverWithOrigin(line, now, LineOrigin::Peer(credentials.uid, credentials.pid));
            continue;
          }
        }
        Deliver(line, now);
      }
      if (static_cast<unsigned>(n) < kBatch) return;  // queue empty
    }
  }

  typename Protocol::socket socket_{io_};
  std::size_t buffer_size_ = 65536;
  std::unique_ptr<char[]> buffers_;
  std::uint32_t kernel_drops_ = 0;
  std::uint16_t port_ = 0;
  bool created_path_ = false;
};

// ---------------------------------------------------------------------------------------------
// Stream inputs: tcp, unix-stream and tls (tcp with a TLS layer, kTls).

template <typename Protocol, bool kTls>
class StreamInput;

template <typename Protocol, bool kTls>
struct SessionSocket {
  using type = typename Protocol::socket;
};
template <>
struct SessionSocket<asio::ip::tcp, true> {
  using type = asio::ssl::stream<asio::ip::tcp::socket>;
};

// One connection. Framing is the StreamFramer's (stream_framer.h): it holds at most one message
// plus its octet-count header, so memory is bounded whatever the peer sends. The socket is read
// again only after every complete message of the last read went through the sink. A tls session
// first completes a handshake (bounded by handshake_timeout) in which the client certificate is
// verified against the CA and authorised by the allow list; its lines carry that identity.
template <typename Protocol, bool kTls>
class StreamSession : public std::enable_shared_from_this<StreamSession<Protocol, kTls>> {
 public:
  using Socket = typename SessionSocket<Protocol, kTls>::type;

  // origin: unix-stream, the peer's credentials as of connect(): the writer of every line on
  // this connection, or a forwarder that names the writer in each line (provenance.h).
  StreamSession(std::shared_ptr<StreamInput<Protocol, kTls>> input,
                typename Protocol::socket socket, std::shared_ptr<asio::ssl::context> tls,
                LineOrigin origin)
      : input_(std::move(input)),
        socket_(MakeSocket(std::move(socket), tls.get())),
        tls_(std::move(tls)),
        framer_(input_->spec().max_message_size),
        timer_(socket_.get_executor()),
        origin_(origin) {
    TrackBuffer();
  }
  ~StreamSession() {
    input_->mutable_counters().buffer_bytes.fetch_sub(counted_, std::memory_order_relaxed);
  }

  void Start() {
    InputCounters& c = input_->mutable_counters();
    c.Add(c.connections);
    c.Add(c.open_connections);
    last_message_ = std::chrono::steady_clock::now();
    if constexpr (kTls) {
      Handshake();
    } else {
      Read();
      ArmIdle();
    }
  }

  // The listener stops: a message this connection had only partly received is lost, and counted
  // as dropped (not delivered: the peer did not finish it).
  void Abandon() {
    if (closed_) return;
    const Frame f = framer_.Finish();
    if (f.kind == Frame::kLine || f.kind == Frame::kLost) {
      InputCounters& c = input_->mutable_counters();
      c.Add(c.dropped);
    }
    Close();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    InputCounters& c = input_->mutable_counters();
    c.open_connections.fetch_sub(1, std::memory_order_relaxed);
    boost::system::error_code ec;
    timer_.cancel();
    socket_.lowest_layer().shutdown(asio::socket_base::shutdown_both, ec);
    socket_.lowest_layer().close(ec);
    input_->Forget(this);
  }

 private:
  static Socket MakeSocket(typename Protocol::socket socket, asio::ssl::context* tls) {
    if constexpr (kTls) {
      return Socket(std::move(socket), *tls);
    } else {
      (void)tls;
      return socket;
    }
  }

  void Handshake() {
    auto self = this->shared_from_this();
    socket_.set_verify_callback([this](bool preverified, asio::ssl::verify_context& vc) {
      return Verify(preverified, vc);
    });
    timer_.expires_after(std::chrono::seconds(input_->spec().tls.handshake_timeout_seconds));
    timer_.async_wait([self, this](const boost::system::error_code& ec) {
      if (ec || closed_ || handshake_done_) return;
      timed_out_ = true;
      boost::system::error_code ignored;
      socket_.lowest_layer().cancel(ignored);
      socket_.lowest_layer().shutdown(asio::socket_base::shutdown_both, ignored);
    });
    socket_.async_handshake(
        asio::ssl::stream_base::server, [self, this](const boost::system::error_code& ec) {
          handshake_done_ = true;
          timer_.cancel();
          if (closed_) return;
          if (input_->stopped()) {
            Close();
            return;
          }
          if (ec || identity_.empty()) {
            HandshakeFailed(ec);
            return;
          }
          InputCounters& c = input_->mutable_counters();
          c.Add(c.tls_authorised);
          // Said at info once per identity and input (rsyslog's disk-assisted queue reconnects
          // for every batch it sends in a burst: hundreds a second); later ones at debug.
          spdlog::log(
              input_->FirstAuthorised(identity_) ? spdlog::level::info : spdlog::level::debug,
              "{}: {} authorised as {}", input_->spec().Describe(), Peer(), identity_);
          last_message_ = std::chrono::steady_clock::now();
          Read();
          ArmIdle();
        });
  }

  // Called by OpenSSL for each certificate of the client's chain, the client's own last (depth
  // 0). The chain's verdict (preverified) stands; at depth 0 a verified certificate must also be
  // on the allow list, or the handshake is aborted.
  bool Verify(bool preverified, asio::ssl::verify_context& vc) {
    X509_STORE_CTX* store = vc.native_handle();
    X509* cert = X509_STORE_CTX_get_current_cert(store);
    const int depth = X509_STORE_CTX_get_error_depth(store);
    if (!preverified) {
      if (refusal_.empty()) {
        refusal_ = fmt::format("certificate not verified: {} (depth {}: {})",
                               X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)),
                               depth, DescribePeer(DescribeCertificate(cert)));
      }
      return false;
    }
    if (depth != 0) return true;
    const PeerCertificate peer = DescribeCertificate(cert);
    if (auto identity = AuthorisePeer(peer, input_->spec().tls)) {
      identity_ = std::move(*identity);
      return true;
    }
    not_allowed_ = true;
    refusal_ = fmt::format("certificate not on the allow list ({})", DescribePeer(peer));
    return false;
  }

  void HandshakeFailed(const boost::system::error_code& ec) {
    InputCounters& c = input_->mutable_counters();
    c.Add(c.tls_handshake_failed);
    if (not_allowed_) c.Add(c.tls_peer_not_allowed);
    std::string why = refusal_;
    if (why.empty()) {
      why = timed_out_ ? fmt::format("no handshake within {} s",
                                     input_->spec().tls.handshake_timeout_seconds)
                       : fmt::format("handshake failed: {}", ec ? ec.message() : "no identity");
    }
    InputLog().Warn("input.tls_handshake", "{}: refused {}: {}", input_->spec().Describe(), Peer(),
                    why);
    Close();
  }

  // idle_timeout: the timer fires at the deadline of the last complete message and closes the
  // connection if none came since, else waits for the new deadline. Reads only note the time, so
  // a busy connection costs no timer operation per read.
  void ArmIdle() {
    const std::int64_t idle = input_->spec().idle_timeout_seconds;
    if (idle <= 0 || closed_) return;
    timer_.expires_at(last_message_ + std::chrono::seconds(idle));
    timer_.async_wait([self = this->shared_from_this(), this](const boost::system::error_code& ec) {
      if (ec || closed_) return;
      if (last_message_ + std::chrono::seconds(input_->spec().idle_timeout_seconds) >
          std::chrono::steady_clock::now()) {
        ArmIdle();  // a message came since the timer was set: wait for the new deadline
        return;
      }
      InputCounters& c = input_->mutable_counters();
      c.Add(c.closed_idle);
      InputLog().Warn("input.idle",
                      "{}: closing a connection from {}: no complete message for {} s "
                      "(idle_timeout)",
                      input_->spec().Describe(), Peer(), input_->spec().idle_timeout_seconds);
      AtEnd();
      Close();
    });
  }

  void Read() {
    const std::span<char> space = framer_.WritableSpace();
    TrackBuffer();
    if (space.empty()) {  // cannot happen: the framer turns bad before a frame outgrows it
      BadFraming("message larger than the buffer");
      return;
    }
    socket_.async_read_some(asio::buffer(space.data(), space.size()),
                            [self = this->shared_from_this(), this](
                                const boost::system::error_code& ec, std::size_t n) {
                              if (closed_) return;
                              if (input_->stopped()) {
                                Close();
                                return;
                              }
                              if (ec) {
                                AtEnd();
                                Close();
                                return;
                              }
                              framer_.Commit(n);
                              if (Process(input_->Now()) && !closed_) Read();
                            });
  }

  // buffer_bytes follows the framer's allocation.
  void TrackBuffer() {
    const std::size_t cap = framer_.capacity();
    if (cap == counted_) return;
    InputCounters& c = input_->mutable_counters();
    if (cap > counted_) {
      c.Add(c.buffer_bytes, cap - counted_);
    } else {
      c.buffer_bytes.fetch_sub(counted_ - cap, std::memory_order_relaxed);
    }
    counted_ = cap;
  }

  void Deliver(std::string_view line, UnixMicros now) {
    if constexpr (kTls) {
      input_->DeliverFrom(line, now, identity_);
    } else if (origin_.transport != LineOrigin::Transport::kNone) {
      input_->DeliverWithOrigin(line, now, origin_);
    } else {
      input_->Deliver(line, now);
    }
  }

  // The peer closed (or the connection failed): a last line without terminator still counts; a
  // partial octet-counted frame is lost and counted.
  void AtEnd() {
    const Frame f = framer_.Finish();
    if (f.kind == Frame::kLine) {
      Deliver(f.line, input_->Now());
    } else if (f.kind == Frame::kLost) {
      InputCounters& c = input_->mutable_counters();
      c.Add(c.malformed);
      c.Add(c.dropped);
    }
  }

  bool BadFraming(std::string_view why) {
    InputCounters& c = input_->mutable_counters();
    c.Add(c.closed_bad_framing);
    c.Add(c.malformed);
    InputLog().Warn("input.framing", "{}: closing a connection from {}: {}",
                    input_->spec().Describe(), Peer(), why);
    Close();
    return false;
  }

  std::string Peer() {
    boost::system::error_code ec;
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      const auto ep = socket_.lowest_layer().remote_endpoint(ec);
      if (!ec) return fmt::format("{}:{}", ep.address().to_string(), ep.port());
      return "a client";
    }
    return "a local client";
  }

  // Delivers every complete message in the buffer. False when the connection was closed for bad
  // framing.
  bool Process(UnixMicros now) {
    bool delivered = false;
    const auto note = [&] {
      if (delivered) last_message_ = std::chrono::steady_clock::now();
    };
    while (!closed_) {
      const Frame f = framer_.Next();
      switch (f.kind) {
        case Frame::kLine:
          Deliver(f.line, now);
          delivered = true;
          break;
        case Frame::kEmpty: {
          InputCounters& c = input_->mutable_counters();
          c.Add(c.malformed);
          break;
        }
        case Frame::kNeedMore:
          TrackBuffer();
          note();
          return true;
        case Frame::kBad:
        case Frame::kLost:
          return BadFraming(f.why);
      }
    }
    return false;
  }

  std::shared_ptr<StreamInput<Protocol, kTls>> input_;
  Socket socket_;
  std::shared_ptr<asio::ssl::context> tls_;  // keeps the context of this session's handshake
  StreamFramer framer_;
  asio::steady_timer timer_;
  std::size_t counted_ = 0;                             // what buffer_bytes holds for this session
  std::chrono::steady_clock::time_point last_message_;  // idle_timeout counts from here
  std::string identity_;                                // tls: the authorised certificate name
  LineOrigin origin_;                                   // unix-stream: the peer (SO_PEERCRED)
  std::string refusal_;                                 // tls: why the certificate was refused
  bool not_allowed_ = false;
  bool handshake_done_ = false;
  bool timed_out_ = false;
  bool closed_ = false;
};

template <typename Protocol, bool kTls = false>
class StreamInput final : public Input {
 public:
  using Input::Input;
  using Session = StreamSession<Protocol, kTls>;

  Status Start() override {
    if constexpr (kTls) {
      auto ctx = MakeTlsContext(spec_);
      if (!ctx.ok()) return ctx.status();
      tls_ = std::move(*ctx);
    }
    boost::system::error_code ec;
    typename Protocol::endpoint endpoint;
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      auto ep = IpEndpoint<typename Protocol::endpoint>(spec_);
      if (!ep.ok()) return ep.status();
      endpoint = *ep;
    } else {
      MXWARD_RETURN_IF_ERROR(PrepareUnixSocketPath(spec_.path, SOCK_STREAM));
      endpoint = typename Protocol::endpoint(spec_.path);
    }
    acceptor_.open(endpoint.protocol(), ec);
    if (ec) return Status::IoError(fmt::format("cannot open socket: {}", ec.message()));
    SetCloseOnExec(acceptor_.native_handle());
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (endpoint.address().is_v6()) acceptor_.set_option(asio::ip::v6_only(true), ec);
    }
    acceptor_.bind(endpoint, ec);
    if (ec) {
      return Status::Unavailable(fmt::format("cannot bind: {}{}", ec.message(), BindHint(ec)));
    }
    if constexpr (!std::is_same_v<Protocol, asio::ip::tcp>) {
      created_path_ = true;
      MXWARD_RETURN_IF_ERROR(ApplyOwnership(spec_));
    }
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IoError(fmt::format("cannot listen: {}", ec.message()));
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      port_ = acceptor_.local_endpoint(ec).port();
      spec_.port = port_;
    }
    Accept();
    return Status::Ok();
  }

  void Stop() override {
    stopped_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
    // Close() removes the session from the map: iterate over a copy.
    std::vector<std::shared_ptr<Session>> open;
    for (auto& [ptr, entry] : sessions_) {
      if (auto s = entry.session.lock()) open.push_back(std::move(s));
    }
    for (auto& s : open) s->Abandon();
    sessions_.clear();
    per_peer_.clear();
    paused_ = false;
    if (created_path_) {
      ::unlink(spec_.path.c_str());
      created_path_ = false;
    }
  }

  // tls: new connections use the re-read files; open ones keep theirs. On an error the running
  // credentials stay.
  Status ReloadCredentials() override {
    if constexpr (kTls) {
      auto ctx = MakeTlsContext(spec_);
      if (!ctx.ok()) return ctx.status();
      tls_ = std::move(*ctx);
    }
    return Status::Ok();
  }

  std::uint16_t port() const override { return port_; }

  // True the first time `identity` is authorised on this input (the io thread only).
  bool FirstAuthorised(const std::string& identity) {
    return authorised_identities_.insert(identity).second;
  }

  // A session closed: its slot (and its peer's) is free; if accepting had paused at
  // max_connections, it resumes.
  void Forget(Session* s) {
    const auto it = sessions_.find(s);
    if (it == sessions_.end()) return;
    if (!it->second.peer.empty()) {
      const auto p = per_peer_.find(it->second.peer);
      if (p != per_peer_.end() && --p->second == 0) per_peer_.erase(p);
    }
    sessions_.erase(it);
    if (paused_ && !stopped_) {
      paused_ = false;
      Accept();
    }
  }

 private:
  std::shared_ptr<StreamInput> self() {
    return std::static_pointer_cast<StreamInput>(shared_from_this());
  }

  // allowed_senders, before any byte (or TLS handshake) is read from the connection.
  bool Refused(typename Protocol::socket& socket) {
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      if (spec_.allowed_senders.empty()) return false;
      boost::system::error_code ec;
      const auto ep = socket.remote_endpoint(ec);
      IpAddress from;
      if (!ec) IpAddress::Parse(ep.address().to_string(), &from);
      if (SenderAllowed(spec_, from)) return false;
      counters_.Add(counters_.refused_sender);
      InputLog().Warn("input.sender", "{}: refused a connection from {}: not in allowed_senders",
                      spec_.Describe(), from.valid() ? from.ToString() : "?");
      return true;
    } else {
      (void)socket;
      return false;
    }
  }

  // Who a connection counts against for max_connections_per_peer: its source address (tcp,
  // tls; PeerAddressKey: every loopback address is one peer) or its uid (unix-stream). Loopback is
  // capped like the rest (it used to be exempt, and one local user could then take every slot
  // of the input): rsyslog's omfwd holds one connection per action, far below the default 32.
  // Empty when uncapped: the cap is off, or root on a unix socket. cred: a unix socket's peer.
  std::string PeerKey(typename Protocol::socket& socket, const std::optional<ucred>& cred) {
    if (spec_.max_connections_per_peer == 0) return {};
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      boost::system::error_code ec;
      const auto ep = socket.remote_endpoint(ec);
      if (ec) return "?";
      return PeerAddressKey(ep.address());
    } else {
      (void)socket;
      if (!cred || cred->uid == 0) return {};
      return fmt::format("uid {}", cred->uid);
    }
  }

  // At max_connections accepting pauses: the kernel's backlog holds new connections (and what
  // they send) until a session closes and Forget() resumes, instead of accepting and closing,
  // which would lose the first message of a sender that had just connected.
  void Accept() {
    if (sessions_.size() >= spec_.max_connections) {
      if (!paused_) {
        paused_ = true;
        counters_.Add(counters_.accept_paused);
        InputLog().Warn("input.max_connections",
                        "{}: max_connections {} reached: new connections wait until one closes",
                        spec_.Describe(), spec_.max_connections);
      }
      return;
    }
    acceptor_.async_accept([self = self(), this](const boost::system::error_code& ec,
                                                 typename Protocol::socket socket) {
      if (stopped_) return;
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
        // EMFILE and friends: wait a little instead of spinning on the error.
        InputLog().Warn("input.accept", "{}: accept failed: {}", spec_.Describe(), ec.message());
        retry_.expires_after(std::chrono::milliseconds(100));
        retry_.async_wait([self, this](const boost::system::error_code& e) {
          if (!e && !stopped_) Accept();
        });
        return;
      }
      std::optional<ucred> cred;
      if constexpr (!std::is_same_v<Protocol, asio::ip::tcp>) {
        cred = PeerCredentials(socket.native_handle());
      }
      std::string peer;
      if (Refused(socket) || !WithinPeerLimit(socket, cred, &peer)) {
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        SetCloseOnExec(socket.native_handle());
        auto session =
            std::make_shared<Session>(self, std::move(socket), tls_,
                                      cred ? LineOrigin::Peer(cred->uid, cred->pid) : LineOrigin());
        if (!peer.empty()) ++per_peer_[peer];
        sessions_.emplace(session.get(), SessionEntry{session, std::move(peer)});
        session->Start();
      }
      Accept();
    });
  }

  bool WithinPeerLimit(typename Protocol::socket& socket, const std::optional<ucred>& cred,
                       std::string* peer) {
    *peer = PeerKey(socket, cred);
    if (peer->empty()) return true;
    const auto it = per_peer_.find(*peer);
    if (it == per_peer_.end() || it->second < spec_.max_connections_per_peer) return true;
    counters_.Add(counters_.refused_peer_limit);
    InputLog().Warn("input.peer_limit",
                    "{}: refused a connection from {}: it has max_connections_per_peer {} open",
                    spec_.Describe(), *peer, spec_.max_connections_per_peer);
    return false;
  }

  struct SessionEntry {
    std::weak_ptr<Session> session;
    std::string peer;  // PeerKey(), empty when uncapped
  };

  typename Protocol::acceptor acceptor_{io_};
  asio::steady_timer retry_{io_};
  std::unordered_map<Session*, SessionEntry> sessions_;
  std::unordered_map<std::string, std::size_t> per_peer_;  // open connections per PeerKey
  std::unordered_set<std::string>
      authorised_identities_;  // FirstAuthorised; allowed_peers bound it
  bool paused_ = false;        // Accept() stopped at max_connections; Forget() resumes it
  std::shared_ptr<asio::ssl::context> tls_;
  std::uint16_t port_ = 0;
  bool created_path_ = false;
};

// ---------------------------------------------------------------------------------------------
// File inputs: a FileFollower.

// An input whose work a follower does on the listener's io_context (FileFollower,
// JournalFollower): stopping the input stops the follower, and its counters are the follower's.
template <typename Follower>
class FollowingInput : public Input {
 public:
  using Input::Input;

  void Stop() override {
    stopped_ = true;
    if (follower_) follower_->Stop();
  }
  const InputCounters& counters() const override {
    return follower_ ? follower_->counters() : counters_;
  }

 protected:
  std::unique_ptr<Follower> follower_;
};

class FileInput final : public FollowingInput<FileFollower> {
 public:
  using FollowingInput::FollowingInput;

  Status Start() override {
    FileFollowerOptions o;
    o.path = spec_.path;
    o.input_index = index_;
    o.start_at_end = spec_.start_at_end;
    o.state_file = spec_.state_file;
    o.max_line_bytes = spec_.max_message_size;
    o.clock = clock_;
    follower_ = std::make_unique<FileFollower>(io_, std::move(o), sink_);
    return follower_->Start();
  }
};

// ---------------------------------------------------------------------------------------------
// Journal inputs: a JournalFollower, its cursor through the listener's hooks.

class JournalInput final : public FollowingInput<JournalFollower> {
 public:
  JournalInput(asio::io_context& io, const InputSpec& spec, int index, LineSink* sink,
               const Clock* clock, const InputCursorHooks& hooks)
      : FollowingInput(io, spec, index, sink, clock), hooks_(hooks) {}

  Status Start() override {
    JournalFollowerOptions o;
    o.name = spec_.name;
    o.input_index = index_;
    o.units = spec_.journal.units;
    o.slices = spec_.journal.slices;
    o.identifiers = spec_.journal.identifiers;
    o.journal_dirs = spec_.journal.dirs;
    o.start_at = spec_.journal.start_at;
    o.start_back_seconds = spec_.journal.start_back_seconds;
    o.max_message_bytes = spec_.max_message_size;
    o.clock = clock_;
    if (hooks_.load) o.saved_cursor = hooks_.load(spec_.name);
    if (hooks_.begin) {
      o.on_batch_begin = [begin = hooks_.begin, name = spec_.name] { begin(name); };
    }
    if (hooks_.save) {
      o.on_cursor = [save = hooks_.save, name = spec_.name](std::string_view c) { save(name, c); };
    }
    follower_ = std::make_unique<JournalFollower>(io_, std::move(o), sink_);
    return follower_->Start();
  }
  const JournalFollower* follower() const { return follower_.get(); }

 private:
  InputCursorHooks hooks_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

SyslogListener::SyslogListener(asio::io_context& io, std::vector<InputSpec> inputs, LineSink* sink,
                               const Clock* clock)
    : io_(io),
      specs_(std::move(inputs)),
      sink_(sink),
      clock_(clock != nullptr ? clock : SystemClock::Instance()) {}

SyslogListener::~SyslogListener() { Stop(); }

Status SyslogListener::Start() {
  Stop();
  inputs_.clear();
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const InputSpec& spec = specs_[i];
    const int index = static_cast<int>(i);
    std::shared_ptr<Input> input;
    switch (spec.type) {
      case InputType::kUdp:
        input = std::make_shared<DatagramInput<asio::ip::udp>>(io_, spec, index, sink_, clock_);
        break;
      case InputType::kUnixDgram:
        input = std::make_shared<DatagramInput<asio::local::datagram_protocol>>(io_, spec, index,
                                                                                sink_, clock_);
        break;
      case InputType::kTcp:
        input = std::make_shared<StreamInput<asio::ip::tcp>>(io_, spec, index, sink_, clock_);
        break;
      case InputType::kUnixStream:
        input = std::make_shared<StreamInput<asio::local::stream_protocol>>(io_, spec, index, sink_,
                                                                            clock_);
        break;
      case InputType::kFile:
        input = std::make_shared<FileInput>(io_, spec, index, sink_, clock_);
        break;
      case InputType::kTls:
        input = std::make_shared<StreamInput<asio::ip::tcp, true>>(io_, spec, index, sink_, clock_);
        break;
      case InputType::kJournal:
        input = std::make_shared<JournalInput>(io_, spec, index, sink_, clock_, cursor_hooks_);
        break;
    }
    Status st = input->Start();
    if (!st.ok()) {
      input->Stop();
      Stop();
      return st.Annotate(spec.Describe());
    }
    inputs_.push_back(std::move(input));
  }
  return Status::Ok();
}

void SyslogListener::Stop() {
  for (auto& input : inputs_) input->Stop();
}

Status SyslogListener::ReloadCredentials() {
  Status first = Status::Ok();
  for (auto& input : inputs_) {
    Status st = input->ReloadCredentials();
    if (!st.ok() && first.ok()) first = st.Annotate(input->spec().Describe());
  }
  return first;
}

std::string SyslogListener::Describe() const {
  std::string out;
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    InputSpec s = specs_[i];
    if (i < inputs_.size() && inputs_[i]->port() != 0) s.port = inputs_[i]->port();
    if (!out.empty()) out += ", ";
    out += s.Describe();
  }
  return out;
}

std::uint16_t SyslogListener::bound_port(std::size_t index) const {
  return index < inputs_.size() ? inputs_[index]->port() : 0;
}

const InputCounters& SyslogListener::counters(std::size_t index) const {
  static const InputCounters kNone;
  return index < inputs_.size() ? inputs_[index]->counters() : kNone;
}

void SyslogListener::RegisterMetrics(MetricsRegistry* registry,
                                     std::vector<MetricsRegistry::Handle>* handles) const {
  auto keep = [&](Result<MetricsRegistry::Handle> h, const std::string& name) {
    if (h.ok()) {
      handles->push_back(std::move(*h));
    } else {
      spdlog::warn("input {}: metric not registered: {}", name, h.status().message());
    }
  };
  for (const auto& input : inputs_) {
    const std::string& name = input->spec().name;
    const InputCounters* c = &input->counters();
    keep(registry->AddAtomic(metric::kInputMessages, {name}, &c->messages), name);
    keep(registry->AddAtomic(metric::kInputBytes, {name}, &c->bytes), name);
    keep(registry->AddAtomic(metric::kInputMalformed, {name}, &c->malformed), name);
    keep(registry->AddAtomic(metric::kInputDropped, {name, "kernel"}, &c->dropped_kernel), name);
    keep(registry->Add(metric::kInputDropped, {name, "input"},
                       [c] {
                         return static_cast<double>(InputCounters::Get(c->dropped) -
                                                    InputCounters::Get(c->dropped_kernel));
                       }),
         name);
    keep(registry->AddAtomic(metric::kInputConnections, {name}, &c->open_connections), name);
    const InputType type = input->spec().type;
    if (type == InputType::kTcp || type == InputType::kTls || type == InputType::kUnixStream) {
      keep(registry->AddAtomic(metric::kInputRefused, {name, "peer_limit"}, &c->refused_peer_limit),
           name);
      keep(registry->AddAtomic(metric::kInputClosed, {name, "idle"}, &c->closed_idle), name);
      keep(registry->AddAtomic(metric::kInputClosed, {name, "bad_framing"}, &c->closed_bad_framing),
           name);
      keep(registry->AddAtomic(metric::kInputAcceptPaused, {name}, &c->accept_paused), name);
    }
    if (!input->spec().allowed_senders.empty()) {
      keep(registry->AddAtomic(metric::kInputRefused, {name, "sender"}, &c->refused_sender), name);
    }
    if (type == InputType::kJournal) {
      const auto* journal = static_cast<const JournalInput*>(input.get())->follower();
      if (journal != nullptr) {
        keep(registry->AddAtomic(metric::kInputJournalSkipped, {name},
                                 &journal->journal_counters().skipped_seconds),
             name);
      }
    }
    if (type == InputType::kTls) {
      keep(registry->Add(metric::kInputRefused, {name, "tls_handshake"},
                         [c] {
                           return static_cast<double>(InputCounters::Get(c->tls_handshake_failed) -
                                                      InputCounters::Get(c->tls_peer_not_allowed));
                         }),
           name);
      keep(registry->AddAtomic(metric::kInputRefused, {name, "tls_peer"}, &c->tls_peer_not_allowed),
           name);
    }
  }
}

}  // namespace mxward
