#include "mxward/metrics_registry.h"
#include "support/status_matchers.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace mxward {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Unwraps a registration the test expects to succeed.
MetricsRegistry::Handle Take(Result<MetricsRegistry::Handle> r) {
  EXPECT_OK(r);
  return r.ok() ? std::move(r).value() : MetricsRegistry::Handle();
}

// Length of the metric name at the start of s ("mxward_" then [a-z0-9_]), 0 if none.
std::size_t MetricNameLength(std::string_view s) {
  if (!s.starts_with("mxward_")) return 0;
  std::size_t n = 7;
  while (n < s.size() &&
         ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_')) {
    ++n;
  }
  return n > 7 ? n : 0;
}

// A sample line as the 0.0.4 grammar allows: name, optional {label="escaped",...}, space, value.
// (Hand-written rather than std::regex, which trips GCC 12's -Wmaybe-uninitialized under ASan.)
bool IsWellFormedSample(std::string_view line) {
  std::size_t i = MetricNameLength(line);
  if (i == 0) return false;
  if (i < line.size() && line[i] == '{') {
    ++i;
    for (;;) {
      const std::size_t start = i;
      while (i < line.size() && ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '_')) ++i;
      if (i == start || line.substr(i, 2) != "=\"") return false;
      i += 2;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\n') return false;
        if (line[i] == '\\') {
          if (i + 1 >= line.size() ||
              std::string_view("\\\"n").find(line[i + 1]) == std::string_view::npos) {
            return false;
          }
          ++i;
        }
        ++i;
      }
      if (i >= line.size()) return false;
      ++i;  // closing quote
      if (i < line.size() && line[i] == ',') {
        ++i;
        continue;
      }
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      return false;
    }
  }
  if (i >= line.size() || line[i] != ' ') return false;
  const std::string value(line.substr(i + 1));
  if (value == "NaN" || value == "+Inf" || value == "-Inf") return true;
  char* end = nullptr;
  std::strtod(value.c_str(), &end);
  return !value.empty() && end == value.c_str() + value.size();
}

MetricFamily Family(std::string_view name, MetricType type, std::vector<std::string_view> labels,
                    std::string_view help = "help text") {
  return MetricFamily{name, type, help, std::move(labels)};
}

TEST(MetricsRegistryTest, RendersHelpTypeAndSampleReadFromAtomicAtScrapeTime) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  std::atomic<std::uint64_t> lines{0};
  auto h = r.AddAtomic(metric::kLines, {}, &lines);
  ASSERT_OK(h);
  lines.store(41);
  lines.fetch_add(1);
  const std::string out = r.Render();
  EXPECT_THAT(out, HasSubstr("# HELP mxward_lines_total Log lines handed to the pipeline.\n"
                             "# TYPE mxward_lines_total counter\n"
                             "mxward_lines_total 42\n"));
  lines.store(7);
  EXPECT_THAT(r.Render(), HasSubstr("\nmxward_lines_total 7\n"));
}

TEST(MetricsRegistryTest, EveryStandardFamilyHasHelpAndTypeLines) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  const std::string out = r.Render();
  for (const MetricFamily& f : StandardFamilies()) {
    EXPECT_THAT(out, HasSubstr(fmt::format("# HELP {} ", f.name)));
    EXPECT_THAT(out, HasSubstr(fmt::format("# TYPE {} {}\n", f.name,
                                           f.type == MetricType::kCounter ? "counter" : "gauge")));
    if (f.type == MetricType::kCounter) {
      EXPECT_TRUE(f.name.ends_with("_total")) << f.name;
    } else {
      EXPECT_FALSE(f.name.ends_with("_total")) << f.name;
    }
  }
}

TEST(MetricsRegistryTest, LabelsInDeclaredOrderAndValuesEscaped) {
  MetricsRegistry r;
  ASSERT_TRUE(r.Declare(Family("mxward_test_total", MetricType::kCounter, {"input", "reason"},
                               "a \\ backslash\nand a newline"))
                  .ok());
  auto h = r.Add("mxward_test_total", {"tcp\"main\"", "x\\y"}, [] { return 3.0; });
  ASSERT_OK(h);
  const std::string out = r.Render();
  EXPECT_THAT(out, HasSubstr("# HELP mxward_test_total a \\\\ backslash\\nand a newline\n"));
  EXPECT_THAT(out, HasSubstr("mxward_test_total{input=\"tcp\\\"main\\\"\",reason=\"x\\\\y\"} 3\n"));
}

