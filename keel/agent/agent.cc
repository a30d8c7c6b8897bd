// Agent: join, watch, run the round's workers, report, heartbeat (see agent.h).
#include "keel/agent/agent.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include "keel/agent/ckpt_host.h"
#include "keel/agent/worker_group.h"
#include "keel/common/build_info.h"
#include "keel/common/logging.h"
#include "keel/common/mutex.h"
#include "keel/rpc/channel.h"
#include "keel/rpc/keel.grpc.pb.h"
#include "keel/rpc/status_convert.h"

namespace keel::agent {
namespace {

constexpr auto kLoopInterval = std::chrono::milliseconds(20);
constexpr auto kCallTimeout = std::chrono::seconds(10);
constexpr auto kStatsInterval = std::chrono::seconds(1);

std::string Hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

// Splits "host:port" / "[v6]:port" into host and port.
StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& target) {
  size_t colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == target.size()) {
    return InvalidArgumentError("--master '" + target + "' is not HOST:PORT");
  }
  std::string host = target.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, target.substr(colon + 1));
}

// The local address of the route towards `host` (no packet is sent: UDP connect only).
StatusOr<std::string> LocalAddressFor(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return UnavailableError("cannot resolve master host '" + host + "': " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, &freeaddrinfo);
  int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket");
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  bool ok = connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0;
  int err = errno;
  close(fd);
  if (!ok) return ErrnoError(err, "finding the local address towards '" + host + "'");
  char text[INET6_ADDRSTRLEN] = {0};
  const void* addr =
      local.ss_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
  inet_ntop(local.ss_family, addr, text, sizeof(text));
  return std::string(text);
}

// A TCP port that is free right now on every interface (for MASTER_PORT).
StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(addr);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  int err = errno;
  close(fd);
  if (!ok) return ErrnoError(err, "finding a free port");
  return static_cast<int>(ntohs(addr.sin_port));
}

// Binds an abstract-namespace Unix datagram socket (no file to clean up) named `name`.
StatusOr<int> BindAgentSocket(const std::string& name) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "agent socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::min(name.size(), sizeof(addr.sun_path) - 2);
  std::memcpy(addr.sun_path + 1, name.data(), len);  // sun_path[0] == 0: abstract
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + len)) != 0) {
    int err = errno;
    close(fd);
    return ErrnoError(err, "binding the agent socket @" + name);
  }
  return fd;
}

bool Retryable(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kDeadlineExceeded;
}

class AgentRun {
 public:
  AgentRun(const AgentOptions& options, std::unique_ptr<rpc::Channel> channel, std::string address)
      : o_(options),
        channel_(std::move(channel)),
        stub_(rpc::Master::NewStub(channel_->grpc_channel())),
        address_(std::move(address)),
        hostname_(Hostname()) {
    std::random_device rd;
    node_id_ = fmt::format("{}-{}-{:04x}", hostname_, getpid(), rd() & 0xffff);
    last_contact_ = Clock::Real()->Now();
  }

  int Run();

 private:
  Status Join();
  void WatchLoop();
  void HeartbeatLoop();
  void Contact() KEEL_REQUIRES(mu_) { last_contact_ = Clock::Real()->Now(); }
  bool MasterSilentTooLong() KEEL_REQUIRES(mu_) {
    return Clock::Real()->Now() - last_contact_ > o_.master_timeout;
  }
  void StartWorkers(const rpc::JobSnapshot& snap, const rpc::WorldMember& me);
  // Receives "step <rank> <step>" datagrams from workers (keel.report_step) and answers
  // keel.ckpt's "ckpt-..." requests.
  void SocketLoop(int fd);
  CheckpointHost::Master CheckpointMaster();
  void StopWorkers();
  void Report(const rpc::JobSnapshot& snap, WorkerGroup::Outcome outcome,
              const WorkerFailure& failure);
  template <typename Call>
  Status CallWithRetry(const char* what, Call call);

  const AgentOptions& o_;
  std::unique_ptr<rpc::Channel> channel_;
  std::unique_ptr<rpc::Master::Stub> stub_;
  std::string address_, hostname_, node_id_;
  int64_t joined_round_ = 0;
  std::unique_ptr<WorkerGroup> workers_;  // main thread only

