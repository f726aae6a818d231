// Diagnostic: a problem in a file, located for a person. Every loader (mxward.toml, playbooks,
// the parser pack, the action sections) reports all the problems it finds as Diagnostics, and
// `mxward check` prints them. Kept apart from config.h so that code which only reports or prints
// a problem does not parse toml++.
#pragma once

#include <string>

namespace mxward {

// A problem in a file, located for a person: "rules.d/x.toml:3:7: error: unknown field 'windw'".
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string ToString() const;
};

}  // namespace mxward
