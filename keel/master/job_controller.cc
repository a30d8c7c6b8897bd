// JobController: rendezvous rounds, failures and the job's end (Note [Rounds]).
#include "keel/master/job_controller.h"

#include <fmt/format.h>

#include <algorithm>

#include "keel/common/logging.h"

namespace keel::master {
namespace {

constexpr size_t kMaxEvents = 200;

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Status JobOptions::Validate() const {
  if (job_name.empty()) return InvalidArgumentError("--job must not be empty");
  if (min_nodes < 1) return InvalidArgumentError("--nnodes: minimum must be >= 1");
  if (max_nodes < min_nodes) {
    return InvalidArgumentError(
        fmt::format("--nnodes: maximum {} is below minimum {}", max_nodes, min_nodes));
  }
  if (node_unit < 1) return InvalidArgumentError("--node-unit must be >= 1");
  if (min_nodes % node_unit != 0 || max_nodes % node_unit != 0) {
    return InvalidArgumentError(fmt::format("--nnodes {}:{} must be multiples of --node-unit {}",
                                            min_nodes, max_nodes, node_unit));
  }
  if (last_call < Duration::zero()) return InvalidArgumentError("--rdzv-last-call must be >= 0");
  if (rdzv_timeout <= Duration::zero()) return InvalidArgumentError("--rdzv-timeout must be > 0");
  if (heartbeat_timeout <= Duration::zero()) {
    return InvalidArgumentError("--heartbeat-timeout must be > 0");
  }
  if (max_restarts < 0) return InvalidArgumentError("--max-restarts must be >= 0");
  if (shard_timeout <= Duration::zero()) {
    return InvalidArgumentError("--shard-timeout must be > 0");
  }
  return OkStatus();
}

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kRendezvous:
      return "rendezvous";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
  }
  return "?";
}

JobController::JobController(JobOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock) {
  KEEL_CHECK(options_.Validate().ok(), "invalid JobOptions: {}", options_.Validate().ToString());
  last_join_ = rendezvous_opened_ = created_ = round_started_ = ended_ = clock_->Now();
  snapshot_.version = 1;
  snapshot_.round = 1;
  snapshot_.max_restarts = options_.max_restarts;
  snapshot_.job_name = options_.job_name;
  snapshot_.message =
      fmt::format("waiting for {} to {} nodes", options_.min_nodes, options_.max_nodes);
  Record(fmt::format("job '{}' created: nodes {}:{} (unit {}), max restarts {}", options_.job_name,
                     options_.min_nodes, options_.max_nodes, options_.node_unit,
                     options_.max_restarts));
}

void JobController::Record(const std::string& text) {
  KEEL_LOG(Info, "job {}: {}", options_.job_name, text);
  events_.push_back({clock_->WallNowNanos(), text});
  while (events_.size() > kMaxEvents) events_.pop_front();
}

StatusOr<int64_t> JobController::Join(const JoinInfo& info) {
  if (finished()) {
    return FailedPreconditionError(
        fmt::format("job '{}' has already {}", options_.job_name, JobStateName(snapshot_.state)));
  }
  if (info.node_id.empty()) return InvalidArgumentError("join: empty node id");
  if (info.nproc < 1) return InvalidArgumentError(fmt::format("join: nproc {} < 1", info.nproc));
  if (info.address.empty()) return InvalidArgumentError("join: empty node address");
  if (info.free_port <= 0 || info.free_port > 65535) {
    return InvalidArgumentError(fmt::format("join: bad free port {}", info.free_port));
  }
  const TimePoint now = clock_->Now();
  auto [it, inserted] = nodes_.try_emplace(info.node_id);
  Node& node = it->second;
  if (node.member && snapshot_.state == JobState::kRunning) {
    // A member re-joining while its round runs has lost its workers: treat it as a restart
    // of the round (this happens when an agent restarts its workers by itself).
    OpenRound(fmt::format("node {} re-joined during round {}", info.node_id, snapshot_.round));
  }
  node.info = info;
  node.last_heartbeat = now;
  if (!node.waiting) node.join_time = now;
  node.waiting = true;
  last_join_ = now;
  if (inserted)
    Record(fmt::format("node {} ({}, {} workers) joined", info.node_id, info.hostname, info.nproc));
  if (snapshot_.state == JobState::kRunning) {
    // A newcomer while running: grow at the next round once a whole node unit waits.
    int world_nodes = static_cast<int>(snapshot_.world.size());
    int waiting = 0;
    for (const auto& [id, n] : nodes_) waiting += n.waiting && !n.member;
    if (waiting >= options_.node_unit && world_nodes + options_.node_unit <= options_.max_nodes) {
      OpenRound(fmt::format("{} new node(s) waiting: growing the world", waiting));
    }
  }
  TryFormRound();
  return snapshot_.round;
}

