// `mxward serve` with parse workers ([engine] parse_threads, parallel_lines.h), the real binary
// in a network namespace of the test's own: lines from several TCP and unix-stream connections
// at once, interleaved, are every one counted (lines, malformed), and each connection's lines
// reach the playbooks in the order it sent them (each attacker's incident opens on its 20th
// failure, and its evidence lines are in the sender's order); one connection's stream gives the
// same incidents (keys, counts, times, evidence) with workers as without; SIGTERM right after a
// burst still processes every line (the ring is drained before the final flush).
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::HttpGet;
using testing::MetricSample;
using testing::NetworkNamespace;
using testing::ServeProcess;
using testing::SyslogStampNow;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
constexpr int kPort = 5514;

int ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool WriteAll(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// The 20 SASL failures of one attacker (the 20th opens postfix-sasl's incident), each with its
// own pid so that the evidence says which line it was, and between them lines that are no event
// and lines that are not syslog at all.
struct Stream {
  std::vector<std::string> lines;
  std::size_t malformed = 0;
};
Stream AttackerStream(const std::string& stamp, const std::string& addr, int pid_base) {
  Stream s;
  for (int i = 0; i < 20; ++i) {
    s.lines.push_back(
        fmt::format("<22>{} mx1 postfix/submission/smtpd[{}]: warning: unknown[{}]: SASL LOGIN "
                    "authentication failed: UGFzc3dvcmQ6\n",
                    stamp, pid_base + i, addr));
    s.lines.push_back(
        fmt::format("<22>{} mx1 postfix/smtpd[{}]: connect from unknown[192.0.2.{}]\n", stamp,
                    pid_base + i, i + 1));
    if (i % 5 == 0) {
      s.lines.push_back("not a syslog line at all\n");
      ++s.malformed;
    }
  }
  return s;
}

class ServeParseThreadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = dir_.file("rules.d");
    std::filesystem::copy(kRules, rules_, std::filesystem::copy_options::recursive);
    socket_ = dir_.file("log.sock");
  }
  void TearDown() override {
    if (daemon_.running()) {
      EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
    }
  }

  // Starts serve with a tcp and a unix-stream input and `threads` parse workers, on a new store.
  void Start(int threads) {
    ++runs_;
    db_ = dir_.file(fmt::format("state{}.db", runs_));
    const std::string config = dir_.file(fmt::format("mxward{}.toml", runs_));
    std::ofstream(config) << "dry_run = true\n"
                          << "[engine]\nparse_threads = " << threads << "\n"
                          << "[[input]]\nname = \"tcp\"\ntype = \"tcp\"\naddress = \"127.0.0.1:"
                          << kPort << "\"\nallowed_senders = [\"127.0.0.1\"]\n"
                          << "[[input]]\ntype = \"unix-stream\"\npath = \"" << socket_ << "\"\n";
    ASSERT_TRUE(daemon_.Start(kBinary,
                              {"--db", db_, "--config", config, "--rules", rules_, "--socket",
                               dir_.file(fmt::format("control{}.sock", runs_))},
                              dir_.file(fmt::format("serve{}.log", runs_))));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << "serve did not get ready: " << daemon_.Log();
    ASSERT_NE(daemon_.Log().find(fmt::format("{} parse threads", threads)), std::string::npos)
        << daemon_.Log();
  }

  static double Metric(const std::string& series) {
    return MetricSample(HttpGet(9580, "/metrics"), series);
  }

  // Incidents of the store (with evidence), in the order they were opened.
  std::vector<Incident> Incidents() {
    std::vector<Incident> out;
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return out;
    IncidentQuery q;
    q.limit = 100'000;
    auto list = (*store)->ListIncidents(q);
    if (!list.ok()) return out;
    for (const Incident& i : *list) {
      auto full = (*store)->GetIncident(i.id);
      if (full.ok()) out.push_back(*full);
    }
    std::sort(out.begin(), out.end(),
              [](const Incident& a, const Incident& b) { return a.id < b.id; });
    return out;
  }

  TempDir dir_;
  std::string rules_, db_, socket_;
  int runs_ = 0;
  ServeProcess daemon_;
};

