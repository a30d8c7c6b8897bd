// MasterService: gRPC handlers over JobController, the ticker and the Watch push streams.
#include "keel/master/master_service.h"

#include <set>

#include "keel/common/logging.h"
#include "keel/data/wire.h"
#include "keel/rpc/status_convert.h"

namespace keel::master {
namespace {

// How often time-based transitions (last call, heartbeat timeouts) are checked.
constexpr auto kTickInterval = std::chrono::milliseconds(20);
// How often an idle Watch stream checks whether its client went away.
constexpr auto kWatchPoll = std::chrono::milliseconds(200);

rpc::JobState StateToProto(JobState s) {
  switch (s) {
    case JobState::kRendezvous:
      return rpc::JOB_STATE_RENDEZVOUS;
    case JobState::kRunning:
      return rpc::JOB_STATE_RUNNING;
    case JobState::kSucceeded:
      return rpc::JOB_STATE_SUCCEEDED;
    case JobState::kFailed:
      return rpc::JOB_STATE_FAILED;
  }
  return rpc::JOB_STATE_UNSPECIFIED;
}

#define KEEL_AUTHORIZE(context)                                      \
  do {                                                               \
    if (grpc::Status s = auth_.Check(*(context)); !s.ok()) return s; \
  } while (false)

}  // namespace

void ToProto(const Snapshot& s, rpc::JobSnapshot* out) {
  out->set_version(s.version);
  out->set_state(StateToProto(s.state));
  out->set_round(s.round);
  for (const Member& m : s.world) {
    rpc::WorldMember* w = out->add_members();
    w->set_node_id(m.node_id);
    w->set_group_rank(m.group_rank);
    w->set_nproc(m.nproc);
    w->set_first_rank(m.first_rank);
    w->set_address(m.address);
  }
  out->set_world_size(s.world_size);
  out->set_master_addr(s.master_addr);
  out->set_master_port(s.master_port);
  out->set_restart_count(s.restart_count);
  out->set_max_restarts(s.max_restarts);
  out->set_job_name(s.job_name);
  out->set_message(s.message);
}

MasterService::MasterService(JobOptions options, const std::string& token, Clock* clock)
    : auth_(token), clock_(clock), job_(std::move(options), clock) {
  ticker_ = std::thread([this] { TickerLoop(); });
}

MasterService::~MasterService() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  changed_.SignalAll();
  ticker_wake_.SignalAll();
  ticker_.join();
}

void MasterService::TickerLoop() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    ticker_wake_.WaitFor(&mu_, kTickInterval);
    const int64_t before = job_.snapshot().version;
    job_.Tick();
    NotifyIfChanged(before);
    SyncDataRound();
    data_.Expire(clock_->Now(), job_.options().shard_timeout);
  }
}

void MasterService::NotifyIfChanged(int64_t version_before) {
  if (job_.snapshot().version != version_before) changed_.SignalAll();
}

std::shared_ptr<const rpc::JobSnapshot> MasterService::CurrentSnapshot() {
  if (snapshot_cache_ == nullptr || snapshot_cache_->version() != job_.snapshot().version) {
    auto fresh = std::make_shared<rpc::JobSnapshot>();
    ToProto(job_.snapshot(), fresh.get());
    snapshot_cache_ = std::move(fresh);
  }
  return snapshot_cache_;
}

grpc::Status MasterService::Join(grpc::ServerContext* context, const rpc::JoinRequest* request,
                                 rpc::JoinResponse* response) {
  KEEL_AUTHORIZE(context);
  JoinInfo info{.node_id = request->node_id(),
                .hostname = request->hostname(),
                .address = request->address(),
                .nproc = request->nproc(),
                .free_port = request->free_port()};
  MutexLock lock(&mu_);
  const int64_t before = job_.snapshot().version;
  StatusOr<int64_t> round = job_.Join(info);
  NotifyIfChanged(before);
  if (!round.ok()) return rpc::ToGrpc(round.status());
  response->set_round(*round);
  return grpc::Status::OK;
}

