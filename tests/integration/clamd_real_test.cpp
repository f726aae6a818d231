// Real clamd (Debian's clamav-daemon) against the shipped clamav parser. ClamAV's signature
// databases are downloaded by freshclam and the package ships none, so the test writes its own
// one-line database (`md5:size:name` of the EICAR test file, an .hdb) and a private clamd.conf
// (its own socket and log file; LogTime, ExtendedDetectionInfo and LogClean on; foreground; no
// freshclam), starts clamd, and scans the EICAR file twice with clamdscan (INSTREAM and by path)
// and a clean file once.
//  - FoundLinesAreVirusFoundEvents: every FOUND line clamd wrote must be one virus_found event
//    naming the signature, with no client address (the path and the "instream(local)" peer are
//    the scanner's, not the sender's); the clean result is no event.
//  - TheDaemonFollowsClamdsLogFile: a real `mxward serve` follows clamd's LogFile with a `file`
//    input (format = "clamd-log": clamd's "<ctime> -> " lines are not syslog) and a playbook keyed
//    on the signature: one incident for the two detections, and the daemon's event counts hold
//    exactly two virus_found events and nothing for the clean file or clamd's other lines.
// Needs clamav-daemon and clamdscan (packaging/install-deps.sh test); skips without them. Label
// realservers (tests/CMakeLists.txt). About 1 s each.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxward/parser_pack.h"
#include "support/daemon.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/syslog_line.h"

namespace mxward {
namespace {

using testing::SyslogLine;

using testing::RunCommand;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitUntil;

const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";
constexpr char kClamd[] = "/usr/sbin/clamd";
constexpr char kClamdscan[] = "/usr/bin/clamdscan";
// The EICAR anti-virus test file (68 bytes) and its MD5, the hash-signature key.
constexpr char kEicar[] = R"(X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*)";
constexpr char kEicarMd5[] = "44d88612fea8a8f36de82e1278abb02f";
// clamd appends ".UNOFFICIAL" to a signature that is not in Cisco-Talos' signed databases.
constexpr char kSignature[] = "Mxward.Test.EICAR-1.UNOFFICIAL";

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  return static_cast<bool>(out);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

const std::string kBinary = MXWARD_BINARY;

std::string WhyNotRunnable() {
  struct stat st {};
  if (stat(kClamd, &st) != 0 || stat(kClamdscan, &st) != 0) {
    return "clamd or clamdscan missing (apt-get install clamav-daemon clamdscan)";
  }
  return "";
}

// A clamd of the test's own: private database, socket and LogFile in dir. Started by Start(),
// which waits for its socket.
class Clamd {
 public:
  explicit Clamd(const TempDir& dir) : dir_(dir) {}
  std::string log() const { return dir_.file("clamd.log"); }

  void Start() {
    static_assert(sizeof(kEicar) - 1 == 68);
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_EQ(mkdir(dir_.file("db").c_str(), 0755), 0);
    ASSERT_TRUE(WriteFile(dir_.file("db/mxward-test.hdb"),
                          std::string(kEicarMd5) + ":68:Mxward.Test.EICAR-1\n"));
    ASSERT_TRUE(WriteFile(dir_.file("eicar.txt"), kEicar));
    ASSERT_TRUE(WriteFile(dir_.file("clean.txt"), "nothing to see here\n"));
    const std::string socket = dir_.file("clamd.sock");
    ASSERT_TRUE(
        WriteFile(dir_.file("clamd.conf"), "LocalSocket " + socket + "\nDatabaseDirectory " +
                                               dir_.file("db") + "\nLogFile " + log() +
                                               "\nLogTime yes\nForeground yes\n"
                                               "ExtendedDetectionInfo yes\nLogClean yes\n"));
    ASSERT_TRUE(WriteFile(dir_.file("clamdscan.conf"), "LocalSocket " + socket + "\n"));
    ASSERT_TRUE(process_.Start({kClamd, "--config-file=" + dir_.file("clamd.conf")},
                               dir_.file("clamd.out")));
    ASSERT_TRUE(WaitUntil(
        std::chrono::seconds(60),
        [&] {
          struct stat s {};
          return stat(socket.c_str(), &s) == 0 && S_ISSOCK(s.st_mode);
        },
        [&] { return !process_.running(); }))
        << "clamd did not open its socket\n"
        << process_.log() << ReadFile(log());
  }

  // The EICAR file by INSTREAM and by path, the clean file by INSTREAM, through clamdscan; then
  // waits for clamd's log lines of all three (it writes them after answering).
  void ScanAndWait(std::string* text) {
    const std::string conf = "--config-file=" + dir_.file("clamdscan.conf");
    // clamdscan exits 1 when it found a virus, 0 when the file is clean.
    auto streamed =
        RunCommand({kClamdscan, conf, "--no-summary", "--stream", dir_.file("eicar.txt")});
    EXPECT_EQ(streamed.exit_code, 1) << streamed.out << streamed.err;
    EXPECT_NE(streamed.out.find(kSignature), std::string::npos) << streamed.out;
    auto by_path = RunCommand({kClamdscan, conf, "--no-summary", dir_.file("eicar.txt")});
    EXPECT_EQ(by_path.exit_code, 1) << by_path.out << by_path.err;
    auto clean = RunCommand({kClamdscan, conf, "--no-summary", "--stream", dir_.file("clean.txt")});
    EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
    ASSERT_TRUE(WaitUntil(std::chrono::seconds(10), [&] {
      *text = ReadFile(log());
      return LinesWith(*text, " FOUND").size() >= 2 && !LinesWith(*text, ": OK").empty();
    })) << *text;
  }

