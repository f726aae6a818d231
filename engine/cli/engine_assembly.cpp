#include "engine_assembly.h"

#include <cstdio>
#include <filesystem>

#include "commands.h"

namespace mxward::cli {

namespace {
[[noreturn]] void ExitWithDiagnostics(const std::vector<Diagnostic>& diags, const Status& st) {
  for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
  throw CliExit(kExitFailure, st.message());
}
}  // namespace

std::vector<std::string> ParserDirs(const Config& config) {
  std::vector<std::string> dirs;
  for (const auto& d : config.rule_dirs) {
    std::error_code ec;
    auto p = std::filesystem::path(d) / "parsers";
    if (std::filesystem::is_directory(p, ec)) dirs.push_back(p.string());
  }
  return dirs;
}

std::shared_ptr<const ParserPack> LoadParserPackOrExit(const std::vector<std::string>& dirs) {
  if (dirs.empty()) {
    throw CliExit(kExitUsage, "no parser directory found (expected <rules dir>/parsers)");
  }
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load(dirs, &diags);
  if (!pack.ok()) ExitWithDiagnostics(diags, pack.status());
  return std::move(*pack);
}

std::unique_ptr<PlaybookEngine> LoadPlaybooksOrExit(const Config& config) {
  for (const auto& d : config.rule_dirs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(d, ec)) {
      throw CliExit(kExitUsage, "rules directory " + d + " does not exist");
    }
  }
  std::vector<Diagnostic> diags;
  auto engine = PlaybookEngine::Load(config, &diags);
  if (!engine.ok()) ExitWithDiagnostics(diags, engine.status());
  return std::move(*engine);
}

}  // namespace mxward::cli
