// Shell and SQL metacharacters through every action type, each against the real thing (in a
// network namespace of the test's own): what reaches nftables, the PostfixAdmin database, the
// HTTP receiver and an exec'd program is checked byte for byte.
//  - ban: only a canonical address ever reaches the kernel set; anything else is refused.
//  - PostfixAdmin (SQLite): the user is matched exactly (bound parameter); the row of a user
//    named `x' OR '1'='1` is the only one touched.
//  - webhook: the body is valid JSON whose strings decode to the incident's text byte for byte.
//  - exec: the text arrives as one environment value and in the JSON on stdin, never as extra
//    arguments, and nothing in it is run.
// Executors are built by BuildExecutors from an mxward.toml, as `mxward serve` builds them.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/nft_sets.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::Eventually;
using testing::KernelSetElements;
using testing::NetworkNamespace;
using testing::RunCommand;
using testing::TempDir;
using namespace std::string_literals;

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

// The hostile texts: shell, SQL, format strings, newlines, NUL-free control bytes, unicode
// (bidi override, emoji, a combining mark), and a canary command that must never run.
std::vector<std::string> Hostile(const std::string& canary) {
  return {
      "$(touch " + canary + ")",
      "`touch " + canary + "`",
      "a; touch " + canary + "; #",
      "a | touch " + canary,
      "a && touch " + canary,
      "x' OR '1'='1",
      "x\" OR \"\"=\"",
      "x'); DROP TABLE mailbox; --",
      "-- comment",
      "--help",
      "%s%s%n%x",
      "line1\nline2\r\nline3",
      "${IFS}${PATH}",
      "back\\slash \\\" \\u0000",
      "\xe2\x80\xae"
      "evil\xf0\x9f\x92\xa3 e\xcc\x81",
      "{\"json\": [1, 2]}",
      "<script>alert(1)</script>",
  };
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every string anywhere inside j.
void Strings(const nlohmann::json& j, std::vector<std::string>* out) {
  if (j.is_string()) {
    out->push_back(j.get<std::string>());
  } else if (j.is_structured()) {
    for (const auto& v : j) Strings(v, out);
  }
}

bool ContainsString(const nlohmann::json& j, const std::string& want) {
  std::vector<std::string> all;
  Strings(j, &all);
  for (const auto& s : all) {
    if (s == want) return true;
  }
  return false;
}

class ActionInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    canary_ = dir_.file("PWNED");
    store_path_ = dir_.file("mxward.db");
    auto store = IncidentStore::Open(store_path_);
    ASSERT_OK(store);
    store_ = std::move(*store);
  }

  void TearDown() override {
    for (auto& e : executors_) e->Stop();
    if (receiver_ > 0) {
      kill(receiver_, SIGKILL);
      waitpid(receiver_, nullptr, 0);
    }
    EXPECT_FALSE(std::filesystem::exists(canary_)) << "a hostile text was run as a command";
  }

  // Builds the executors of this mxward.toml and starts them.
  void Build(const std::string& toml) {
    const std::string path = dir_.file("mxward.toml");
    std::ofstream(path) << toml;
    std::vector<Diagnostic> diags;
    auto config = Config::Load(path, &diags);
    ASSERT_OK(config);
    std::vector<std::string> notes;
    auto built = BuildExecutors(*config, store_path_, &diags, &notes);
    std::string all;
    for (const auto& d : diags) all += d.ToString() + "\n";
    ASSERT_TRUE(built.ok()) << built.status().ToString() << "\n" << all;
    executors_ = std::move(*built);
    for (auto& e : executors_) {
      const Status s = e->Start();
      ASSERT_OK(s);
    }
  }

  ActionExecutor* For(const std::string& type) {
    for (auto& e : executors_) {
      if (e->Handles(type)) return e.get();
    }
    return nullptr;
  }

  // Records an incident whose key, trigger and evidence are the hostile text, with one action.
  ActionRecord Record(const std::string& text, const std::string& type, nlohmann::json params) {
    Incident inc;
    inc.playbook = "hostile";
    inc.description = text;
    inc.severity = Severity::kHigh;
    inc.key_kind = "sasl_user";
    inc.key = text;
    inc.trigger = text;
    inc.count = 20;
    inc.window_seconds = 600;
    inc.first_seen = kT0;
    inc.last_seen = kT0;
    inc.evidence.push_back({kT0,
                            "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed, "
                            "sasl_username=" +
                                text});
    inc.actions.push_back({type, std::move(params), false});
    std::vector<Incident> v{inc};
    const Status recorded = store_->RecordIncidents(&v, kT0);
    EXPECT_OK(recorded);
    auto actions = store_->ActionsForIncident(v[0].id);
    EXPECT_TRUE(actions.ok() && actions->size() == 1)
        << (actions.ok() ? std::to_string(actions->size()) : actions.status().ToString());
    return actions.ok() && !actions->empty() ? (*actions)[0] : ActionRecord{};
  }

  TempDir dir_;
  std::string canary_, store_path_;
  std::unique_ptr<IncidentStore> store_;
  std::vector<std::unique_ptr<ActionExecutor>> executors_;
  pid_t receiver_ = -1;
};

