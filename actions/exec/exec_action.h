// ExecAction: the "exec" action, for sites with their own scripts. Runs the argv of an
// [exec.NAME] section (never a shell; argv[0] an absolute path, no PATH search) with the incident
// as JSON on stdin and its fields as MXWARD_* environment variables:
//
//   MXWARD_INCIDENT_ID, MXWARD_PLAYBOOK, MXWARD_SEVERITY, MXWARD_KEY_KIND, MXWARD_KEY,
//   MXWARD_COUNT, MXWARD_WINDOW_SECONDS, MXWARD_TRIGGER, MXWARD_FIRST_SEEN, MXWARD_LAST_SEEN,
//   MXWARD_ACTION_ID, MXWARD_IDEMPOTENCY_KEY, MXWARD_REVERT (0/1)
//
// plus the section's own `env` and PATH=/usr/sbin:/usr/bin:/sbin:/bin; nothing else is inherited.
// Values are stripped of control characters. The child is run by RunArgvCommand (argv_command.h):
// its own process group, killed whole at the timeout (SIGTERM, then SIGKILL after 2 s), so a
// script's own children die with it. Exit 0 is done, exit 75 (EX_TEMPFAIL) and a timeout are
// transient, any other exit (and a program that cannot be started) is permanent.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"

namespace mxward {

struct ExecTarget {
  std::string name;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;
  std::int64_t timeout_ms = 30'000;
};

struct ExecOptions {
  std::map<std::string, ExecTarget> targets;
  static Result<ExecOptions> FromConfig(const Config& config, std::vector<Diagnostic>* diagnostics);
};

class ExecAction final : public ActionExecutor {
 public:
  ExecAction(ExecOptions options, std::string store_path);
  ~ExecAction() override;
  bool Handles(std::string_view type) const override { return type == "exec"; }
  Status Start() override;
  // params: target (an [exec.NAME]; may be left out when only one is configured), incident_id.
  // Revert runs the same argv with MXWARD_REVERT=1.
  Status Apply(const ActionRecord& action) override;
  Status Revert(const ActionRecord& action) override;
  Result<bool> Check(const ActionRecord& action) override;
  void Stop() override;

 private:
  Status Run(const ActionRecord& action);

  ExecOptions options_;
  std::string store_path_;
  std::unique_ptr<IncidentStore> store_;
};

Result<std::unique_ptr<ActionExecutor>> MakeExecAction(const Config& config,
                                                       const std::string& store_path,
                                                       std::vector<Diagnostic>* diagnostics,
                                                       std::vector<std::string>* notes);

}  // namespace mxward
