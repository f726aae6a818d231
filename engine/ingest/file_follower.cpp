#include "mxward/file_follower.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/ingest/line_reader.h"
#include "mxward/rate_limited_log.h"

namespace mxward {

namespace {

const Clock* ClockOrSystem(const Clock* c) { return c != nullptr ? c : SystemClock::Instance(); }

template <typename ReadFn>
Status ReadAllLines(ReadFn&& read_some, LineSink* sink, const ReadLinesOptions& options) {
  ingest::LineReader reader(options.max_line_bytes, 1024 * 1024);
  const Clock* clock = ClockOrSystem(options.clock);
  InputCounters* counters = options.counters;
  auto deliver = [&](UnixMicros now) {
    return [&, now](std::string_view line, bool cut) {
      if (counters != nullptr) {
        counters->Add(counters->messages);
        counters->Add(counters->bytes, line.size());
        if (cut) counters->Add(counters->malformed);
      }
      sink->OnLine(line, now, options.input_index);
    };
  };
  while (true) {
    std::size_t space = 0;
    char* p = reader.Space(&space);
    Result<std::size_t> got = read_some(p, space);
    if (!got.ok()) return got.status();
    if (*got == 0) break;
    reader.Commit(*got, deliver(clock->Now()));
  }
  reader.Finish(deliver(clock->Now()));
  return Status::Ok();
}

}  // namespace

Status ReadLines(int fd, LineSink* sink, const ReadLinesOptions& options) {
  return ReadAllLines(
      [fd](char* p, std::size_t n) -> Result<std::size_t> {
        while (true) {
          const ssize_t got = ::read(fd, p, n);
          if (got >= 0) return static_cast<std::size_t>(got);
          if (errno == EINTR) continue;
          return Status::IoError(fmt::format("read failed: {}", std::strerror(errno)));
        }
      },
      sink, options);
}

Status ReadLines(std::istream& in, LineSink* sink, const ReadLinesOptions& options) {
  return ReadAllLines(
      [&in](char* p, std::size_t n) -> Result<std::size_t> {
        if (in.eof()) return std::size_t{0};
        in.read(p, static_cast<std::streamsize>(n));
        if (in.bad()) return Status::IoError("stream read failed");
        return static_cast<std::size_t>(in.gcount());
      },
      sink, options);
}

// ---------------------------------------------------------------------------------------------
// FileFollower

namespace {

constexpr std::size_t kReadChunk = 256 * 1024;
// Per poll, so a big backlog does not starve the other inputs on the io thread; the next poll is
// then scheduled at once.
constexpr std::size_t kBytesPerPoll = 32 * 1024 * 1024;

Result<std::optional<FollowPosition>> ReadStateFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return std::optional<FollowPosition>();
    return Status::IoError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  }
  FollowPosition p;
  if (!(in >> p.device >> p.inode >> p.offset)) {
    return Status::Corruption(fmt::format(
        "{}: expected \"device inode offset\"; delete the file to start at the end", path));
  }
  return std::optional<FollowPosition>(p);
}

Status WriteStateFile(const std::string& path, const FollowPosition& p) {
  const std::string tmp = path + ".tmp";
  const std::string text = fmt::format("{} {} {}\n", p.device, p.inode, p.offset);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()) || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IoError(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  }
  return Status::Ok();
}

}  // namespace

struct FileFollower::State {
  explicit State(std::size_t max_line) : reader(max_line, 64 * 1024) {}
  ingest::LineReader reader;
  std::uint64_t base_offset = 0;  // file offset where reader.consumed() counts from
  std::uint64_t read_offset = 0;  // file offset of the next read()
  std::shared_ptr<int> alive = std::make_shared<int>(0);
};

FileFollower::FileFollower(boost::asio::io_context& io, FileFollowerOptions options, LineSink* sink)
    : io_(io),
      options_(std::move(options)),
      sink_(sink),
      timer_(io),
      state_(std::make_unique<State>(options_.max_line_bytes)) {}

FileFollower::~FileFollower() { Stop(); }

Status FileFollower::Start() {
  if (!options_.state_file.empty()) {
    std::error_code ec;
    const auto dir = std::filesystem::path(options_.state_file).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  }
  std::optional<FollowPosition> saved = options_.saved;
  if (!saved && !options_.state_file.empty()) {
    auto r = ReadStateFile(options_.state_file);
    if (!r.ok()) return r.status();
    saved = *r;
  }
  const int fd = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    struct stat st {};
    ::fstat(fd, &st);
    const auto dev = static_cast<std::uint64_t>(st.st_dev);
    const auto ino = static_cast<std::uint64_t>(st.st_ino);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::uint64_t offset = options_.start_at_end ? size : 0;
    if (saved) {
      if (saved->device == dev && saved->inode == ino && saved->offset <= size) {
        offset = saved->offset;
      } else {
        // The file was replaced (rotated) while we were not running: all of it is new to us.
        offset = 0;
      }
    }
    OpenAt(fd, dev, ino, offset);
  } else if (errno != ENOENT) {
    spdlog::warn("follow {}: cannot open: {}; will retry", options_.path, std::strerror(errno));
    warned_missing_ = true;
  } else {
    spdlog::info("follow {}: does not exist yet; waiting for it", options_.path);
    warned_missing_ = true;
  }
  running_ = true;
  ScheduleNext(false);
  return Status::Ok();
}

