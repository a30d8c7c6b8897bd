// ShardClient: a worker's side of the master's shard service (keel.proto: RegisterDataset,
// AppendData, GetShard, ReportShard, SaveDataPosition, RestoreDataPosition), for C++ training
// programs and under keel.data's Python sampler.
//
//   ShardClient c(channel);                     // rpc::Channel to $KEEL_MASTER_ADDR
//   KEEL_RETURN_IF_ERROR(c.Register(spec));
//   bool finished = false;
//   KEEL_ASSIGN_OR_RETURN(std::optional<Grant> g, c.Next("train", "rank 0", &finished));
//   ... consume records g->begin + order[pos] for pos in [g->shard.offset, g->end - g->begin)
//   KEEL_RETURN_IF_ERROR(c.Report("train", g->id, consumed));
//
// Thread-safety: thread-safe (one gRPC stub; each call has its own context).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "keel/common/status.h"
#include "keel/data/shard_queue.h"
#include "keel/rpc/channel.h"
#include "keel/rpc/keel.grpc.pb.h"

namespace keel::data {

class ShardClient {
 public:
  explicit ShardClient(const rpc::Channel* channel);  // borrowed; must outlive the client

  Status Register(const DatasetSpec& spec);
  // Streams: appends the partition's records [begin, end) (ShardQueue::Append); returns how
  // many were new.
  StatusOr<uint64_t> Append(const std::string& dataset, const std::string& partition,
                            uint64_t begin, uint64_t end, bool last = false);
  // nullopt: no shard now (*finished false: ask again later; true: every epoch is done).
  // `reports` ({grant id: consumed}) are recorded first, in the same call — a worker that
  // finished its shard reports it and asks for the next in one round trip.
  StatusOr<std::optional<Grant>> Next(const std::string& dataset, const std::string& worker,
                                      bool* finished,
                                      const std::map<uint64_t, uint64_t>& reports = {});
  Status Report(const std::string& dataset, uint64_t grant_id, uint64_t consumed);
  // The checkpoint barrier: blocks (up to `timeout`) until every rank reported.
  // `unconsumed`: shards reported finished that the model has not consumed to the end.
  StatusOr<Position> SavePosition(const std::string& dataset, int64_t checkpoint, int rank,
                                  int world_size, const std::map<uint64_t, uint64_t>& consumed,
                                  Duration timeout, const std::vector<ShardRef>& unconsumed = {});
  Status RestorePosition(const std::string& dataset, int64_t round, const Position& position);

 private:
  const rpc::Channel* channel_;
  std::unique_ptr<rpc::Master::Stub> stub_;
};

}  // namespace keel::data