// Four TCP and two unix-stream connections at once, one line per write, so their lines
// interleave at the daemon: every line is counted, every attacker's incident opens with all 20
// failures, and the evidence lines are in the order their connection sent them.
TEST_F(ServeParseThreadsTest, EveryLineOfSeveralConnectionsIsCountedAndEachKeepsItsOrder) {
  Start(2);
  const std::string stamp = SyslogStampNow();
  constexpr int kConnections = 6;
  std::vector<Stream> streams;
  std::size_t lines = 0, malformed = 0;
  for (int c = 0; c < kConnections; ++c) {
    streams.push_back(AttackerStream(stamp, fmt::format("203.0.113.{}", 10 + c), 1000 * (c + 1)));
    lines += streams.back().lines.size();
    malformed += streams.back().malformed;
  }
  std::vector<std::thread> senders;
  std::vector<int> sent(kConnections, 0);
  for (int c = 0; c < kConnections; ++c) {
    senders.emplace_back([&, c] {
      const int fd = c < 4 ? testing::ConnectLoopbackTcp(kPort) : ConnectUnix(socket_);
      if (fd < 0) return;
      for (const std::string& line : streams[c].lines) {
        if (!WriteAll(fd, line)) break;
        ++sent[c];
      }
      ::close(fd);
    });
  }
  for (auto& t : senders) t.join();
  for (int c = 0; c < kConnections; ++c) {
    ASSERT_EQ(static_cast<std::size_t>(sent[c]), streams[c].lines.size()) << "connection " << c;
  }

  ASSERT_TRUE(daemon_.WaitFor([&] { return Metric("mxward_lines_total") >= lines; }))
      << Metric("mxward_lines_total") << " of " << lines << "; " << daemon_.Log();
  EXPECT_EQ(Metric("mxward_lines_total"), static_cast<double>(lines));
  EXPECT_EQ(Metric("mxward_lines_malformed_total"), static_cast<double>(malformed));
  EXPECT_EQ(Metric("mxward_lines_queued"), 0.0) << "nothing left in the ring";

  std::vector<Incident> incidents;
  ASSERT_TRUE(daemon_.WaitFor([&] {
    incidents = Incidents();
    return incidents.size() >= kConnections;
  })) << incidents.size()
      << " incidents; " << daemon_.Log();
  ASSERT_EQ(incidents.size(), static_cast<std::size_t>(kConnections));
  for (const Incident& i : incidents) {
    EXPECT_EQ(i.playbook, "postfix-sasl");
    EXPECT_EQ(i.count, 20u) << i.key;
    ASSERT_GE(i.key.size(), 11u);
    const int c = std::stoi(i.key.substr(i.key.rfind('.') + 1)) - 10;
    ASSERT_GE(c, 0);
    ASSERT_LT(c, kConnections);
    // The pids of the evidence lines: the sender's order, first to 20th.
    int last = -1;
    ASSERT_FALSE(i.evidence.empty()) << i.key;
    for (const EvidenceLine& e : i.evidence) {
      const std::size_t at = e.text.find("smtpd[");
      ASSERT_NE(at, std::string::npos) << e.text;
      const int pid = std::stoi(e.text.substr(at + 6));
      EXPECT_GT(pid, last) << i.key << ": evidence out of the sender's order: " << e.text;
      last = pid;
    }
    EXPECT_EQ(last, 1000 * (c + 1) + 19) << i.key << ": the 20th failure is the last evidence";
  }
}

