// Subprocess: fork/exec with a close-on-exec error pipe, process groups, and pidfd waits.
#include "keel/common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace keel {
namespace {

// Closes an fd on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

StatusOr<std::string> ResolveProgram(const std::string& program,
                                     const std::optional<std::vector<std::string>>& env) {
  if (program.empty()) return InvalidArgumentError("cannot spawn: empty program name");
  if (program.find('/') != std::string::npos) {
    if (access(program.c_str(), X_OK) != 0)
      return ErrnoError(errno, "cannot run '" + program + "'");
    return program;
  }
  std::optional<std::string> path = env ? GetEnv(*env, "PATH") : std::nullopt;
  if (!env) {
    const char* p = std::getenv("PATH");
    if (p != nullptr) path = p;
  }
  std::string dirs = path.value_or("/usr/local/bin:/usr/bin:/bin");
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return NotFoundError("cannot run '" + program + "': not found in PATH (" + dirs + ")");
}

StatusOr<int> OpenOutput(const std::string& path, const char* which) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return ErrnoError(errno, std::string("cannot open ") + which + " file '" + path + "'");
  return fd;
}

// Runs in the forked child: only async-signal-safe calls until execve.
[[noreturn]] void ChildExec(const SpawnOptions& o, pid_t parent, const char* path, char** argv,
                            char** envp, int out_fd, int err_fd, int error_pipe) {
  auto fail = [error_pipe](int step) {
    int report[2] = {step, errno};
    ssize_t ignored = write(error_pipe, report, sizeof(report));
    (void)ignored;
    _exit(127);
  };
  if (o.new_process_group && setpgid(0, 0) != 0) fail(1);
  if (o.die_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(2);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  }
  // Start from a clean signal state: the parent may block or handle signals itself.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);  // fails harmlessly for KILL/STOP
  if (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0) fail(3);
  if (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0) fail(3);
  if (!o.cwd.empty() && chdir(o.cwd.c_str()) != 0) fail(4);
  execve(path, argv, envp);
  fail(5);
  _exit(127);  // not reached: fail() exits
}

const char* StepName(int step) {
  switch (step) {
    case 1:
      return "setpgid";
    case 2:
      return "prctl(PR_SET_PDEATHSIG)";
    case 3:
      return "redirecting output";
    case 4:
      return "chdir";
    default:
      return "exec";
  }
}

}  // namespace

ExitStatus ExitStatus::FromWaitStatus(int wstatus) {
  ExitStatus s;
  if (WIFEXITED(wstatus)) {
    s.exited = true;
    s.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    s.signal = WTERMSIG(wstatus);
    s.core_dumped = WCOREDUMP(wstatus);
  }
  return s;
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev == nullptr) return "signal " + std::to_string(sig);
  return std::string("SIG") + abbrev;
}

std::string ExitStatus::ToString() const {
  if (exited) return "exited with code " + std::to_string(code);
  std::string s = "killed by signal " + std::to_string(signal) + " (" + SignalName(signal) + ")";
  if (core_dumped) s += " (core dumped)";
  return s;
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

void SetEnv(std::vector<std::string>* env, std::string_view key, std::string_view value) {
  std::string entry = std::string(key) + "=" + std::string(value);
  for (std::string& e : *env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
      e = std::move(entry);
      return;
    }
  }
  env->push_back(std::move(entry));
}