grpc::Status MasterService::Watch(grpc::ServerContext* context, const rpc::WatchRequest* request,
                                  grpc::ServerWriter<rpc::JobSnapshot>* writer) {
  KEEL_AUTHORIZE(context);
  const std::string& node_id = request->node_id();
  int64_t sent = 0;
  {
    MutexLock lock(&mu_);
    if (!job_.known(node_id)) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "unknown node '" + node_id + "': join the job first");
    }
    ++open_watches_;
  }
  bool client_gone = false;
  while (true) {
    std::shared_ptr<const rpc::JobSnapshot> out;
    bool finished;
    {
      MutexLock lock(&mu_);
      while (job_.snapshot().version == sent && !stopping_ && !context->IsCancelled()) {
        changed_.WaitFor(&mu_, kWatchPoll);
      }
      if (stopping_) break;
      if (context->IsCancelled()) {
        client_gone = true;
        break;
      }
      out = CurrentSnapshot();
      sent = out->version();
      finished = job_.finished();
    }
    if (!writer->Write(*out)) {
      client_gone = true;
      break;
    }
    if (finished) break;
  }
  MutexLock lock(&mu_);
  --open_watches_;
  const int64_t before = job_.snapshot().version;
  if (client_gone && !job_.finished()) {
    job_.Leave(node_id, "its watch stream closed (agent gone)");
  }
  NotifyIfChanged(before);
  watchers_left_.SignalAll();
  return grpc::Status::OK;
}

grpc::Status MasterService::Heartbeat(grpc::ServerContext* context,
                                      const rpc::HeartbeatRequest* request,
                                      rpc::HeartbeatResponse* response) {
  KEEL_AUTHORIZE(context);
  std::vector<WorkerUsage> usage;
  for (const rpc::WorkerUsage& w : request->workers()) {
    usage.push_back({w.rank(), w.pid(), w.cpu_seconds(), w.rss_bytes()});
  }
  MutexLock lock(&mu_);
  response->set_known(job_.Heartbeat(request->node_id(), std::move(usage)));
  if (response->known()) job_.ReportStep(request->global_step());
  return grpc::Status::OK;
}

grpc::Status MasterService::ReportFailure(grpc::ServerContext* context,
                                          const rpc::FailureReport* request, rpc::Ack*) {
  KEEL_AUTHORIZE(context);
  FailureInfo f{.rank = request->rank(),
                .local_rank = request->local_rank(),
                .exit_code = request->exit_code(),
                .signal = request->signal(),
                .reason = request->reason(),
                .stderr_tail = request->stderr_tail()};
  MutexLock lock(&mu_);
  const int64_t before = job_.snapshot().version;
  Status s = job_.ReportFailure(request->node_id(), request->round(), f);
  NotifyIfChanged(before);
  return rpc::ToGrpc(s);
}

grpc::Status MasterService::ReportSuccess(grpc::ServerContext* context,
                                          const rpc::SuccessReport* request, rpc::Ack*) {
  KEEL_AUTHORIZE(context);
  MutexLock lock(&mu_);
  const int64_t before = job_.snapshot().version;
  Status s = job_.ReportSuccess(request->node_id(), request->round());
  NotifyIfChanged(before);
  return rpc::ToGrpc(s);
}

grpc::Status MasterService::ReportStep(grpc::ServerContext* context, const rpc::StepReport* request,
                                       rpc::Ack*) {
  KEEL_AUTHORIZE(context);
  MutexLock lock(&mu_);
  job_.ReportStep(request->step());
  return grpc::Status::OK;
}

grpc::Status MasterService::ReportCheckpoint(grpc::ServerContext* context,
                                             const rpc::CheckpointReport* request,
                                             rpc::CheckpointReply* response) {
  KEEL_AUTHORIZE(context);
  std::vector<MemoryCopy> memory;
  memory.reserve(request->memory_size());
  for (const rpc::MemoryCopy& c : request->memory()) {
    memory.push_back({c.rank(), c.world_size(), c.step()});
  }
  MutexLock lock(&mu_);
  if (!job_.known(request->node_id())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown node '" + request->node_id() + "': join the job first");
  }
  ckpt_.Update(request->node_id(), std::move(memory),
               {.saves = request->saves(),
                .dropped_steps = request->dropped_steps(),
                .persisted_files = request->persisted_files(),
                .persisted_bytes = request->persisted_bytes()});
  std::set<std::string> nodes;
  for (const NodeView& n : job_.Nodes()) nodes.insert(n.node_id);
  ckpt_.Retain(nodes);
  if (request->has_persisted()) {
    if (request->dir().empty() || request->dir().front() != '/') {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "a persisted checkpoint file needs an absolute dir, got '" + request->dir() + "'");
    }
    const rpc::MemoryCopy& p = request->persisted();
    const bool commit = ckpt_.Persisted(request->dir(), {p.rank(), p.world_size(), p.step()});
    response->set_commit(commit);
    if (commit) job_.RecordEvent("checkpoint step " + std::to_string(p.step()) + " committed");
  }
  return grpc::Status::OK;
}

