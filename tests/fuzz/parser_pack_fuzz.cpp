// Fuzz target for the parser pack and event extractor with the shipped parsers.
//
// Input: "<program>\n<message>" (no newline: the whole input is a raw syslog line, run through
// SyslogParser first). Checks the invariants a playbook relies on: every field is a view into the
// message or the extractor's tables (never dangling: ASan), a valid client_ip always has its text,
// and weight is at least 1.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "mxward/parser_pack.h"
#include "mxward/syslog_parser.h"

namespace {

std::shared_ptr<const mxward::ParserPack> Pack() {
  static std::shared_ptr<const mxward::ParserPack> pack = [] {
    // The source tree from the build (not __FILE__, which a compiler launcher such as ccache
    // with base_dir may make relative to the build directory).
    const auto dir = std::filesystem::path(MXWARD_SOURCE_DIR) / "rules.d" / "parsers";
    std::vector<mxward::Diagnostic> diags;
    auto p = mxward::ParserPack::Load({dir.string()}, &diags);
    if (!p.ok()) std::abort();
    return *p;
  }();
  return pack;
}

void Check(const mxward::Event& e) {
  if (e.weight < 1) std::abort();
  if (e.client_ip.valid() && !e.has(mxward::Field::kClientIp)) std::abort();
  std::size_t total = 0;
  for (const auto& f : e.fields) total += f.size();  // touches every view
  if (total > (1u << 30)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto extractor = mxward::EventExtractor::Create(Pack(), {1000, 3600});
  const std::string input(reinterpret_cast<const char*>(data), size);
  mxward::SyslogMessage msg;
  mxward::Event event;
  const auto nl = input.find('\n');
  if (nl != std::string::npos) {
    msg.program = std::string_view(input).substr(0, nl);
    msg.message = std::string_view(input).substr(nl + 1);
    msg.raw = input;
  } else if (!mxward::SyslogParser().Parse(input, 0, &msg).ok() &&
             !mxward::ParseRoundcubeFileLine(input, &msg)) {
    return 0;
  }
  const mxward::PatternInfo* info = nullptr;
  if (Pack()->Match(msg, &event, &info)) {
    if (info == nullptr) std::abort();
    Check(event);
  }
  if (extractor->Extract(msg, &event)) Check(event);
  // Held lines released by this one: their views point into the extractor's own copies.
  while (extractor->NextReleased(&event)) Check(event);
  return 0;
}