  Mutex mu_;
  CondVar cv_;
  std::optional<rpc::JobSnapshot> latest_ KEEL_GUARDED_BY(mu_);
  bool need_rejoin_ KEEL_GUARDED_BY(mu_) = false;
  bool master_lost_ KEEL_GUARDED_BY(mu_) = false;
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;
  TimePoint last_contact_ KEEL_GUARDED_BY(mu_);
  grpc::ClientContext* watch_context_ KEEL_GUARDED_BY(mu_) = nullptr;
  std::vector<WorkerStats> stats_ KEEL_GUARDED_BY(mu_);
  int64_t global_step_ KEEL_GUARDED_BY(mu_) = 0;
  int64_t worker_round_ KEEL_GUARDED_BY(mu_) = -1;  // round of the running workers
  std::string socket_name_;  // set before workers start; empty if the socket is unavailable
  std::unique_ptr<CheckpointHost> ckpt_;  // keel.ckpt's memory tier; null if unavailable
};

template <typename Call>
Status AgentRun::CallWithRetry(const char* what, Call call) {
  Duration backoff = std::chrono::milliseconds(100);
  const TimePoint give_up = Clock::Real()->Now() + o_.master_timeout;
  while (true) {
    auto context = channel_->NewContext(kCallTimeout);
    Status s = rpc::FromGrpc(call(context.get()));
    if (s.ok()) {
      MutexLock lock(&mu_);
      Contact();
      return s;
    }
    if (!Retryable(s.code()) || Clock::Real()->Now() + backoff > give_up) {
      return s.WithContext(std::string(what) + " at master " + o_.master);
    }
    KEEL_LOG(Warn, "{} failed ({}); retrying in {} ms", what, s.ToString(),
             std::chrono::duration_cast<std::chrono::milliseconds>(backoff).count());
    std::this_thread::sleep_for(backoff);
    backoff = std::min<Duration>(backoff * 2, std::chrono::seconds(2));
  }
}

Status AgentRun::Join() {
  KEEL_ASSIGN_OR_RETURN(int port, FreePort());
  rpc::JoinRequest req;
  req.set_node_id(node_id_);
  req.set_address(address_);
  req.set_nproc(o_.nproc);
  req.set_free_port(port);
  req.set_hostname(hostname_);
  rpc::JoinResponse resp;
  KEEL_RETURN_IF_ERROR(CallWithRetry(
      "joining the job", [&](grpc::ClientContext* c) { return stub_->Join(c, req, &resp); }));
  joined_round_ = resp.round();
  KEEL_LOG(Debug, "node {} joined round {}", node_id_, joined_round_);
  return OkStatus();
}

void AgentRun::WatchLoop() {
  Duration backoff = std::chrono::milliseconds(100);
  while (true) {
    auto context = channel_->NewContext(std::chrono::hours(24 * 365));
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      watch_context_ = context.get();
    }
    rpc::WatchRequest req;
    req.set_node_id(node_id_);
    auto reader = stub_->Watch(context.get(), req);
    rpc::JobSnapshot snap;
    while (reader->Read(&snap)) {
      MutexLock lock(&mu_);
      Contact();
      latest_ = snap;
      backoff = std::chrono::milliseconds(100);
      cv_.SignalAll();
    }
    Status s = rpc::FromGrpc(reader->Finish());
    MutexLock lock(&mu_);
    watch_context_ = nullptr;
    if (stopping_) return;
    const bool finished = latest_ && (latest_->state() == rpc::JOB_STATE_SUCCEEDED ||
                                      latest_->state() == rpc::JOB_STATE_FAILED);
    if (finished) return;
    if (s.code() == StatusCode::kNotFound) {
      need_rejoin_ = true;  // the master dropped us: re-join, then watch again
      cv_.SignalAll();
      while (need_rejoin_ && !stopping_) cv_.Wait(&mu_);
      continue;
    }
    if (!s.ok() && !Retryable(s.code())) {
      KEEL_LOG(Error, "watching the job failed: {}", s.ToString());
    }
    if (MasterSilentTooLong()) {
      master_lost_ = true;
      cv_.SignalAll();
      return;
    }
    cv_.WaitFor(&mu_, backoff);
    backoff = std::min<Duration>(backoff * 2, std::chrono::seconds(2));
  }
}