grpc::Status MasterService::GetRestoreStep(grpc::ServerContext* context,
                                           const rpc::RestoreRequest* request,
                                           rpc::RestoreReply* response) {
  KEEL_AUTHORIZE(context);
  MutexLock lock(&mu_);
  const Snapshot& snap = job_.snapshot();
  if (snap.state != JobState::kRunning || request->round() != snap.round) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "round " + std::to_string(request->round()) +
                            " is not the running round (" + std::to_string(snap.round) + ")");
  }
  response->set_memory_step(ckpt_.RestoreStep(snap.world, snap.world_size));
  return grpc::Status::OK;
}

void MasterService::SyncDataRound() {
  if (job_.snapshot().round != data_round_) {
    data_.TakeBackAll();
    data_round_ = job_.snapshot().round;
  }
}

grpc::Status MasterService::RegisterDataset(grpc::ServerContext* context,
                                            const rpc::DatasetSpec* request, rpc::Ack*) {
  KEEL_AUTHORIZE(context);
  MutexLock lock(&mu_);
  return rpc::ToGrpc(data_.Register(data::FromProto(*request)));
}

grpc::Status MasterService::AppendData(grpc::ServerContext* context,
                                       const rpc::AppendDataRequest* request,
                                       rpc::AppendDataReply* response) {
  KEEL_AUTHORIZE(context);
  MutexLock lock(&mu_);
  StatusOr<uint64_t> added = data_.Append(request->dataset(), request->partition(),
                                          request->begin(), request->end(), request->last());
  if (!added.ok()) return rpc::ToGrpc(added.status());
  response->set_added(*added);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* MasterService::GetShard(grpc::CallbackServerContext* context,
                                                  const rpc::ShardRequest* request,
                                                  rpc::ShardGrant* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish([&]() -> grpc::Status {
    KEEL_AUTHORIZE(context);
    MutexLock lock(&mu_);
    SyncDataRound();
    for (const rpc::ShardProgress& r : request->reports()) {  // reported with the request
      const std::string& dataset = r.dataset().empty() ? request->dataset() : r.dataset();
      if (Status s = data_.Report(dataset, r.grant_id(), r.consumed()); !s.ok()) {
        return rpc::ToGrpc(s);
      }
    }
    bool finished = false;
    StatusOr<std::optional<data::Grant>> g =
        data_.Next(request->dataset(), request->worker(), clock_->Now(), &finished);
    if (!g.ok()) return rpc::ToGrpc(g.status());
    response->set_finished(finished);
    if (g->has_value()) data::ToProto(**g, response);
    return grpc::Status::OK;
  }());
  return reactor;
}

grpc::ServerUnaryReactor* MasterService::ReportShard(grpc::CallbackServerContext* context,
                                                     const rpc::ShardProgress* request, rpc::Ack*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish([&]() -> grpc::Status {
    KEEL_AUTHORIZE(context);
    MutexLock lock(&mu_);
    return rpc::ToGrpc(data_.Report(request->dataset(), request->grant_id(), request->consumed()));
  }());
  return reactor;
}

grpc::Status MasterService::SaveDataPosition(grpc::ServerContext* context,
                                             const rpc::DataPositionRequest* request,
                                             rpc::DataPosition* response) {
  KEEL_AUTHORIZE(context);
  std::map<uint64_t, uint64_t> consumed;
  for (const rpc::GrantConsumed& c : request->consumed()) consumed[c.grant_id()] = c.consumed();
  std::vector<data::ShardRef> unconsumed;
  unconsumed.reserve(static_cast<size_t>(request->unconsumed_size()));
  for (const rpc::PendingShard& s : request->unconsumed()) unconsumed.push_back(data::FromProto(s));
  MutexLock lock(&mu_);
  StatusOr<std::optional<data::Position>> p =
      data_.AddConsumption(request->dataset(), request->checkpoint(), request->rank(),
                           request->world_size(), consumed, unconsumed);
  if (!p.ok()) return rpc::ToGrpc(p.status());
  if (p->has_value()) {
    data_changed_.SignalAll();
    data::ToProto(**p, response);
    return grpc::Status::OK;
  }
  // Wait for the other ranks (they save the same step), at most until the call's deadline.
  while (!stopping_ && !context->IsCancelled()) {
    std::optional<data::Position> ready =
        data_.PositionFor(request->dataset(), request->checkpoint());
    if (ready) {
      data::ToProto(*ready, response);
      return grpc::Status::OK;
    }
    data_changed_.WaitFor(&mu_, std::chrono::milliseconds(100));
  }
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      "gave up waiting for the other ranks' data positions");
}