void FileFollower::Stop() {
  running_ = false;
  timer_.cancel();
  CloseFile();
}

void FileFollower::OpenAt(int fd, std::uint64_t device, std::uint64_t inode, std::uint64_t offset) {
  CloseFile();
  fd_ = fd;
  if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) offset = 0;
  state_->reader.Reset();
  state_->reader.set_consumed(0);
  state_->base_offset = offset;
  state_->read_offset = offset;
  position_ = FollowPosition{device, inode, offset};
  warned_missing_ = false;
}

void FileFollower::CloseFile() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool FileFollower::Drain() {
  if (fd_ < 0) return false;
  const Clock* clock = ClockOrSystem(options_.clock);
  std::size_t total = 0;
  while (total < kBytesPerPoll) {
    std::size_t space = 0;
    char* p = state_->reader.Space(&space);
    if (space > kReadChunk) space = kReadChunk;
    const ssize_t got = ::read(fd_, p, space);
    if (got < 0) {
      if (errno == EINTR) continue;
      spdlog::warn("follow {}: read failed: {}", options_.path, std::strerror(errno));
      return false;
    }
    if (got == 0) return false;
    total += static_cast<std::size_t>(got);
    state_->read_offset += static_cast<std::uint64_t>(got);
    const UnixMicros now = clock->Now();
    state_->reader.Commit(static_cast<std::size_t>(got), [&](std::string_view line, bool cut) {
      counters_.Add(counters_.messages);
      counters_.Add(counters_.bytes, line.size());
      if (cut) counters_.Add(counters_.malformed);
      sink_->OnLine(line, now, options_.input_index);
    });
    position_.offset = state_->base_offset + state_->reader.consumed();
  }
  return true;  // budget used up: more may be waiting
}

bool FileFollower::PollOnce() {
  bool more = false;
  if (fd_ >= 0) {
    more = Drain();
    struct stat by_path {};
    struct stat by_fd {};
    const bool path_ok = ::stat(options_.path.c_str(), &by_path) == 0;
    ::fstat(fd_, &by_fd);
    if (!more && path_ok &&
        (static_cast<std::uint64_t>(by_path.st_ino) != position_.inode ||
         static_cast<std::uint64_t>(by_path.st_dev) != position_.device)) {
      // rename + create: the old file is read to its end (just done); its last line may lack a
      // newline if the writer died mid-line: deliver it rather than lose it.
      const UnixMicros now = ClockOrSystem(options_.clock)->Now();
      state_->reader.Finish([&](std::string_view line, bool) {
        counters_.Add(counters_.messages);
        counters_.Add(counters_.bytes, line.size());
        sink_->OnLine(line, now, options_.input_index);
      });
      counters_.Add(counters_.rotations);
      spdlog::info("follow {}: rotated (new inode), reading the new file", options_.path);
      CloseFile();
    } else if (!more && static_cast<std::uint64_t>(by_fd.st_size) < state_->read_offset) {
      // copytruncate: the file shrank under us. Whatever was appended between the copy and the
      // truncation and not yet read is gone; that is the method's known window.
      counters_.Add(counters_.rotations);
      spdlog::info("follow {}: truncated, reading from the start", options_.path);
      const int fd = fd_;
      fd_ = -1;
      OpenAt(fd, position_.device, position_.inode, 0);
      more = Drain();
    }
  }
  if (fd_ < 0) {
    const int fd = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      struct stat st {};
      ::fstat(fd, &st);
      // A file that appears after we started is new: read it from its start.
      OpenAt(fd, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), 0);
      more = Drain();
    } else if (!warned_missing_) {
      spdlog::info("follow {}: missing ({}); waiting for it", options_.path, std::strerror(errno));
      warned_missing_ = true;
    }
  }
  ReportPosition();
  return more;
}

void FileFollower::ReportPosition() {
  if (position_ == reported_ || position_.inode == 0) return;
  reported_ = position_;
  if (options_.on_position) options_.on_position(position_);
  if (!options_.state_file.empty()) {
    Status st = WriteStateFile(options_.state_file, position_);
    if (!st.ok()) {
      // Once a poll at most; still, an unwritable directory must not flood the journal.
      static RateLimitedLog log(RateLimitedLogOptions{300, 1, 64});
      log.Warn("follow.state_file", "follow {}: {} (a restart may re-read or skip lines)",
               options_.path, st.ToString());
    }
  }
}

void FileFollower::ScheduleNext(bool immediately) {
  if (!running_) return;
  timer_.expires_after(immediately ? std::chrono::milliseconds(0) : options_.poll_interval);
  std::weak_ptr<int> alive = state_->alive;
  timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired() || !running_) return;
    const bool more = PollOnce();
    ScheduleNext(more);
  });
}

}  // namespace mxward
