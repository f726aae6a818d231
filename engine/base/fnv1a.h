// Fnv1a: the 64-bit FNV-1a hash of a text, the same in every build and run (std::hash is not),
// with no allocation: for values that are stored (an incident's replay identity) or that must
// not depend on the process (the pending-attempts table's session and passdb keys). Chain a
// second text by passing the first's hash as `h`.
#pragma once

#include <cstdint>
#include <string_view>

namespace mxward {

inline constexpr std::uint64_t kFnv1aOffsetBasis = 14695981039346656037ull;

inline std::uint64_t Fnv1a(std::string_view text, std::uint64_t h = kFnv1aOffsetBasis) {
  for (const unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace mxward
