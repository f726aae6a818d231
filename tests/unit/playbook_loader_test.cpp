// Playbook loading: every broken playbook under tests/data/playbooks/broken/ is compared with its
// golden diagnostics (<name>.expected: every problem, file:line:col: error: message); the shipped
// rules.d/ compiles cleanly; Load reports the problems of all files at once.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mxward/playbook.h"
#include "mxward/playbook_engine.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

namespace fs = std::filesystem;
const fs::path kData = fs::path(MXWARD_TEST_DATA) / "playbooks";

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Diagnostics as `mxward check` prints them, with paths relative to tests/data/playbooks.
std::string Render(const std::vector<Diagnostic>& diags) {
  std::string out;
  const std::string prefix = kData.string() + "/";
  for (Diagnostic d : diags) {
    if (d.file.rfind(prefix, 0) == 0) d.file = d.file.substr(prefix.size());
    out += d.ToString() + "\n";
  }
  return out;
}

std::vector<fs::path> BrokenPlaybooks() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kData / "broken")) {
    if (e.path().extension() == ".toml") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(PlaybookLoaderTest, BrokenPlaybooksMatchTheirGoldenDiagnostics) {
  const auto files = BrokenPlaybooks();
  ASSERT_GE(files.size(), 8u);
  for (const auto& f : files) {
    std::vector<Diagnostic> diags;
    auto pb = CompilePlaybook(f.string(), &diags);
    EXPECT_FALSE(pb.ok()) << f;
    fs::path expected = f;
    expected.replace_extension(".expected");
    const std::string got = Render(diags);
    if (std::getenv("MXWARD_UPDATE_GOLDEN")) std::ofstream(expected) << got;
    EXPECT_EQ(got, ReadFile(expected)) << "golden: " << expected;
  }
}

TEST(PlaybookLoaderTest, LoadReportsEveryFileAtOnce) {
  Config config = Config::Defaults();
  config.rule_dirs = {(kData / "broken").string()};
  std::vector<Diagnostic> diags;
  auto engine = PlaybookEngine::Load(config, &diags);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), Status::Code::kInvalidArgument);
  std::string all;
  for (const auto& f : BrokenPlaybooks()) {
    fs::path expected = f;
    all += ReadFile(expected.replace_extension(".expected"));
  }
  EXPECT_EQ(Render(diags), all);
}

TEST(PlaybookLoaderTest, ShippedPlaybooksCompile) {
  Config config = Config::Defaults();
  config.rule_dirs = {std::string(MXWARD_SOURCE_DIR) + "/rules.d"};
  std::vector<Diagnostic> diags;
  auto engine = PlaybookEngine::Load(config, &diags);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  ASSERT_OK(engine);
  EXPECT_GE((*engine)->playbook_count(), 1u);
}

