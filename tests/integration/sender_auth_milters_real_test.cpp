// Real OpenDKIM and OpenDMARC (Debian's opendkim, opendmarc) as milters on a real Postfix, with
// the DKIM key made by opendkim-genkey and the SPF, DKIM and DMARC records served by dnsmasq in a
// DnsSandbox (tests/support/dns_sandbox.h: network and mount namespace, /dev/log is the test's).
// tests/integration/sender_auth_milters.py configures and starts the three servers (OpenDKIM as a
// mail admin runs it: Mode sv, LogResults yes) and sends with smtplib: our domain's mail signed by
// OpenDKIM on the way out and sent back in from our other MX and through a forwarder, the same
// message tampered with after signing, unsigned mail of a partner and of a domain with no
// records, and three messages forging our domain from one outside address.
//
// Every line the servers wrote to syslog goes through the real binary:
//  - `mxward explain --jsonl`: no OpenDKIM or OpenDMARC line is unmatched; per message (queue
//    id), the dkim_verify and dmarc_check events carry the verdicts and domains the message must
//    get, joined to its client address;
//  - `mxward replay` with the shipped playbooks and example.org as our domain: the forger's
//    address is the one incident (spoofing-own-domain); the forwarded and tampered mail, the
//    partner and the domain without records open none.
// Needs root and the packages (packaging/install-deps.sh test); skips without them. About 15 s
// (postfix start, the milters' shutdown).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/dns_sandbox.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::DnsSandbox;
using testing::DnsZones;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kScript =
    std::string(MXWARD_SOURCE_DIR) + "/tests/integration/sender_auth_milters.py";
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

std::string WhyNotRunnable() {
  if (std::string why = DnsSandbox::WhyNotRunnable(); !why.empty()) return why;
  for (const char* bin : {"/usr/sbin/opendkim", "/usr/sbin/opendmarc", "/usr/sbin/postfix",
                          "/usr/sbin/opendkim-genkey"}) {
    if (access(bin, X_OK) != 0) {
      return std::string(bin) +
             " missing: packaging/install-deps.sh test installs opendkim, opendkim-tools, "
             "opendmarc and postfix";
    }
  }
  return "";
}

// The TXT text of opendkim-genkey's .txt file: its quoted strings, joined.
std::string TxtRecordText(const std::string& path) {
  std::ifstream in(path);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string text;
  for (std::size_t open = file.find('"'); open != std::string::npos; open = file.find('"', open)) {
    const std::size_t close = file.find('"', open + 1);
    if (close == std::string::npos) break;
    text += file.substr(open + 1, close - open - 1);
    open = close + 1;
  }
  return text;
}

// What mxward's parsers made of one message's lines.
struct Verdicts {
  std::string client_ip;
  std::vector<std::string> dkim;   // "result domain", per dkim_verify event
  std::vector<std::string> dmarc;  // "result header_from_domain", per dmarc_check event
  std::vector<std::string> spf;    // "result identity domain", per spf_check event
};

