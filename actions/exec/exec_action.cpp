#include "mxward/exec_action.h"
#include "mxward/unique_fd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../config_section_reader.h"
#include "../webhook/incident_text.h"
#include "mxward/webhook_notifier.h"

namespace mxward {

namespace {

constexpr std::size_t kMaxOutput = 8 * 1024;
constexpr int kExitTempFail = 75;  // sysexits.h EX_TEMPFAIL: "try again later"

using Fd = UniqueFd;

std::int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// SIGPIPE is blocked on this thread while we write to a child that may have exited; a pending
// one is consumed before the old mask comes back, so it can never kill the daemon.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SigpipeBlock() {
    if (!sigismember(&old_, SIGPIPE)) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      const timespec zero{0, 0};
      while (sigtimedwait(&set, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
};

}  // namespace

Result<ProcessOutcome> RunProcessGroup(const std::vector<std::string>& argv,
                                       const std::vector<std::string>& env,
                                       const std::string& input, std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds grace) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return Status::InvalidArgument("argv[0] must be an absolute path");
  }
  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) return Status::IoError("pipe failed");
  Fd in_read(in_pipe[0]), in_write(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Status::IoError("pipe failed");
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // nothing else of the daemon leaks
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: the timeout kills its children too
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Status::InvalidArgument(fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  }
  in_read.Reset();
  out_write.Reset();
  // Exit is watched through a pidfd, so a grandchild holding the output pipe open cannot keep
  // us waiting.
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  ::fcntl(in_write.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);

  SigpipeBlock no_sigpipe;
  ProcessOutcome outcome;
  std::size_t written = 0;
  if (input.empty()) in_write.Reset();
  const std::int64_t start = MonotonicMs();
  std::int64_t deadline = start + timeout.count();
  bool term_sent = false, exited = false;
  int wstatus = 0;
  while (!exited) {
    const std::int64_t now = MonotonicMs();
    if (now >= deadline) {
      if (!term_sent) {
        outcome.timed_out = true;
        ::kill(-pid, SIGTERM);
        term_sent = true;
        deadline = now + grace.count();
      } else {
        ::kill(-pid, SIGKILL);
        deadline = now + 60'000;
      }
    }
    pollfd fds[3];
    int nfds = 0;
    if (pidfd.get() >= 0) fds[nfds++] = {pidfd.get(), POLLIN, 0};
    const int out_index = out_read.get() >= 0 ? nfds : -1;
    if (out_read.get() >= 0) fds[nfds++] = {out_read.get(), POLLIN, 0};
    const int in_index = in_write.get() >= 0 ? nfds : -1;
    if (in_write.get() >= 0) fds[nfds++] = {in_write.get(), POLLOUT, 0};
    const int wait_ms =
        pidfd.get() >= 0 ? static_cast<int>(std::max<std::int64_t>(deadline - now, 0)) : 20;
    ::poll(fds, static_cast<nfds_t>(nfds), std::min(wait_ms, 1000));
    if (out_index >= 0 && fds[out_index].revents) {
      char buf[4096];
      const ssize_t n = ::read(out_read.get(), buf, sizeof buf);
      if (n > 0) {
        const std::size_t room = kMaxOutput - std::min(kMaxOutput, outcome.output.size());
        outcome.output.append(buf, std::min<std::size_t>(room, static_cast<std::size_t>(n)));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        out_read.Reset();
      }
    }
    if (in_index >= 0 && fds[in_index].revents) {
      const ssize_t n = ::write(in_write.get(), input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<std::size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        in_write.Reset();  // done, or the child closed its stdin: EOF for it either way
      }
    }
    const pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
    if (w == pid) exited = true;
  }
  // Collect what is left in the pipe without waiting for writers that outlive the child.
  if (out_read.get() >= 0) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_read.get(), buf, sizeof buf)) > 0 &&
           outcome.output.size() < kMaxOutput) {
      outcome.output.append(buf, std::min<std::size_t>(kMaxOutput - outcome.output.size(),
                                                       static_cast<std::size_t>(n)));
    }
  }
  if (outcome.timed_out) ::kill(-pid, SIGKILL);  // stragglers of the group
  if (WIFEXITED(wstatus)) {
    outcome.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    outcome.signal = WTERMSIG(wstatus);
  }
  return outcome;
}

