#include "mxward/journal_follower.h"

#include <systemd/sd-journal.h>
#include <time.h>

#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange unincluded

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/base/parse_number.h"

namespace mxward {

namespace asio = boost::asio;

const std::vector<std::string>& DefaultJournalUnits() {
  // Debian 12 runs Postfix as the template instance postfix@-.service (postfix.service only
  // starts the instances) and Dovecot as dovecot.service.
  static const std::vector<std::string> kUnits = {"postfix@-.service", "dovecot.service"};
  return kUnits;
}

const std::vector<std::string>& DefaultJournalSlices() {
  // Every postfix@INSTANCE.service (multi-instance Postfix) sits in this slice, whatever its
  // syslog_name is.
  static const std::vector<std::string> kSlices = {"system-postfix.slice"};
  return kSlices;
}

const std::vector<std::string>& DefaultJournalIdentifiers() {
  // For journals where the unit is not Debian's (other hosts, other distributions): Postfix's
  // daemons under the default syslog_name (journal matches are exact, so each is listed), the
  // submission/smtps services of Debian's master.cf, Dovecot, Roundcube's default syslog_id and
  // the usual filters.
  static const std::vector<std::string> kIdentifiers = {"postfix/smtpd",
                                                        "postfix/submission/smtpd",
                                                        "postfix/smtps/smtpd",
                                                        "postfix/postscreen",
                                                        "postfix/dnsblog",
                                                        "postfix/tlsproxy",
                                                        "postfix/anvil",
                                                        "postfix/cleanup",
                                                        "postfix/qmgr",
                                                        "postfix/smtp",
                                                        "postfix/lmtp",
                                                        "postfix/local",
                                                        "postfix/virtual",
                                                        "postfix/pipe",
                                                        "postfix/bounce",
                                                        "postfix/error",
                                                        "postfix/pickup",
                                                        "postfix/master",
                                                        "postfix/trivial-rewrite",
                                                        "postfix/verify",
                                                        "postfix/scache",
                                                        "postfix/postlogd",
                                                        "postfix/sendmail",
                                                        "postfix/postdrop",
                                                        "postfix/postfix-script",
                                                        "dovecot",
                                                        "roundcube",
                                                        "opendkim",
                                                        "opendmarc",
                                                        "amavis",
                                                        "amavisd",
                                                        "rspamd",
                                                        "policyd-spf",
                                                        "postfix-policyd-spf-python"};
  return kIdentifiers;
}

namespace {

const Clock* ClockOrSystem(const Clock* c) { return c != nullptr ? c : SystemClock::Instance(); }

std::string_view Field(sd_journal* j, const char* name) {
  const void* data = nullptr;
  std::size_t length = 0;
  if (sd_journal_get_data(j, name, &data, &length) < 0) return {};
  std::string_view v(static_cast<const char*>(data), length);
  const std::size_t prefix = std::strlen(name) + 1;  // "NAME="
  return v.size() >= prefix ? v.substr(prefix) : std::string_view();
}

// The realtime (µs) a cursor names: its "t=" part, hexadecimal ("s=...;i=...;t=5f1c...;x=...").
std::optional<std::uint64_t> CursorRealtime(std::string_view cursor) {
  while (!cursor.empty()) {
    const std::size_t semi = cursor.find(';');
    std::string_view part = cursor.substr(0, semi);
    if (part.starts_with("t=")) return ParseNumber<std::uint64_t>(part.substr(2), 16);
    if (semi == std::string_view::npos) break;
    cursor.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

std::uint64_t MonotonicMicros() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

// Host names and identifiers become one token of the syslog header: anything that would end it
// or be read as its punctuation is replaced.
void AppendToken(std::string* out, std::string_view text, std::string_view fallback) {
  if (text.empty()) text = fallback;
  for (char c : text.substr(0, 255)) {
    const auto u = static_cast<unsigned char>(c);
    out->push_back(u <= 0x20 || u == 0x7f || c == '[' || c == ']' || c == ':' ? '_' : c);
  }
}

}  // namespace

struct JournalFollower::Source {
  std::string dir;  // "" for the local journal
  sd_journal* j = nullptr;
  std::unique_ptr<asio::posix::stream_descriptor> watch;
  std::unique_ptr<asio::steady_timer> timer;
  std::string cursor;
  bool deliver_current = false;  // positioned on an entry not yet delivered
  bool waiting = false;          // an async_wait is outstanding

  ~Source() { Close(); }
  void Close() {
    if (watch) {
      boost::system::error_code ec;
      watch->cancel(ec);
      (void)watch->release();  // the fd belongs to sd-journal, which closes it
      watch.reset();
    }
    if (timer) timer->cancel();
    if (j != nullptr) sd_journal_close(j);
    j = nullptr;
  }
};

JournalFollower::JournalFollower(asio::io_context& io, JournalFollowerOptions options,
                                 LineSink* sink)
    : io_(io), options_(std::move(options)), sink_(sink) {
  line_.reserve(1024);
}

JournalFollower::~JournalFollower() { Stop(); }

std::string JournalFollower::cursor() const {
  if (sources_.size() == 1 && sources_[0]->dir.empty()) return sources_[0]->cursor;
  std::string out;
  for (const auto& s : sources_) {
    if (s->cursor.empty()) continue;
    out += s->dir;
    out += '\t';
    out += s->cursor;
    out += '\n';
  }
  return out;
}

Status JournalFollower::OpenSource(Source* source, const std::string& dir) {
  source->dir = dir;
  const int r = dir.empty() ? sd_journal_open(&source->j, SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM)
                            : sd_journal_open_directory(&source->j, dir.c_str(), 0);
  if (r < 0) {
    source->j = nullptr;
    return Status::IoError(fmt::format("cannot open the journal{}{}: {}", dir.empty() ? "" : " in ",
                                       dir, std::strerror(-r)));
  }
  if (dir.empty() && sd_journal_has_runtime_files(source->j) <= 0 &&
      sd_journal_has_persistent_files(source->j) <= 0) {
    // Opening succeeds even when no file may be read; say why nothing will arrive.
    spdlog::warn(
        "journal input {}: no journal file is there or readable by this process (not root and not "
        "in the systemd-journal group?); waiting for files to appear",
        options_.name);
  }
  // Large fields are not decompressed beyond what a line may hold.
  (void)sd_journal_set_data_threshold(source->j, options_.max_message_bytes + 64);
  // Before reading: the inotify watches must exist before we look, or a change in between would
  // be noticed only at the next one.
  const int fd = sd_journal_get_fd(source->j);
  if (fd < 0) {
    return Status::IoError(fmt::format("journal{}{}: cannot watch it: {}",
                                       dir.empty() ? "" : " in ", dir, std::strerror(-fd)));
  }
  source->watch = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  source->timer = std::make_unique<asio::steady_timer>(io_);
  // Matches: one OR over units, slices and identifiers (a disjunction between the fields; values
  // of one field are ORed by sd-journal already). They belong to the sd_journal handle, not to
  // files, so files added later (rotation) are filtered the same way.
  auto add = [&](const char* field, const std::vector<std::string>& values) -> Status {
    if (values.empty()) return Status::Ok();
    for (const auto& v : values) {
      const std::string match = fmt::format("{}={}", field, v);
      const int m = sd_journal_add_match(source->j, match.data(), match.size());
      if (m < 0) {
        return Status::InvalidArgument(
            fmt::format("journal match {}: {}", match, std::strerror(-m)));
      }
    }
    const int d = sd_journal_add_disjunction(source->j);
    return d < 0 ? Status::IoError(std::strerror(-d)) : Status::Ok();
  };
  MXWARD_RETURN_IF_ERROR(add("_SYSTEMD_UNIT", options_.units));
  MXWARD_RETURN_IF_ERROR(add("_SYSTEMD_SLICE", options_.slices));
  MXWARD_RETURN_IF_ERROR(add("SYSLOG_IDENTIFIER", options_.identifiers));
  return Status::Ok();
}

void JournalFollower::Position(Source* source, const std::string& saved) {
  sd_journal* j = source->j;
  const std::string where = source->dir.empty() ? "the journal" : source->dir;
  if (!saved.empty()) {
    if (sd_journal_seek_cursor(j, saved.c_str()) >= 0 && sd_journal_next(j) > 0 &&
        sd_journal_test_cursor(j, saved.c_str()) > 0) {
      source->cursor = saved;  // on the last entry delivered: reading goes on after it
      spdlog::info("journal input {}: {}: resuming after the saved cursor", options_.name, where);
      return;
    }
    const std::optional<std::uint64_t> t = CursorRealtime(saved);
    if (!t) {
      spdlog::error(
          "journal input {}: {}: the saved cursor is not a journal cursor; starting at "
          "the beginning",
          options_.name, where);
      (void)sd_journal_seek_head(j);
      return;
    }
    // Not found. If the journal still reaches back past the cursor's time, the entry is there but
    // no longer matched (the matches changed): go on after its time, nothing was lost.
    std::uint64_t oldest = 0, newest = 0;
    if (sd_journal_get_cutoff_realtime_usec(j, &oldest, &newest) > 0 && oldest <= *t) {
      (void)sd_journal_seek_realtime_usec(j, *t + 1);
      spdlog::info(
          "journal input {}: {}: the entry of the saved cursor is not among the matched "
          "entries (were the matches changed?); resuming after its time, {}",
          options_.name, where, FormatRfc3339(static_cast<UnixMicros>(*t)));
      return;
    }
    // The entry is gone: vacuumed, or its file deleted. Resume at the oldest entry after its time;
    // whatever was between is lost, and we say how much journal time that was.
    journal_counters_.cursor_lost.fetch_add(1, std::memory_order_relaxed);
    (void)sd_journal_seek_realtime_usec(j, *t + 1);
    std::uint64_t first = 0;
    if (sd_journal_next(j) > 0 && sd_journal_get_realtime_usec(j, &first) >= 0) {
      source->deliver_current = true;
      const std::uint64_t gap = first > *t ? (first - *t) / 1'000'000 : 0;
      journal_counters_.skipped_seconds.fetch_add(gap, std::memory_order_relaxed);
      spdlog::warn(
          "journal input {}: {}: the entry of the saved cursor ({}) is no longer in the "
          "journal (vacuumed or its file deleted); resuming at the oldest entry after it "
          "({}): up to {} of journal between them was not read",
          options_.name, where, FormatRfc3339(static_cast<UnixMicros>(*t)),
          FormatRfc3339(static_cast<UnixMicros>(first)),
          FormatDurationSeconds(static_cast<std::int64_t>(gap)));
    } else {
      // Nothing newer yet: wait at the end; what comes is read.
      (void)sd_journal_seek_realtime_usec(j, *t + 1);
      spdlog::warn(
          "journal input {}: {}: the entry of the saved cursor ({}) is no longer in the "
          "journal and nothing newer is; reading what comes",
          options_.name, where, FormatRfc3339(static_cast<UnixMicros>(*t)));
    }
    return;
  }
  switch (options_.start_at) {
    case JournalStart::kBeginning:
      (void)sd_journal_seek_head(j);
      break;
    case JournalStart::kBack: {
      const UnixMicros from =
          ClockOrSystem(options_.clock)->Now() - options_.start_back_seconds * kMicrosPerSecond;
      (void)sd_journal_seek_realtime_usec(
          j, static_cast<std::uint64_t>(std::max<UnixMicros>(from, 0)));
      break;
    }
    case JournalStart::kEnd:
      (void)sd_journal_seek_tail(j);
      // On the last entry (seek_tail alone leaves next() undefined): reading starts after it, and
      // its cursor is where a restart resumes.
      if (sd_journal_previous(j) > 0) {
        char* c = nullptr;
        if (sd_journal_get_cursor(j, &c) >= 0) {
          source->cursor = c;
          std::free(c);
        }
      } else {
        // No matching entry at all: the end is the beginning. Staying at "the tail" would be
        // resolved only at the first read, after entries written in between, and lose them.
        (void)sd_journal_seek_head(j);
      }
      break;
  }
}

Status JournalFollower::Start() {
  Stop();
  std::vector<std::string> dirs = options_.journal_dirs;
  if (dirs.empty()) dirs.push_back("");
  // The saved cursor: one line per directory, or a bare cursor for the local journal.
  auto saved_for = [&](const std::string& dir) -> std::string {
    if (!options_.saved_cursor || options_.saved_cursor->empty()) return "";
    std::string_view all = *options_.saved_cursor;
    if (all.find('\t') == std::string_view::npos) return dir.empty() ? std::string(all) : "";
    while (!all.empty()) {
      const std::size_t nl = all.find('\n');
      std::string_view line = all.substr(0, nl);
      const std::size_t tab = line.find('\t');
      if (tab != std::string_view::npos && line.substr(0, tab) == dir) {
        return std::string(line.substr(tab + 1));
      }
      if (nl == std::string_view::npos) break;
      all.remove_prefix(nl + 1);
    }
    return "";
  };
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
      // As `mxward check` warns: a remote directory may appear later; the others are read now.
      spdlog::warn(
          "journal input {}: {} is not a directory; it is not read until mxward is "
          "restarted",
          options_.name, dir);
      continue;
    }
    auto source = std::make_shared<Source>();
    MXWARD_RETURN_IF_ERROR(OpenSource(source.get(), dir));
    Position(source.get(), saved_for(dir));
    sources_.push_back(std::move(source));
  }
  running_ = true;
  if (options_.start_at == JournalStart::kEnd && !options_.saved_cursor) ReportCursor();
  for (const auto& s : sources_) Watch(s);
  ScheduleRead();
  return Status::Ok();
}

void JournalFollower::Stop() {
  running_ = false;
  for (auto& s : sources_) s->Close();
  sources_.clear();
}

void JournalFollower::Deliver(Source* source) {
  sd_journal* j = source->j;
  std::uint64_t when = 0;
  if (auto t = ParseNumber<std::uint64_t>(Field(j, "_SOURCE_REALTIME_TIMESTAMP"))) {
    when = *t;
  } else {
    (void)sd_journal_get_realtime_usec(j, &when);
  }
  line_.clear();
  const time_t seconds = static_cast<time_t>(when / 1'000'000);
  tm tm{};
  gmtime_r(&seconds, &tm);
  fmt::format_to(std::back_inserter(line_), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00 ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 when % 1'000'000);
  AppendToken(&line_, Field(j, "_HOSTNAME"), "localhost");
  line_.push_back(' ');
  std::string_view ident = Field(j, "SYSLOG_IDENTIFIER");
  // stdout of a service without an identifier: the program's name, as journalctl shows it.
  AppendToken(&line_, ident.empty() ? Field(j, "_COMM") : ident, "unknown");
  if (auto pid = ParseNumber<std::uint64_t>(Field(j, "SYSLOG_PID")))
    fmt::format_to(std::back_inserter(line_), "[{}]", *pid);
  line_ += ": ";
  std::string_view message = Field(j, "MESSAGE");
  if (message.size() > options_.max_message_bytes) {
    message = message.substr(0, options_.max_message_bytes);
    counters_.Add(counters_.malformed);
  }
  for (char c : message) {
    // One entry, one line: a multi-line MESSAGE must not look like several log lines.
    line_.push_back(c == '\n' || c == '\r' || c == '\0' ? ' ' : c);
  }
  counters_.Add(counters_.messages);
  counters_.Add(counters_.bytes, message.size());
  // The writer, as journald vouches for it: fields starting with '_' are set by journald from
  // the sending process's credentials and cannot be passed in by a client (systemd.journal-
  // fields(7)). A journal_dirs directory holds what the uploading host wrote: its _UID is that
  // host's. Without _UID the entry is unverified. (Field's data is valid only until the next
  // sd_journal_get_data, so each is read after the line is built and copied.)
  LineOrigin origin;
  if (auto uid = ParseNumber<std::uint64_t>(Field(j, "_UID")); uid && *uid <= 0xfffffffeu) {
    origin.transport = LineOrigin::Transport::kJournal;
    origin.uid = static_cast<std::uint32_t>(*uid);
    if (auto pid = ParseNumber<std::uint64_t>(Field(j, "_PID"));
        pid && *pid <= static_cast<std::uint64_t>(INT64_MAX)) {
      origin.pid = static_cast<std::int64_t>(*pid);
    }
    comm_.assign(Field(j, "_COMM"));
    exe_.assign(Field(j, "_EXE"));
    origin.comm = comm_;
    origin.exe = exe_;
  }
  sink_->OnLineWithOrigin(line_, ClockOrSystem(options_.clock)->Now(), options_.input_index,
                          origin);
}

bool JournalFollower::ReadSource(Source* source) {
  std::size_t n = 0;
  while (n < options_.max_entries_per_batch) {
    int r = 1;
    if (source->deliver_current) {
      source->deliver_current = false;
    } else {
      r = sd_journal_next(source->j);
    }
    if (r < 0) {
      spdlog::warn("journal input {}: reading {}: {}", options_.name,
                   source->dir.empty() ? "the journal" : source->dir, std::strerror(-r));
      break;
    }
    if (r == 0) break;
    if (!batch_open_ && options_.on_batch_begin) options_.on_batch_begin();
    batch_open_ = true;
    Deliver(source);
    ++n;
  }
  if (n > 0) {
    char* c = nullptr;
    if (sd_journal_get_cursor(source->j, &c) >= 0) {
      source->cursor = c;
      std::free(c);
    }
  }
  return n == options_.max_entries_per_batch;
}

bool JournalFollower::ReadBatch() {
  bool more = false;
  const std::string before = cursor();
  for (const auto& s : sources_) {
    if (s->j != nullptr && ReadSource(s.get())) more = true;
  }
  if (cursor() != before || batch_open_) ReportCursor();
  batch_open_ = false;
  return more;
}

void JournalFollower::ReportCursor() {
  if (!options_.on_cursor) return;
  const std::string c = cursor();
  // Empty only if no cursor could be read at all: still closes an open batch (and saves nothing).
  if (!c.empty() || batch_open_) options_.on_cursor(c);
}

void JournalFollower::ScheduleRead() {
  if (!running_ || read_scheduled_) return;
  read_scheduled_ = true;
  std::weak_ptr<int> alive = alive_;
  asio::post(io_, [this, alive] {
    if (alive.expired()) return;
    read_scheduled_ = false;
    if (!running_) return;
    if (ReadBatch()) ScheduleRead();  // the rest after the other handlers had their turn
  });
}

void JournalFollower::Watch(const std::shared_ptr<Source>& source) {
  if (!running_ || source->j == nullptr) return;
  std::weak_ptr<Source> weak = source;
  std::weak_ptr<int> alive = alive_;
  auto wake = [this, weak, alive] {
    auto s = weak.lock();
    if (alive.expired() || !s || !running_ || s->j == nullptr) return;
    const int r = sd_journal_process(s->j);
    if (r == SD_JOURNAL_INVALIDATE) {
      // Files were added or removed (rotation, vacuum, a new remote host). The matches live on
      // the handle and the position is an entry's identity, so reading goes on where it was; an
      // entry whose file went away is simply not returned again.
      journal_counters_.invalidations.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("journal input {}: journal files changed", options_.name);
    } else if (r < 0) {
      spdlog::warn("journal input {}: {}", options_.name, std::strerror(-r));
    }
    ScheduleRead();
    Watch(s);
  };
  if (!source->waiting) {
    source->waiting = true;
    source->watch->async_wait(asio::posix::stream_descriptor::wait_read,
                              [weak, alive, wake](const boost::system::error_code& ec) {
                                auto s = weak.lock();
                                if (s) s->waiting = false;
                                if (ec || alive.expired()) return;
                                wake();
                              });
  }
  // sd-journal asks for a timer only when it cannot rely on inotify (e.g. files on a network
  // file system); then it is the wake-up, not a polling choice of ours.
  std::uint64_t timeout = 0;
  if (sd_journal_get_timeout(source->j, &timeout) >= 0 && timeout != UINT64_MAX) {
    const std::uint64_t now = MonotonicMicros();
    const std::uint64_t wait = timeout > now ? timeout - now : 0;
    source->timer->expires_after(std::chrono::microseconds(wait));
    source->timer->async_wait([alive, wake](const boost::system::error_code& ec) {
      if (ec || alive.expired()) return;
      wake();
    });
  }
}

}  // namespace mxward
