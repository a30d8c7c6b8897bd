// ShardClient: thin typed wrappers over the master's shard RPCs.
#include "keel/data/shard_client.h"

#include "keel/data/wire.h"
#include "keel/rpc/status_convert.h"

namespace keel::data {

ShardClient::ShardClient(const rpc::Channel* channel)
    : channel_(channel), stub_(rpc::Master::NewStub(channel->grpc_channel())) {}

Status ShardClient::Register(const DatasetSpec& spec) {
  rpc::DatasetSpec req;
  ToProto(spec, &req);
  rpc::Ack ack;
  auto ctx = channel_->NewContext();
  return rpc::FromGrpc(stub_->RegisterDataset(ctx.get(), req, &ack));
}

StatusOr<uint64_t> ShardClient::Append(const std::string& dataset, const std::string& partition,
                                       uint64_t begin, uint64_t end, bool last) {
  rpc::AppendDataRequest req;
  req.set_dataset(dataset);
  req.set_partition(partition);
  req.set_begin(begin);
  req.set_end(end);
  req.set_last(last);
  rpc::AppendDataReply reply;
  auto ctx = channel_->NewContext();
  KEEL_RETURN_IF_ERROR(rpc::FromGrpc(stub_->AppendData(ctx.get(), req, &reply)));
  return reply.added();
}

StatusOr<std::optional<Grant>> ShardClient::Next(const std::string& dataset,
                                                 const std::string& worker, bool* finished,
                                                 const std::map<uint64_t, uint64_t>& reports) {
  rpc::ShardRequest req;
  req.set_dataset(dataset);
  req.set_worker(worker);
  for (const auto& [id, consumed] : reports) {
    rpc::ShardProgress* r = req.add_reports();
    r->set_grant_id(id);
    r->set_consumed(consumed);
  }
  rpc::ShardGrant g;
  auto ctx = channel_->NewContext();
  KEEL_RETURN_IF_ERROR(rpc::FromGrpc(stub_->GetShard(ctx.get(), req, &g)));
  *finished = g.finished();
  if (!g.granted()) return std::optional<Grant>();
  return std::optional<Grant>(FromProto(g, worker));
}

Status ShardClient::Report(const std::string& dataset, uint64_t grant_id, uint64_t consumed) {
  rpc::ShardProgress req;
  req.set_dataset(dataset);
  req.set_grant_id(grant_id);
  req.set_consumed(consumed);
  rpc::Ack ack;
  auto ctx = channel_->NewContext();
  return rpc::FromGrpc(stub_->ReportShard(ctx.get(), req, &ack));
}

StatusOr<Position> ShardClient::SavePosition(const std::string& dataset, int64_t checkpoint,
                                             int rank, int world_size,
                                             const std::map<uint64_t, uint64_t>& consumed,
                                             Duration timeout,
                                             const std::vector<ShardRef>& unconsumed) {
  rpc::DataPositionRequest req;
  req.set_dataset(dataset);
  req.set_checkpoint(checkpoint);
  req.set_rank(rank);
  req.set_world_size(world_size);
  for (const auto& [id, n] : consumed) {
    rpc::GrantConsumed* c = req.add_consumed();
    c->set_grant_id(id);
    c->set_consumed(n);
  }
  for (const ShardRef& r : unconsumed) ToProto(r, req.add_unconsumed());
  rpc::DataPosition p;
  auto ctx = channel_->NewContext(timeout);
  KEEL_RETURN_IF_ERROR(rpc::FromGrpc(stub_->SaveDataPosition(ctx.get(), req, &p)));
  return FromProto(p);
}

Status ShardClient::RestorePosition(const std::string& dataset, int64_t round,
                                    const Position& position) {
  rpc::RestoreDataRequest req;
  req.set_dataset(dataset);
  req.set_round(round);
  ToProto(position, req.mutable_position());
  rpc::Ack ack;
  auto ctx = channel_->NewContext();
  return rpc::FromGrpc(stub_->RestoreDataPosition(ctx.get(), req, &ack));
}

}  // namespace keel::data