// --- ban -----------------------------------------------------------------------------------------

std::vector<std::string> SetElements(const std::string& set) {
  std::vector<std::string> out;
  for (const auto& [address, timeout] : KernelSetElements(set)) out.push_back(address);
  return out;
}

TEST_F(ActionInjectionTest, BanRefusesEveryNonAddressAndPrintsAddressesCanonically) {
  ASSERT_EQ(RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
  RunCommand({"nft", "flush", "ruleset"});
  Build("[nftables]\n");
  ActionExecutor* ban = For("ban");
  ASSERT_NE(ban, nullptr);
  std::vector<std::string> refused = Hostile(canary_);
  for (const std::string& s :
       {"192.0.2.1; flush ruleset"s, "192.0.2.1 }"s, "192.0.2.1, 0.0.0.0/0"s, "0.0.0.0/0"s, "::/0"s,
        "192.0.2.1\n"s, " 192.0.2.1"s, "192.0.2.1/33"s, "192.0.2.256"s, "1.2.3"s,
        "192.0.2.1 counter drop"s, "@banned_v4"s, "$(id)"s, ""s}) {
    refused.push_back(s);
  }
  for (const auto& text : refused) {
    SCOPED_TRACE(text);
    ActionRecord a = Record(text, "ban", {{"address", text}, {"duration_s", 3600}});
    const Status s = ban->Apply(a);
    EXPECT_FALSE(s.ok()) << "accepted a ban on '" << text << "'";
    EXPECT_FALSE(s.transient()) << "a bad address is permanent, never retried: " << s.ToString();
  }
  for (const char* set :
       {"banned_v4", "banned_v4_net", "banned_v6", "banned_v6_64", "banned_v6_net"}) {
    EXPECT_TRUE(SetElements(set).empty()) << set;
  }
  EXPECT_EQ(RunCommand({"nft", "list", "table", "inet", "mxward"}).exit_code, 0)
      << "the table must survive every refused text";

  // Addresses written in other ways reach the kernel in one canonical form.
  const std::vector<std::pair<std::string, std::string>> canonical = {
      {"::ffff:192.0.2.7", "192.0.2.7"},       {"192.0.2.8/32", "192.0.2.8"},
      {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"}, {"2001:db8::7/128", "2001:db8::7"},
      {"198.51.100.0/24", "198.51.100.0/24"},
  };
  for (const auto& [in, out] : canonical) {
    ActionRecord a = Record(in, "ban", {{"address", in}, {"duration_s", 3600}});
    const Status s = ban->Apply(a);
    EXPECT_TRUE(s.ok()) << in << ": " << s.ToString();
  }
  auto v4 = SetElements("banned_v4");
  auto v6 = SetElements("banned_v6");
  std::sort(v4.begin(), v4.end());
  std::sort(v6.begin(), v6.end());
  EXPECT_EQ(v4, (std::vector<std::string>{"192.0.2.7", "192.0.2.8"}));
  EXPECT_EQ(v6, (std::vector<std::string>{"2001:db8::1", "2001:db8::7"}));
  // Prefixes are in the interval set.
  EXPECT_EQ(SetElements("banned_v4_net"), (std::vector<std::string>{"198.51.100.0/24"}));
}

// A ban whose address parameter has an embedded NUL ("192.0.2.1\0 ; x", possible through the
// control socket's JSON "\u0000") is refused: IpAddress::Parse takes the whole string, never a C
// string that ends at the NUL.
TEST_F(ActionInjectionTest, BanRefusesAnAddressWithAnEmbeddedNul) {
  ASSERT_EQ(RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
  RunCommand({"nft", "flush", "ruleset"});
  Build("[nftables]\n");
  ActionExecutor* ban = For("ban");
  ASSERT_NE(ban, nullptr);
  const std::string text = "192.0.2.1\0 ; x"s;
  ActionRecord a = Record(text, "ban", {{"address", text}, {"duration_s", 3600}});
  EXPECT_FALSE(ban->Apply(a).ok());
  EXPECT_TRUE(SetElements("banned_v4").empty());
}

// --- PostfixAdmin ----------------------------------------------------------------------------

// Mailbox-shaped names full of SQL: each must be matched as the exact bytes of one row. Texts that
// cannot be a mailbox address (spaces, no '@') are refused before any SQL runs.
std::vector<std::string> HostileMailboxes() {
  return {"x'OR'1'='1@example.org",
          "x'--@example.org",
          "a';DROP_TABLE_mailbox;--@example.org",
          "$(id)@example.org",
          "`id`@example.org",
          "\"q\"@example.org",
          "%@example.org",
          "_@example.org",
          "%s%n@example.org",
          "a\\'@example.org",
          "\xc3\xbcn\xc3\xaf\xe2\x80\xae@example.org"};
}

TEST_F(ActionInjectionTest, PostfixAdminMatchesTheUserExactly) {
  const std::string pfa = dir_.file("postfixadmin.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(pfa.c_str(), &db), SQLITE_OK);
  const std::string schema = ReadFile(std::string(MXWARD_TEST_DATA) + "/postfixadmin/sqlite.sql");
  ASSERT_FALSE(schema.empty());
  ASSERT_EQ(sqlite3_exec(db, schema.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  const std::vector<std::string> users = HostileMailboxes();
  std::vector<std::string> all = users;
  for (const std::string& u : {"victim@example.org"s, "x@example.org"s, "admin@example.org"s,
                               "xaOR@example.org"s, "1@example.org"s}) {
    all.push_back(u);
  }
  sqlite3_stmt* ins = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "INSERT INTO mailbox (username, password, name, maildir, quota, "
                               "local_part, domain, created, modified, active) VALUES (?, 'x', "
                               "'', 'm/', 0, 'l', 'example.org', '2020-01-01 00:00:00', "
                               "'2020-01-01 00:00:00', 1)",
                               -1, &ins, nullptr),
            SQLITE_OK);
  for (const auto& u : all) {
    sqlite3_bind_text(ins, 1, u.data(), static_cast<int>(u.size()), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(ins), SQLITE_DONE) << u;
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  auto inactive = [&] {
    std::vector<std::string> out;
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db, "SELECT username FROM mailbox WHERE active = 0 ORDER BY username", -1,
                       &q, nullptr);
    while (sqlite3_step(q) == SQLITE_ROW) {
      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                       static_cast<std::size_t>(sqlite3_column_bytes(q, 0)));
    }
    sqlite3_finalize(q);
    std::sort(out.begin(), out.end());
    return out;
  };
  Build("[postfixadmin]\nbackend = \"sqlite\"\npath = \"" + pfa + "\"\n");
  ActionExecutor* suspend = For("suspend");
  ASSERT_NE(suspend, nullptr);

  // Not a mailbox address at all (the brief's classic `x' OR '1'='1`, shell text): refused
  // before any SQL, nothing touched.
  for (const auto& text : Hostile(canary_)) {
    SCOPED_TRACE(text);
    ActionRecord a = Record(text, "suspend", {{"user", text}});
    const Status s = suspend->Apply(a);
    EXPECT_FALSE(s.ok()) << "not an address, yet accepted";
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(inactive().empty()) << "'" << text << "' touched rows";
  }
  // Names no row has, though a LIKE pattern or an injected OR would match every row.
  for (const std::string& absent : {"nobody'OR'1'='1@example.org"s, "*@example.org"s,
                                    "victim@example.org'--"s, "x'||'@example.org"s}) {
    SCOPED_TRACE(absent);
    ActionRecord a = Record(absent, "suspend", {{"user", absent}});
    EXPECT_FALSE(suspend->Apply(a).ok());
    EXPECT_TRUE(inactive().empty()) << absent << " touched rows";
  }
  std::vector<std::string> expected;
  for (const auto& u : users) {
    SCOPED_TRACE(u);
    ActionRecord a = Record(u, "suspend", {{"user", u}});
    const Status s = suspend->Apply(a);
    EXPECT_OK(s);
    expected.push_back(u);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(inactive(), expected) << "suspending '" << u << "' touched other rows";
  }
  sqlite3_close(db);
}

// --- webhook ---------------------------------------------------------------------------------

TEST_F(ActionInjectionTest, WebhookBodyIsValidJsonWithTheTextByteForByte) {
  // A receiver that stores each raw body in its own file.
  const std::string script = dir_.file("receiver.py");
  std::ofstream(script) << R"(import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
out = sys.argv[1]
n = [0]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n[0] += 1
        with open(os.path.join(out, "body-%04d" % n[0]), "wb") as f: f.write(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = HTTPServer(("127.0.0.1", 0), H)
open(os.path.join(out, "port.tmp"), "w").write(str(s.server_address[1]))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
s.serve_forever()
)";
  const std::string out = dir_.file("bodies");
  std::filesystem::create_directory(out);
  receiver_ = fork();
  if (receiver_ == 0) {
    execlp("python3", "python3", script.c_str(), out.c_str(), nullptr);
    _exit(127);
  }
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(out + "/port"); }))
      << "python3 receiver did not start";
  const std::string port = ReadFile(out + "/port");
  Build("[webhook.ops]\nurl = \"http://127.0.0.1:" + port + "/hook\"\n");
  ActionExecutor* webhook = For("webhook");
  ASSERT_NE(webhook, nullptr);
  std::vector<std::string> texts = Hostile(canary_);
  texts.push_back("\x01\x02\x1b[31m\x7f control bytes");
  int n = 0;
  for (const auto& text : texts) {
    SCOPED_TRACE(text);
    ActionRecord a = Record(text, "webhook", {{"target", "ops"}});
    const Status s = webhook->Apply(a);
    ASSERT_OK(s);
    ++n;
    char name[32];
    std::snprintf(name, sizeof name, "/body-%04d", n);
    ASSERT_TRUE(std::filesystem::exists(out + name));
    const std::string body = ReadFile(out + name);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(body)) << body;
    EXPECT_TRUE(ContainsString(j, text)) << "the key is not in the body byte for byte: " << body;
  }
}

