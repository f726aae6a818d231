// RunArgvCommand, the one runner behind exec, doveadm and postsuper: argv without a shell,
// output capture, stdin, exactly the given environment, the timeout killing the whole process
// group, and the errors a person reads when a command fails.
#include "actions/common/argv_command.h"
#include "support/status_matchers.h"

#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace mxward {
namespace {

using std::chrono::milliseconds;

// Gone, or a zombie waiting for its (new) parent to reap it: either way no longer running.
bool NotRunning(int pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string stat = ss.str();
  if (stat.empty()) return true;
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

ArgvCommand Command(std::vector<std::string> argv, milliseconds timeout = milliseconds(10'000)) {
  ArgvCommand c;
  c.argv = std::move(argv);
  c.timeout = timeout;
  return c;
}

TEST(ArgvCommandTest, RunsWithoutAShellAndCapturesOutput) {
  ArgvCommand c;
  // Shell syntax arrives as one literal argument: nothing interprets it.
  c.argv = {"/bin/echo", "a; rm -rf /tmp/x", "$(id)", "`id`"};
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "a; rm -rf /tmp/x $(id) `id`\n");
  EXPECT_FALSE(r->timed_out);
  EXPECT_TRUE(CheckArgvOutcome(c, *r).ok());
}

TEST(ArgvCommandTest, WritesStdinAndPassesOnlyTheGivenEnvironment) {
  ArgvCommand c;
  c.argv = {"/usr/bin/env"};
  c.env = {"MXWARD_USER=alice@example.org"};
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_NE(r->out.find("MXWARD_USER=alice@example.org\n"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"), std::string::npos);
  EXPECT_EQ(r->out.find("HOME="), std::string::npos) << "mxward's environment is not inherited";

  ArgvCommand cat;
  cat.argv = {"/bin/cat"};
  cat.input = std::string(200000, 'x');  // more than a pipe buffer
  auto rc = RunArgvCommand(cat);
  ASSERT_OK(rc);
  EXPECT_EQ(rc->out.size(), 64u * 1024) << "output is bounded by max_output";
  EXPECT_EQ(rc->exit_code, 0);
}

TEST(ArgvCommandTest, NonZeroExitNamesProgramAndFirstStderrLine) {
  ArgvCommand c;
  c.argv = {"/bin/ls", "/nonexistent-mxward-path"};
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_NE(r->exit_code, 0);
  Status s = CheckArgvOutcome(c, *r);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.transient());
  EXPECT_NE(s.message().find("/bin/ls exited with status"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("nonexistent-mxward-path"), std::string::npos) << s.ToString();
}

TEST(ArgvCommandTest, TimeoutStopsTheProgramAndIsTransient) {
  ArgvCommand c;
  c.argv = {"/bin/sleep", "600"};
  c.timeout = std::chrono::milliseconds(200);
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->signal, SIGTERM);
  Status s = CheckArgvOutcome(c, *r);
  EXPECT_TRUE(s.transient()) << s.ToString();
  EXPECT_NE(s.message().find("did not finish within 200 ms"), std::string::npos);
}

TEST(ArgvCommandTest, RefusesRelativeAndMissingPrograms) {
  ArgvCommand c;
  c.argv = {"echo", "hi"};  // no PATH search
  EXPECT_EQ(RunArgvCommand(c).status().code(), Status::Code::kInvalidArgument);
  c.argv = {"/nonexistent/doveadm"};
  auto r = RunArgvCommand(c);
  EXPECT_EQ(r.status().code(), Status::Code::kIoError);
  EXPECT_NE(r.status().message().find("/nonexistent/doveadm"), std::string::npos);
  c.argv = {};
  EXPECT_FALSE(RunArgvCommand(c).ok());
}

TEST(ArgvCommandTest, PassesStdinAndExactlyTheGivenEnvironment) {
  ArgvCommand cat = Command({"/bin/cat"});
  cat.input = "hello\nworld\n";
  auto r = RunArgvCommand(cat);
  ASSERT_OK(r);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "hello\nworld\n");
  ArgvCommand env = Command({"/usr/bin/env"});
  env.env = {"PATH=/bin", "A=1", "B=two words"};
  r = RunArgvCommand(env);
  ASSERT_OK(r);
  EXPECT_EQ(r->out, "PATH=/bin\nA=1\nB=two words\n");  // nothing inherited, no PATH added
}

TEST(ArgvCommandTest, MergedStderrKeepsTheExitCodeAndFeedsTheError) {
  ArgvCommand c = Command({"/bin/sh", "-c", "echo out; echo oops >&2; exit 3"});
  c.merge_stderr = true;
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\noops\n");
  EXPECT_EQ(r->err, "");
  EXPECT_FALSE(r->timed_out);
  EXPECT_NE(CheckArgvOutcome(c, *r).message().find("exited with status 3: out"), std::string::npos);
}

TEST(ArgvCommandTest, TimeoutKillsTheWholeProcessGroup) {
  // The script starts a grandchild and waits; at the timeout both must die.
  ArgvCommand c = Command({"/bin/sh", "-c", "sleep 300 & echo $!; wait"}, milliseconds(300));
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_EQ(r->signal, SIGTERM);
  const int grandchild = std::stoi(r->out);
  ASSERT_GT(grandchild, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!NotRunning(grandchild) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(NotRunning(grandchild)) << "grandchild " << grandchild << " survived the timeout";
}

TEST(ArgvCommandTest, AGrandchildHoldingTheOutputOpenDoesNotHoldUs) {
  // The program exits at once; its background child keeps stdout open for five minutes.
  ArgvCommand c = Command({"/bin/sh", "-c", "sleep 300 & echo $!"}, milliseconds(60'000));
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_FALSE(r->timed_out) << "waited for the grandchild instead of the program";
  EXPECT_EQ(r->exit_code, 0);
  const int grandchild = std::stoi(r->out);
  ASSERT_GT(grandchild, 1);
  kill(grandchild, SIGKILL);
}

TEST(ArgvCommandTest, AChildThatIgnoresStdinDoesNotHangOrKillUs) {
  ArgvCommand c = Command({"/bin/true"});
  c.input = std::string(4 * 1024 * 1024, 'x');  // more than a pipe holds
  auto r = RunArgvCommand(c);
  ASSERT_OK(r);
  EXPECT_EQ(r->exit_code, 0);
}

}  // namespace
}  // namespace mxward
