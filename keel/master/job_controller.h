// JobController: the training job's state machine — node registry, rendezvous in rounds,
// failure handling and the job's end. Pure logic over a Clock, no I/O, so every transition
// is unit-tested on a ManualClock (job_controller_test.cc); MasterService puts gRPC around it.
//
// Note [Rounds]
// The job alternates between RENDEZVOUS (round R is forming: nodes join) and RUNNING (round
// R formed: its members run their workers). A round forms when
//   - max_nodes nodes have joined, or
//   - every member of the previous round has re-joined (a restart after a failure: no wait), or
//   - at least min_nodes have joined and nobody joined for last_call.
// Then floor(n / node_unit) * node_unit nodes are admitted: previous members first, in their
// old order (so node ranks stay stable), then newcomers in join order. Global ranks are prefix
// sums of per-node process counts. Group rank 0's address and free port become
// MASTER_ADDR:MASTER_PORT. A worker failure, a lost member, or enough newcomers to grow the
// world open round R+1; only failures count against max_restarts. Fewer than min_nodes for
// rdzv_timeout fails the job, as does a failure past max_restarts; every member reporting
// success ends it.
//
// Thread-safety: not thread-safe; MasterService serialises calls under its mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/status.h"

namespace keel::master {

struct JobOptions {
  std::string job_name = "keel-job";
  int min_nodes = 1;
  int max_nodes = 1;
  // Nodes are admitted in multiples of this.
  int node_unit = 1;
  // A round with >= min_nodes forms once nobody joined for this long.
  Duration last_call = std::chrono::seconds(3);
  // Fewer than min_nodes for this long (in one rendezvous) fails the job.
  Duration rdzv_timeout = std::chrono::seconds(600);
  // A node silent this long is dropped.
  Duration heartbeat_timeout = std::chrono::seconds(15);
  // Worker failures tolerated; one more fails the job.
  int max_restarts = 3;
  // A data shard held this long goes back to the queue (a hung worker).
  Duration shard_timeout = std::chrono::seconds(1800);

  Status Validate() const;
};

enum class JobState { kRendezvous, kRunning, kSucceeded, kFailed };
const char* JobStateName(JobState state);

struct JoinInfo {
  std::string node_id;
  std::string hostname;
  std::string address;
  int nproc = 1;
  int free_port = 0;
};

struct WorkerUsage {
  int rank = 0;
  int pid = 0;
  double cpu_seconds = 0;
  int64_t rss_bytes = 0;
};

struct FailureInfo {
  int rank = 0;
  int local_rank = 0;
  int exit_code = 0;
  int signal = 0;
  std::string reason;       // "exited with code 3"
  std::string stderr_tail;  // last lines of the worker's stderr
};

struct Member {
  std::string node_id;
  int group_rank = 0;
  int nproc = 0;
  int first_rank = 0;
  std::string address;
};

// What every agent sees; `version` increases on every change.
struct Snapshot {
  int64_t version = 0;
  JobState state = JobState::kRendezvous;
  int64_t round = 1;
  std::vector<Member> world;  // when kRunning (and kept for the final states)
  int world_size = 0;
  std::string master_addr;
  int master_port = 0;
  int restart_count = 0;
  int max_restarts = 0;
  std::string job_name;
  std::string message;
};

struct NodeView {
  std::string node_id, hostname, address, state;
  int nproc = 0;
  int group_rank = -1;
  double seconds_since_heartbeat = 0;
  std::vector<WorkerUsage> workers;
};

struct Event {
  int64_t wall_time_unix_nanos = 0;
  std::string text;
};

class JobController {
 public:
  // `options` must be valid (Validate()); `clock` is borrowed and must outlive this.
  JobController(JobOptions options, Clock* clock);

  // The node is ready for the next round. Returns the round it joined. FAILED_PRECONDITION
  // once the job has finished; INVALID_ARGUMENT for a malformed join.
  StatusOr<int64_t> Join(const JoinInfo& info);
  // The node is gone (stream closed, heartbeat timeout, agent exit). Unknown ids are ignored.
  void Leave(const std::string& node_id, const std::string& reason);
  // False if the node is unknown (it was dropped and must re-join).
  bool Heartbeat(const std::string& node_id, std::vector<WorkerUsage> usage);
  // A worker failed in `round`. Reports for another round are stale and ignored.
  Status ReportFailure(const std::string& node_id, int64_t round, const FailureInfo& failure);
  Status ReportSuccess(const std::string& node_id, int64_t round);
  void ReportStep(int64_t step);
  // Ends the job as failed with `reason` (e.g. the master was told to stop). No-op if over.
  void Abort(const std::string& reason);
  // Applies time-based transitions (last call, heartbeat and rendezvous timeouts).
  void Tick();
  // Adds an event to the job's history (e.g. "checkpoint step 20 committed").
  void RecordEvent(const std::string& text) { Record(text); }

  bool known(const std::string& node_id) const { return nodes_.count(node_id) > 0; }
  const Snapshot& snapshot() const { return snapshot_; }
  bool finished() const {
    return snapshot_.state == JobState::kSucceeded || snapshot_.state == JobState::kFailed;
  }
  std::vector<NodeView> Nodes() const;
  const std::deque<Event>& events() const { return events_; }
  const std::string& last_failure() const { return last_failure_; }
  int64_t global_step() const { return global_step_; }
  // Fraction of the job's wall time spent running a round whose work is kept. Until workers
  // resume from checkpoints, only the current (or final, successful) round's work is kept:
  // time in failed or superseded rounds and in rendezvous counts as lost.
  double Goodput() const;
  const JobOptions& options() const { return options_; }

 private:
  struct Node {
    JoinInfo info;
    TimePoint last_heartbeat;
    TimePoint join_time;
    bool waiting = false;    // joined and ready for the round being formed (or the next)
    bool member = false;     // in the current round's world
    bool succeeded = false;  // reported success in the current round
    int group_rank = -1;
    std::vector<WorkerUsage> usage;
  };

  void TryFormRound();
  void FormRound(std::vector<std::string> admitted);
  void OpenRound(const std::string& reason);
  void Finish(JobState state, const std::string& message);
  void Changed() { ++snapshot_.version; }
  void Record(const std::string& text);
  std::vector<std::string> WaitingInPriorityOrder() const;

  JobOptions options_;
  Clock* clock_;
  std::map<std::string, Node> nodes_;
  std::vector<std::string> previous_members_;  // by group rank, from the last formed round
  TimePoint last_join_;
  TimePoint rendezvous_opened_;
  TimePoint created_;
  TimePoint round_started_;  // when the current round began running
  TimePoint ended_;          // when the job succeeded or failed
  Snapshot snapshot_;
  std::deque<Event> events_;
  std::string last_failure_;
  int64_t global_step_ = 0;
};

}  // namespace keel::master