 private:
  const TempDir& dir_;
  ServerProcess process_;
};

TEST(ClamdRealTest, FoundLinesAreVirusFoundEvents) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Clamd clamd(dir);
  ASSERT_NO_FATAL_FAILURE(clamd.Start());
  std::string text;
  ASSERT_NO_FATAL_FAILURE(clamd.ScanAndWait(&text));

  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  ASSERT_TRUE(pack.ok()) << pack.status().ToString();
  const auto found = LinesWith(text, " FOUND");
  ASSERT_EQ(found.size(), 2u) << text;
  for (const auto& line : found) {
    SCOPED_TRACE(line);
    Event ev;
    const PatternInfo* info = nullptr;
    ASSERT_TRUE((*pack)->Match(SyslogLine("clamd", line), &ev, &info));
    EXPECT_EQ(info->name, "found");
    EXPECT_EQ(EventTypeName(ev.type), "virus_found");
    EXPECT_EQ(ev.get(Field::kVirus), kSignature);
    EXPECT_FALSE(ev.client_ip.valid());
  }
  for (const auto& line : LinesWith(text, ": OK")) {
    SCOPED_TRACE(line);
    Event ev;
    const PatternInfo* info = nullptr;
    const bool matched = (*pack)->Match(SyslogLine("clamd", line), &ev, &info);
    EXPECT_FALSE(matched && info->emits) << "a clean result made an event";
  }
}

// clamd's LogFile through the daemon's `file` input: every line is clamd's ("<ctime> -> text"),
// read with format = "clamd-log". A playbook keyed on the signature (virus_found events of the
// clamd parser name no client or account) opens one incident for the two detections; the event
// counts the daemon writes at exit hold those two and nothing else.
TEST(ClamdRealTest, TheDaemonFollowsClamdsLogFile) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  // Its own network namespace: the daemon's default listeners cannot meet another test's.
  ASSERT_TRUE(testing::NetworkNamespace::Enter().ok())
      << testing::NetworkNamespace::Enter().error();
  TempDir dir;
  Clamd clamd(dir);
  ASSERT_NO_FATAL_FAILURE(clamd.Start());

  const std::string rules = dir.file("rules.d");
  std::filesystem::create_directories(rules);
  std::filesystem::copy(kParsers, rules + "/parsers", std::filesystem::copy_options::recursive);
  ASSERT_TRUE(WriteFile(rules + "/virus-by-signature.toml",
                        "description = \"detections of one signature\"\nkey = \"virus\"\n"
                        "[match]\nevents = [\"virus_found\"]\n"
                        "[trigger]\ntype = \"count\"\nthreshold = 2\nwindow = \"1h\"\n"));
  ASSERT_TRUE(WriteFile(dir.file("mxward.toml"),
                        "dry_run = true\n[[input]]\ntype = \"file\"\npath = \"" + clamd.log() +
                            "\"\nstart_at = \"beginning\"\nformat = \"clamd-log\"\n"));
  const std::string db = dir.file("state.db");
  testing::ServeProcess daemon;
  ASSERT_TRUE(daemon.Start(kBinary,
                           {"--db", db, "--config", dir.file("mxward.toml"), "--rules", rules,
                            "--socket", dir.file("control.sock")},
                           dir.file("serve.log")));
  ASSERT_TRUE(daemon.WaitForLog("ready:")) << daemon.Log();

  std::string text;
  ASSERT_NO_FATAL_FAILURE(clamd.ScanAndWait(&text));
  nlohmann::json incidents;
  EXPECT_TRUE(daemon.WaitFor([&] {
    auto list = RunCommand({kBinary, "incidents", "list", "--json", "--db", db});
    if (list.exit_code != 0) return false;
    incidents = nlohmann::json::parse(list.out, nullptr, /*allow_exceptions=*/false);
    return incidents.is_array() && !incidents.empty();
  })) << daemon.Log()
      << text;
  ASSERT_TRUE(daemon.Stop()) << daemon.Log();
  ASSERT_EQ(incidents.size(), 1u) << incidents.dump(2);
  EXPECT_EQ(incidents[0]["playbook"], "virus-by-signature");
  // Keys are compared lower-cased (docs/playbooks.md "Keys").
  EXPECT_EQ(incidents[0]["key"], "mxward.test.eicar-1.unofficial") << incidents.dump(2);
  EXPECT_EQ(incidents[0]["count"], 2);

  // Written at exit: every event the daemon counted, by type.
  auto stats = RunCommand({kBinary, "stats", "--json", "--since", "7d", "--db", db});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const auto counted = nlohmann::json::parse(stats.out)["events"];
  EXPECT_EQ(counted, nlohmann::json({{"virus_found", 2}})) << stats.out << text;
  std::printf("clamd's LogFile, followed by serve:\n%s", text.c_str());
}

}  // namespace
}  // namespace mxward
