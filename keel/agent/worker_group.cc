// WorkerGroup: spawning, output pumping (rank-prefixed tee + tail), exit polling, stopping.
#include "keel/agent/worker_group.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iterator>
#include <sstream>

#include "keel/common/logging.h"

namespace keel::agent {
namespace {

constexpr size_t kTailLines = 20;

// Serialises whole lines from all workers onto the agent's stdout/stderr.
Mutex& OutputMutex() {
  static Mutex* mu = new Mutex();
  return *mu;
}

StatusOr<std::pair<int, int>> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2 for worker output");
  return std::make_pair(fds[0], fds[1]);
}

}  // namespace

// One worker process and the two threads that pump its stdout and stderr.
struct WorkerGroup::Worker {
  int local_rank = 0;
  int rank = 0;
  std::unique_ptr<Subprocess> process;
  std::optional<ExitStatus> status;
  std::thread out_thread, err_thread;
  Mutex mu;
  std::deque<std::string> tail KEEL_GUARDED_BY(mu);
  bool err_eof KEEL_GUARDED_BY(mu) = false;
  CondVar err_done;
  std::unique_ptr<std::ofstream> log KEEL_GUARDED_BY(mu);

  // Reads `fd` to EOF, writing "[rank R]: line" to `sink` (stdout or stderr).
  void Pump(int fd, FILE* sink, bool is_stderr) {
    std::string pending;
    char buf[4096];
    auto emit = [&](const std::string& line) {
      {
        MutexLock lock(&OutputMutex());
        std::fprintf(sink, "[rank %d]: %s\n", rank, line.c_str());
        std::fflush(sink);
      }
      MutexLock lock(&mu);
      if (log) *log << (is_stderr ? "[err] " : "") << line << '\n' << std::flush;
      if (is_stderr) {
        tail.push_back(line);
        if (tail.size() > kTailLines) tail.pop_front();
      }
    };
    while (true) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      pending.append(buf, n);
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        emit(pending.substr(start, nl - start));
      }
      pending.erase(0, start);
    }
    if (!pending.empty()) emit(pending);
    close(fd);
    if (is_stderr) {
      MutexLock lock(&mu);
      err_eof = true;
      err_done.SignalAll();
    }
  }

  std::string Tail() {
    MutexLock lock(&mu);
    std::string out;
    for (const std::string& line : tail) out += line + "\n";
    return out;
  }

  // Waits (briefly) until stderr reached EOF, so the tail holds the last words.
  void AwaitStderr(Duration timeout) {
    MutexLock lock(&mu);
    if (!err_eof)
      err_done.WaitFor(&mu, timeout, [this]() KEEL_NO_THREAD_SAFETY_ANALYSIS { return err_eof; });
  }

  void JoinThreads() {
    if (out_thread.joinable()) out_thread.join();
    if (err_thread.joinable()) err_thread.join();
  }
};

StatusOr<std::unique_ptr<WorkerGroup>> WorkerGroup::Start(const std::vector<std::string>& argv,
                                                          const std::vector<WorkerSpec>& specs,
                                                          const std::string& log_dir,
                                                          int64_t round) {
  std::unique_ptr<WorkerGroup> group(new WorkerGroup());
  for (const WorkerSpec& spec : specs) {
    auto w = std::make_unique<Worker>();
    w->local_rank = spec.local_rank;
    w->rank = spec.rank;
    if (!log_dir.empty()) {
      std::string path = log_dir + "/rank-" + std::to_string(spec.rank) + ".log";
      auto log = std::make_unique<std::ofstream>(path, std::ios::app);
      if (!*log) return ErrnoError(errno, "cannot open worker log '" + path + "'");
      *log << "==== round " << round << ", rank " << spec.rank << " ====\n";
      MutexLock lock(&w->mu);
      w->log = std::move(log);
    }
    KEEL_ASSIGN_OR_RETURN(auto out_pipe, MakePipe());
    auto err_pipe = MakePipe();
    if (!err_pipe.ok()) {
      close(out_pipe.first);
      close(out_pipe.second);
      return err_pipe.status();
    }
    SpawnOptions o;
    o.argv = argv;
    o.env = spec.env;
    o.stdout_fd = out_pipe.second;
    o.stderr_fd = err_pipe->second;
    StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Spawn(o);
    close(out_pipe.second);
    close(err_pipe->second);
    if (!p.ok()) {
      close(out_pipe.first);
      close(err_pipe->first);
      return p.status().WithContext("starting worker rank " + std::to_string(spec.rank));
    }
    w->process = std::move(p).value();
    Worker* raw = w.get();
    int out_fd = out_pipe.first, err_fd = err_pipe->first;
    w->out_thread = std::thread([raw, out_fd] { raw->Pump(out_fd, stdout, false); });
    w->err_thread = std::thread([raw, err_fd] { raw->Pump(err_fd, stderr, true); });
    group->workers_.push_back(std::move(w));
  }
  return group;
}

WorkerGroup::~WorkerGroup() { Stop(Duration::zero()); }

WorkerGroup::Outcome WorkerGroup::Poll(WorkerFailure* failure) {
  bool all_done = true;
  for (auto& w : workers_) {
    if (!w->status) w->status = w->process->Poll();
    if (!w->status) {
      all_done = false;
      continue;
    }
    if (!w->status->success()) {
      w->AwaitStderr(std::chrono::milliseconds(500));
      failure->local_rank = w->local_rank;
      failure->rank = w->rank;
      failure->status = *w->status;
      failure->stderr_tail = w->Tail();
      return Outcome::kFailed;
    }
  }
  return all_done ? Outcome::kSucceeded : Outcome::kRunning;
}

void WorkerGroup::Stop(Duration grace) {
  for (auto& w : workers_) {
    if (!w->status) (void)w->process->SignalGroup(SIGTERM);
  }
  const TimePoint deadline = Clock::Real()->Now() + grace;
  for (auto& w : workers_) {
    if (w->status) continue;
    Duration left = std::max(Duration::zero(), deadline - Clock::Real()->Now());
    w->status = w->process->WaitFor(left);
  }
  for (auto& w : workers_) {
    if (!w->status) w->status = w->process->Terminate(Duration::zero());
    (void)w->process->SignalGroup(SIGKILL);  // stragglers of the group (e.g. loader workers)
  }
  for (auto& w : workers_) w->JoinThreads();
}

std::vector<WorkerStats> WorkerGroup::Stats() const {
  std::vector<WorkerStats> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const int64_t page = sysconf(_SC_PAGESIZE);
  for (const auto& w : workers_) {
    WorkerStats s{.rank = w->rank, .pid = w->process->pid()};
    std::ifstream stat("/proc/" + std::to_string(s.pid) + "/stat");
    std::string line;
    if (!w->status && std::getline(stat, line)) {
      // Fields after the ")" that ends the command name: state is field 3; utime 14, stime 15,
      // rss 24 (in pages).
      std::istringstream rest(line.substr(line.rfind(')') + 2));
      std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
      if (f.size() > 21) {
        s.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
        s.rss_bytes = std::stoll(f[21]) * page;
      }
    }
    out.push_back(s);
  }
  return out;
}

std::vector<int> WorkerGroup::pids() const {
  std::vector<int> out;
  for (const auto& w : workers_) out.push_back(w->process->pid());
  return out;
}

}  // namespace keel::agent