TEST(SenderAuthMiltersRealTest, VerdictsNameTheirDomainsAndOnlyTheForgerIsAnIncident) {
  if (const std::string why = WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  DnsSandbox sandbox;  // after dir: its mounts go before the directory
  ASSERT_EQ(sandbox.Enter(dir.path()), "");

  std::filesystem::create_directories(dir.file("keys"));
  const auto genkey = RunCommand({"/usr/sbin/opendkim-genkey", "-D", dir.file("keys"), "-d",
                                  "example.org", "-s", "mail", "-b", "2048"});
  ASSERT_EQ(genkey.exit_code, 0) << genkey.err;
  const std::string key_record = TxtRecordText(dir.file("keys/mail.txt"));
  ASSERT_NE(key_record.find("p=MII"), std::string::npos) << key_record;

  DnsZones zones;
  zones.local_domains = {"example.org", "partner.example", "nodmarc.example", "list.example"};
  zones.txt = {{"example.org", "v=spf1 ip4:192.0.2.20 -all"},
               {"mail._domainkey.example.org", key_record},
               {"_dmarc.example.org", "v=DMARC1; p=reject"},
               {"partner.example", "v=spf1 ip4:192.0.2.30 -all"},
               {"_dmarc.partner.example", "v=DMARC1; p=none"}};
  ASSERT_EQ(sandbox.StartDns(zones), "");

  const auto run = RunCommand({"python3", kScript, dir.path()});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out
                              << testing::ServerProcess::ReadFile(dir.file("commands.log"));
  const auto sent = nlohmann::json::parse(run.out)["messages"];

  // The milters log before they answer end-of-message, Postfix before it answers DATA: every
  // line that matters is in the socket by now.
  const std::vector<std::string> lines = sandbox.LogLines();
  const std::string log = dir.file("maillog");
  {
    std::ofstream out(log);
    for (const std::string& l : lines) out << l << "\n";
  }
  std::ofstream(dir.file("mxward.toml")) << "[rules]\nlocal_domains = [\"example.org\"]\n";

  auto explain = RunCommand(
      {kBinary, "--config", dir.file("mxward.toml"), "--rules", kRules, "explain", "--jsonl", log});
  ASSERT_EQ(explain.exit_code, 0) << explain.err;
  std::map<std::string, Verdicts> by_queue_id;
  std::istringstream in(explain.out);
  std::string json_line;
  int milter_lines = 0;
  while (std::getline(in, json_line)) {
    const auto j = nlohmann::json::parse(json_line);
    const std::string program = j.value("program", "");
    if (program != "opendkim" && program != "opendmarc") continue;
    ++milter_lines;
    EXPECT_NE(j.value("outcome", ""), "unmatched")
        << "line " << j["line_no"] << ": " << lines.at(j["line_no"].get<std::size_t>() - 1);
    if (j.value("outcome", "") != "event") continue;
    Verdicts& v = by_queue_id[j.value("queue_id", "")];
    if (j["ip"].is_string()) v.client_ip = j["ip"].get<std::string>();
    const std::string event = j["event"].get<std::string>();
    if (event == "dkim_verify") {
      v.dkim.push_back(j.value("dkim_result", "") + " " + j.value("dkim_domain", ""));
    } else if (event == "dmarc_check") {
      v.dmarc.push_back(j.value("dmarc_result", "") + " " + j.value("header_from_domain", ""));
    } else if (event == "spf_check") {
      v.spf.push_back(j.value("spf_result", "") + " " + j.value("spf_identity", "") + " " +
                      j.value("spf_domain", ""));
    }
  }
  EXPECT_GT(milter_lines, 0);

  using Strings = std::vector<std::string>;
  struct Expected {
    Strings dkim, dmarc, spf_mailfrom;
  };
  const std::map<std::string, Expected> expected = {
      {"internal", {{}, {}, {}}},  // signed here (OpenDKIM), ignored by OpenDMARC (IgnoreHosts)
      {"signed_own_mx",
       {{"pass example.org"}, {"pass example.org"}, {"pass mailfrom example.org"}}},
      {"signed_forwarded",
       {{"pass example.org"}, {"pass example.org"}, {"none mailfrom list.example"}}},
      {"tampered", {{"fail example.org"}, {"fail example.org"}, {"none mailfrom list.example"}}},
      {"partner", {{}, {"pass partner.example"}, {"pass mailfrom partner.example"}}},
      {"nodmarc", {{}, {"none nodmarc.example"}, {"none mailfrom nodmarc.example"}}},
      {"spoof1", {{}, {"fail example.org"}, {"fail mailfrom example.org"}}},
      {"spoof2", {{}, {"fail example.org"}, {"fail mailfrom example.org"}}},
      {"spoof3", {{}, {"fail example.org"}, {"fail mailfrom example.org"}}},
  };
  ASSERT_EQ(sent.size(), expected.size()) << run.out;
  for (const auto& m : sent) {
    const std::string name = m["name"].get<std::string>();
    SCOPED_TRACE(name + " " + m["queue_id"].get<std::string>());
    const Expected& want = expected.at(name);
    const Verdicts& got = by_queue_id[m["queue_id"].get<std::string>()];
    EXPECT_EQ(got.dkim, want.dkim);
    EXPECT_EQ(got.dmarc, want.dmarc);
    Strings mailfrom;
    for (const std::string& s : got.spf) {
      if (s.find(" mailfrom ") != std::string::npos) mailfrom.push_back(s);
    }
    EXPECT_EQ(mailfrom, want.spf_mailfrom);
    if (!want.dmarc.empty()) {
      EXPECT_EQ(got.client_ip, m["client"].get<std::string>());
    }
  }

  // The shipped playbooks over the same log, our domain configured: the forger alone.
  const std::string db = dir.file("state.db");
  auto replay = RunCommand(
      {kBinary, "replay", "--db", db, "--rules", kRules, "--config", dir.file("mxward.toml"), log});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  auto list = RunCommand({kBinary, "incidents", "list", "--json", "--limit", "1000", "--db", db});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::set<std::pair<std::string, std::string>> incidents;
  for (const auto& i : nlohmann::json::parse(list.out)) {
    incidents.emplace(i["playbook"].get<std::string>(), i["key"].get<std::string>());
  }
  const std::set<std::pair<std::string, std::string>> want = {
      {"spoofing-own-domain", "203.0.113.66"}};
  EXPECT_EQ(incidents, want) << list.out;
}

}  // namespace
}  // namespace mxward
