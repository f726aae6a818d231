// PrimeEngineFromStore: what a fresh engine takes from the store. Here: escalation counts the
// live incidents of a key as earlier offences and never the replayed ones (`mxward replay` of old
// logs is no offence of today's).
#include "engine/cli/engine_assembly.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mxward/incident_store.h"
#include "mxward/playbook.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

constexpr char kEscalating[] = R"(
key = "client_ip"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 2
window = "10m"
[escalation]
factor = 2
lookback = "1d"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

struct Collect final : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

Incident Earlier(IncidentOrigin origin, UnixMicros t) {
  Incident inc;
  inc.playbook = "sasl";
  inc.key_kind = "client_ip";
  inc.key = "192.0.2.7";
  inc.first_seen = t;
  inc.last_seen = t;
  inc.count = 2;
  inc.origin = origin;
  inc.evidence.push_back({t, origin == IncidentOrigin::kReplay ? "replayed" : "live"});
  return inc;
}

// The ban duration of the incident a fresh, primed engine opens for 192.0.2.7 at now.
std::int64_t BanSecondsAfterPriming(IncidentStore* store, UnixMicros now) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(kEscalating, "rules.d/sasl.toml", &diags);
  EXPECT_TRUE(pb.ok());
  std::vector<Playbook> pbs;
  pbs.push_back(std::move(*pb));
  auto engine = PlaybookEngine::Create(std::move(pbs), Config::Defaults(), {});
  cli::PrimeEngineFromStore(engine.get(), store, now);
  Collect sink;
  const std::string line = "auth failure from 192.0.2.7";
  for (int i = 0; i < 2; ++i) {
    Event e;
    e.type = EventType::kAuthFailure;
    e.time = now + i;
    EXPECT_TRUE(IpAddress::Parse("192.0.2.7", &e.client_ip));
    e.line = line;
    engine->OnEvent(e, &sink);
  }
  EXPECT_EQ(sink.incidents.size(), 1u);
  if (sink.incidents.empty()) return -1;
  return sink.incidents[0].actions.at(0).params.at("duration_s").get<std::int64_t>();
}

TEST(PrimeEngineFromStoreTest, EscalationCountsLiveIncidentsAndNeverReplayedOnes) {
  testing::TempDir dir;
  auto store = IncidentStore::Open(dir.file("state.db"));
  ASSERT_OK(store);
  const UnixMicros now = 1'800'000'000LL * kMicrosPerSecond;
  // Two replayed incidents of the key an hour ago: no escalation.
  std::vector<Incident> replayed = {
      Earlier(IncidentOrigin::kReplay, now - 3600 * kMicrosPerSecond),
      Earlier(IncidentOrigin::kReplay, now - 1800 * kMicrosPerSecond)};
  ASSERT_OK((*store)->RecordIncidents(&replayed, now));
  EXPECT_EQ(BanSecondsAfterPriming(store->get(), now), 3600);
  // One live one: doubled.
  std::vector<Incident> live = {Earlier(IncidentOrigin::kLive, now - 600 * kMicrosPerSecond)};
  ASSERT_OK((*store)->RecordIncidents(&live, now));
  EXPECT_EQ(BanSecondsAfterPriming(store->get(), now), 7200);
}

}  // namespace
}  // namespace mxward