void JobController::Leave(const std::string& node_id, const std::string& reason) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return;
  const bool was_member = it->second.member;
  nodes_.erase(it);
  if (finished()) return;
  Record(fmt::format("node {} lost: {}", node_id, reason));
  if (was_member && snapshot_.state == JobState::kRunning) {
    OpenRound(fmt::format("node {} lost ({})", node_id, reason));
  } else {
    Changed();
  }
  TryFormRound();
}

bool JobController::Heartbeat(const std::string& node_id, std::vector<WorkerUsage> usage) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return false;
  it->second.last_heartbeat = clock_->Now();
  it->second.usage = std::move(usage);
  return true;
}

Status JobController::ReportFailure(const std::string& node_id, int64_t round,
                                    const FailureInfo& f) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return NotFoundError("unknown node '" + node_id + "': join first");
  if (round != snapshot_.round || snapshot_.state != JobState::kRunning || !it->second.member) {
    return OkStatus();  // stale: that round is already over
  }
  ++snapshot_.restart_count;
  last_failure_ = fmt::format("rank {} (local rank {}) on node {} ({}) {}", f.rank, f.local_rank,
                              node_id, it->second.info.hostname, f.reason);
  if (!f.stderr_tail.empty()) last_failure_ += "; last stderr lines:\n" + f.stderr_tail;
  Record(fmt::format("round {}: rank {} on node {} {} (failure {} of max {})", round, f.rank,
                     node_id, f.reason, snapshot_.restart_count, options_.max_restarts));
  if (snapshot_.restart_count > options_.max_restarts) {
    Finish(JobState::kFailed,
           fmt::format("job failed: {} worker failure(s), more than --max-restarts {}; last: {}",
                       snapshot_.restart_count, options_.max_restarts, last_failure_));
    return OkStatus();
  }
  OpenRound(fmt::format("rank {} on node {} {}; restart {} of {}", f.rank, node_id, f.reason,
                        snapshot_.restart_count, options_.max_restarts));
  return OkStatus();
}

Status JobController::ReportSuccess(const std::string& node_id, int64_t round) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return NotFoundError("unknown node '" + node_id + "': join first");
  if (round != snapshot_.round || snapshot_.state != JobState::kRunning || !it->second.member) {
    return OkStatus();
  }
  it->second.succeeded = true;
  for (const Member& m : snapshot_.world) {
    auto n = nodes_.find(m.node_id);
    if (n == nodes_.end() || !n->second.succeeded) return OkStatus();
  }
  Finish(JobState::kSucceeded,
         fmt::format("job succeeded: all {} workers of round {} exited 0 ({} restart(s))",
                     snapshot_.world_size, snapshot_.round, snapshot_.restart_count));
  return OkStatus();
}

void JobController::ReportStep(int64_t step) {
  if (step > global_step_) global_step_ = step;
}

void JobController::Abort(const std::string& reason) {
  if (!finished()) Finish(JobState::kFailed, "job failed: " + reason);
}

void JobController::Tick() {
  if (finished()) return;
  const TimePoint now = clock_->Now();
  std::vector<std::string> silent;
  for (const auto& [id, n] : nodes_) {
    if (now - n.last_heartbeat >= options_.heartbeat_timeout) silent.push_back(id);
  }
  for (const std::string& id : silent) {
    Leave(id, fmt::format("no heartbeat for {:.1f} s", Seconds(now - nodes_[id].last_heartbeat)));
  }
  TryFormRound();
  if (snapshot_.state == JobState::kRendezvous &&
      now - rendezvous_opened_ >= options_.rdzv_timeout) {
    int waiting = 0;
    for (const auto& [id, n] : nodes_) waiting += n.waiting;
    Finish(JobState::kFailed,
           fmt::format("job failed: rendezvous for round {} timed out after {:.0f} s with {} "
                       "node(s) joined, fewer than the minimum {} (--nnodes {}:{})",
                       snapshot_.round, Seconds(options_.rdzv_timeout), waiting, options_.min_nodes,
                       options_.min_nodes, options_.max_nodes));
  }
}

