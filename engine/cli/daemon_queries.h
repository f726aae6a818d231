// DaemonQueries: the control requests only a running `mxward serve` can answer, because they read
// its memory rather than the store.
//
//   {"op":"status","top":5}  -> what is loaded (playbooks with key, trigger, window and mode;
//                               inputs; executors per action type, live or dry-run and why;
//                               policy servers) and what is building up (per playbook, the `top`
//                               keys closest to its trigger: count, threshold, last seen).
//   {"op":"stats.pending"}   -> the current hour's event counts the pipeline holds and has not
//                               handed to the store yet: {"hour": µs, "events": {type: n},
//                               "store": path} (the store they will be written to).
//
// Threads: the daemon's control server runs its handler on the io_context's thread, which is
// also the thread the listeners call the pipeline (and so the playbook engine) on. These answers
// therefore read the engine on its own thread, between two lines, and need no lock; the view
// holds plain pointers the daemon owns and keeps alive while the control server runs. Nothing
// here is counted, moved or allocated on the engine's hot path (PlaybookEngine::ClosestKeys
// reads the key text the engine kept when each key was first counted).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/cluster/cluster_link.h"
#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/input_config.h"
#include "mxward/pipeline.h"
#include "mxward/time.h"

namespace mxward::cli {

// How one action type runs in this daemon: by its executor ("live") or recorded only
// ("dry-run"), with the reason ("dry-run: no [nftables] section in mxward.toml").
struct ExecutorMode {
  std::string type;
  std::string section;  // mxward.toml section of its executor ("nftables", "webhook.NAME")
  bool live = false;
  std::string reason;  // dry-run only
};

// Reads the executors BuildExecutors made (before they are handed to the dispatcher): a type
// handled by a DryRunExecutor, or by none, is dry-run; anything else is live.
std::vector<ExecutorMode> DescribeExecutors(
    const std::vector<std::unique_ptr<ActionExecutor>>& executors);

// What the last SIGHUP did (`status` shows it): outcome "reloaded", "reloaded in part" (some
// changed sections wait for a restart: needs_restart names them) or "refused" (nothing changed;
// message says why). at == 0: no reload since start.
struct ReloadOutcome {
  UnixMicros at = 0;
  std::string outcome;
  std::string message;
  std::vector<std::string> needs_restart;
};

struct DaemonView {
  const Config* config = nullptr;
  Pipeline* pipeline = nullptr;
  const std::vector<InputSpec>* inputs = nullptr;
  const std::vector<ExecutorMode>* executors = nullptr;
  std::vector<std::string> policy_servers;  // "dovecot policy on port 9081", ...
  std::size_t allow_static = 0;             // [allow] addresses (with the host's own)
  std::size_t allow_runtime = 0;            // `mxward allow` entries compiled in (some may expire)
  UnixMicros started_at = 0;
  const ClusterLink* cluster = nullptr;  // with [cluster]
  const ReloadOutcome* last_reload = nullptr;
};

// True for the ops above; the daemon answers them with AnswerDaemonQuery, every other op with
// ExecuteControlRequest.
bool IsDaemonQuery(const nlohmann::json& request);
// The ControlOk / ControlError response. Never throws.
nlohmann::json AnswerDaemonQuery(const nlohmann::json& request, const DaemonView& view,
                                 UnixMicros now);

}  // namespace mxward::cli
