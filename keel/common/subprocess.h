// Subprocess: spawn a program with argv and environment, in its own process group, and wait
// for it, signal it, or tear its whole group down.
//
//   SpawnOptions opts;
//   opts.argv = {"python3", "train.py"};
//   opts.env = CurrentEnvironment();
//   SetEnv(&*opts.env, "RANK", "0");
//   KEEL_ASSIGN_OR_RETURN(auto child, Subprocess::Spawn(opts));
//   ExitStatus st = child->Wait();   // "exited with code 0", "killed by signal 9 (SIGKILL)"
//
// Failures to start (program not found, not executable, bad cwd, unopenable log file) come
// back from Spawn as a Status naming the program; they never appear as a child that exits 127.
// Ownership: a Subprocess owns its child. Destroying it while the child runs SIGKILLs the
// child's process group and reaps it, so no process outlives its owner by accident.
// Thread-safety: a Subprocess is not thread-safe; use it from one thread at a time.
//
// Note [Children die with their parent]
// With die_with_parent (the default) the child asks the kernel for SIGKILL when its parent
// dies (PR_SET_PDEATHSIG), and checks right after that the parent is still the one that
// forked it. Linux delivers that signal when the *thread* that forked exits, so spawn from a
// thread that lives as long as the child (the main thread, or an owned pool's thread). The
// signal reaches the direct child only; grandchildren in its group are killed by
// SignalGroup/Terminate/the destructor, which address the whole process group.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/status.h"

namespace keel {

// How a process ended, decoded from waitpid's status.
struct ExitStatus {
  bool exited = false;  // true: exit code in `code`; false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool core_dumped = false;

  static ExitStatus FromWaitStatus(int wstatus);
  bool success() const { return exited && code == 0; }
  // Shell convention: the exit code, or 128 + signal number.
  int ShellCode() const { return exited ? code : 128 + signal; }
  // "exited with code 3" / "killed by signal 9 (SIGKILL)" / "... (core dumped)".
  std::string ToString() const;
};

// "SIGKILL" for 9, "signal 77" for numbers with no name.
std::string SignalName(int sig);

struct SpawnOptions {
  // argv[0] is searched in PATH (of `env` when given, else this process's) if it has no '/'.
  std::vector<std::string> argv;
  // The child's whole environment as "KEY=VALUE" strings; nullopt inherits this process's.
  std::optional<std::vector<std::string>> env;
  // Working directory; empty keeps this process's.
  std::string cwd;
  // Files that receive the child's stdout / stderr (created, appended to); empty inherits.
  std::string stdout_path;
  std::string stderr_path;
  // Or file descriptors (e.g. pipe write ends) to use as the child's stdout / stderr. Borrowed:
  // the caller closes its copies after Spawn. Each takes precedence over the matching path.
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Put the child in a new process group whose id is its pid.
  bool new_process_group = true;
  // See Note [Children die with their parent].
  bool die_with_parent = true;
};

// This process's environment as "KEY=VALUE" strings.
std::vector<std::string> CurrentEnvironment();
// Sets KEY to VALUE in `env`, replacing an existing entry.
void SetEnv(std::vector<std::string>* env, std::string_view key, std::string_view value);
// The value of KEY in `env`, or nullopt.
std::optional<std::string> GetEnv(const std::vector<std::string>& env, std::string_view key);

class Subprocess {
 public:
  static StatusOr<std::unique_ptr<Subprocess>> Spawn(const SpawnOptions& options);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // The child's process group (its pid when new_process_group, else ours).
  pid_t pgid() const { return pgid_; }

  // Non-blocking: the exit status if the child has ended (it is reaped), else nullopt.
  std::optional<ExitStatus> Poll();
  // Blocks until the child ends.
  ExitStatus Wait();
  // Blocks up to `timeout`; nullopt if the child is still running.
  std::optional<ExitStatus> WaitFor(Duration timeout);

  // Sends `sig` to the child only. OK if it already ended.
  Status Signal(int sig);
  // Sends `sig` to the child's whole process group (needs new_process_group). OK if the group
  // is already gone.
  Status SignalGroup(int sig);
  // SIGTERM to the group, up to `grace` for the child to end, then SIGKILL to the group.
  // Returns how the child ended.
  ExitStatus Terminate(Duration grace);

 private:
  Subprocess(pid_t pid, pid_t pgid, bool own_group)
      : pid_(pid), pgid_(pgid), own_group_(own_group) {}

  pid_t pid_;
  pid_t pgid_;
  bool own_group_;
  std::optional<ExitStatus> status_;
};

}  // namespace keel