void AgentRun::HeartbeatLoop() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    cv_.WaitFor(&mu_, o_.heartbeat_interval);
    if (stopping_) return;
    rpc::HeartbeatRequest req;
    req.set_node_id(node_id_);
    req.set_global_step(global_step_);
    for (const WorkerStats& w : stats_) {
      rpc::WorkerUsage* u = req.add_workers();
      u->set_rank(w.rank);
      u->set_pid(w.pid);
      u->set_cpu_seconds(w.cpu_seconds);
      u->set_rss_bytes(w.rss_bytes);
    }
    mu_.Unlock();
    rpc::HeartbeatResponse resp;
    auto context = channel_->NewContext(kCallTimeout);
    grpc::Status s = stub_->Heartbeat(context.get(), req, &resp);
    mu_.Lock();
    if (s.ok()) {
      Contact();
      if (!resp.known()) {
        need_rejoin_ = true;
        cv_.SignalAll();
      }
    } else if (MasterSilentTooLong()) {
      master_lost_ = true;
      cv_.SignalAll();
    }
  }
}

void AgentRun::StartWorkers(const rpc::JobSnapshot& snap, const rpc::WorldMember& me) {
  std::vector<WorkerSpec> specs;
  const std::vector<std::string> base = CurrentEnvironment();
  for (int local = 0; local < me.nproc(); ++local) {
    WorkerSpec spec{.local_rank = local, .rank = me.first_rank() + local, .env = base};
    auto set = [&spec](const char* k, const std::string& v) { SetEnv(&spec.env, k, v); };
    auto set_default = [&spec](const char* k, const char* v) {
      if (!GetEnv(spec.env, k)) SetEnv(&spec.env, k, v);
    };
    set("RANK", std::to_string(spec.rank));
    set("LOCAL_RANK", std::to_string(local));
    set("WORLD_SIZE", std::to_string(snap.world_size()));
    set("LOCAL_WORLD_SIZE", std::to_string(me.nproc()));
    set("GROUP_RANK", std::to_string(me.group_rank()));
    set("GROUP_WORLD_SIZE", std::to_string(snap.members_size()));
    set("ROLE_NAME", "default");
    set("ROLE_RANK", std::to_string(spec.rank));
    set("ROLE_WORLD_SIZE", std::to_string(snap.world_size()));
    set("MASTER_ADDR", snap.master_addr());
    set("MASTER_PORT", std::to_string(snap.master_port()));
    set("TORCHELASTIC_RESTART_COUNT", std::to_string(snap.restart_count()));
    set("TORCHELASTIC_MAX_RESTARTS", std::to_string(snap.max_restarts()));
    set("TORCHELASTIC_RUN_ID", snap.job_name());
    set("KEEL_MASTER_ADDR", o_.master);
    set("KEEL_TOKEN", o_.token);
    // The master's TLS settings, for clients in the workers (keel.data).
    const std::pair<const char*, const std::string*> tls[] = {{"KEEL_TLS_CA", &o_.tls.ca_file},
                                                              {"KEEL_TLS_CERT", &o_.tls.cert_file},
                                                              {"KEEL_TLS_KEY", &o_.tls.key_file}};
    for (const auto& [name, path] : tls) {
      if (!path->empty()) set(name, std::filesystem::absolute(*path).string());
    }
    set("KEEL_JOB", snap.job_name());
    set("KEEL_ROUND", std::to_string(snap.round()));
    set("KEEL_NODE_ID", node_id_);
    if (!socket_name_.empty()) set("KEEL_AGENT_SOCKET", "@" + socket_name_);
    if (ckpt_ && !socket_name_.empty()) set("KEEL_SHM_DIR", ckpt_->shm_dir());
    if (o_.keep_last >= 0) set("KEEL_CKPT_KEEP_LAST", std::to_string(o_.keep_last));
    // `import keel` from the build tree, when keel runs from there (installed keel is on the
    // interpreter's path already).
    const std::string package_dir = build_info::kPythonPackageDir;
    if (access((package_dir + "/keel/__init__.py").c_str(), R_OK) == 0) {
      std::optional<std::string> pp = GetEnv(spec.env, "PYTHONPATH");
      set("PYTHONPATH", pp && !pp->empty() ? package_dir + ":" + *pp : package_dir);
    }
    set_default("OMP_NUM_THREADS", "1");
    set_default("PYTHONUNBUFFERED", "1");  // worker output streams live through the pipes
    specs.push_back(std::move(spec));
  }
  KEEL_LOG(Info, "round {}: starting {} worker(s), ranks {}-{} of {} (group rank {}, master {}:{})",
           snap.round(), me.nproc(), me.first_rank(), me.first_rank() + me.nproc() - 1,
           snap.world_size(), me.group_rank(), snap.master_addr(), snap.master_port());
  StatusOr<std::unique_ptr<WorkerGroup>> group =
      WorkerGroup::Start(o_.command, specs, o_.log_dir, snap.round());
  if (!group.ok()) {
    // Reported like a worker failure: it counts against --max-restarts and ends up in the
    // job's summary, instead of leaving the job waiting for this node.
    KEEL_LOG(Error, "{}", group.status().ToString());
    WorkerFailure f{.rank = me.first_rank(),
                    .status = ExitStatus{.exited = true, .code = 127},
                    .stderr_tail = group.status().message()};
    Report(snap, WorkerGroup::Outcome::kFailed, f);
    return;
  }
  workers_ = std::move(group).value();
  MutexLock lock(&mu_);
  worker_round_ = snap.round();
}