std::optional<std::string> GetEnv(const std::vector<std::string>& env, std::string_view key) {
  for (const std::string& e : env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
      return e.substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return InvalidArgumentError("cannot spawn: argv is empty");
  KEEL_ASSIGN_OR_RETURN(std::string path, ResolveProgram(o.argv[0], o.env));
  for (const std::string& e : o.env.value_or(std::vector<std::string>{})) {
    if (e.find('=') == std::string::npos || e.front() == '=') {
      return InvalidArgumentError("cannot spawn '" + o.argv[0] + "': environment entry '" + e +
                                  "' is not KEY=VALUE");
    }
  }
  Fd out_fd, err_fd;
  if (!o.stdout_path.empty()) {
    KEEL_ASSIGN_OR_RETURN(int fd, OpenOutput(o.stdout_path, "stdout"));
    out_fd.Reset(fd);
  }
  if (!o.stderr_path.empty()) {
    KEEL_ASSIGN_OR_RETURN(int fd, OpenOutput(o.stderr_path, "stderr"));
    err_fd.Reset(fd);
  }

  // Everything the child needs is built before fork: it may not allocate afterwards.
  std::vector<char*> argv;
  for (const std::string& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (o.env) {
    for (const std::string& e : *o.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  char** child_env = o.env ? envp.data() : environ;
  const int child_out = o.stdout_fd >= 0 ? o.stdout_fd : out_fd.get();
  const int child_err = o.stderr_fd >= 0 ? o.stderr_fd : err_fd.get();

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError(errno, "cannot spawn: pipe2");
  Fd read_end(pipe_fds[0]), write_end(pipe_fds[1]);

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "cannot spawn '" + o.argv[0] + "': fork");
  if (pid == 0) {
    ChildExec(o, parent, path.c_str(), argv.data(), child_env, child_out, child_err,
              write_end.get());
  }
  // Also set the group from the parent, so it exists before anyone signals it.
  if (o.new_process_group) setpgid(pid, pid);
  write_end.Reset();

  int report[2];
  ssize_t n;
  do {
    n = read(read_end.get(), report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(report)) {
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    std::string what = "cannot spawn '" + o.argv[0] + "': " + StepName(report[0]);
    if (report[0] == 4) what += " to '" + o.cwd + "'";
    return ErrnoError(report[1], what);
  }
  pid_t pgid = o.new_process_group ? pid : getpgrp();
  return std::unique_ptr<Subprocess>(new Subprocess(pid, pgid, o.new_process_group));
}

Subprocess::~Subprocess() {
  if (own_group_) kill(-pgid_, SIGKILL);  // stragglers too, even if the leader already ended
  if (!status_) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

std::optional<ExitStatus> Subprocess::Poll() {
  if (status_) return status_;
  int wstatus;
  pid_t r;
  do {
    r = waitpid(pid_, &wstatus, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) status_ = ExitStatus::FromWaitStatus(wstatus);
  return status_;
}

ExitStatus Subprocess::Wait() {
  while (!status_) {
    int wstatus;
    pid_t r = waitpid(pid_, &wstatus, 0);
    if (r == pid_)
      status_ = ExitStatus::FromWaitStatus(wstatus);
    else if (r < 0 && errno != EINTR)
      break;  // ECHILD: reaped elsewhere; cannot happen here
  }
  return status_.value_or(ExitStatus{});
}

std::optional<ExitStatus> Subprocess::WaitFor(Duration timeout) {
  if (Poll()) return status_;
  const TimePoint deadline = Clock::Real()->Now() + timeout;
  // A pidfd becomes readable when the child ends: no polling loop, no missed wake-up.
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  Duration step = std::chrono::milliseconds(1);
  while (!Poll()) {
    Duration left = deadline - Clock::Real()->Now();
    if (left <= Duration::zero()) return std::nullopt;
    if (pidfd.get() >= 0) {
      struct pollfd p = {pidfd.get(), POLLIN, 0};
      int ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
      poll(&p, 1, ms);
    } else {  // kernels without pidfd_open: back off up to 20 ms
      std::this_thread::sleep_for(std::min(step, left));
      step = std::min<Duration>(step * 2, std::chrono::milliseconds(20));
    }
  }
  return status_;
}

Status Subprocess::Signal(int sig) {
  if (status_) return OkStatus();
  if (kill(pid_, sig) != 0 && errno != ESRCH) {
    return ErrnoError(errno, "kill(" + std::to_string(pid_) + ", " + SignalName(sig) + ")");
  }
  return OkStatus();
}

Status Subprocess::SignalGroup(int sig) {
  if (!own_group_) {
    return FailedPreconditionError("process " + std::to_string(pid_) +
                                   " was not spawned in its own process group");
  }
  if (kill(-pgid_, sig) != 0 && errno != ESRCH) {
    return ErrnoError(errno, "kill(-" + std::to_string(pgid_) + ", " + SignalName(sig) + ")");
  }
  return OkStatus();
}

ExitStatus Subprocess::Terminate(Duration grace) {
  auto signal_all = [this](int sig) {
    Status s = own_group_ ? SignalGroup(sig) : Signal(sig);
    (void)s;  // the only failure is EPERM, impossible for our own children
  };
  signal_all(SIGTERM);
  if (!WaitFor(grace)) signal_all(SIGKILL);
  ExitStatus st = Wait();
  if (own_group_) kill(-pgid_, SIGKILL);  // members that ignored SIGTERM and outlived the leader
  return st;
}

}  // namespace keel
