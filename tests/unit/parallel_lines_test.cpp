// ReadLinesParallel + Pipeline::OnPreparedLine (`mxward replay --threads N`): the same events, in
// the same order, and the same incidents as one thread reading the same bytes with ReadLines, on
// every sample log the project has, with blocks so small that most lines sit at a block boundary,
// and on a log that crosses New Year (the one place where a worker's guess of the year-inference
// reference can be wrong).
//
// ParallelLineSink (`mxward serve` with [engine] parse_threads): the same events, incidents and
// counters as the listeners calling the Pipeline directly, for lines of three kinds of input
// (plain, tls with a node, unix with a writer), arrival times that move some lines to their
// arrival (dated ahead) and skip others (too old), a parser reload in the middle, and "reads" of
// 1 to 7 lines between which the owner's thread runs what the workers posted. PrepareRing on its
// own: a partial block is handed over without filling, a full ring makes Add hand over the oldest
// block (memory stays bounded, order kept), and a preparer swap leaves no worker on the old pack.
#include "mxward/parallel_lines.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mxward/file_follower.h"
#include "mxward/pipeline.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
const std::string kData = std::string(MXWARD_TEST_DATA);

// Every event the pipeline hands to the playbooks, written out whole, then passed on to the
// shipped playbooks: what the stateful stage saw, in order.
class RecordingEngine final : public PlaybookEngine {
 public:
  RecordingEngine(std::unique_ptr<PlaybookEngine> real, std::vector<std::string>* events)
      : real_(std::move(real)), events_(events) {}
  void OnEvent(const Event& e, IncidentSink* sink) override {
    std::string s =
        fmt::format("{} {} w={} v={} ip={} line='{}' parser={} node={} |", EventTypeName(e.type),
                    e.time, e.weight, e.verified,
                    e.client_ip.valid() ? e.client_ip.ToString() : "-", e.line, e.parser, e.node);
    for (int f = 0; f < kFieldCount; ++f) {
      if (!e.fields[f].empty()) {
        s += fmt::format(" {}={}", FieldName(static_cast<Field>(f)), e.fields[f]);
      }
    }
    events_->push_back(std::move(s));
    real_->OnEvent(e, sink);
  }
  bool Watches(const Event& e) const override { return real_->Watches(e); }
  std::vector<std::string_view> WatchingPlaybooks(const Event& e) const override {
    return real_->WatchingPlaybooks(e);
  }
  std::size_t playbook_count() const override { return real_->playbook_count(); }
  const EngineStats& stats() const override { return real_->stats(); }
  std::int64_t PolicyDelaySeconds(const Event& p) const override {
    return real_->PolicyDelaySeconds(p);
  }
  std::vector<std::string> playbook_names() const override { return real_->playbook_names(); }
  const Playbook* FindPlaybook(std::string_view n) const override { return real_->FindPlaybook(n); }
  std::size_t window_keys(std::size_t i) const override { return real_->window_keys(i); }
  std::uint64_t window_evictions(std::size_t i) const override {
    return real_->window_evictions(i);
  }
  std::vector<KeyStanding> ClosestKeys(std::size_t i, std::size_t n,
                                       UnixMicros now) const override {
    return real_->ClosestKeys(i, n, now);
  }
  std::uint64_t playbook_triggers(std::size_t i) const override {
    return real_->playbook_triggers(i);
  }
  std::uint64_t playbook_unverified_ignored(std::size_t i) const override {
    return real_->playbook_unverified_ignored(i);
  }
  std::vector<std::string> BaselinePlaybooks() const override { return real_->BaselinePlaybooks(); }
  Status ImportBaselines(std::string_view p, const std::vector<BaselineEntry>& e) override {
    return real_->ImportBaselines(p, e);
  }
  std::vector<BaselineBatch> TakeDirtyBaselines() override { return real_->TakeDirtyBaselines(); }
  std::size_t AdoptState(PlaybookEngine& previous) override { return real_->AdoptState(previous); }
  void UseAllowSet(std::shared_ptr<const AllowSetHandle> h) override {
    real_->UseAllowSet(std::move(h));
  }
  void UseSharedWindowSink(SharedWindowSink* s) override { real_->UseSharedWindowSink(s); }
  bool FoldRemoteCount(std::string_view p, std::string_view k, UnixMicros t, std::uint32_t w,
                       std::string_view node, IncidentSink* sink) override {
    return real_->FoldRemoteCount(p, k, t, w, node, sink);
  }
  bool FoldRemoteReset(std::string_view p, std::string_view k, UnixMicros t,
                       std::string_view node) override {
    return real_->FoldRemoteReset(p, k, t, node);
  }
  bool IsShared(std::string_view p) const override { return real_->IsShared(p); }
  std::int64_t LongestSharedWindowSeconds() const override {
    return real_->LongestSharedWindowSeconds();
  }
  void ImportPriorIncidents(const std::vector<PriorIncident>& i) override {
    real_->ImportPriorIncidents(i);
  }
  std::size_t ImportOpenIncidents(const std::vector<PriorIncident>& i) override {
    return real_->ImportOpenIncidents(i);
  }