TEST(MetricsRegistryTest, RefusesLabelValuesThatLookLikeLogDataOrUsers) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  auto f = [] { return 1.0; };
  EXPECT_FALSE(r.Add(metric::kIncidents, {"alice@example.org"}, f).ok());
  EXPECT_FALSE(r.Add(metric::kIncidents, {"SASL LOGIN authentication failed"}, f).ok());
  EXPECT_FALSE(r.Add(metric::kIncidents, {std::string(65, 'a')}, f).ok());
  EXPECT_FALSE(r.Add(metric::kIncidents, {""}, f).ok());
  EXPECT_FALSE(r.Add(metric::kIncidents, {"a\nb"}, f).ok());
  EXPECT_FALSE(r.Add(metric::kIncidents, {"caf\xc3\xa9"}, f).ok());
  // Wrong label count.
  EXPECT_FALSE(r.Add(metric::kIncidents, {}, f).ok());
  EXPECT_FALSE(r.Add(metric::kIncidents, {"a", "b"}, f).ok());
  // Undeclared family.
  EXPECT_EQ(r.Add("mxward_nope_total", {}, f).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(r.Add(metric::kIncidents, {"sasl-brute-force"}, f).ok());
  EXPECT_THAT(r.Render(), Not(HasSubstr("alice")));
}

TEST(MetricsRegistryTest, RefusesLabelNamesOutsideTheVocabularyAndBadMetricNames) {
  MetricsRegistry r;
  EXPECT_FALSE(r.Declare(Family("mxward_x_total", MetricType::kCounter, {"user"})).ok());
  EXPECT_FALSE(r.Declare(Family("mxward_x_total", MetricType::kCounter, {"client_ip"})).ok());
  EXPECT_FALSE(r.Declare(Family("other_x_total", MetricType::kCounter, {})).ok());
  EXPECT_FALSE(r.Declare(Family("mxward_x total", MetricType::kCounter, {})).ok());
  EXPECT_FALSE(r.Declare(Family("mxward_X", MetricType::kGauge, {})).ok());
  ASSERT_TRUE(r.Declare(Family("mxward_x_total", MetricType::kCounter, {"input"})).ok());
  // Same declaration again is fine; a conflicting one is not.
  EXPECT_TRUE(r.Declare(Family("mxward_x_total", MetricType::kCounter, {"input"})).ok());
  EXPECT_FALSE(r.Declare(Family("mxward_x_total", MetricType::kGauge, {"input"})).ok());
  EXPECT_FALSE(r.Declare(Family("mxward_x_total", MetricType::kCounter, {"type"})).ok());
}

TEST(MetricsRegistryTest, CollectorEmitsRuntimeLabelSetsAndUnsafeOnesAreDroppedAndCounted) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  auto h = r.AddCollector(metric::kEvents, [](const MetricsRegistry::EmitFn& emit) {
    emit({"auth_failure"}, 12);
    emit({"bob@example.com"}, 1);  // refused
    emit({"auth_success"}, 3);
    emit({"a", "b"}, 1);  // wrong arity: refused
  });
  ASSERT_OK(h);
  std::string out = r.Render();
  EXPECT_THAT(out, HasSubstr("mxward_events_total{type=\"auth_failure\"} 12\n"
                             "mxward_events_total{type=\"auth_success\"} 3\n"));
  EXPECT_THAT(out, Not(HasSubstr("bob")));
  EXPECT_THAT(out, HasSubstr("\nmxward_metrics_rejected_samples_total 2\n"));
  out = r.Render();
  EXPECT_THAT(out, HasSubstr("\nmxward_metrics_rejected_samples_total 4\n"));
}

TEST(MetricsRegistryTest, HandleRemovesSamplesAndCallbackIsNotCalledAfterwards) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  int calls = 0;
  {
    auto h = r.Add(metric::kActiveBans, {}, [&calls] {
      ++calls;
      return 5.0;
    });
    ASSERT_OK(h);
    EXPECT_THAT(r.Render(), HasSubstr("\nmxward_active_bans 5\n"));
    EXPECT_EQ(calls, 1);
    MetricsRegistry::Handle moved = std::move(*h);
    EXPECT_FALSE(h->active());
    EXPECT_TRUE(moved.active());
    EXPECT_THAT(r.Render(), HasSubstr("\nmxward_active_bans 5\n"));
    EXPECT_EQ(calls, 2);
  }
  EXPECT_THAT(r.Render(), Not(HasSubstr("\nmxward_active_bans ")));
  EXPECT_EQ(calls, 2);
  // The family's HELP/TYPE stay.
  EXPECT_THAT(r.Render(), HasSubstr("# TYPE mxward_active_bans gauge\n"));
}

