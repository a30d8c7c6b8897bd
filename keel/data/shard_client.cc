// ShardClient: thin typed wrappers over the master's shard RPCs.
#include "keel/data/shard_client.h"

#include "keel/rpc/status_convert.h"

namespace keel::data {

ShardClient::ShardClient(const rpc::Channel* channel)
    : channel_(channel), stub_(rpc::Master::NewStub(channel->grpc_channel())) {}

Status ShardClient::Register(const DatasetSpec& spec) {
  rpc::DatasetSpec req;
  req.set_name(spec.name);
  req.set_size(spec.size);
  req.set_shard_size(spec.shard_size);
  req.set_epochs(spec.epochs);
  req.set_shuffle(spec.shuffle);
  req.set_seed(spec.seed);
  rpc::Ack ack;
  auto ctx = channel_->NewContext();
  return rpc::FromGrpc(stub_->RegisterDataset(ctx.get(), req, &ack));
}

StatusOr<std::optional<Grant>> ShardClient::Next(const std::string& dataset,
                                                 const std::string& worker, bool* finished) {
  rpc::ShardRequest req;
  req.set_dataset(dataset);
  req.set_worker(worker);
  rpc::ShardGrant g;
  auto ctx = channel_->NewContext();
  KEEL_RETURN_IF_ERROR(rpc::FromGrpc(stub_->GetShard(ctx.get(), req, &g)));
  *finished = g.finished();
  if (!g.granted()) return std::optional<Grant>();
  return std::optional<Grant>(Grant{.id = g.id(),
                                    .shard = {g.epoch(), g.index(), g.offset()},
                                    .begin = g.begin(),
                                    .end = g.end(),
                                    .worker = worker});
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
  for (const ShardRef& r : unconsumed) {
    rpc::PendingShard* s = req.add_unconsumed();
    s->set_epoch(r.epoch);
    s->set_index(r.index);
    s->set_offset(r.offset);
  }
  rpc::DataPosition p;
  auto ctx = channel_->NewContext(timeout);
  KEEL_RETURN_IF_ERROR(rpc::FromGrpc(stub_->SaveDataPosition(ctx.get(), req, &p)));
  Position out{.epoch = p.epoch(), .cursor = p.cursor()};
  out.pending.reserve(static_cast<size_t>(p.pending_size()));
  for (const rpc::PendingShard& s : p.pending()) {
    out.pending.push_back({s.epoch(), s.index(), s.offset()});
  }
  return out;
}

Status ShardClient::RestorePosition(const std::string& dataset, int64_t round,
                                    const Position& position) {
  rpc::RestoreDataRequest req;
  req.set_dataset(dataset);
  req.set_round(round);
  rpc::DataPosition* p = req.mutable_position();
  p->set_epoch(position.epoch);
  p->set_cursor(position.cursor);
  for (const ShardRef& r : position.pending) {
    rpc::PendingShard* s = p->add_pending();
    s->set_epoch(r.epoch);
    s->set_index(r.index);
    s->set_offset(r.offset);
  }
  rpc::Ack ack;
  auto ctx = channel_->NewContext();
  return rpc::FromGrpc(stub_->RestoreDataPosition(ctx.get(), req, &ack));
}

}  // namespace keel::data