 private:
  std::unique_ptr<PlaybookEngine> real_;
  std::vector<std::string>* events_;
};

// Incidents, written out with everything the engine decided (not the store's id).
struct Collect : IncidentSink {
  std::vector<std::string> incidents;
  void OnIncident(Incident i) override {
    std::string s = fmt::format("{} {} {} count={} {}..{} triggers={} '{}'", i.playbook, i.key_kind,
                                i.key, i.count, i.first_seen, i.last_seen, i.triggers, i.trigger);
    for (const auto& e : i.evidence) s += fmt::format(" | {} {}", e.time, e.text);
    for (const auto& a : i.actions) s += fmt::format(" | {} {}", a.type, a.params.dump());
    incidents.push_back(std::move(s));
  }
};

struct ReplayRun {
  std::vector<std::string> events;
  std::vector<std::string> incidents;
  std::vector<std::string> hours;  // the hourly event counts handed to the store
  std::uint64_t lines = 0, malformed = 0, unmatched = 0, events_counted = 0;
  // Live lines only.
  std::uint64_t time_future = 0, time_stale = 0;
  std::vector<std::uint64_t> verified, unverified, forged;  // per input slot
};

// A pipeline over the shipped parsers and playbooks whose events and incidents go to *run.
struct Rig {
  Collect sink;
  std::unique_ptr<Pipeline> pipeline;

  Rig(ReplayRun* run, PipelineOptions options) {
    std::vector<Diagnostic> diags;
    auto pack = ParserPack::Load({kRules + "/parsers"}, &diags);
    EXPECT_TRUE(pack.ok());
    Config config = Config::Defaults();
    config.rule_dirs = {kRules};
    PlaybookEngineOptions eopts;
    eopts.hash_seed = 7;
    auto engine = PlaybookEngine::Load(config, &diags, eopts);
    EXPECT_TRUE(engine.ok());
    for (const auto& d : diags) ADD_FAILURE() << d.ToString();
    if (!pack.ok() || !engine.ok()) return;
    SyslogParserOptions popts;
    popts.use_local_zone = false;
    pipeline = std::make_unique<Pipeline>(
        SyslogParser(popts), EventExtractor::Create(*pack),
        std::make_unique<RecordingEngine>(std::move(*engine), &run->events), &sink,
        [run](UnixMicros hour, const std::vector<std::pair<std::string, std::int64_t>>& counts) {
          std::string s = fmt::format("{}:", hour);
          for (const auto& [type, n] : counts) s += fmt::format(" {}={}", type, n);
          run->hours.push_back(std::move(s));
        },
        options);
  }

  void Finish(ReplayRun* run) {
    pipeline->ReleaseHeld();
    pipeline->FlushCounts();
    run->incidents = std::move(sink.incidents);
    const PipelineCounters& c = pipeline->counters();
    run->lines = c.lines;
    run->malformed = c.malformed;
    run->unmatched = c.unmatched;
    run->events_counted = c.events;
    run->time_future = c.time_future;
    run->time_stale = c.time_stale;
    for (std::size_t i = 0; i < c.input_slots; ++i) {
      run->verified.push_back(c.verified_by_input[i]);
      run->unverified.push_back(c.unverified_by_input[i]);
      run->forged.push_back(c.forged_by_input[i]);
    }
  }
};

