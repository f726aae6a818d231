// Real clamd (Debian's clamav-daemon) against the shipped clamav parser. ClamAV's signature
// databases are downloaded by freshclam and the package ships none, so the test writes its own
// one-line database (`md5:size:name` of the EICAR test file, an .hdb) and a private clamd.conf
// (its own socket and log file; LogTime, ExtendedDetectionInfo and LogClean on; foreground), starts
// clamd, and scans the EICAR file twice with clamdscan (INSTREAM and by path) and a clean file
// once. Every FOUND line clamd wrote must be one virus_found event naming the signature, with no
// client address (the path and the "instream(local)" peer are the scanner's, not the sender's);
// the clean result is no event. Needs clamav-daemon and clamdscan (packaging/install-deps.sh
// test); skips without them. About 1 s.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mxward/parser_pack.h"
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

TEST(ClamdRealTest, FoundLinesAreVirusFoundEvents) {
  struct stat st {};
  if (stat(kClamd, &st) != 0 || stat(kClamdscan, &st) != 0) {
    GTEST_SKIP() << "clamd or clamdscan missing (apt-get install clamav-daemon clamdscan)";
  }
  static_assert(sizeof(kEicar) - 1 == 68);
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ASSERT_EQ(mkdir(dir.file("db").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(dir.file("db/mxward-test.hdb"),
                        std::string(kEicarMd5) + ":68:Mxward.Test.EICAR-1\n"));
  ASSERT_TRUE(WriteFile(dir.file("eicar.txt"), kEicar));
  ASSERT_TRUE(WriteFile(dir.file("clean.txt"), "nothing to see here\n"));
  const std::string socket = dir.file("clamd.sock");
  const std::string log = dir.file("clamd.log");
  ASSERT_TRUE(WriteFile(dir.file("clamd.conf"), "LocalSocket " + socket + "\nDatabaseDirectory " +
                                                    dir.file("db") + "\nLogFile " + log +
                                                    "\nLogTime yes\nForeground yes\n"
                                                    "ExtendedDetectionInfo yes\nLogClean yes\n"));
  ASSERT_TRUE(WriteFile(dir.file("clamdscan.conf"), "LocalSocket " + socket + "\n"));

  ServerProcess clamd;
  ASSERT_TRUE(
      clamd.Start({kClamd, "--config-file=" + dir.file("clamd.conf")}, dir.file("clamd.out")));
  ASSERT_TRUE(WaitUntil(
      std::chrono::seconds(60),
      [&] {
        struct stat s {};
        return stat(socket.c_str(), &s) == 0 && S_ISSOCK(s.st_mode);
      },
      [&] { return !clamd.running(); }))
      << "clamd did not open its socket\n"
      << clamd.log() << ReadFile(log);

  const std::string conf = "--config-file=" + dir.file("clamdscan.conf");
  // clamdscan exits 1 when it found a virus, 0 when the file is clean.
  auto streamed = RunCommand({kClamdscan, conf, "--no-summary", "--stream", dir.file("eicar.txt")});
  EXPECT_EQ(streamed.exit_code, 1) << streamed.out << streamed.err;
  EXPECT_NE(streamed.out.find(kSignature), std::string::npos) << streamed.out;
  auto by_path = RunCommand({kClamdscan, conf, "--no-summary", dir.file("eicar.txt")});
  EXPECT_EQ(by_path.exit_code, 1) << by_path.out << by_path.err;
  auto clean = RunCommand({kClamdscan, conf, "--no-summary", "--stream", dir.file("clean.txt")});
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;

  // clamd writes its log line after answering: wait for the lines, not for time.
  std::string text;
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(10), [&] {
    text = ReadFile(log);
    return LinesWith(text, " FOUND").size() >= 2 && !LinesWith(text, ": OK").empty();
  })) << text;

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

}  // namespace
}  // namespace mxward