CheckpointHost::Master AgentRun::CheckpointMaster() {
  CheckpointHost::Master m;
  m.report = [this](const rpc::CheckpointReport& r) -> StatusOr<bool> {
    rpc::CheckpointReport req = r;
    req.set_node_id(node_id_);
    rpc::CheckpointReply reply;
    KEEL_RETURN_IF_ERROR(CallWithRetry("reporting a checkpoint", [&](grpc::ClientContext* c) {
      return stub_->ReportCheckpoint(c, req, &reply);
    }));
    return reply.commit();
  };
  m.restore_step = [this]() -> StatusOr<int64_t> {
    rpc::RestoreRequest req;
    req.set_node_id(node_id_);
    {
      MutexLock lock(&mu_);
      req.set_round(worker_round_);
    }
    rpc::RestoreReply reply;
    KEEL_RETURN_IF_ERROR(CallWithRetry("asking for the restore step", [&](grpc::ClientContext* c) {
      return stub_->GetRestoreStep(c, req, &reply);
    }));
    return reply.memory_step();
  };
  return m;
}

void AgentRun::SocketLoop(int fd) {
  char buf[4096];
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stopping_) break;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    sockaddr_un from{};
    socklen_t from_len = sizeof(from);
    ssize_t n =
        recvfrom(fd, buf, sizeof(buf) - 1, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n <= 0) continue;
    buf[n] = 0;
    if (std::strncmp(buf, "ckpt-", 5) == 0) {
      const std::string reply =
          ckpt_ ? ckpt_->HandleRequest(buf) : "error checkpoint memory is unavailable";
      if (reply.rfind("error", 0) == 0) KEEL_LOG(Warn, "keel.ckpt: {}", reply);
      if (from_len > sizeof(sa_family_t)) {  // the worker bound an address to hear the reply
        sendto(fd, reply.data(), reply.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
               from_len);
      }
      continue;
    }
    int rank = 0;
    long long step = 0;
    if (std::sscanf(buf, "step %d %lld", &rank, &step) != 2 || step < 0) {
      KEEL_LOG(Debug, "ignoring a malformed message on the agent socket");
      continue;
    }
    MutexLock lock(&mu_);
    global_step_ = std::max<int64_t>(global_step_, step);
  }
  close(fd);
}

void AgentRun::StopWorkers() {
  if (!workers_) return;
  workers_->Stop(o_.stop_grace);
  workers_.reset();
  if (ckpt_) {
    // Breakpoint save: persist the newest in-memory step, without delaying a restart; and
    // tell the master what memory holds before this node rejoins (its restore decision).
    ckpt_->FlushAsync();
    ckpt_->ReportMemory();
  }
  MutexLock lock(&mu_);
  stats_.clear();
  worker_round_ = -1;
}