std::shared_ptr<const ParserPack> LoadPack() {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kRules + "/parsers"}, &diags);
  EXPECT_TRUE(pack.ok());
  return pack.ok() ? *pack : nullptr;
}

// threads 0: ReadLines (today's one-thread path); otherwise ReadLinesParallel.
ReplayRun Replay(const std::string& path, int threads, std::size_t lines_per_block) {
  ReplayRun run;
  PipelineOptions options;
  options.replay = true;
  options.vouch_for_every_line = true;
  options.reference = (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond;
  Rig rig(&run, options);
  if (!rig.pipeline) return run;
  Pipeline& pipeline = *rig.pipeline;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (threads == 0) {
    EXPECT_OK(ReadLines(fd, &pipeline));
  } else {
    ParallelLinesOptions parallel;
    parallel.threads = threads;
    parallel.lines_per_block = lines_per_block;
    const LinePreparer preparer = pipeline.MakePreparer();
    EXPECT_OK(ReadLinesParallel(fd, preparer, &pipeline, parallel));
  }
  ::close(fd);
  rig.Finish(&run);
  return run;
}

void ExpectSame(const ReplayRun& one, const ReplayRun& many, const std::string& what) {
  EXPECT_EQ(one.lines, many.lines) << what;
  EXPECT_EQ(one.malformed, many.malformed) << what;
  EXPECT_EQ(one.unmatched, many.unmatched) << what;
  EXPECT_EQ(one.events_counted, many.events_counted) << what;
  EXPECT_EQ(one.time_future, many.time_future) << what;
  EXPECT_EQ(one.time_stale, many.time_stale) << what;
  EXPECT_EQ(one.verified, many.verified) << what;
  EXPECT_EQ(one.unverified, many.unverified) << what;
  EXPECT_EQ(one.forged, many.forged) << what;
  EXPECT_EQ(one.hours, many.hours) << what;
  ASSERT_EQ(one.events.size(), many.events.size()) << what;
  for (std::size_t i = 0; i < one.events.size(); ++i) {
    ASSERT_EQ(one.events[i], many.events[i]) << what << ", event " << i;
  }
  EXPECT_EQ(one.incidents, many.incidents) << what;
}

std::vector<std::string> SampleLogs() {
  std::vector<std::string> logs = {kData + "/skeleton/mail.log"};
  for (const auto& entry : std::filesystem::directory_iterator(kData + "/playbooks")) {
    if (entry.path().extension() == ".log") logs.push_back(entry.path().string());
  }
  std::sort(logs.begin(), logs.end());
  return logs;
}

TEST(ParallelLinesTest, SameEventsAndIncidentsAsOneThreadOnEverySampleLog) {
  std::size_t incidents = 0, events = 0;
  for (const std::string& log : SampleLogs()) {
    const ReplayRun one = Replay(log, 0, 0);
    incidents += one.incidents.size();
    events += one.events.size();
    for (int threads : {1, 2, 4}) {
      for (std::size_t block :
           {std::size_t{1}, std::size_t{3}, std::size_t{64}, std::size_t{4096}}) {
        ExpectSame(one, Replay(log, threads, block),
                   fmt::format("{} threads={} block={}", log, threads, block));
      }
    }
  }
  // The comparison means something: the samples open incidents and carry events.
  EXPECT_GT(incidents, 10u);
  EXPECT_GT(events, 500u);
}

// Year-less times across New Year: each line is placed in the year nearest the line before it,
// so a worker that starts a block with a wrong guess of that reference would put the block's
// first lines a year off. The pipeline parses such lines again; the events say it did.
TEST(ParallelLinesTest, YearLessTimesAcrossNewYearAsOneThreadPlacesThem) {
  testing::TempDir dir;
  const std::string path = dir.file("newyear.log");
  {
    std::ofstream out(path);
    for (int i = 0; i < 300; ++i) {
      const int second = i * 7;  // Dec 31 23:40:00 .. Jan 1 00:14:53
      const int t = 23 * 3600 + 40 * 60 + second;
      const bool next_day = t >= 86400;
      const int s = t % 86400;
      const std::string stamp = fmt::format("{} {:02}:{:02}:{:02}", next_day ? "Jan  1" : "Dec 31",
                                            s / 3600, s / 60 % 60, s % 60);
      out << stamp << " mx1 postfix/smtpd[4606]: warning: unknown[203.0.113." << (i % 3)
          << "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
      if (i % 17 == 0) out << "not syslog at all\n";
      // A header without a time: the event is placed at the reference (the previous line's
      // time), so a worker's wrong guess of it would show in the event's time.
      if (i % 11 == 0) {
        out << "<38>postfix/smtpd[4606]: warning: unknown[198.51.100.4]: SASL LOGIN "
               "authentication failed: UGFzc3dvcmQ6\n";
      }
    }
  }
  const ReplayRun one = Replay(path, 0, 0);
  ASSERT_GT(one.events.size(), 250u);
  EXPECT_FALSE(one.incidents.empty());
  for (int threads : {1, 2, 4}) {
    for (std::size_t block : {std::size_t{1}, std::size_t{2}, std::size_t{5}, std::size_t{64}}) {
      ExpectSame(one, Replay(path, threads, block),
                 fmt::format("threads={} block={}", threads, block));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Live lines (`mxward serve` with parse workers).

// Functions posted from any thread, run on the test's thread when it says so: the io_context
// of the daemon, without one.
class PostQueue {
 public:
  void Post(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(f));
    }
    cv_.notify_all();
  }
  // Runs what is queued now (and what those post), as one turn of an io_context would.
  std::size_t RunReady() {
    std::size_t n = 0;
    while (true) {
      std::function<void()> f;
      {
        std::lock_guard lock(mu_);
        if (queue_.empty()) return n;
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      f();
      ++n;
    }
  }
  // Waits (up to a deadline) until something is posted.
  bool WaitForPost() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !queue_.empty(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
};

struct LiveLine {
  std::string text;
  UnixMicros received_at = 0;
  int input = 0;
};

// Every sample log's lines, one after the other, as three inputs would deliver them: line i
// comes from input i % 3 and arrives at `arrival` plus i seconds, so that the early lines are
// believed, later ones are dated ahead of their arrival (moved to it) or, from the last log on,
// too old (skipped).
std::vector<LiveLine> LiveLines() {
  std::vector<LiveLine> lines;
  const UnixMicros arrival =
      (DaysFromCivil(2026, 11, 23) * 86400 + 9 * 3600 + 20 * 60) * kMicrosPerSecond;
  for (const std::string& log : SampleLogs()) {
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) {
      const auto i = static_cast<UnixMicros>(lines.size());
      lines.push_back({line, arrival + i * kMicrosPerSecond, static_cast<int>(i % 3)});
    }
  }
  // Arrivals a month later: every line of these is older than max_age.
  for (std::size_t i = lines.size() - 40; i < lines.size(); ++i) {
    lines[i].received_at += 30LL * 86400 * kMicrosPerSecond;
  }
  return lines;
}

PipelineOptions LiveOptions() {
  PipelineOptions options;  // live: replay = false, [clock] defaults (5m ahead, 7d old)
  options.input_formats = {LogFormat::kSyslog, LogFormat::kSyslog, LogFormat::kSyslog};
  options.input_names = {"tcp", "tls", "unix"};
  options.input_trusted = {true, false, false};
  // Debian's writers, enforced: the unix input's root lines are verified, its uid 1000 lines
  // forged (dropped), which only the writer each line came with can tell apart.
  std::vector<std::string> warnings;
  options.provenance = std::make_shared<const ProvenancePolicy>(
      ProvenancePolicy::Resolve(DefaultProvenanceSettings(), &warnings));
  return options;
}

// Input 2's writers: root as journald names it (verified: the journal is never a forwarder), and
// an unprivileged peer of a unix socket (forged for every parser).
LineOrigin Writer(std::size_t i) {
  if (i % 2 == 1) return LineOrigin::Peer(1000, 4242);
  LineOrigin o;
  o.transport = LineOrigin::Transport::kJournal;
  o.uid = 0;
  o.pid = 77;
  o.comm = "smtpd";
  o.exe = "/usr/lib/postfix/sbin/smtpd";
  return o;
}

// Input 1 is a tls input (its lines carry the peer's name), input 2 a journal-like input whose
// writer alternates (Writer).
void DeliverDirect(Pipeline* pipeline, const LiveLine& l, std::size_t i) {
  switch (l.input) {
    case 0:
      pipeline->OnLine(l.text, l.received_at, l.input);
      break;
    case 1:
      pipeline->OnLineFrom(l.text, l.received_at, l.input, "mx-b.example.org");
      break;
    default:
      pipeline->OnLineWithOrigin(l.text, l.received_at, l.input, Writer(i));
  }
}
void DeliverTo(LineSink* sink, const LiveLine& l, std::size_t i) {
  switch (l.input) {
    case 0:
      sink->OnLine(l.text, l.received_at, l.input);
      break;
    case 1:
      sink->OnLineFrom(l.text, l.received_at, l.input, "mx-b.example.org");
      break;
    default:
      sink->OnLineWithOrigin(l.text, l.received_at, l.input, Writer(i));
  }
}

// threads 0: the listeners' call of the pipeline today; otherwise through a ParallelLineSink.
// Halfway through, the parser pack is reloaded (a new pack object with the same parsers).
ReplayRun Live(const std::vector<LiveLine>& lines, int threads, std::size_t lines_per_block) {
  ReplayRun run;
  Rig rig(&run, LiveOptions());
  if (!rig.pipeline) return run;
  const std::size_t reload_at = lines.size() / 2;
  if (threads == 0) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i == reload_at) rig.pipeline->ReplaceParsers(LoadPack());
      DeliverDirect(rig.pipeline.get(), lines[i], i);
    }
  } else {
    PostQueue io;
    ParallelLineSink sink(
        rig.pipeline.get(), threads, [&io](std::function<void()> f) { io.Post(std::move(f)); },
        lines_per_block);
    std::size_t read = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i == reload_at) sink.ReplaceParsers(LoadPack());
      DeliverTo(&sink, lines[i], i);
      // A "read" of 1 to 7 lines ends: the io_context runs what is ready.
      if (++read == 1 + i % 7) {
        read = 0;
        io.RunReady();
      }
    }
    sink.Drain();
    io.RunReady();
    EXPECT_EQ(sink.waiting(), 0u);
  }
  rig.Finish(&run);
  return run;
}

