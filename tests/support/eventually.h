// Eventually: polls a condition until it holds or a deadline passes. The one way tests wait for
// another thread or process (a dispatcher worker, a daemon, a server): the test waits for the
// condition, never for a time; the deadline only bounds a failure, and the poll interval only
// bounds how often we look. Header-only: include "support/eventually.h".
#pragma once

#include <chrono>
#include <thread>

namespace mxward::testing {

// True as soon as cond() holds; false when it still does not at the deadline (checked once more
// then, so a slow machine that got there at the last moment passes).
template <typename Cond>
bool Eventually(Cond&& cond, std::chrono::milliseconds timeout = std::chrono::seconds(60),
                std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(poll);  // how often we look, not what we wait for
  }
  return cond();
}

}  // namespace mxward::testing
