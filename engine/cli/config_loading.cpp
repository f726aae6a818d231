#include <cstdio>
#include <filesystem>

#include "engine/cli/commands.h"

namespace mxward::cli {

Config LoadEffectiveConfig(const GlobalOptions& g) {
  Config config = Config::Defaults();
  std::error_code ec;
  const bool exists = std::filesystem::exists(g.config_path, ec);
  if (g.config_given && !exists) {
    throw CliExit(kExitUsage, "config file " + g.config_path + " does not exist");
  }
  if (exists) {
    std::vector<Diagnostic> diags;
    auto loaded = Config::Load(g.config_path, &diags);
    if (!loaded.ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      throw CliExit(kExitFailure, loaded.status().message());
    }
    config = std::move(*loaded);
  }
  if (!g.db_path.empty()) config.store_path = g.db_path;
  if (!g.rule_dirs.empty()) config.rule_dirs = g.rule_dirs;
  if (!g.control_socket.empty()) config.control_socket = g.control_socket;
  return config;
}

}  // namespace mxward::cli