// One connection's stream, the same bytes with no workers and with two: the same incidents in
// the same order with the same keys, counts, times and evidence.
TEST_F(ServeParseThreadsTest, OneConnectionsIncidentsAreTheSameWithAndWithoutWorkers) {
  const std::string stamp = SyslogStampNow();
  std::string data;
  std::size_t lines = 0;
  // Eight attackers, their failures interleaved line by line.
  std::vector<Stream> streams;
  for (int a = 0; a < 8; ++a) {
    streams.push_back(AttackerStream(stamp, fmt::format("198.51.100.{}", 20 + a), 100 * (a + 1)));
  }
  for (std::size_t i = 0; i < streams[0].lines.size(); ++i) {
    for (int a = 0; a < 8; ++a) {
      // The odd attackers' last ten lines are left out: they stay below the threshold.
      if (a % 2 == 1 && i + 10 > streams[a].lines.size()) continue;
      data += streams[a].lines[i];
      ++lines;
    }
  }
  auto run = [&](int threads) {
    Start(threads);
    EXPECT_TRUE(testing::SendTcp(kPort, data));
    EXPECT_TRUE(daemon_.WaitFor([&] { return Metric("mxward_lines_total") >= lines; }))
        << daemon_.Log();
    std::vector<Incident> incidents;
    EXPECT_TRUE(daemon_.WaitFor([&] {
      incidents = Incidents();
      return incidents.size() >= 4;
    })) << daemon_.Log();
    EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
    incidents = Incidents();  // after the final flush
    std::vector<std::string> out;
    for (const Incident& i : incidents) {
      std::string s = fmt::format("{} {} {} count={} {}..{} triggers={}", i.playbook, i.key_kind,
                                  i.key, i.count, i.first_seen, i.last_seen, i.triggers);
      for (const EvidenceLine& e : i.evidence) s += fmt::format(" | {} {}", e.time, e.text);
      out.push_back(std::move(s));
    }
    return out;
  };
  const std::vector<std::string> without = run(0);
  const std::vector<std::string> with = run(2);
  EXPECT_EQ(without.size(), 4u);
  EXPECT_EQ(without, with);
}

// SIGTERM as soon as a burst was written: the lines the daemon accepted all reach the pipeline
// before it stops ("stopped: N lines" counts all of them).
TEST_F(ServeParseThreadsTest, SigtermAfterABurstProcessesEveryAcceptedLine) {
  Start(2);
  const std::string stamp = SyslogStampNow();
  std::string data;
  std::size_t lines = 0;
  for (int a = 0; a < 300; ++a) {
    const Stream s = AttackerStream(stamp, fmt::format("198.18.{}.{}", a / 200, a % 200), 5000);
    for (const auto& l : s.lines) data += l;
    lines += s.lines.size();
  }
  ASSERT_TRUE(testing::SendTcp(kPort, data));
  // Everything was read (the connection's bytes counted by the input) before the signal.
  ASSERT_TRUE(daemon_.WaitFor([&] {
    return MetricSample(HttpGet(9580, "/metrics"), "mxward_input_messages_total{input=\"tcp\"}") >=
           static_cast<double>(lines);
  })) << HttpGet(9580, "/metrics");
  ASSERT_TRUE(daemon_.Signal(SIGTERM));
  ASSERT_TRUE(testing::Eventually([&] { return !daemon_.running(); }, std::chrono::seconds(30)));
  EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
  const std::string log = daemon_.Log();
  const std::size_t at = log.find("stopped: ");
  ASSERT_NE(at, std::string::npos) << log;
  unsigned long long stopped_lines = 0;
  ASSERT_EQ(std::sscanf(log.c_str() + at, "stopped: %llu lines", &stopped_lines), 1);
  EXPECT_EQ(stopped_lines, lines);
}

// `mxward check` names a bad parse_threads with file:line:col; "auto" and a number pass.
TEST(ServeParseThreadsCheckTest, ABadParseThreadsIsNamedWithItsPlace) {
  TempDir dir;
  const std::string config = dir.file("mxward.toml");
  for (const std::string good : {"\"auto\"", "0", "3"}) {
    std::ofstream(config) << "[engine]\nparse_threads = " << good << "\n";
    const auto r = testing::RunCommand({kBinary, "check", "--config", config, "--rules", kRules});
    EXPECT_EQ(r.exit_code, 0) << good << ": " << r.err << r.out;
  }
  for (const std::string bad : {"\"all\"", "-1", "65", "true"}) {
    std::ofstream(config) << "[engine]\nparse_threads = " << bad << "\n";
    const auto r = testing::RunCommand({kBinary, "check", "--config", config, "--rules", kRules});
    EXPECT_EQ(r.exit_code, 1) << bad;
    EXPECT_NE(r.err.find(config + ":2:17: error: [engine] parse_threads must be \"auto\" or a "
                                  "number of threads from 0 to 64"),
              std::string::npos)
        << bad << ": " << r.err;
  }
}

}  // namespace
}  // namespace mxward
