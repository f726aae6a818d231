// The action catalogue (mxward/action_types.h) against its readers: the table is consistent in
// itself, the executor registry runs every type the table names from the section it names, and
// the playbook loader accepts exactly the table's parameters for each type.
#include "mxward/action_types.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mxward/action_executor.h"
#include "mxward/action_registry.h"
#include "mxward/config.h"
#include "mxward/playbook.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

bool Has(std::span<const std::string_view> list, std::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

TEST(ActionTypesTest, TableIsConsistent) {
  std::set<std::string_view> types;
  for (const ActionTypeInfo& t : kActionTypes) {
    SCOPED_TRACE(std::string(t.type));
    EXPECT_TRUE(types.insert(t.type).second) << "listed twice";
    for (std::string_view r : t.required) EXPECT_TRUE(Has(t.params, r)) << r;
    EXPECT_TRUE(Has(t.params, t.subject_param)) << t.subject_param;
    // The loader handles these three itself; a param of the same name would be shadowed.
    for (std::string_view reserved : {"type", "duration", "dry_run"}) {
      EXPECT_FALSE(Has(t.params, reserved)) << reserved;
    }
    EXPECT_FALSE(t.section.empty());
    // `mxward accounts restore` reverts what `accounts suspend` did.
    if (t.account) {
      EXPECT_TRUE(t.revertible);
    }
    EXPECT_EQ(FindActionType(t.type), &t);
  }
  EXPECT_EQ(FindActionType("block"), nullptr);
  EXPECT_EQ(kActionTypeNames.size(), std::size(kActionTypes));
}

// With no action section configured, BuildExecutors routes every type to the dry-run executor,
// with the section that would run it as the reason: a type whose section the registry does not
// build would be missing here (and fail at run time with "no executor handles").
TEST(ActionTypesTest, RegistryBuildsTheSectionOfEveryType) {
  Config config = Config::Defaults();
  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  auto executors = BuildExecutors(config, "/nonexistent/state.db", &diags, &notes);
  ASSERT_OK(executors);
  ASSERT_EQ(executors->size(), 1u);
  const auto* dry = dynamic_cast<const DryRunExecutor*>((*executors)[0].get());
  ASSERT_NE(dry, nullptr);
  for (const ActionTypeInfo& t : kActionTypes) {
    SCOPED_TRACE(std::string(t.type));
    EXPECT_TRUE(dry->Handles(t.type));
    EXPECT_NE(dry->Reason(t.type).find(fmt::format("[{}", t.section)), std::string::npos)
        << dry->Reason(t.type);
  }
  EXPECT_FALSE(dry->Handles("block"));
}

std::string Playbook(std::string_view action_lines) {
  return fmt::format(R"(severity = "high"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 5
window = "10m"
[[action]]
{}
)",
                     action_lines);
}

std::vector<Diagnostic> Compile(const std::string& text) {
  std::vector<Diagnostic> diags;
  (void)CompilePlaybookText(text, "pb.toml", &diags);
  return diags;
}

std::string Join(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const auto& d : diags) out += d.ToString() + "\n";
  return out;
}

TEST(ActionTypesTest, LoaderAcceptsExactlyTheTableParams) {
  for (const ActionTypeInfo& t : kActionTypes) {
    SCOPED_TRACE(std::string(t.type));
    std::string all = fmt::format("type = \"{}\"\n", t.type);
    // Every parameter a template, except a ban's ports: literal only (no log line may choose
    // what a ban covers), tested in playbook_loader_test.
    for (std::string_view p : t.params) {
      all += fmt::format("{} = \"{}\"\n", p, p == "ports" ? "web" : "{key}");
    }
    auto diags = Compile(Playbook(all));
    EXPECT_TRUE(diags.empty()) << Join(diags);

    // A name no type takes is refused, and the message lists the table's params.
    diags = Compile(Playbook(all + "bogus = \"x\"\n"));
    ASSERT_EQ(diags.size(), 1u) << Join(diags);
    EXPECT_NE(diags[0].message.find("unknown key 'bogus'"), std::string::npos) << Join(diags);
    for (std::string_view p : t.params) {
      EXPECT_NE(diags[0].message.find(std::string(p)), std::string::npos) << Join(diags);
    }

    // A param of another type is refused too.
    for (const ActionTypeInfo& other : kActionTypes) {
      for (std::string_view p : other.params) {
        if (Has(t.params, p)) continue;
        diags = Compile(Playbook(all + fmt::format("{} = \"x\"\n", p)));
        EXPECT_EQ(diags.size(), 1u) << p << "\n" << Join(diags);
      }
    }

    // Each required param, left out, is reported.
    for (std::string_view r : t.required) {
      std::string without = fmt::format("type = \"{}\"\n", t.type);
      for (std::string_view p : t.params) {
        if (p != r) without += fmt::format("{} = \"{{key}}\"\n", p);
      }
      diags = Compile(Playbook(without));
      ASSERT_EQ(diags.size(), 1u) << r << "\n" << Join(diags);
      EXPECT_NE(diags[0].message.find(fmt::format("needs '{}'", r)), std::string::npos)
          << Join(diags);
    }
  }
}

TEST(ActionTypesTest, LoaderRefusesTypesOutsideTheTable) {
  auto diags = Compile(Playbook("type = \"block\"\n"));
  ASSERT_EQ(diags.size(), 1u) << Join(diags);
  for (const ActionTypeInfo& t : kActionTypes) {
    EXPECT_NE(diags[0].message.find(std::string(t.type)), std::string::npos) << Join(diags);
  }
}

}  // namespace
}  // namespace mxward