grpc::Status MasterService::RestoreDataPosition(grpc::ServerContext* context,
                                                const rpc::RestoreDataRequest* request, rpc::Ack*) {
  KEEL_AUTHORIZE(context);
  const data::Position p = data::FromProto(request->position());
  MutexLock lock(&mu_);
  SyncDataRound();
  return rpc::ToGrpc(data_.Restore(request->dataset(), request->round(), p));
}

grpc::Status MasterService::GetJob(grpc::ServerContext* context, const rpc::GetJobRequest*,
                                   rpc::JobStatus* response) {
  KEEL_AUTHORIZE(context);
  *response = JobStatusNow();
  return grpc::Status::OK;
}

rpc::JobStatus MasterService::JobStatusNow() {
  rpc::JobStatus out;
  MutexLock lock(&mu_);
  ToProto(job_.snapshot(), out.mutable_snapshot());
  for (const NodeView& v : job_.Nodes()) {
    rpc::NodeStatus* n = out.add_nodes();
    n->set_node_id(v.node_id);
    n->set_hostname(v.hostname);
    n->set_address(v.address);
    n->set_nproc(v.nproc);
    n->set_state(v.state);
    n->set_group_rank(v.group_rank);
    n->set_seconds_since_heartbeat(v.seconds_since_heartbeat);
    for (const WorkerUsage& w : v.workers) {
      rpc::WorkerUsage* u = n->add_workers();
      u->set_rank(w.rank);
      u->set_pid(w.pid);
      u->set_cpu_seconds(w.cpu_seconds);
      u->set_rss_bytes(w.rss_bytes);
    }
  }
  out.set_last_failure(job_.last_failure());
  for (const Event& e : job_.events()) {
    rpc::JobEvent* ev = out.add_events();
    ev->set_wall_time_unix_nanos(e.wall_time_unix_nanos);
    ev->set_text(e.text);
  }
  out.set_global_step(job_.global_step());
  out.set_goodput(job_.Goodput());
  const CheckpointCounters c = ckpt_.Totals();
  rpc::CheckpointStatus* ck = out.mutable_checkpoint();
  ck->set_saves(c.saves);
  ck->set_dropped_steps(c.dropped_steps);
  ck->set_persisted_files(c.persisted_files);
  ck->set_persisted_bytes(c.persisted_bytes);
  ck->set_committed_step(ckpt_.committed_step());
  ck->set_committed_dir(ckpt_.committed_dir());
  return out;
}

void MasterService::Abort(const std::string& reason) {
  MutexLock lock(&mu_);
  const int64_t before = job_.snapshot().version;
  job_.Abort(reason);
  NotifyIfChanged(before);
}

Snapshot MasterService::WaitForEnd() {
  MutexLock lock(&mu_);
  while (!job_.finished()) changed_.Wait(&mu_);
  return job_.snapshot();
}

void MasterService::WaitForWatchersToLeave(Duration timeout) {
  const TimePoint deadline = Clock::Real()->Now() + timeout;
  MutexLock lock(&mu_);
  while (open_watches_ > 0) {
    Duration left = deadline - Clock::Real()->Now();
    if (left <= Duration::zero()) return;
    watchers_left_.WaitFor(&mu_, std::min<Duration>(left, std::chrono::milliseconds(50)));
  }
}

}  // namespace keel::master