std::vector<std::string> JobController::WaitingInPriorityOrder() const {
  std::vector<std::string> order;
  for (const std::string& id : previous_members_) {
    auto it = nodes_.find(id);
    if (it != nodes_.end() && it->second.waiting) order.push_back(id);
  }
  std::vector<const std::pair<const std::string, Node>*> newcomers;
  for (const auto& entry : nodes_) {
    if (entry.second.waiting && std::find(order.begin(), order.end(), entry.first) == order.end()) {
      newcomers.push_back(&entry);
    }
  }
  std::stable_sort(newcomers.begin(), newcomers.end(), [](const auto* a, const auto* b) {
    return a->second.join_time < b->second.join_time;
  });
  for (const auto* entry : newcomers) order.push_back(entry->first);
  return order;
}

void JobController::TryFormRound() {
  if (snapshot_.state != JobState::kRendezvous) return;
  std::vector<std::string> waiting = WaitingInPriorityOrder();
  const int n = static_cast<int>(waiting.size());
  const int admit = std::min(n, options_.max_nodes) / options_.node_unit * options_.node_unit;
  if (admit < options_.min_nodes) return;
  bool all_previous_back = !previous_members_.empty();
  for (const std::string& id : previous_members_) {
    auto it = nodes_.find(id);
    all_previous_back = all_previous_back && it != nodes_.end() && it->second.waiting;
  }
  const bool last_call_over = clock_->Now() - last_join_ >= options_.last_call;
  if (n >= options_.max_nodes || all_previous_back || last_call_over) {
    waiting.resize(admit);
    FormRound(std::move(waiting));
  }
}

void JobController::FormRound(std::vector<std::string> admitted) {
  snapshot_.world.clear();
  int first_rank = 0;
  for (size_t i = 0; i < admitted.size(); ++i) {
    Node& node = nodes_[admitted[i]];
    node.waiting = false;
    node.member = true;
    node.succeeded = false;
    node.group_rank = static_cast<int>(i);
    snapshot_.world.push_back(
        {admitted[i], static_cast<int>(i), node.info.nproc, first_rank, node.info.address});
    first_rank += node.info.nproc;
  }
  const Node& rank0 = nodes_[admitted.front()];
  snapshot_.world_size = first_rank;
  snapshot_.master_addr = rank0.info.address;
  snapshot_.master_port = rank0.info.free_port;
  snapshot_.state = JobState::kRunning;
  round_started_ = clock_->Now();
  previous_members_ = std::move(admitted);
  snapshot_.message = fmt::format("round {} formed: {} node(s), {} workers", snapshot_.round,
                                  snapshot_.world.size(), snapshot_.world_size);
  Record(snapshot_.message);
  Changed();
}

void JobController::OpenRound(const std::string& reason) {
  ++snapshot_.round;
  snapshot_.state = JobState::kRendezvous;
  snapshot_.world.clear();
  snapshot_.world_size = 0;
  snapshot_.message = fmt::format("round {} opened: {}", snapshot_.round, reason);
  for (auto& [id, n] : nodes_) {
    if (n.member) n.waiting = false;  // members re-join once their workers have stopped
    n.member = false;
    n.succeeded = false;
    n.group_rank = -1;
  }
  rendezvous_opened_ = clock_->Now();
  Record(snapshot_.message);
  Changed();
}

void JobController::Finish(JobState state, const std::string& message) {
  if (state == JobState::kFailed) round_started_ = clock_->Now();  // nothing was kept
  ended_ = clock_->Now();
  snapshot_.state = state;
  snapshot_.message = message;
  Record(message);
  Changed();
}

double JobController::Goodput() const {
  const TimePoint end = finished() ? ended_ : clock_->Now();
  const Duration wall = end - created_;
  if (wall <= Duration::zero()) return 0;
  const bool kept =
      snapshot_.state == JobState::kRunning || snapshot_.state == JobState::kSucceeded;
  return kept ? Seconds(end - round_started_) / Seconds(wall) : 0;
}

std::vector<NodeView> JobController::Nodes() const {
  std::vector<NodeView> out;
  const TimePoint now = clock_->Now();
  for (const auto& [id, n] : nodes_) {
    NodeView v;
    v.node_id = id;
    v.hostname = n.info.hostname;
    v.address = n.info.address;
    v.nproc = n.info.nproc;
    v.state = n.succeeded ? "succeeded" : n.member ? "running" : n.waiting ? "waiting" : "idle";
    v.group_rank = n.member ? n.group_rank : -1;
    v.seconds_since_heartbeat = Seconds(now - n.last_heartbeat);
    v.workers = n.usage;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace keel::master