TEST(ParallelLineSinkTest, SameEventsIncidentsAndCountersAsTheListenersCallingThePipeline) {
  const std::vector<LiveLine> lines = LiveLines();
  const ReplayRun one = Live(lines, 0, 0);
  // The comparison means something: incidents, events, lines of each input moved to their
  // arrival and skipped, verified and forged writers.
  EXPECT_GT(one.incidents.size(), 5u);
  EXPECT_GT(one.events.size(), 500u);
  EXPECT_GT(one.time_future, 0u);
  EXPECT_GT(one.time_stale, 0u);
  EXPECT_GT(one.malformed, 0u);
  ASSERT_EQ(one.verified.size(), 4u);
  EXPECT_GT(one.verified[0], 0u);
  EXPECT_GT(one.verified[2], 0u);
  EXPECT_GT(one.forged[2], 0u);
  EXPECT_GT(one.unverified[1], 0u);
  for (int threads : {1, 2, 4}) {
    for (std::size_t block : {std::size_t{1}, std::size_t{3}, std::size_t{256}}) {
      ExpectSame(one, Live(lines, threads, block),
                 fmt::format("threads={} block={}", threads, block));
    }
  }
}

// One line's text and pack, as the consumer got them.
struct Consumed {
  std::vector<std::string> lines;
  std::vector<const ParserPack*> packs;
  std::vector<bool> matched;
};

