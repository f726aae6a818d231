// JournalFollower: the systemd journal as an input (`type = "journal"`), read with sd-journal
// (libsystemd), never through a `journalctl` subprocess.
//
// What it reads: the local journal (system files, as journalctl does as root) or, with
// journal_dirs, the files in those directories (other hosts' journals, e.g. what
// systemd-journal-remote writes). Entries are filtered in sd-journal by matches that are ORed
// together: _SYSTEMD_UNIT in units, _SYSTEMD_SLICE in slices, SYSLOG_IDENTIFIER in identifiers
// (DefaultJournalUnits/Slices/Identifiers are Debian 12's: postfix@-.service and every instance in
// system-postfix.slice, dovecot.service, Roundcube's "roundcube" and the mail filters' idents).
// _SYSTEMD_UNIT and _SYSTEMD_SLICE are written by journald from the sender's cgroup, so a local
// user cannot claim them; SYSLOG_IDENTIFIER is whatever the sender says (as with `logger -t` into
// /var/log/mail.log), which is why units and slices come first in the defaults.
//
// Each entry becomes one syslog line handed to the LineSink, in a buffer reused for every entry
// (no allocation per entry once it has grown):
//     2026-12-06T12:00:05.123456+00:00 HOSTNAME IDENTIFIER[PID]: MESSAGE
// so the journal takes the same parser path as rsyslog's high-precision file format and the
// evidence of an incident reads like /var/log/mail.log. (Feeding the parsed parts directly would
// save one parse, but would add a second entry point to the LineSink contract and to the pipeline
// for a few hundred nanoseconds per line.) Time: _SOURCE_REALTIME_TIMESTAMP (when the program
// logged), else the entry's realtime; _COMM when SYSLOG_IDENTIFIER is missing; "localhost" when
// _HOSTNAME is. Control characters in MESSAGE (a multi-line message) become spaces: one entry is
// one line, and no entry can look like two. Host and identifier are kept to one header token.
// Other fields are not read.
//
// Several journal_dirs are read as one source each (sd-journal opens one directory per handle; a
// directory may hold many hosts' files, as systemd-journal-remote's /var/log/journal/remote
// does), each with its own position; the input's cursor is then one "DIR<TAB>CURSOR" line per
// directory. A directory missing at Start() is logged and skipped until the next start.
//
// Where it starts: after `saved_cursor` when given. If that entry is gone (vacuumed, or its file
// deleted), at the oldest entry newer than the cursor's time; the gap is logged with its length in
// time and counted (cursor_lost, skipped_seconds); if the journal still reaches back past that
// time, the entry exists but no longer matches (the matches changed), and reading goes on after
// its time without counting a loss. Without a cursor (first run): at the end
// (start_at kEnd, nothing old), the beginning, or `start_back_seconds` ago. At the end, the last
// entry's cursor is reported at once, so a restart before any new entry does not move the start.
//
// Cursors: on_batch_begin is called before the first line of a batch and on_cursor with the
// input's cursor after it, once every line of the batch returned from LineSink::OnLine (both on
// the io thread; every on_batch_begin is followed by an on_cursor). The caller saves it where the
// effects of those lines are committed (the daemon: in the store, in the transaction that writes
// the incidents they produced; see IncidentRecorder::SaveInputCursor).
//
// Waking: the journal's inotify fd (sd_journal_get_fd) is watched by the io_context
// (posix::stream_descriptor::async_wait), then sd_journal_process() says what changed; no polling
// timer, except when sd_journal_get_timeout() asks for one (files on a file system without
// inotify). SD_JOURNAL_INVALIDATE (files added or removed: rotation, vacuum, a new host) is
// counted and needs nothing else: the matches belong to the sd_journal handle, not to files, and
// the position is an entry's identity (seqnum, boot and time), so reading goes on after the last
// entry delivered, in whichever file the next one is. A batch is at most max_entries_per_batch
// entries; the rest is read after other handlers had their turn.
//
// Threading: Start, Stop and delivery on the io_context's thread. counters() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "mxward/input_counters.h"
#include "mxward/line_sink.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

enum class JournalStart : std::uint8_t { kEnd, kBeginning, kBack };

// Debian 12's defaults (see the header comment).
const std::vector<std::string>& DefaultJournalUnits();
const std::vector<std::string>& DefaultJournalSlices();
const std::vector<std::string>& DefaultJournalIdentifiers();

struct JournalFollowerOptions {
  std::string name;  // for logs ("journal")
  int input_index = 0;
  std::vector<std::string> units;         // _SYSTEMD_UNIT values
  std::vector<std::string> slices;        // _SYSTEMD_SLICE values
  std::vector<std::string> identifiers;   // SYSLOG_IDENTIFIER values
  std::vector<std::string> journal_dirs;  // empty: the local system journal
  JournalStart start_at = JournalStart::kEnd;
  std::int64_t start_back_seconds = 0;  // kBack
  std::optional<std::string> saved_cursor;
  std::function<void()> on_batch_begin;
  std::function<void(std::string_view cursor)> on_cursor;
  std::size_t max_entries_per_batch = 4096;
  std::size_t max_message_bytes = 64 * 1024;  // longer MESSAGEs are cut (counted as malformed)
  const Clock* clock = nullptr;               // received_at; nullptr: the system clock
};

// Journal-specific numbers beside InputCounters.
struct JournalCounters {
  std::atomic<std::uint64_t> cursor_lost{0};      // saved cursors whose entry was gone
  std::atomic<std::uint64_t> skipped_seconds{0};  // journal time between a lost cursor and resume
  std::atomic<std::uint64_t> invalidations{0};    // SD_JOURNAL_INVALIDATE seen (files changed)
};

class JournalFollower {
 public:
  JournalFollower(boost::asio::io_context& io, JournalFollowerOptions options, LineSink* sink);
  ~JournalFollower();
  JournalFollower(const JournalFollower&) = delete;
  JournalFollower& operator=(const JournalFollower&) = delete;

  // Opens the journal, adds the matches, positions as described, reads what is there (in
  // batches, on the io thread) and starts watching. Errors: a journal that cannot be opened.
  Status Start();
  // Stops watching and closes the journal. On the io thread or after io_context::run returned.
  void Stop();

  // Reads up to one batch from each directory now; true when more entries are waiting. Start()
  // arranges the calls; tests may call it directly.
  bool ReadBatch();

  const InputCounters& counters() const { return counters_; }
  const JournalCounters& journal_counters() const { return journal_counters_; }
  // The input's cursor after the last entry delivered (or the starting point at the end); "" when
  // there is none yet. One "DIR<TAB>CURSOR" line per directory ("" as DIR for the local journal).
  std::string cursor() const;

  struct Source;  // one opened journal (the local one, or one of journal_dirs)

 private:
  Status OpenSource(Source* source, const std::string& dir);
  void Position(Source* source, const std::string& saved);
  // Reads up to a batch from one source; true when it stopped at the batch limit.
  bool ReadSource(Source* source);
  void Deliver(Source* source);
  bool batch_open_ = false;  // on_batch_begin called, on_cursor not yet
  void Watch(const std::shared_ptr<Source>& source);
  void ScheduleRead();
  void ReportCursor();

  boost::asio::io_context& io_;
  JournalFollowerOptions options_;
  LineSink* sink_;
  InputCounters counters_;
  JournalCounters journal_counters_;
  std::vector<std::shared_ptr<Source>> sources_;
  std::string line_;        // the syslog line being built, reused for every entry
  std::string comm_, exe_;  // the entry's _COMM and _EXE, for the provenance log
  bool running_ = false;
  bool read_scheduled_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace mxward
