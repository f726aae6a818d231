#include "actions/exec/exec_action.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actions/common/argv_command.h"
#include "actions/common/incident_text.h"
#include "engine/base/settings_reader.h"

namespace mxward {

namespace {

constexpr std::size_t kMaxOutput = 8 * 1024;
constexpr int kExitTempFail = 75;  // sysexits.h EX_TEMPFAIL: "try again later"

}  // namespace

// --- configuration -------------------------------------------------------------------------------

Result<ExecOptions> ExecOptions::FromConfig(const Config& config,
                                            std::vector<Diagnostic>* diagnostics) {
  ExecOptions o;
  const std::size_t before = diagnostics->size();
  ForEachNamedTable(
      config.document, "exec", "ticket", config.source, diagnostics,
      [&](std::string_view name, SettingsReader& r) {
        const toml::table* t = &r.table();
        r.CheckKnownKeys({"argv", "timeout", "env"});
        ExecTarget target;
        target.name = std::string(name);
        const toml::node* argv = t->get("argv");
        const toml::array* arr = argv ? argv->as_array() : nullptr;
        if (!arr || arr->empty()) {
          r.Error(argv ? *argv : static_cast<const toml::node&>(*t),
                  fmt::format("{} needs argv = [\"/absolute/path\", \"arg\", ...]", r.where()));
        } else {
          for (const toml::node& e : *arr) {
            auto s = e.value_exact<std::string>();
            if (!s) {
              r.TypeError(e, "argv", "only strings in the array");
            } else {
              target.argv.push_back(*s);
            }
          }
          if (!target.argv.empty() && (target.argv[0].empty() || target.argv[0][0] != '/')) {
            r.Error(*arr->get(0), "argv[0] must be an absolute path (no PATH search, no shell)");
          }
        }
        r.DurationMillis("timeout", &target.timeout_ms);
        if (const toml::table* et = r.Table("env")) {
          for (const auto& [k, v] : *et) {
            auto s = v.value_exact<std::string>();
            if (!s || !SettingsReader::IsIdentifier(k.str()) || k.str().rfind("MXWARD_", 0) == 0) {
              r.Error(v, "env must map NAMES (letters, digits, '_'; not MXWARD_*) to strings");
            } else {
              target.env.emplace_back(std::string(k.str()), *s);
            }
          }
        }
        o.targets.emplace(target.name, std::move(target));
      });
  if (diagnostics->size() > before) return Status::InvalidArgument("errors in [exec.*]");
  return o;
}

// --- the executor --------------------------------------------------------------------------------

ExecAction::ExecAction(ExecOptions options, std::string store_path)
    : options_(std::move(options)), store_path_(std::move(store_path)) {}

ExecAction::~ExecAction() { Stop(); }

Status ExecAction::Start() { return Status::Ok(); }

void ExecAction::Stop() { store_.reset(); }

Status ExecAction::Apply(const ActionRecord& action) { return Run(action); }

Status ExecAction::Revert(const ActionRecord& action) { return Run(action); }

Result<bool> ExecAction::Check(const ActionRecord&) { return true; }

Status ExecAction::Run(const ActionRecord& action) {
  const ExecTarget* target = nullptr;
  if (auto it = action.params.find("target"); it != action.params.end() && it->is_string()) {
    auto t = options_.targets.find(it->get<std::string>());
    if (t == options_.targets.end()) {
      return Status::InvalidArgument(fmt::format("no [exec.{}] in mxward.toml for this action",
                                                 OneLine(it->get<std::string>(), 64)));
    }
    target = &t->second;
  } else if (options_.targets.size() == 1) {
    target = &options_.targets.begin()->second;
  } else {
    return Status::InvalidArgument("the exec action names no target and several are configured");
  }

  std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  auto add = [&env](const char* name, const std::string& value) {
    env.push_back(fmt::format("{}={}", name, OneLine(value, 4096)));
  };
  nlohmann::json input = nlohmann::json::object();
  const bool has_incident =
      action.incident_id != 0 ||
      (action.params.contains("incident_id") && action.params["incident_id"].is_number_integer());
  if (has_incident) {
    auto incident = LoadIncidentForAction(action, [this]() -> Result<IncidentStore*> {
      if (!store_) {
        auto s = IncidentStore::Open(store_path_);
        if (!s.ok()) return s.status();
        store_ = std::move(*s);
      }
      return store_.get();
    });
    if (!incident.ok()) return incident.status();
    const Incident& inc = incident->first;
    input = IncidentJson(inc, incident->second, "");
    add("MXWARD_INCIDENT_ID", std::to_string(inc.id));
    add("MXWARD_PLAYBOOK", inc.playbook);
    add("MXWARD_SEVERITY", std::string(SeverityName(inc.severity)));
    add("MXWARD_KEY_KIND", inc.key_kind);
    add("MXWARD_KEY", inc.key);
    add("MXWARD_COUNT", std::to_string(inc.count));
    add("MXWARD_WINDOW_SECONDS", std::to_string(inc.window_seconds));
    add("MXWARD_TRIGGER", inc.trigger);
    add("MXWARD_FIRST_SEEN", FormatRfc3339(inc.first_seen));
    add("MXWARD_LAST_SEEN", FormatRfc3339(inc.last_seen));
  }
  add("MXWARD_ACTION_ID", std::to_string(action.id));
  add("MXWARD_IDEMPOTENCY_KEY", action.idempotency_key);
  add("MXWARD_REVERT", action.revert ? "1" : "0");
  for (const auto& [k, v] : target->env) env.push_back(k + "=" + v);
  input["action"] = {{"id", action.id},
                     {"type", action.type},
                     {"revert", action.revert},
                     {"idempotency_key", action.idempotency_key},
                     {"params", action.params}};

  ArgvCommand command;
  command.argv = target->argv;
  command.env = std::move(env);
  command.input = input.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  command.timeout = std::chrono::milliseconds(target->timeout_ms);
  command.max_output = kMaxOutput;
  command.merge_stderr = true;  // one stream, as the script wrote it, for the error message
  auto outcome = RunArgvCommand(command);
  if (!outcome.ok()) {
    // A program that is not there or not executable is a configuration error: retrying it
    // would only fill the log.
    return Status::InvalidArgument(
        fmt::format("exec.{}: {}", target->name, outcome.status().message()));
  }
  const std::string first_line = OneLine(outcome->out.substr(0, outcome->out.find('\n')), 200);
  if (outcome->timed_out) {
    return Status::Unavailable(fmt::format("exec.{}: {} timed out after {} ms", target->name,
                                           target->argv[0], target->timeout_ms));
  }
  if (outcome->exit_code == 0) return Status::Ok();
  const std::string what =
      outcome->signal ? fmt::format("exec.{}: {} killed by signal {}", target->name,
                                    target->argv[0], outcome->signal)
                      : fmt::format("exec.{}: {} exited with {}{}{}", target->name, target->argv[0],
                                    outcome->exit_code, first_line.empty() ? "" : ": ", first_line);
  if (outcome->exit_code == kExitTempFail) return Status::Unavailable(what);
  return Status::InvalidArgument(what);
}

}  // namespace mxward