std::string SaslLine(int i) {
  return fmt::format(
      "Nov 23 09:00:{:02} mx1 postfix/submission/smtpd[{}]: warning: unknown[203.0.113.7]: "
      "SASL LOGIN authentication failed: UGFzc3dvcmQ6",
      i % 60, 1000 + i);
}

TEST(PrepareRingTest, APartialBlockIsHandedOverWithoutWaitingForItToFill) {
  auto pack = LoadPack();
  ASSERT_NE(pack, nullptr);
  Consumed got;
  PostQueue io;
  PrepareRing ring(
      LinePreparer(SyslogParser(), pack.get(), LogFormat::kSyslog),
      PrepareRingOptions{1, 1024, /*live=*/true},
      [&](const RingLine& r) {
        got.lines.emplace_back(r.line);
        got.matched.push_back(r.prepared->matched);
      },
      {}, [&io] { io.Post([] {}); });
  const UnixMicros now = SystemClock::Instance()->Now();
  ring.Add(SaslLine(1), now, 0);
  ring.SubmitIfNoneInFlight();
  // The worker says it is done (on_ready), and the block is handed over: one line of 1,024.
  ASSERT_TRUE(io.WaitForPost());
  ring.ConsumeReady();
  ASSERT_EQ(got.lines.size(), 1u);
  EXPECT_EQ(got.lines[0], SaslLine(1));
  EXPECT_TRUE(got.matched[0]) << "prepared by the worker with the pack";
  EXPECT_EQ(ring.waiting(), 0u);
  EXPECT_TRUE(ring.empty());
}

