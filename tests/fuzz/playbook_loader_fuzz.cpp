// Fuzz target for the playbook loader: CompilePlaybookText on arbitrary bytes must never crash,
// hang or throw, and every problem it reports must be located in the file (line and column at
// least 1, or 0:0 for a whole-file problem such as a missing section), so `mxward check` can
// always point at it. A playbook it accepts is also run through an engine once, with one event,
// so what the loader lets through is something the engine can hold.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/playbook.h"
#include "mxward/playbook_engine.h"

namespace {

class NullSink : public mxward::IncidentSink {
 public:
  void OnIncident(mxward::Incident) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<mxward::Diagnostic> diags;
  auto pb = mxward::CompilePlaybookText(text, "fuzz.toml", &diags);
  for (const auto& d : diags) {
    if (d.file != "fuzz.toml" || d.line < 0 || d.column < 0 || d.message.empty()) std::abort();
    if (d.ToString().find("fuzz.toml:") != 0) std::abort();
  }
  if (pb.ok() != diags.empty()) std::abort();  // an error always says where, success says nothing
  if (!pb.ok()) return 0;
  std::vector<mxward::Playbook> playbooks;
  playbooks.push_back(std::move(*pb));
  mxward::PlaybookEngineOptions options;
  options.hash_seed = 1;
  options.evidence_lines = 64;
  auto engine =
      mxward::PlaybookEngine::Create(std::move(playbooks), mxward::Config::Defaults(), options);
  static const std::string kLine = "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed";
  mxward::Event event;
  event.line = kLine;
  event.time = 1'700'000'000LL * mxward::kMicrosPerSecond;
  mxward::IpAddress::Parse("192.0.2.1", &event.client_ip);
  event.set(mxward::Field::kClientIp, "192.0.2.1");
  event.set(mxward::Field::kUser, "alice");
  event.set(mxward::Field::kSaslUser, "alice");
  event.set(mxward::Field::kService, "smtpd");
  NullSink sink;
  for (int t = 0; t < mxward::kEventTypeCount; ++t) {
    event.type = static_cast<mxward::EventType>(t);
    engine->OnEvent(event, &sink);
  }
  return 0;
}