// Not valid UTF-8: JSON cannot carry these bytes; the body must still be valid JSON (the bytes
// replaced), and the executor must answer with a Status, not an exception.
TEST_F(ActionInjectionTest, WebhookWithInvalidUtf8StillSendsValidJson) {
  const std::string script = dir_.file("receiver.py");
  std::ofstream(script) << R"(import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
out = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        open(os.path.join(out, "body"), "wb").write(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = HTTPServer(("127.0.0.1", 0), H)
open(os.path.join(out, "port.tmp"), "w").write(str(s.server_address[1]))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
s.serve_forever()
)";
  const std::string out = dir_.file("bodies");
  std::filesystem::create_directory(out);
  receiver_ = fork();
  if (receiver_ == 0) {
    execlp("python3", "python3", script.c_str(), out.c_str(), nullptr);
    _exit(127);
  }
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(out + "/port"); }));
  Build("[webhook.ops]\nurl = \"http://127.0.0.1:" + ReadFile(out + "/port") + "/hook\"\n");
  ActionExecutor* webhook = For("webhook");
  ASSERT_NE(webhook, nullptr);
  ActionRecord a = Record("jos\xe9 \xff\xfe", "webhook", {{"target", "ops"}});
  Status s = Status::Ok();
  ASSERT_NO_THROW(s = webhook->Apply(a));
  ASSERT_OK(s);
  const std::string body = ReadFile(out + "/body");
  EXPECT_TRUE(nlohmann::json::accept(body)) << body;  // valid JSON whatever the bytes were
}

