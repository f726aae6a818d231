// SyslogListener: the inputs. Datagram inputs drain their socket with recvmmsg after asio says it
// is readable (asio has no access to SO_RXQ_OVFL's control message); stream inputs are asio
// acceptors with one StreamSession per connection that frames RFC 6587 messages in a bounded
// buffer and reads again only after the sink processed everything it had.
#include "mxward/syslog_listener.h"

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
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/ingest/stream_framer.h"
#include "mxward/file_follower.h"
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

// A unix socket path: a stale socket file left by a crash is removed, a live one (someone
// accepts connections on it) or a non-socket file is an error.
Status PrepareUnixPath(const std::string& path, int sock_type) {
  std::error_code fec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();
  if (!S_ISSOCK(st.st_mode)) {
    return Status::AlreadyExists(
        fmt::format("{} exists and is not a socket; remove it or choose another path", path));
  }
  const int fd = ::socket(AF_UNIX, sock_type | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    if (rc == 0) {
      return Status::AlreadyExists(
          fmt::format("{} is in use by another process (is mxward already running?)", path));
    }
  }
  ::unlink(path.c_str());
  return Status::Ok();
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

  const InputSpec& spec() const { return spec_; }
  bool stopped() const { return stopped_; }
  InputCounters& mutable_counters() { return counters_; }
  UnixMicros Now() const { return clock_->Now(); }

  void Deliver(std::string_view line, UnixMicros now) {
    counters_.Add(counters_.messages);
    counters_.Add(counters_.bytes, line.size());
    sink_->OnLine(line, now, index_);
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
      MXWARD_RETURN_IF_ERROR(PrepareUnixPath(spec_.path, SOCK_DGRAM));
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
    alignas(cmsghdr) char control[kBatch][CMSG_SPACE(sizeof(std::uint32_t))];
    for (int round = 0; round < kBatchesPerWakeup && !stopped_; ++round) {
      for (unsigned i = 0; i < kBatch; ++i) {
        iovs[i] = {buffers_.get() + i * buffer_size_, buffer_size_};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control[i];
        msgs[i].msg_hdr.msg_controllen = sizeof control[i];
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
        for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
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
        if (h.msg_flags & MSG_TRUNC) counters_.Add(counters_.malformed);  // delivered cut
        const std::string_view line =
            StripFraming(std::string_view(static_cast<const char*>(iovs[i].iov_base),
                                          std::min<std::size_t>(msgs[i].msg_len, buffer_size_)));
        if (line.empty()) {
          counters_.Add(counters_.malformed);
          continue;
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
// Stream inputs: tcp and unix-stream.

template <typename Protocol>
class StreamInput;

// One connection. Framing is the StreamFramer's (stream_framer.h): it holds at most one message
// plus its octet-count header, so memory is bounded whatever the peer sends. The socket is read
// again only after every complete message of the last read went through the sink.
template <typename Protocol>
class StreamSession : public std::enable_shared_from_this<StreamSession<Protocol>> {
 public:
  StreamSession(std::shared_ptr<StreamInput<Protocol>> input, typename Protocol::socket socket)
      : input_(std::move(input)),
        socket_(std::move(socket)),
        framer_(input_->spec().max_message_size) {
    TrackBuffer();
  }
  ~StreamSession() {
    input_->mutable_counters().buffer_bytes.fetch_sub(counted_, std::memory_order_relaxed);
  }

  void Start() {
    InputCounters& c = input_->mutable_counters();
    c.Add(c.connections);
    c.Add(c.open_connections);
    Read();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    InputCounters& c = input_->mutable_counters();
    c.open_connections.fetch_sub(1, std::memory_order_relaxed);
    boost::system::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_both, ec);
    socket_.close(ec);
    input_->Forget(this);
  }

 private:
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

  // The peer closed (or the connection failed): a last line without terminator still counts; a
  // partial octet-counted frame is lost and counted.
  void AtEnd() {
    const Frame f = framer_.Finish();
    if (f.kind == Frame::kLine) {
      input_->Deliver(f.line, input_->Now());
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
      const auto ep = socket_.remote_endpoint(ec);
      if (!ec) return fmt::format("{}:{}", ep.address().to_string(), ep.port());
    }
    return "a local client";
  }

  // Delivers every complete message in the buffer. False when the connection was closed for bad
  // framing.
  bool Process(UnixMicros now) {
    while (!closed_) {
      const Frame f = framer_.Next();
      switch (f.kind) {
        case Frame::kLine:
          input_->Deliver(f.line, now);
          break;
        case Frame::kEmpty: {
          InputCounters& c = input_->mutable_counters();
          c.Add(c.malformed);
          break;
        }
        case Frame::kNeedMore:
          TrackBuffer();
          return true;
        case Frame::kBad:
        case Frame::kLost:
          return BadFraming(f.why);
      }
    }
    return false;
  }

  std::shared_ptr<StreamInput<Protocol>> input_;
  typename Protocol::socket socket_;
  StreamFramer framer_;
  std::size_t counted_ = 0;  // what buffer_bytes holds for this session
  bool closed_ = false;
};

template <typename Protocol>
class StreamInput final : public Input {
 public:
  using Input::Input;

  Status Start() override {
    boost::system::error_code ec;
    typename Protocol::endpoint endpoint;
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      auto ep = IpEndpoint<typename Protocol::endpoint>(spec_);
      if (!ep.ok()) return ep.status();
      endpoint = *ep;
    } else {
      MXWARD_RETURN_IF_ERROR(PrepareUnixPath(spec_.path, SOCK_STREAM));
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
    std::vector<std::shared_ptr<StreamSession<Protocol>>> open;
    for (auto& [ptr, weak] : sessions_) {
      if (auto s = weak.lock()) open.push_back(std::move(s));
    }
    for (auto& s : open) s->Close();
    sessions_.clear();
    if (created_path_) {
      ::unlink(spec_.path.c_str());
      created_path_ = false;
    }
  }

  std::uint16_t port() const override { return port_; }

  void Forget(StreamSession<Protocol>* s) { sessions_.erase(s); }

 private:
  std::shared_ptr<StreamInput> self() {
    return std::static_pointer_cast<StreamInput>(shared_from_this());
  }

  void Accept() {
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
      if (sessions_.size() >= spec_.max_connections) {
        InputLog().Warn("input.max_connections",
                        "{}: refusing a connection: max_connections {} reached", spec_.Describe(),
                        spec_.max_connections);
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        SetCloseOnExec(socket.native_handle());
        auto session = std::make_shared<StreamSession<Protocol>>(self, std::move(socket));
        sessions_.emplace(session.get(), session);
        session->Start();
      }
      Accept();
    });
  }

  typename Protocol::acceptor acceptor_{io_};
  asio::steady_timer retry_{io_};
  std::unordered_map<StreamSession<Protocol>*, std::weak_ptr<StreamSession<Protocol>>> sessions_;
  std::uint16_t port_ = 0;
  bool created_path_ = false;
};

// ---------------------------------------------------------------------------------------------
// File inputs: a FileFollower.

class FileInput final : public Input {
 public:
  using Input::Input;

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
  void Stop() override {
    stopped_ = true;
    if (follower_) follower_->Stop();
  }
  const InputCounters& counters() const override {
    return follower_ ? follower_->counters() : counters_;
  }

 private:
  std::unique_ptr<FileFollower> follower_;
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
  }
}

}  // namespace mxward