void AgentRun::Report(const rpc::JobSnapshot& snap, WorkerGroup::Outcome outcome,
                      const WorkerFailure& f) {
  Status s;
  if (outcome == WorkerGroup::Outcome::kFailed) {
    rpc::FailureReport req;
    req.set_node_id(node_id_);
    req.set_round(snap.round());
    req.set_rank(f.rank);
    req.set_local_rank(f.local_rank);
    req.set_exit_code(f.status.exited ? f.status.code : 0);
    req.set_signal(f.status.exited ? 0 : f.status.signal);
    req.set_reason(f.status.ToString());
    req.set_stderr_tail(f.stderr_tail);
    KEEL_LOG(Warn, "round {}: worker rank {} {}", snap.round(), f.rank, f.status.ToString());
    rpc::Ack ack;
    s = CallWithRetry("reporting a worker failure",
                      [&](grpc::ClientContext* c) { return stub_->ReportFailure(c, req, &ack); });
  } else {
    rpc::SuccessReport req;
    req.set_node_id(node_id_);
    req.set_round(snap.round());
    rpc::Ack ack;
    s = CallWithRetry("reporting success",
                      [&](grpc::ClientContext* c) { return stub_->ReportSuccess(c, req, &ack); });
  }
  if (!s.ok()) KEEL_LOG(Error, "{}", s.ToString());
}

int AgentRun::Run() {
  if (Status s = Join(); !s.ok()) {
    KEEL_LOG(Error, "keel agent: {}", s.ToString());
    return 1;
  }
  std::thread watcher([this] { WatchLoop(); });
  std::thread heartbeat([this] { HeartbeatLoop(); });
  if (auto host = CheckpointHost::Create(node_id_, o_.nproc, CheckpointMaster()); host.ok()) {
    ckpt_ = std::move(host).value();
  } else {
    KEEL_LOG(Warn, "keel.ckpt will save to disk only: {}", host.status().ToString());
  }
  std::thread socket_reader;
  if (StatusOr<int> fd = BindAgentSocket("keel-agent-" + node_id_); fd.ok()) {
    socket_name_ = "keel-agent-" + node_id_;
    socket_reader = std::thread([this, sock = *fd] { SocketLoop(sock); });
  } else {
    KEEL_LOG(Warn, "keel.report_step will not reach the master: {}", fd.status().ToString());
  }
  int64_t running_round = -1;
  bool reported = false;
  TimePoint next_stats = Clock::Real()->Now();
  int exit_code = 1;
  while (true) {
    std::optional<rpc::JobSnapshot> snap;
    bool rejoin, lost;
    {
      MutexLock lock(&mu_);
      cv_.WaitFor(&mu_, kLoopInterval);
      snap = latest_;
      rejoin = need_rejoin_;
      lost = master_lost_;
    }
    if (o_.stop_signal != nullptr && o_.stop_signal->load() != 0) {
      const int sig = o_.stop_signal->load();
      KEEL_LOG(Warn, "keel agent: {} received; stopping workers and leaving the job",
               SignalName(sig));
      exit_code = 128 + sig;
      break;
    }
    if (lost) {
      KEEL_LOG(Error, "keel agent: lost the master {} for more than {:.0f} s; stopping workers",
               o_.master, std::chrono::duration<double>(o_.master_timeout).count());
      break;
    }
    if (rejoin) {
      KEEL_LOG(Warn, "the master dropped this node; stopping workers and re-joining");
      StopWorkers();
      running_round = -1;
      Status s = Join();
      MutexLock lock(&mu_);
      need_rejoin_ = false;
      cv_.SignalAll();
      if (!s.ok()) {
        KEEL_LOG(Error, "keel agent: {}", s.ToString());
        break;
      }
      continue;
    }
    if (!snap) continue;
    if (snap->state() == rpc::JOB_STATE_SUCCEEDED || snap->state() == rpc::JOB_STATE_FAILED) {
      StopWorkers();
      const bool ok = snap->state() == rpc::JOB_STATE_SUCCEEDED;
      if (ok)
        KEEL_LOG(Info, "{}", snap->message());
      else
        KEEL_LOG(Error, "{}", snap->message());
      exit_code = ok ? 0 : 1;
      break;
    }
    if (snap->state() == rpc::JOB_STATE_RENDEZVOUS) {
      if (workers_) {
        KEEL_LOG(Info, "{}; stopping workers", snap->message());
        StopWorkers();
      }
      running_round = -1;
      if (joined_round_ < snap->round()) {
        if (Status s = Join(); !s.ok()) {
          KEEL_LOG(Error, "keel agent: {}", s.ToString());
          break;
        }
      }
      continue;
    }
    const rpc::WorldMember* me = nullptr;
    for (const rpc::WorldMember& m : snap->members()) {
      if (m.node_id() == node_id_) me = &m;
    }
    if (me == nullptr) {  // not admitted to this round: wait for the next
      StopWorkers();
      running_round = -1;
      continue;
    }
    if (running_round != snap->round()) {
      StopWorkers();
      running_round = snap->round();
      reported = false;
      StartWorkers(*snap, *me);
      if (!workers_) reported = true;  // could not start: already reported
      continue;
    }
    if (workers_ && !reported) {
      WorkerFailure failure;
      WorkerGroup::Outcome outcome = workers_->Poll(&failure);
      if (outcome != WorkerGroup::Outcome::kRunning) {
        if (outcome == WorkerGroup::Outcome::kFailed) StopWorkers();  // the rest cannot go on
        Report(*snap, outcome, failure);
        reported = true;
      }
      if (workers_ && Clock::Real()->Now() >= next_stats) {
        next_stats = Clock::Real()->Now() + kStatsInterval;
        std::vector<WorkerStats> stats = workers_->Stats();
        MutexLock lock(&mu_);
        stats_ = std::move(stats);
      }
    }
  }
  StopWorkers();
  if (ckpt_) ckpt_->Flush(std::chrono::seconds(60));  // breakpoint save before exiting
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    if (watch_context_ != nullptr) watch_context_->TryCancel();
    cv_.SignalAll();
  }
  watcher.join();
  heartbeat.join();
  if (socket_reader.joinable()) socket_reader.join();
  ckpt_.reset();  // removes the shared-memory directory
  return exit_code;
}

}  // namespace

