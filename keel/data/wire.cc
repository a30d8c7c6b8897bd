// Shard service types <-> keel.proto messages.
#include "keel/data/wire.h"

namespace keel::data {

void ToProto(const DatasetSpec& spec, rpc::DatasetSpec* out) {
  out->set_name(spec.name);
  out->set_size(spec.size);
  out->set_shard_size(spec.shard_size);
  out->set_epochs(spec.epochs);
  out->set_shuffle(spec.shuffle);
  out->set_seed(spec.seed);
  out->set_stream(spec.stream);
}

DatasetSpec FromProto(const rpc::DatasetSpec& spec) {
  return {.name = spec.name(),
          .size = spec.size(),
          .shard_size = spec.shard_size(),
          .epochs = spec.epochs(),
          .shuffle = spec.shuffle(),
          .seed = spec.seed(),
          .stream = spec.stream()};
}

void ToProto(const ShardRef& ref, rpc::PendingShard* out) {
  out->set_epoch(ref.epoch);
  out->set_index(ref.index);
  out->set_offset(ref.offset);
  out->set_partition(ref.partition);
  out->set_begin(ref.begin);
  out->set_end(ref.end);
}

ShardRef FromProto(const rpc::PendingShard& ref) {
  return {.epoch = ref.epoch(),
          .index = ref.index(),
          .offset = ref.offset(),
          .partition = ref.partition(),
          .begin = ref.begin(),
          .end = ref.end()};
}

void ToProto(const Position& position, rpc::DataPosition* out) {
  out->set_epoch(position.epoch);
  out->set_cursor(position.cursor);
  for (const ShardRef& r : position.pending) ToProto(r, out->add_pending());
  for (const PartitionOffset& o : position.partitions) {
    rpc::PartitionOffset* p = out->add_partitions();
    p->set_partition(o.partition);
    p->set_offset(o.offset);
  }
}

Position FromProto(const rpc::DataPosition& position) {
  Position p{.epoch = position.epoch(), .cursor = position.cursor()};
  p.pending.reserve(static_cast<size_t>(position.pending_size()));
  for (const rpc::PendingShard& s : position.pending()) p.pending.push_back(FromProto(s));
  for (const rpc::PartitionOffset& o : position.partitions()) {
    p.partitions.push_back({o.partition(), o.offset()});
  }
  return p;
}

void ToProto(const Grant& grant, rpc::ShardGrant* out) {
  out->set_granted(true);
  out->set_id(grant.id);
  out->set_epoch(grant.shard.epoch);
  out->set_index(grant.shard.index);
  out->set_offset(grant.shard.offset);
  out->set_begin(grant.begin);
  out->set_end(grant.end);
  out->set_partition(grant.shard.partition);
}

Grant FromProto(const rpc::ShardGrant& grant, const std::string& worker) {
  Grant g{.id = grant.id(),
          .shard = {.epoch = grant.epoch(),
                    .index = grant.index(),
                    .offset = grant.offset(),
                    .partition = grant.partition()},
          .begin = grant.begin(),
          .end = grant.end(),
          .worker = worker};
  if (!g.shard.partition.empty()) {
    g.shard.begin = g.begin;
    g.shard.end = g.end;
  }
  return g;
}

}  // namespace keel::data
