// Fuzz target for the mxward.toml loader: Config::Load on arbitrary bytes must never crash or
// throw, and on failure must say where (file:line:col) for every problem. Config::Load reads a
// path, so the input goes through one temporary file per process (in /dev/shm when it exists).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mxward/config.h"

namespace {

const std::string& ScratchPath() {
  static const std::string path = [] {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/mxward-config-fuzz-" + std::to_string(getpid()) + ".toml";
  }();
  return path;
}

struct RemoveAtExit {
  ~RemoveAtExit() { std::remove(ScratchPath().c_str()); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static RemoveAtExit cleanup;
  const std::string& path = ScratchPath();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  std::vector<mxward::Diagnostic> diags;
  auto config = mxward::Config::Load(path, &diags);
  for (const auto& d : diags) {
    if (d.file != path || d.line < 0 || d.column < 0 || d.message.empty()) std::abort();
  }
  if (config.ok() != diags.empty()) std::abort();
  return 0;
}