TEST(PlaybookLoaderTest, CompiledFormOfAFullPlaybook) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(R"(
description = "everything"
severity = "critical"
mode = "dry-run"
key = ["sasl_user", "client_ip/24"]
cooldown = "2h"
max_keys = 5000

[match]
events = ["auth_failure", "auth_success"]
service = ["SMTPD", "submission"]
reason = { not_regex = "Connection lost.*" }
client_ip = { not_cidr = "10.0.0.0/8" }
attempts = { gte = 1 }

[trigger]
type = "distinct"
field = "client_ip/16"
threshold = 4
window = "1h"
[trigger.reset]
events = ["auth_success"]

[allow]
cidrs = ["192.0.2.0/24"]
users = ["Monitor@Example.org"]
domains = ["example.net"]

[escalation]
factor = 1.5
max = "1d"
lookback = "12h"
across_playbooks = true

[[action]]
type = "webhook"
target = "ops"

[[action]]
type = "mail"
to = "admin@example.org"
body = "{{literal}} {evidence}"
)",
                                "x/full.toml", &diags);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  ASSERT_OK(pb);
  EXPECT_EQ(pb->name, "full");
  EXPECT_EQ(pb->severity, Severity::kCritical);
  EXPECT_EQ(pb->mode, PlaybookMode::kDryRun);
  EXPECT_EQ(pb->key_kind, "sasl_user,client_ip/24");
  ASSERT_EQ(pb->key.size(), 2u);
  EXPECT_EQ(pb->key[1].prefix_len, 24);
  EXPECT_EQ(pb->cooldown_seconds, 7200);
  EXPECT_EQ(pb->max_keys, 5000u);
  EXPECT_TRUE(pb->match.types[static_cast<int>(EventType::kAuthFailure)]);
  EXPECT_FALSE(pb->match.types[static_cast<int>(EventType::kDelivery)]);
  // The four written plus the implicit "log lines only" (no source named).
  ASSERT_EQ(pb->match.conditions.size(), 5u);
  EXPECT_EQ(pb->match.conditions.back().field, Field::kSource);
  EXPECT_EQ(pb->match.conditions.back().op, ConditionOp::kExists);
  EXPECT_FALSE(pb->match.conditions.back().exists);
  const Condition* service = nullptr;
  for (const auto& c : pb->match.conditions) {
    if (c.field == Field::kService) service = &c;
  }
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->op, ConditionOp::kIn);
  EXPECT_EQ(service->values, (std::vector<std::string>{"smtpd", "submission"}));
  EXPECT_EQ(pb->trigger.type, TriggerType::kDistinct);
  EXPECT_EQ(pb->trigger.field.prefix_len, 16);
  EXPECT_FALSE(pb->trigger.reset.empty());
  EXPECT_EQ(pb->allow.users, std::vector<std::string>{"monitor@example.org"});
  EXPECT_TRUE(pb->escalation.enabled);
  EXPECT_DOUBLE_EQ(pb->escalation.factor, 1.5);
  EXPECT_EQ(pb->escalation.lookback_seconds, 43200);
  ASSERT_EQ(pb->actions.size(), 2u);
  EXPECT_EQ(pb->actions[0].params.size(), 2u) << "format defaults to json";
  const Template* body = nullptr;
  for (const auto& [name, tpl] : pb->actions[1].params) {
    if (name == "body") body = &tpl;
  }
  ASSERT_NE(body, nullptr);
  ASSERT_EQ(body->parts.size(), 2u);
  EXPECT_EQ(body->parts[0].literal, "{literal} ");
  EXPECT_EQ(body->parts[1].kind, Template::Kind::kEvidence);
}

TEST(PlaybookLoaderTest, CooldownDefaultsToTheBanOrTheWindow) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(R"(
[match]
events = ["rbl_reject"]
[trigger]
type = "count"
threshold = 1
window = "10m"
[[action]]
type = "ban"
duration = "1d"
)",
                                "a.toml", &diags);
  ASSERT_OK(pb);
  EXPECT_EQ(pb->cooldown_seconds, 86400);
  EXPECT_EQ(pb->actions[0].params[0].first, "address");
  EXPECT_EQ(pb->actions[0].params[0].second.source, "{key}");
}

// Issue 15: a ban's `ports` is literal text (a group, port numbers, or a list of both), never a
// template of event fields.
TEST(PlaybookLoaderTest, BanPortsAreLiteralGroupsOrPorts) {
  const std::string head = R"(
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 1
window = "10m"
[[action]]
type = "ban"
)";
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(head + "ports = [\"web\", 8443]\n", "a.toml", &diags);
  ASSERT_OK(pb);
  ASSERT_EQ(pb->actions[0].params.size(), 2u);
  EXPECT_EQ(pb->actions[0].params[0].first, "ports");
  EXPECT_EQ(pb->actions[0].params[0].second.source, "web,8443");
  pb = CompilePlaybookText(head + "ports = \"web\"\n", "b.toml", &diags);
  ASSERT_OK(pb);
  EXPECT_EQ(pb->actions[0].params[0].second.source, "web");
  for (const char* bad : {"ports = \"{service}\"", "ports = [70000]", "ports = \"\"", "ports = 443",
                          "ports = \"web; flush ruleset\""}) {
    diags.clear();
    EXPECT_FALSE(CompilePlaybookText(head + bad + "\n", "c.toml", &diags).ok()) << bad;
    ASSERT_FALSE(diags.empty()) << bad;
    EXPECT_NE(diags[0].message.find("'ports' must be"), std::string::npos) << diags[0].message;
  }
}

}  // namespace
}  // namespace mxward