TEST(MetricsRegistryTest, SpecialAndFractionalValuesUsePrometheusSpelling) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  std::vector<MetricsRegistry::Handle> hs;
  hs.push_back(Take(r.Add(metric::kProcessingLag, {}, [] { return 0.25; })));
  hs.push_back(Take(
      r.Add(metric::kOutboxOldestAge, {}, [] { return std::numeric_limits<double>::infinity(); })));
  hs.push_back(Take(
      r.Add(metric::kOutboxDepth, {}, [] { return std::numeric_limits<double>::quiet_NaN(); })));
  hs.push_back(Take(r.Add(metric::kQueueIds, {}, [] { return -3.0; })));
  const std::string out = r.Render();
  EXPECT_THAT(out, HasSubstr("\nmxward_processing_lag_seconds 0.25\n"));
  EXPECT_THAT(out, HasSubstr("\nmxward_outbox_oldest_age_seconds +Inf\n"));
  EXPECT_THAT(out, HasSubstr("\nmxward_outbox_depth NaN\n"));
  EXPECT_THAT(out, HasSubstr("\nmxward_queue_ids -3\n"));
}

// Every line is a comment or `name{labels} value`, as a Prometheus parser expects.
TEST(MetricsRegistryTest, WholeExpositionIsWellFormed) {
  MetricsRegistry r;
  r.DeclareStandardFamilies();
  std::atomic<std::uint64_t> a{1};
  std::vector<MetricsRegistry::Handle> hs;
  hs.push_back(Take(r.AddAtomic(metric::kInputMessages, {"udp"}, &a)));
  hs.push_back(Take(r.AddAtomic(metric::kInputDropped, {"udp", "kernel"}, &a)));
  hs.push_back(Take(r.Add(metric::kBuildInfo, {"0.1.0"}, [] { return 1.0; })));
  hs.push_back(Take(r.Add(metric::kActions, {"ban", "done"}, [] { return 9.0; })));
  std::istringstream in(r.Render());
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const std::string_view rest = std::string_view(line).substr(7);
      const std::size_t n = MetricNameLength(rest);
      EXPECT_TRUE(n > 0 && n + 1 < rest.size() && rest[n] == ' ') << line;
      if (line.starts_with("# TYPE ")) {
        EXPECT_TRUE(rest.ends_with(" counter") || rest.ends_with(" gauge")) << line;
      }
    } else {
      EXPECT_TRUE(IsWellFormedSample(line)) << line;
      ++samples;
    }
  }
  EXPECT_EQ(samples, 5);  // four above plus the rejected-samples counter
  // The checker itself tells bad lines apart.
  EXPECT_TRUE(IsWellFormedSample("mxward_a{input=\"x\\\"y\",type=\"z\"} 1.5"));
  EXPECT_FALSE(IsWellFormedSample("mxward_a{input=\"x} 1"));
  EXPECT_FALSE(IsWellFormedSample("mxward_a{input=\"x\"} one"));
  EXPECT_FALSE(IsWellFormedSample("mxward_a{input=\"a\\q\"} 1"));
  EXPECT_FALSE(IsWellFormedSample("other_a 1"));
}

// The shipped Grafana dashboard queries only metrics mxward defines, and shows every one of them.
TEST(MetricsRegistryTest, GrafanaDashboardUsesExactlyTheStandardFamilies) {
  std::ifstream in(std::string(MXWARD_SOURCE_DIR) + "/packaging/grafana/mxward-dashboard.json");
  ASSERT_TRUE(in) << "packaging/grafana/mxward-dashboard.json missing";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::set<std::string> used;
  for (std::size_t pos = text.find("mxward_"); pos != std::string::npos;
       pos = text.find("mxward_", pos + 1)) {
    if (std::size_t n = MetricNameLength(std::string_view(text).substr(pos))) {
      used.insert(text.substr(pos, n));
    }
  }
  std::set<std::string> standard;
  for (const MetricFamily& f : StandardFamilies()) standard.insert(std::string(f.name));
  for (const std::string& u : used) {
    EXPECT_TRUE(standard.count(u)) << "dashboard queries undefined metric " << u;
  }
  for (const std::string& s : standard) {
    EXPECT_TRUE(used.count(s)) << "dashboard does not show " << s;
  }
}

// Issue 16, point 11: Grafana asks at import for every data source the dashboard declares in
// __inputs; each one asked for must be used by some panel or variable as ${NAME}.
TEST(MetricsRegistryTest, GrafanaDashboardAsksOnlyForDataSourcesItUses) {
  std::ifstream in(std::string(MXWARD_SOURCE_DIR) + "/packaging/grafana/mxward-dashboard.json");
  ASSERT_TRUE(in);
  const auto dashboard = nlohmann::json::parse(in);
  const std::string text = dashboard.dump();
  for (const auto& input : dashboard.value("__inputs", nlohmann::json::array())) {
    const std::string name = input.value("name", "");
    EXPECT_NE(text.find("${" + name + "}"), std::string::npos)
        << "the dashboard asks for data source " << name << " and no panel uses it";
  }
  // The panels use the ${datasource} variable, which offers the Prometheus sources.
  EXPECT_NE(text.find("${datasource}"), std::string::npos);
}

}  // namespace
}  // namespace mxward