// --- exec ------------------------------------------------------------------------------------

TEST_F(ActionInjectionTest, ExecGetsTheTextAsOneValueNeverAsCode) {
  const std::string script = dir_.file("record.sh");
  const std::string out = dir_.file("out");
  std::ofstream(script) << "#!/bin/sh\n"
                        << "printf '%s' \"$#\" > '" << out << ".argc'\n"
                        << "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '" << out
                        << ".argv'\n"
                        << "printf '%s' \"$MXWARD_KEY\" > '" << out << ".key'\n"
                        << "printf '%s' \"$MXWARD_TRIGGER\" > '" << out << ".trigger'\n"
                        << "cat > '" << out << ".stdin'\n";
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  Build("[exec.record]\nargv = [\"" + script + "\", \"--fixed\", \"{key}\"]\n");
  ActionExecutor* exec = For("exec");
  ASSERT_NE(exec, nullptr);
  for (const auto& text : Hostile(canary_)) {
    SCOPED_TRACE(text);
    ActionRecord a = Record(text, "exec", {{"target", "record"}});
    const Status s = exec->Apply(a);
    ASSERT_OK(s);
    // argv is the configured one, word for word: nothing the text says is split or added.
    EXPECT_EQ(ReadFile(out + ".argc"), "2");
    EXPECT_EQ(ReadFile(out + ".argv"), "--fixed\n{key}\n");
    // The environment carries the text as one value; control characters become spaces.
    std::string flat = text;
    for (char& c : flat) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    EXPECT_EQ(ReadFile(out + ".key"), flat);
    EXPECT_EQ(ReadFile(out + ".trigger"), flat);
    // stdin: the incident as JSON, with the text byte for byte.
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(ReadFile(out + ".stdin")));
    EXPECT_TRUE(ContainsString(j, text));
  }
}

}  // namespace
}  // namespace mxward