TEST(PrepareRingTest, AFullRingMakesAddHandOverTheOldestBlockFirst) {
  auto pack = LoadPack();
  ASSERT_NE(pack, nullptr);
  Consumed got;
  // One worker, two lines a block: 3 blocks, at most 6 lines held, whatever is added.
  PrepareRing ring(LinePreparer(SyslogParser(), pack.get(), LogFormat::kSyslog),
                   PrepareRingOptions{1, 2, /*live=*/true},
                   [&](const RingLine& r) { got.lines.emplace_back(r.line); });
  const UnixMicros now = SystemClock::Instance()->Now();
  std::size_t most = 0;
  for (int i = 0; i < 200; ++i) {
    ring.Add(SaslLine(i), now, 0);
    most = std::max(most, ring.waiting());
    ASSERT_LE(ring.waiting(), 6u) << "after line " << i;
  }
  // Nobody called ConsumeReady or Drain: Add handed the lines over itself, in order.
  EXPECT_GE(got.lines.size(), 194u);
  EXPECT_EQ(most, 6u);
  ring.Drain();
  ASSERT_EQ(got.lines.size(), 200u);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(got.lines[i], SaslLine(i)) << i;
  EXPECT_EQ(ring.waiting(), 0u);
}

TEST(PrepareRingTest, ANewPreparerIsUsedOnlyAfterEveryLineOfTheOldOneWasHandedOver) {
  auto old_pack = LoadPack();
  auto new_pack = LoadPack();
  ASSERT_NE(old_pack, nullptr);
  ASSERT_NE(new_pack, nullptr);
  const ParserPack* old_raw = old_pack.get();
  Consumed got;
  PrepareRing ring(LinePreparer(SyslogParser(), old_pack.get(), LogFormat::kSyslog),
                   PrepareRingOptions{2, 4, /*live=*/true}, [&](const RingLine& r) {
                     got.lines.emplace_back(r.line);
                     got.packs.push_back(r.prepared->pack);
                     got.matched.push_back(r.prepared->matched);
                   });
  const UnixMicros now = SystemClock::Instance()->Now();
  for (int i = 0; i < 50; ++i) ring.Add(SaslLine(i), now, 0);
  ring.SubmitIfNoneInFlight();
  ring.SetPreparer(LinePreparer(SyslogParser(), new_pack.get(), LogFormat::kSyslog));
  // Every line before the swap was handed over; the old pack may go (a worker still on it
  // would read freed memory: the sanitizer builds see that).
  EXPECT_EQ(got.lines.size(), 50u);
  old_pack.reset();
  for (int i = 50; i < 100; ++i) ring.Add(SaslLine(i), now, 0);
  ring.Drain();
  ASSERT_EQ(got.lines.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(got.lines[i], SaslLine(i));
    EXPECT_EQ(got.packs[i], i < 50 ? old_raw : new_pack.get()) << i;
    EXPECT_TRUE(got.matched[i]) << i;
  }
}

}  // namespace
}  // namespace mxward