Status AgentOptions::Validate() const {
  if (master.empty()) return InvalidArgumentError("--master HOST:PORT is required");
  KEEL_RETURN_IF_ERROR(SplitHostPort(master).status());
  if (nproc < 1) return InvalidArgumentError("--nproc-per-node must be >= 1");
  if (command.empty()) return InvalidArgumentError("no training command given");
  if (heartbeat_interval <= Duration::zero()) {
    return InvalidArgumentError("--heartbeat-interval must be > 0");
  }
  if (master_timeout <= Duration::zero())
    return InvalidArgumentError("--master-timeout must be > 0");
  if (stop_grace < Duration::zero()) return InvalidArgumentError("--stop-grace must be >= 0");
  return OkStatus();
}

int RunAgent(const AgentOptions& options) {
  if (Status s = options.Validate(); !s.ok()) {
    KEEL_LOG(Error, "keel agent: {}", s.message());
    return 2;
  }
  rpc::ChannelOptions co{.target = options.master, .token = options.token, .tls = options.tls};
  StatusOr<std::unique_ptr<rpc::Channel>> channel = rpc::Channel::Create(co);
  if (!channel.ok()) {
    KEEL_LOG(Error, "keel agent: {}", channel.status().message());
    return 2;
  }
  if (Status s = (*channel)->WaitForConnected(options.master_timeout); !s.ok()) {
    KEEL_LOG(Error, "keel agent: {}", s.message());
    return 1;
  }
  std::string address = options.address;
  if (address.empty()) {
    auto hp = SplitHostPort(options.master);
    StatusOr<std::string> local = LocalAddressFor(hp->first, hp->second);
    if (!local.ok()) {
      KEEL_LOG(Error, "keel agent: {} (pass --address)", local.status().message());
      return 1;
    }
    address = *local;
  }
  AgentRun run(options, std::move(channel).value(), address);
  return run.Run();
}

}  // namespace keel::agent
