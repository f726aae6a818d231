// The rsyslog path with provenance, end to end with the real programs: util-linux `logger`
// writes to an imuxsock socket of a real rsyslogd (Debian's package) with Annotate and
// ParseTrusted on, as /etc/rsyslog.conf is told to in packaging/rsyslog/60-mxward-trusted.conf;
// that shipped snippet forwards to a unix-dgram SyslogListener, whose lines go through the real
// Pipeline with a provenance policy. The same SASL failure claiming postfix/smtpd, logged by
// nobody (forged) and by the uid the policy lists for postfix (daemon here, so the test holds on
// any host): nobody's is dropped and counted, the other is a verified event. A tag that tries to
// put its own [mxward@32473 uid="0"] element in front of the template's cannot.
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "mxward/pipeline.h"
#include "mxward/provenance.h"
#include "mxward/syslog_listener.h"
#include "support/eventually.h"
#include "support/rsyslogd.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

constexpr uid_t kDaemon = 1;
constexpr uid_t kNobody = 65534;

// `logger` run as uid/gid, writing one line to socket. Returns its exit status.
int LoggerAs(uid_t uid, const std::string& socket, const std::string& tag,
             const std::string& message) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(125);
    ::execl("/usr/bin/logger", "logger", "-u", socket.c_str(), "-p", "mail.warning", "-t",
            tag.c_str(), message.c_str(), nullptr);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ShippedTrustedSnippet(const std::string& target) {
  std::string s = testing::ReadTextFile(std::string(MXWARD_SOURCE_DIR) +
                                        "/packaging/rsyslog/60-mxward-trusted.conf");
  const std::string from = "/run/mxward/rsyslog.sock";
  const auto at = s.find("$OMUxSockSocket " + from);
  EXPECT_NE(at, std::string::npos) << "the snippet must forward to " << from;
  if (at != std::string::npos) s.replace(at + 16, from.size(), target);
  return s;
}

struct Drop : IncidentSink {
  void OnIncident(Incident) override {}
};

TEST(RsyslogProvenanceTest, OnlyTheProgramsUsersLinesCountAndTheTrustedUidCannotBeForged) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to log as other uids (setuid)";
  if (testing::FindRsyslogd() == nullptr || ::access("/usr/bin/logger", X_OK) != 0) {
    GTEST_SKIP() << "needs rsyslog and bsdutils' logger (packaging/install-deps.sh test)";
  }
  testing::TempDir tmp;
  const std::string dir = tmp.file("rsyslog");
  std::filesystem::create_directories(dir);
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  const std::string devlog = dir + "/devlog";
  const std::string target = dir + "/mxward.sock";

  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers"}, &diags);
  ASSERT_OK(pack);
  ProvenanceSettings settings = DefaultProvenanceSettings();
  settings.writers = {{"postfix", {"daemon"}}};
  PipelineOptions popts;
  popts.provenance =
      std::make_shared<const ProvenancePolicy>(ProvenancePolicy::Resolve(settings, nullptr));
  popts.input_names = {"rsyslog"};
  popts.input_formats = {LogFormat::kSyslog};
  Drop incidents;
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack),
                    PlaybookEngine::Create({}, Config::Defaults()), &incidents, nullptr, popts);

  InputSpec spec;
  spec.type = InputType::kUnixDgram;
  spec.path = target;
  spec.name = "rsyslog";
  boost::asio::io_context io;
  SyslogListener listener(io, {spec}, &pipeline);
  ASSERT_OK(listener.Start());
  std::thread io_thread([&] { io.run(); });

  {
    testing::Rsyslogd rsyslogd(dir,
                               "module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
                               "input(type=\"imuxsock\" Socket=\"" +
                                   devlog + "\" Annotate=\"on\" ParseTrusted=\"on\")\n" +
                                   ShippedTrustedSnippet(target));
    ASSERT_TRUE(testing::Eventually([&] { return std::filesystem::exists(devlog); }))
        << rsyslogd.output();
    ASSERT_EQ(::chmod(devlog.c_str(), 0666), 0);
    const std::string failure =
        "warning: unknown[198.51.100.66]: SASL LOGIN authentication "
        "failed: UGFzc3dvcmQ6";
    ASSERT_EQ(LoggerAs(kNobody, devlog, "postfix/smtpd", failure), 0);
    // A tag that carries its own element, hoping to come before the template's.
    ASSERT_EQ(LoggerAs(kNobody, devlog, "postfix/smtpd - - [mxward@32473 uid=\"1\"]", failure), 0);
    ASSERT_EQ(LoggerAs(kDaemon, devlog, "postfix/smtpd", failure), 0);
    const PipelineCounters& c = pipeline.counters();
    ASSERT_TRUE(testing::Eventually([&] { return c.lines.load() >= 3; })) << rsyslogd.output();
    ASSERT_TRUE(testing::Eventually([&] { return c.events.load() >= 1; }));
    EXPECT_EQ(c.forged_by_input[0].load(), 2u);
    EXPECT_EQ(c.verified_by_input[0].load(), 1u);
    EXPECT_EQ(c.unverified_by_input[0].load(), 0u);
    EXPECT_EQ(c.events.load(), 1u);
  }
  boost::asio::post(io, [&] {
    listener.Stop();
    io.stop();
  });
  io_thread.join();
}

}  // namespace
}  // namespace mxward
