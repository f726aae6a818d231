// SettingsReader: one wording for one mistake, located at file:line:col, whichever reader of
// whichever file makes it.
#include "engine/base/settings_reader.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mxward {
namespace {

toml::table Parse(std::string_view text) {
  toml::table t;
  std::vector<Diagnostic> diags;
  EXPECT_TRUE(ParseToml(text, "x.toml", &t, &diags).ok());
  return t;
}

std::string Render(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const auto& d : diags) out += d.ToString() + "\n";
  return out;
}

TEST(SettingsReaderTest, WrongTypesNameTheKeyWhatWasExpectedAndWhatCame) {
  toml::table t = Parse(
      "workers = \"four\"\n"
      "enabled = 1\n"
      "name = true\n"
      "timeout = 1.5\n"
      "dirs = \"/etc\"\n"
      "ports = [25, \"x\"]\n");
  std::vector<Diagnostic> d;
  SettingsReader r(t, "[s]", "x.toml", &d);
  std::int64_t i = 7;
  bool b = false;
  std::string s = "keep";
  std::int64_t secs = 3;
  std::vector<std::string> dirs{"keep"};
  std::vector<int> ports{1};
  EXPECT_FALSE(r.Int("workers", 1, 64, &i));
  EXPECT_FALSE(r.Bool("enabled", &b));
  EXPECT_FALSE(r.String("name", &s));
  EXPECT_FALSE(r.Duration("timeout", &secs));
  EXPECT_FALSE(r.Strings("dirs", &dirs));
  EXPECT_FALSE(r.IntArray("ports", 1, 65535, &ports));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(Render(d),
            "x.toml:1:11: error: 'workers': expected an integer, got a string\n"
            "x.toml:2:11: error: 'enabled': expected true or false, got an integer\n"
            "x.toml:3:8: error: 'name': expected a string, got a boolean\n"
            "x.toml:4:11: error: 'timeout': expected a duration like \"10m\", got a number\n"
            "x.toml:5:8: error: 'dirs': expected an array of strings, got a string\n"
            "x.toml:6:14: error: 'ports': expected only integers in the array, got a string\n");
  // A wrong value leaves the default.
  EXPECT_EQ(i, 7);
  EXPECT_EQ(s, "keep");
  EXPECT_EQ(secs, 3);
  EXPECT_EQ(dirs, std::vector<std::string>{"keep"});
  EXPECT_EQ(ports, std::vector<int>{1});
}

TEST(SettingsReaderTest, ValuesInRangeAreReadAndOthersRefused) {
  toml::table t = Parse(
      "workers = 100\nretention = 90\nwindow = \"10m\"\nlease = 0\ncidrs = \"10.0.0.0/33\"\n");
  std::vector<Diagnostic> d;
  SettingsReader r(t, "[s]", "x.toml", &d);
  int workers = 1;
  EXPECT_FALSE(r.Int("workers", 1, 64, &workers));
  std::int64_t secs = 0;
  EXPECT_FALSE(r.Duration("retention", &secs, /*seconds_ok=*/false));
  EXPECT_TRUE(r.Duration("window", &secs));
  EXPECT_EQ(secs, 600);
  std::int64_t ms = 5000;
  EXPECT_TRUE(r.DurationMillis("lease", &ms));
  EXPECT_EQ(ms, 1000);  // at least a second
  std::vector<IpPrefix> prefixes;
  EXPECT_FALSE(r.AddressPrefixes("cidrs", &prefixes, /*single_ok=*/true));
  EXPECT_EQ(Render(d),
            "x.toml:1:11: error: 'workers': expected an integer from 1 to 64, got 100\n"
            "x.toml:2:13: error: 'retention': expected a duration like \"10m\", got an integer\n"
            "x.toml:5:9: error: 'cidrs': '10.0.0.0/33' is not an address or CIDR (like "
            "192.0.2.0/24)\n");
}

TEST(SettingsReaderTest, UnknownKeysAreNamedWithTheKnownOnesAtTheKey) {
  toml::table t = Parse("wokers = 4\nworkers = 4\n");
  std::vector<Diagnostic> d;
  SettingsReader r(t, "[dispatcher]", "x.toml", &d);
  r.CheckKnownKeys({"workers", "max_attempts"});
  EXPECT_EQ(Render(d),
            "x.toml:1:1: error: unknown key 'wokers' in [dispatcher]; known keys: workers, "
            "max_attempts\n");
}

TEST(SettingsReaderTest, AnUnquotedWordIsReportedAsMissingQuotesNotAsABoolean) {
  toml::table t;
  std::vector<Diagnostic> d;
  EXPECT_FALSE(ParseToml("[trigger]\nthreshold = twenty\n", "pb.toml", &t, &d).ok());
  EXPECT_EQ(Render(d),
            "pb.toml:2:13: error: 'threshold': expected a value, got the bare word twenty (text "
            "needs quotes: \"twenty\")\n");
  // Other syntax errors keep toml++'s own words.
  d.clear();
  EXPECT_FALSE(ParseToml("dirs = [\"a\"\n", "x.toml", &t, &d).ok());
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].message.rfind("Error while parsing", 0), 0u) << d[0].message;
}

TEST(SettingsReaderTest, ForEachNamedTableReadsEachAndReportsWhatIsNotATable) {
  toml::table doc = Parse("[webhook.ops]\nurl = \"https://x\"\n[webhook]\nbad = 3\n");
  std::vector<Diagnostic> d;
  std::vector<std::string> seen;
  EXPECT_FALSE(ForEachNamedTable(doc, "webhook", "ops", "x.toml", &d,
                                 [&](std::string_view name, SettingsReader& r) {
                                   seen.emplace_back(name);
                                   EXPECT_EQ(r.where(), "[webhook.ops]");
                                 }));
  EXPECT_EQ(seen, std::vector<std::string>{"ops"});
  EXPECT_EQ(Render(d),
            "x.toml:4:7: error: 'webhook.bad': expected a table like [webhook.bad], got an "
            "integer\n");
  d.clear();
  doc = Parse("webhook = \"https://x\"\n");
  EXPECT_FALSE(ForEachNamedTable(doc, "webhook", "ops", "x.toml", &d,
                                 [](std::string_view, SettingsReader&) {}));
  EXPECT_EQ(Render(d),
            "x.toml:1:11: error: 'webhook': expected tables like [webhook.ops], got a string\n");
}

}  // namespace
}  // namespace mxward
