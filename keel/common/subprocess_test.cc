#include "keel/common/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace keel {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/keel_sp_" + std::to_string(getpid()) + "_" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True while `pid` exists and is not a zombie.
bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

bool WaitGone(pid_t pid, Duration timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (Alive(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

std::unique_ptr<Subprocess> Sh(const std::string& script, SpawnOptions o = {}) {
  o.argv = {"sh", "-c", script};
  auto p = Subprocess::Spawn(o);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(p).value();
}

TEST(ExitStatusTest, DecodesExitCodesAndSignals) {
  EXPECT_EQ(Sh("exit 3")->Wait().ToString(), "exited with code 3");
  EXPECT_TRUE(Sh("exit 0")->Wait().success());
  ExitStatus killed = Sh("kill -9 $$")->Wait();
  EXPECT_FALSE(killed.exited);
  EXPECT_EQ(killed.signal, SIGKILL);
  EXPECT_EQ(killed.ToString(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(killed.ShellCode(), 137);
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
}

TEST(SubprocessTest, PassesArgvEnvCwdAndRedirectsOutput) {
  std::string out = TempPath("out"), err = TempPath("err");
  SpawnOptions o;
  o.env = std::vector<std::string>{"PATH=/usr/bin:/bin"};
  SetEnv(&*o.env, "KEEL_X", "first");
  SetEnv(&*o.env, "KEEL_X", "hello world");  // replaces
  o.cwd = "/tmp";
  o.stdout_path = out;
  o.stderr_path = err;
  auto p = Sh("echo \"$KEEL_X|$(pwd)|$0|$1\"; echo oops >&2; exit 4", o);
  EXPECT_EQ(p->Wait().code, 4);
  EXPECT_EQ(ReadFile(out), "hello world|/tmp|sh|\n");
  EXPECT_EQ(ReadFile(err), "oops\n");
  EXPECT_EQ(GetEnv(*o.env, "KEEL_X"), "hello world");
  EXPECT_EQ(GetEnv(*o.env, "KEEL"), std::nullopt);
  unlink(out.c_str());
  unlink(err.c_str());
}

TEST(SubprocessTest, OutputCanGoToCallerOwnedPipes) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  SpawnOptions o;
  o.stderr_fd = fds[1];
  o.stderr_path = "/dev/null";  // the fd wins over the path
  auto p = Sh("echo to-the-pipe >&2", o);
  close(fds[1]);
  char buf[64] = {0};
  ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "to-the-pipe\n");
  EXPECT_TRUE(p->Wait().success());
}

TEST(SubprocessTest, StartFailuresAreStatusesNamingTheProgram) {
  SpawnOptions o;
  o.argv = {"keel-no-such-program-xyz"};
  StatusOr<std::unique_ptr<Subprocess>> r = Subprocess::Spawn(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("keel-no-such-program-xyz"), std::string::npos);

  std::string script = TempPath("noexec.sh");
  std::ofstream(script) << "#!/bin/sh\nexit 0\n";
  chmod(script.c_str(), 0644);
  o.argv = {script};
  EXPECT_EQ(Subprocess::Spawn(o).status().code(), StatusCode::kPermissionDenied);
  unlink(script.c_str());

  o.argv = {"true"};
  o.cwd = "/no/such/dir";
  r = Subprocess::Spawn(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("chdir to '/no/such/dir'"), std::string::npos) << r.status();

  o.cwd.clear();
  o.stdout_path = "/no/such/dir/out.log";
  r = Subprocess::Spawn(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/no/such/dir/out.log"), std::string::npos);

  o.stdout_path.clear();
  o.env = std::vector<std::string>{"NOEQUALS"};
  EXPECT_EQ(Subprocess::Spawn(o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Subprocess::Spawn(SpawnOptions{}).status().code(), StatusCode::kInvalidArgument);
}

TEST(SubprocessTest, ChildGetsItsOwnProcessGroup) {
  std::string out = TempPath("pgid");
  SpawnOptions o;
  o.stdout_path = out;
  auto p = Sh("cut -d' ' -f5 /proc/$$/stat", o);  // field 5: process group
  ASSERT_TRUE(p->Wait().success());
  EXPECT_EQ(std::stol(ReadFile(out)), p->pid());
  EXPECT_EQ(p->pgid(), p->pid());
  unlink(out.c_str());
}

TEST(SubprocessTest, WaitForTimesOutThenPollSeesTheExit) {
  auto p = Sh("sleep 1");
  EXPECT_EQ(p->WaitFor(milliseconds(20)), std::nullopt);
  EXPECT_EQ(p->Poll(), std::nullopt);
  std::optional<ExitStatus> st = p->WaitFor(seconds(10));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->success());
  EXPECT_TRUE(p->Poll()->success());  // cached after reaping
}

TEST(SubprocessTest, TerminateEscalatesToSigkillAndReachesGrandchildren) {
  std::string pidfile = TempPath("grandchild");
  // The shell ignores SIGTERM; its background child records its pid, then both wait.
  auto p = Sh("trap '' TERM; sleep 100 & echo $! > " + pidfile + "; wait; sleep 100");
  pid_t grandchild = 0;
  for (int i = 0; i < 500 && grandchild == 0; ++i) {
    std::string text = ReadFile(pidfile);
    if (!text.empty() && text.back() == '\n')
      grandchild = std::stoi(text);
    else
      std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_GT(grandchild, 0);
  ExitStatus st = p->Terminate(milliseconds(100));
  EXPECT_EQ(st.signal, SIGKILL) << st.ToString();
  EXPECT_TRUE(WaitGone(grandchild, seconds(5)));
  unlink(pidfile.c_str());
}

TEST(SubprocessTest, SignalGroupDeliversToEveryMember) {
  auto p = Sh("sleep 100 & wait");
  std::this_thread::sleep_for(milliseconds(50));
  ASSERT_TRUE(p->SignalGroup(SIGTERM).ok());
  ExitStatus st = p->Wait();
  EXPECT_EQ(st.signal, SIGTERM) << st.ToString();
  EXPECT_TRUE(p->Signal(SIGTERM).ok());  // already ended: not an error
}

TEST(SubprocessTest, DestructorKillsTheRunningGroup) {
  pid_t pid;
  {
    auto p = Sh("sleep 100");
    pid = p->pid();
    ASSERT_TRUE(Alive(pid));
  }
  EXPECT_FALSE(Alive(pid));
}

TEST(SubprocessTest, ChildDiesWhenItsParentDies) {
  // An intermediate process spawns `sleep`, reports its pid, and exits without cleaning up.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    close(fds[0]);
    SpawnOptions o;
    o.argv = {"sleep", "100"};
    auto p = Subprocess::Spawn(o);
    pid_t pid = p.ok() ? (*p)->pid() : -1;
    ssize_t n = write(fds[1], &pid, sizeof(pid));
    _exit(n == sizeof(pid) ? 0 : 1);  // no destructors run: only the kernel can kill sleep
  }
  close(fds[1]);
  pid_t sleeper = -1;
  ASSERT_EQ(read(fds[0], &sleeper, sizeof(sleeper)), static_cast<ssize_t>(sizeof(sleeper)));
  close(fds[0]);
  int wstatus;
  ASSERT_EQ(waitpid(middle, &wstatus, 0), middle);
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(WaitGone(sleeper, seconds(5)));
}

}  // namespace
}  // namespace keel
