// MasterService: the keel.rpc.Master gRPC service — JobController behind a mutex, a ticker
// for time-based transitions, and Watch streams that push every change to the agents.
//
// Every RPC checks the job token first; a rejected call changes nothing. A Watch stream that
// breaks while the job runs drops its node (the agent died: its TCP connection closed), so a
// SIGKILLed agent is noticed at once rather than after the heartbeat timeout.
// Thread-safety: thread-safe (gRPC calls it from many threads).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "keel/common/clock.h"
#include "keel/common/mutex.h"
#include "keel/master/ckpt_tracker.h"
#include "keel/master/data_registry.h"
#include "keel/master/job_controller.h"
#include "keel/rpc/auth.h"
#include "keel/rpc/keel.grpc.pb.h"

namespace keel::master {

// The shard hot path (GetShard, ReportShard) uses gRPC's callback API: the handlers never
// block, so they run on gRPC's own threads without a hand-off to the sync server's pool.
using MasterServiceBase = rpc::Master::WithCallbackMethod_GetShard<
    rpc::Master::WithCallbackMethod_ReportShard<rpc::Master::Service>>;

class MasterService final : public MasterServiceBase {
 public:
  // `clock` is borrowed and must outlive the service.
  MasterService(JobOptions options, const std::string& token, Clock* clock = Clock::Real());
  ~MasterService() override;

  grpc::Status Join(grpc::ServerContext* context, const rpc::JoinRequest* request,
                    rpc::JoinResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const rpc::WatchRequest* request,
                     grpc::ServerWriter<rpc::JobSnapshot>* writer) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const rpc::HeartbeatRequest* request,
                         rpc::HeartbeatResponse* response) override;
  grpc::Status ReportFailure(grpc::ServerContext* context, const rpc::FailureReport* request,
                             rpc::Ack* response) override;
  grpc::Status ReportSuccess(grpc::ServerContext* context, const rpc::SuccessReport* request,
                             rpc::Ack* response) override;
  grpc::Status ReportStep(grpc::ServerContext* context, const rpc::StepReport* request,
                          rpc::Ack* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const rpc::GetJobRequest* request,
                      rpc::JobStatus* response) override;
  grpc::Status ReportCheckpoint(grpc::ServerContext* context, const rpc::CheckpointReport* request,
                                rpc::CheckpointReply* response) override;
  grpc::Status GetRestoreStep(grpc::ServerContext* context, const rpc::RestoreRequest* request,
                              rpc::RestoreReply* response) override;
  grpc::Status RegisterDataset(grpc::ServerContext* context, const rpc::DatasetSpec* request,
                               rpc::Ack* response) override;
  grpc::ServerUnaryReactor* GetShard(grpc::CallbackServerContext* context,
                                     const rpc::ShardRequest* request,
                                     rpc::ShardGrant* response) override;
  grpc::ServerUnaryReactor* ReportShard(grpc::CallbackServerContext* context,
                                        const rpc::ShardProgress* request,
                                        rpc::Ack* response) override;
  grpc::Status AppendData(grpc::ServerContext* context, const rpc::AppendDataRequest* request,
                          rpc::AppendDataReply* response) override;
  grpc::Status SaveDataPosition(grpc::ServerContext* context,
                                const rpc::DataPositionRequest* request,
                                rpc::DataPosition* response) override;
  grpc::Status RestoreDataPosition(grpc::ServerContext* context,
                                   const rpc::RestoreDataRequest* request,
                                   rpc::Ack* response) override;

  // Fails the job with `reason` (agents see it and stop); used when the master is told to stop.
  void Abort(const std::string& reason);
  // Blocks until the job has succeeded or failed; returns the final snapshot.
  Snapshot WaitForEnd();
  // After the end: waits until no Watch stream is still open (every agent has read the final
  // snapshot and hung up), at most `timeout`.
  void WaitForWatchersToLeave(Duration timeout);
  rpc::JobStatus JobStatusNow();

 private:
  void TickerLoop();
  // When the round changed, the old round's workers are gone: their shards go back.
  void SyncDataRound() KEEL_REQUIRES(mu_);
  // The current snapshot as a wire message, built once per version and shared by every Watch
  // stream (a 1,000-node world would otherwise be rebuilt 1,000 times under the lock).
  std::shared_ptr<const rpc::JobSnapshot> CurrentSnapshot() KEEL_REQUIRES(mu_);

  rpc::TokenAuth auth_;
  Clock* const clock_;
  // Wakes Watch streams and WaitForEnd when the snapshot version changes (and only then).
  void NotifyIfChanged(int64_t version_before) KEEL_REQUIRES(mu_);

  Mutex mu_;
  CondVar changed_;        // the job's snapshot changed
  CondVar watchers_left_;  // a Watch stream ended
  CondVar ticker_wake_;    // shutdown
  JobController job_ KEEL_GUARDED_BY(mu_);
  CheckpointTracker ckpt_ KEEL_GUARDED_BY(mu_);
  DataRegistry data_ KEEL_GUARDED_BY(mu_);
  int64_t data_round_ KEEL_GUARDED_BY(mu_) = 0;  // round whose workers hold the grants
  CondVar data_changed_;                         // a data checkpoint barrier completed
  int open_watches_ KEEL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const rpc::JobSnapshot> snapshot_cache_ KEEL_GUARDED_BY(mu_);
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
};

// Fills a wire snapshot from the controller's.
void ToProto(const Snapshot& s, rpc::JobSnapshot* out);

}  // namespace keel::master
