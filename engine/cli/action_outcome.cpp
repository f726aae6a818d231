#include "engine/cli/action_outcome.h"

#include <algorithm>
#include <thread>

#include <fmt/format.h>

namespace mxward::cli {

Result<std::vector<ActionRecord>> WaitForOutcomes(IncidentStore* store,
                                                  const std::vector<std::int64_t>& ids,
                                                  std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::chrono::milliseconds backoff(5);
  for (;;) {
    std::vector<ActionRecord> actions;
    bool pending = false;
    for (std::int64_t id : ids) {
      auto a = store->GetAction(id);
      if (!a.ok()) return a.status();
      pending = pending || a->status == ActionStatus::kPending;
      actions.push_back(std::move(*a));
    }
    const auto now = std::chrono::steady_clock::now();
    if (!pending || now >= deadline) return actions;
    // A settled action is a committed row: reading again is all there is to waiting. The
    // back-off keeps a slow executor (a webhook with retries) from costing a read every 5 ms.
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  }
}

std::string ActionLabel(const ActionRecord& a) {
  std::string target;
  for (const char* k : {"address", "user", "target", "to"}) {
    if (a.params.contains(k) && a.params[k].is_string()) {
      target = a.params[k].get<std::string>();
      break;
    }
  }
  return fmt::format("#{} {}{}{}", a.id, a.revert ? "undo " : "", a.type,
                     target.empty() ? "" : " " + target);
}

std::string OutcomeText(const ActionRecord& a, UnixMicros now) {
  switch (a.status) {
    case ActionStatus::kDone:
      return "done";
    case ActionStatus::kReverted:
      return "done, since undone";
    case ActionStatus::kDryRun: {
      // The dry-run executor's reasons read "dry-run: <why>"; say it once.
      std::string why = a.last_error;
      if (why.rfind("dry-run: ", 0) == 0) why.erase(0, 9);
      return why.empty() ? "dry-run, not applied" : "dry-run, not applied: " + why;
    }
    case ActionStatus::kRefused:
      // The dispatcher's notes read "refused: <why>" or "refused by the safety valve: ...".
      if (a.last_error.rfind("refused", 0) == 0) return a.last_error;
      return a.last_error.empty() ? "refused" : "refused: " + a.last_error;
    case ActionStatus::kFailed:
      return fmt::format("failed after {} attempt{}{}", a.attempts, a.attempts == 1 ? "" : "s",
                         a.last_error.empty() ? "" : ": " + a.last_error);
    case ActionStatus::kPending:
      break;
  }
  std::string s = "still pending";
  if (a.attempts > 0) {
    s += fmt::format(" (attempt {} failed: {}", a.attempts, a.last_error);
    if (a.next_attempt_at > now) {
      s += fmt::format("; next try in {}",
                       FormatDurationSeconds((a.next_attempt_at - now + kMicrosPerSecond - 1) /
                                             kMicrosPerSecond));
    }
    s += ")";
  }
  return s + fmt::format("; follow it with: mxward actions show {}", a.id);
}

int ExitCodeForOutcomes(const std::vector<ActionRecord>& actions) {
  int code = 0;
  for (const ActionRecord& a : actions) {
    switch (a.status) {
      case ActionStatus::kDone:
      case ActionStatus::kReverted:
        break;
      case ActionStatus::kDryRun:
        code = std::max(code, kExitDryRun);
        break;
      case ActionStatus::kPending:
        code = std::max(code, kExitPending);
        break;
      case ActionStatus::kRefused:
        code = std::max(code, kExitRefused);
        break;
      case ActionStatus::kFailed:
        code = std::max(code, kExitActionFailed);
        break;
    }
  }
  return code;
}

}  // namespace mxward::cli
