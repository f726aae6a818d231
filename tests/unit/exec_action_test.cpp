#include "actions/exec/exec_action.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/incident_store.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::TempDir;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class ExecActionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = IncidentStore::Open(dir_.file("state.db"));
    ASSERT_OK(s);
    store_ = std::move(*s);
  }

  Result<ExecOptions> Options(const std::string& toml) {
    std::ofstream(dir_.file("mxward.toml")) << toml;
    diags_.clear();
    auto config = Config::Load(dir_.file("mxward.toml"), &diags_);
    if (!config.ok()) return config.status();
    return ExecOptions::FromConfig(*config, &diags_);
  }

  ActionRecord RecordExecIncident(const std::string& target) {
    Incident inc;
    inc.playbook = "dovecot-bruteforce";
    inc.severity = Severity::kHigh;
    inc.key_kind = "sasl_user";
    inc.key = "bob@example.org\nINJECTED=1";
    inc.trigger = "20 auth_failure in 10m";
    inc.count = 20;
    inc.window_seconds = 600;
    inc.first_seen = kT0;
    inc.last_seen = kT0;
    inc.actions.push_back({"exec", {{"target", target}}, false});
    std::vector<Incident> v{inc};
    EXPECT_TRUE(store_->RecordIncidents(&v, kT0).ok());
    return (*store_->ActionsForIncident(v[0].id))[0];
  }

  TempDir dir_;
  std::unique_ptr<IncidentStore> store_;
  std::vector<Diagnostic> diags_;
};

TEST_F(ExecActionTest, RunsArgvWithIncidentJsonOnStdinAndMxwardVariables) {
  auto o =
      Options(fmt::format("[exec.ticket]\nargv = [\"/bin/sh\", \"-c\", \"cat > \\\"$OUT\\\"; env > "
                          "\\\"$OUT.env\\\"\"]\n"
                          "timeout = 10\nenv = {{ OUT = \"{}\" }}\n",
                          dir_.file("stdin.json")));
  ASSERT_TRUE(o.ok()) << o.status().ToString() << (diags_.empty() ? "" : diags_[0].ToString());
  ExecAction exec(*o, dir_.file("state.db"));
  const ActionRecord a = RecordExecIncident("ticket");
  Status s = exec.Apply(a);
  ASSERT_OK(s);
  auto input = nlohmann::json::parse(ReadFile(dir_.file("stdin.json")));
  EXPECT_EQ(input["incident_id"], a.incident_id);
  EXPECT_EQ(input["playbook"], "dovecot-bruteforce");
  EXPECT_EQ(input["action"]["idempotency_key"], a.idempotency_key);
  const std::string env = ReadFile(dir_.file("stdin.json.env"));
  EXPECT_NE(env.find(fmt::format("MXWARD_INCIDENT_ID={}\n", a.incident_id)), std::string::npos);
  EXPECT_NE(env.find("MXWARD_PLAYBOOK=dovecot-bruteforce\n"), std::string::npos);
  EXPECT_NE(env.find("MXWARD_REVERT=0\n"), std::string::npos);
  // A newline in incident text cannot create another variable.
  EXPECT_NE(env.find("MXWARD_KEY=bob@example.org INJECTED=1\n"), std::string::npos) << env;
  EXPECT_EQ(env.find("\nINJECTED=1"), std::string::npos);
  EXPECT_EQ(env.find("HOME="), std::string::npos);
}

TEST_F(ExecActionTest, ExitCodesMapToTransientAndPermanentFailures) {
  auto o = Options(
      "[exec.tempfail]\nargv = [\"/bin/sh\", \"-c\", \"echo later; exit 75\"]\n"
      "[exec.broken]\nargv = [\"/bin/sh\", \"-c\", \"echo 'no ticket queue'; exit 3\"]\n"
      "[exec.slow]\nargv = [\"/bin/sleep\", \"300\"]\ntimeout = 1\n");
  ASSERT_OK(o);
  ExecAction exec(*o, dir_.file("state.db"));
  Status s = exec.Apply(RecordExecIncident("tempfail"));
  EXPECT_TRUE(s.transient()) << s.ToString();
  s = exec.Apply(RecordExecIncident("broken"));
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.transient());
  EXPECT_NE(s.message().find("exited with 3: no ticket queue"), std::string::npos) << s.ToString();
  s = exec.Apply(RecordExecIncident("slow"));
  EXPECT_TRUE(s.transient());
  EXPECT_NE(s.message().find("timed out"), std::string::npos);
  s = exec.Apply(RecordExecIncident("nope"));
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.transient());
}

TEST_F(ExecActionTest, ConfigErrorsAreLocated) {
  auto o = Options(
      "[exec.bad]\nargv = [\"sh\", \"-c\", \"x\"]\nenv = { MXWARD_KEY = \"x\" }\n"
      "shell = true\n");
  EXPECT_FALSE(o.ok());
  ASSERT_EQ(diags_.size(), 3u);
  std::string all;
  for (const auto& d : diags_) all += d.ToString() + "\n";
  EXPECT_NE(all.find(":2:"), std::string::npos) << all;
  EXPECT_NE(all.find("absolute path"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown key 'shell'"), std::string::npos) << all;
}

TEST_F(ExecActionTest, BuildExecutorsRoutesUnconfiguredTypesToDryRun) {
  std::ofstream(dir_.file("mxward.toml")) << "[exec.ticket]\nargv = [\"/bin/true\"]\n";
  std::vector<Diagnostic> diags;
  auto config = Config::Load(dir_.file("mxward.toml"), &diags);
  ASSERT_OK(config);
  std::vector<std::string> notes;
  auto executors = BuildExecutors(*config, dir_.file("state.db"), &diags, &notes);
  ASSERT_OK(executors);
  ASSERT_EQ(executors->size(), 2u);  // exec, then the dry-run executor
  EXPECT_TRUE((*executors)[0]->Handles("exec"));
  const auto* dry = dynamic_cast<const DryRunExecutor*>((*executors)[1].get());
  ASSERT_NE(dry, nullptr);
  EXPECT_TRUE(dry->Handles("ban"));
  EXPECT_TRUE(dry->Handles("webhook"));
  EXPECT_FALSE(dry->Handles("exec"));
  EXPECT_NE(dry->Reason("ban").find("[nftables]"), std::string::npos);
  ASSERT_FALSE(notes.empty());
  EXPECT_NE(notes.back().find("ban"), std::string::npos);

  // A bad section is an error with its location, not a silent dry-run.
  std::ofstream(dir_.file("mxward.toml")) << "[webhook.ops]\nurl = \"ftp://x\"\n";
  diags.clear();
  config = Config::Load(dir_.file("mxward.toml"), &diags);
  ASSERT_OK(config);
  executors = BuildExecutors(*config, dir_.file("state.db"), &diags, &notes);
  EXPECT_FALSE(executors.ok());
  ASSERT_FALSE(diags.empty());
  EXPECT_EQ(diags[0].line, 2);
}

}  // namespace
}  // namespace mxward
