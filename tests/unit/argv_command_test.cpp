// RunArgvCommand: argv without a shell, output capture, stdin, environment, timeout, and the
// errors a person reads when a follow-up command fails.
#include "mxward/argv_command.h"

#include <gtest/gtest.h>

namespace mxward {
namespace {

TEST(ArgvCommandTest, RunsWithoutAShellAndCapturesOutput) {
  ArgvCommand c;
  // Shell syntax arrives as one literal argument: nothing interprets it.
  c.argv = {"/bin/echo", "a; rm -rf /tmp/x", "$(id)", "`id`"};
  auto r = RunArgvCommand(c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
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
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->out.find("MXWARD_USER=alice@example.org\n"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"), std::string::npos);
  EXPECT_EQ(r->out.find("HOME="), std::string::npos) << "mxward's environment is not inherited";

  ArgvCommand cat;
  cat.argv = {"/bin/cat"};
  cat.input = std::string(200000, 'x');  // more than a pipe buffer
  auto rc = RunArgvCommand(cat);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(rc->out.size(), 64u * 1024) << "output is bounded by max_output";
  EXPECT_EQ(rc->exit_code, 0);
}

TEST(ArgvCommandTest, NonZeroExitNamesProgramAndFirstStderrLine) {
  ArgvCommand c;
  c.argv = {"/bin/ls", "/nonexistent-mxward-path"};
  auto r = RunArgvCommand(c);
  ASSERT_TRUE(r.ok());
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
  ASSERT_TRUE(r.ok());
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

}  // namespace
}  // namespace mxward
