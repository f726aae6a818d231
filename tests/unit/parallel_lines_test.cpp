// ReadLinesParallel + Pipeline::OnPreparedLine (`mxward replay --threads N`): the same events, in
// the same order, and the same incidents as one thread reading the same bytes with ReadLines, on
// every sample log the project has, with blocks so small that most lines sit at a block boundary,
// and on a log that crosses New Year (the one place where a worker's guess of the year-inference
// reference can be wrong).
#include "mxward/parallel_lines.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
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
    std::string s = fmt::format(
        "{} {} w={} v={} ip={} line='{}' parser={} |", EventTypeName(e.type), e.time, e.weight,
        e.verified, e.client_ip.valid() ? e.client_ip.ToString() : "-", e.line, e.parser);
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
};

// threads 0: ReadLines (today's one-thread path); otherwise ReadLinesParallel.
ReplayRun Replay(const std::string& path, int threads, std::size_t lines_per_block) {
  ReplayRun run;
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
  if (!pack.ok() || !engine.ok()) return run;
  Collect sink;
  PipelineOptions options;
  options.replay = true;
  options.vouch_for_every_line = true;
  options.reference = (DaysFromCivil(2026, 11, 23) * 86400) * kMicrosPerSecond;
  SyslogParserOptions popts;
  popts.use_local_zone = false;
  Pipeline pipeline(
      SyslogParser(popts), EventExtractor::Create(*pack),
      std::make_unique<RecordingEngine>(std::move(*engine), &run.events), &sink,
      [&](UnixMicros hour, const std::vector<std::pair<std::string, std::int64_t>>& counts) {
        std::string s = fmt::format("{}:", hour);
        for (const auto& [type, n] : counts) s += fmt::format(" {}={}", type, n);
        run.hours.push_back(std::move(s));
      },
      options);
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
  pipeline.ReleaseHeld();
  pipeline.FlushCounts();
  run.incidents = std::move(sink.incidents);
  run.lines = pipeline.counters().lines;
  run.malformed = pipeline.counters().malformed;
  run.unmatched = pipeline.counters().unmatched;
  run.events_counted = pipeline.counters().events;
  return run;
}

void ExpectSame(const ReplayRun& one, const ReplayRun& many, const std::string& what) {
  EXPECT_EQ(one.lines, many.lines) << what;
  EXPECT_EQ(one.malformed, many.malformed) << what;
  EXPECT_EQ(one.unmatched, many.unmatched) << what;
  EXPECT_EQ(one.events_counted, many.events_counted) << what;
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

}  // namespace
}  // namespace mxward