// --- configuration -------------------------------------------------------------------------------

Result<ExecOptions> ExecOptions::FromConfig(const Config& config,
                                            std::vector<Diagnostic>* diagnostics) {
  ExecOptions o;
  const toml::node* node = config.document.get("exec");
  if (!node) return o;
  const std::size_t before = diagnostics->size();
  const toml::table* all = node->as_table();
  if (!all) {
    diagnostics->push_back(MakeDiagnostic(config.source, node->source(),
                                          "[exec] must hold tables like [exec.ticket]"));
    return Status::InvalidArgument(diagnostics->back().ToString());
  }
  for (const auto& [name, value] : *all) {
    const std::string section = fmt::format("exec.{}", name.str());
    const toml::table* t = value.as_table();
    if (!t) {
      diagnostics->push_back(MakeDiagnostic(config.source, value.source(),
                                            fmt::format("[{}] must be a table", section)));
      continue;
    }
    ConfigSectionReader r(*t, section, config.source, diagnostics);
    r.CheckKnownKeys({"argv", "timeout", "env"});
    ExecTarget target;
    target.name = std::string(name.str());
    const toml::node* argv = t->get("argv");
    const toml::array* arr = argv ? argv->as_array() : nullptr;
    if (!arr || arr->empty()) {
      r.Error(argv ? *argv : static_cast<const toml::node&>(*t),
              fmt::format("[{}] needs argv = [\"/absolute/path\", \"arg\", ...]", section));
    } else {
      for (const toml::node& e : *arr) {
        auto s = e.value_exact<std::string>();
        if (!s) {
          r.Error(e, "'argv' must contain strings");
        } else {
          target.argv.push_back(*s);
        }
      }
      if (!target.argv.empty() && (target.argv[0].empty() || target.argv[0][0] != '/')) {
        r.Error(*arr->get(0), "argv[0] must be an absolute path (no PATH search, no shell)");
      }
    }
    std::int64_t seconds = target.timeout_ms / 1000;
    r.Duration("timeout", &seconds);
    target.timeout_ms = std::max<std::int64_t>(seconds, 1) * 1000;
    if (const toml::node* env = t->get("env")) {
      if (const toml::table* et = env->as_table()) {
        for (const auto& [k, v] : *et) {
          auto s = v.value_exact<std::string>();
          if (!s || !ConfigSectionReader::IsIdentifier(k.str()) ||
              k.str().rfind("MXWARD_", 0) == 0) {
            r.Error(v, "env must map NAMES (letters, digits, '_'; not MXWARD_*) to strings");
          } else {
            target.env.emplace_back(std::string(k.str()), *s);
          }
        }
      } else {
        r.Error(*env, "'env' must be a table like { TICKET_QUEUE = \"abuse\" }");
      }
    }
    o.targets.emplace(target.name, std::move(target));
  }
  if (diagnostics->size() > before) return Status::InvalidArgument("errors in [exec.*]");
  return o;
}

Result<std::unique_ptr<ActionExecutor>> MakeExecAction(const Config& config,
                                                       const std::string& store_path,
                                                       std::vector<Diagnostic>* diagnostics,
                                                       std::vector<std::string>* notes) {
  auto options = ExecOptions::FromConfig(config, diagnostics);
  if (!options.ok()) return options.status();
  if (options->targets.empty()) return std::unique_ptr<ActionExecutor>();
  if (config.dry_run) {
    notes->push_back("exec: dry-run (dry_run = true in the config)");
    return std::unique_ptr<ActionExecutor>();
  }
  return std::unique_ptr<ActionExecutor>(
      std::make_unique<ExecAction>(std::move(*options), store_path));
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
    input =
        nlohmann::json::parse(RenderWebhookBody(WebhookFormat::kJson, inc, incident->second, ""));
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

  auto outcome = RunProcessGroup(
      target->argv, env,
      input.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
      std::chrono::milliseconds(target->timeout_ms), std::chrono::milliseconds(2000));
  if (!outcome.ok()) return outcome.status().Annotate(fmt::format("exec.{}", target->name));
  const std::string first_line =
      OneLine(outcome->output.substr(0, outcome->output.find('\n')), 200);
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
