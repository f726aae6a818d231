// FileFollower and ReadLines: log files as inputs.
//
// ReadLines reads a file descriptor or stream to its end and hands every line to a LineSink: the
// input of `mxward replay` and `mxward explain` (files and stdin). Lines of any length up to
// max_line_bytes are delivered whole; a last line without a final newline is delivered too.
//
// FileFollower follows one path like `tail -F` on the caller's io_context: it polls the path
// (a steady timer, 250 ms by default) and reads what was appended. It survives the two ways
// logrotate rotates:
//   - rename + create: the path now names a new inode. The old file is read to its end first (a
//     writer may still have appended), then the new one from its start.
//   - copytruncate: the file shrank below our offset. Reading restarts at offset 0.
// A missing file is waited for (logged once), not an error.
//
// Where it starts: at a saved FollowPosition when its inode still matches the file (and the
// offset is not past the end), otherwise at the end (start_at_end, `tail -F` behaviour) or at the
// beginning. The position after each batch of delivered lines is reported to on_position and/or
// written to state_file (atomically, "device inode offset\n"), so a restart neither re-reads nor
// skips lines.
//
// Threading: everything runs on the io_context's thread; LineSink::OnLine is called there.
// counters() may be read from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mxward/input_counters.h"
#include "mxward/line_sink.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

struct ReadLinesOptions {
  int input_index = 0;
  // A line longer than this is cut: its first max_line_bytes are delivered, the rest skipped and
  // counted as malformed. Memory use is bounded by this.
  std::size_t max_line_bytes = 16 * 1024 * 1024;
  const Clock* clock = nullptr;       // received_at; nullptr: the system clock
  InputCounters* counters = nullptr;  // optional
};

// Reads fd until EOF (fd is not closed). Errors: IoError with the reason.
Status ReadLines(int fd, LineSink* sink, const ReadLinesOptions& options = {});
// The same for a std::istream (tests, in-memory input).
Status ReadLines(std::istream& in, LineSink* sink, const ReadLinesOptions& options = {});

// Where a follower is in a file: enough to resume after a restart.
struct FollowPosition {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t offset = 0;  // bytes of complete lines delivered
  bool operator==(const FollowPosition&) const = default;
};

struct FileFollowerOptions {
  std::string path;
  int input_index = 0;
  bool start_at_end = true;             // without a usable saved position: end (true) or beginning
  std::optional<FollowPosition> saved;  // resume here if the inode matches
  // Small state file holding the position; read at Start() when `saved` is empty, rewritten
  // (write + rename) after each batch. Empty: none.
  std::string state_file;
  std::function<void(const FollowPosition&)> on_position;  // after each batch, on the io thread
  std::chrono::milliseconds poll_interval{250};
  std::size_t max_line_bytes = 1024 * 1024;
  const Clock* clock = nullptr;  // received_at; nullptr: the system clock
};

class FileFollower {
 public:
  FileFollower(boost::asio::io_context& io, FileFollowerOptions options, LineSink* sink);
  ~FileFollower();
  FileFollower(const FileFollower&) = delete;
  FileFollower& operator=(const FileFollower&) = delete;

  // Opens the file if it exists, positions as described above and starts the poll timer.
  // Errors only for unusable options (a state file that cannot be parsed or written).
  Status Start();
  // Stops the timer and closes the file. Call on the io thread or after io_context::run returned.
  void Stop();

  // One poll step, synchronously: read what is new, handle rotation. Start() schedules these;
  // tests may call it directly (without running the io_context) for determinism. Returns true
  // when it stopped early because of its per-poll budget (more data is waiting).
  bool PollOnce();

  FollowPosition position() const { return position_; }
  const InputCounters& counters() const { return counters_; }

 private:
  struct State;
  void ScheduleNext(bool immediately);
  bool Drain();  // reads to EOF or budget; true when the budget ran out
  void OpenAt(int fd, std::uint64_t device, std::uint64_t inode, std::uint64_t offset);
  void ReportPosition();
  void CloseFile();

  boost::asio::io_context& io_;
  FileFollowerOptions options_;
  LineSink* sink_;
  boost::asio::steady_timer timer_;
  bool running_ = false;
  int fd_ = -1;
  FollowPosition position_;
  FollowPosition reported_;
  bool warned_missing_ = false;
  InputCounters counters_;
  std::unique_ptr<State> state_;
};

}  // namespace mxward
