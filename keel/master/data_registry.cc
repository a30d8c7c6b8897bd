// DataRegistry: datasets by name over ShardQueue, plus the checkpoint barrier.
#include "keel/master/data_registry.h"

namespace keel::master {
namespace {

constexpr size_t kBarriersKept = 4;

std::string Describe(const data::DatasetSpec& s) {
  if (s.stream) {
    return "a stream, shard size " + std::to_string(s.shard_size) + ", " +
           (s.epochs > 0 ? "ending when closed" : "unbounded");
  }
  return "size " + std::to_string(s.size) + ", shard size " + std::to_string(s.shard_size) + ", " +
         (s.epochs > 0 ? std::to_string(s.epochs) : std::string("unbounded")) +
         " epoch(s), shuffle " + (s.shuffle ? "on" : "off") + ", seed " + std::to_string(s.seed);
}

}  // namespace

Status DataRegistry::Register(const data::DatasetSpec& spec) {
  KEEL_RETURN_IF_ERROR(spec.Validate());
  auto it = datasets_.find(spec.name);
  if (it == datasets_.end()) {
    datasets_[spec.name].queue = std::make_unique<data::ShardQueue>(spec);
    return OkStatus();
  }
  const data::DatasetSpec& have = it->second.queue->spec();
  if (!(have == spec)) {
    return FailedPreconditionError("dataset '" + spec.name + "' is registered with " +
                                   Describe(have) + "; this registration asks for " +
                                   Describe(spec));
  }
  return OkStatus();
}

StatusOr<DataRegistry::Dataset*> DataRegistry::Find(const std::string& name) {
  auto it = datasets_.find(name);
  if (it == datasets_.end()) {
    return NotFoundError("unknown dataset '" + name + "': register it first");
  }
  return &it->second;
}

StatusOr<std::optional<data::Grant>> DataRegistry::Next(const std::string& dataset,
                                                        const std::string& worker, TimePoint now,
                                                        bool* finished) {
  KEEL_ASSIGN_OR_RETURN(Dataset * d, Find(dataset));
  std::optional<data::Grant> g = d->queue->Next(worker, now);
  *finished = !g && d->queue->finished();
  return g;
}

StatusOr<uint64_t> DataRegistry::Append(const std::string& dataset, const std::string& partition,
                                        uint64_t begin, uint64_t end, bool last) {
  KEEL_ASSIGN_OR_RETURN(Dataset * d, Find(dataset));
  return d->queue->Append(partition, begin, end, last);
}

Status DataRegistry::Report(const std::string& dataset, uint64_t grant_id, uint64_t consumed) {
  KEEL_ASSIGN_OR_RETURN(Dataset * d, Find(dataset));
  return d->queue->Report(grant_id, consumed);
}

void DataRegistry::TakeBackAll() {
  for (auto& [name, d] : datasets_) {
    d.queue->TakeBackAll();
    d.barriers.clear();  // checkpoint ids start again with the new round's workers
  }
}

void DataRegistry::Expire(TimePoint now, Duration timeout) {
  for (auto& [name, d] : datasets_) d.queue->Expire(now, timeout);
}

StatusOr<std::optional<data::Position>> DataRegistry::AddConsumption(
    const std::string& dataset, int64_t checkpoint, int rank, int world_size,
    const std::map<uint64_t, uint64_t>& consumed, const std::vector<data::ShardRef>& unconsumed) {
  KEEL_ASSIGN_OR_RETURN(Dataset * d, Find(dataset));
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return InvalidArgumentError("rank " + std::to_string(rank) + " of a world of " +
                                std::to_string(world_size));
  }
  Barrier& b = d->barriers[checkpoint];
  if (b.world_size == 0) b.world_size = world_size;
  if (b.world_size != world_size) {
    return FailedPreconditionError("checkpoint " + std::to_string(checkpoint) + " of dataset '" +
                                   dataset + "' has a world of " + std::to_string(b.world_size) +
                                   ", not " + std::to_string(world_size));
  }
  if (!b.position) {
    b.ranks.insert(rank);
    for (const auto& [id, n] : consumed) b.consumed[id] = std::max(b.consumed[id], n);
    b.unconsumed.insert(b.unconsumed.end(), unconsumed.begin(), unconsumed.end());
    if (static_cast<int>(b.ranks.size()) == b.world_size) {
      b.position = d->queue->PositionWith(b.consumed);
      b.position->pending.insert(b.position->pending.begin(), b.unconsumed.begin(),
                                 b.unconsumed.end());
    }
  }
  while (d->barriers.size() > kBarriersKept) d->barriers.erase(d->barriers.begin());
  return b.position;
}

std::optional<data::Position> DataRegistry::PositionFor(const std::string& dataset,
                                                        int64_t checkpoint) const {
  auto it = datasets_.find(dataset);
  if (it == datasets_.end()) return std::nullopt;
  auto b = it->second.barriers.find(checkpoint);
  return b == it->second.barriers.end() ? std::nullopt : b->second.position;
}

Status DataRegistry::Restore(const std::string& dataset, int64_t round,
                             const data::Position& position) {
  KEEL_ASSIGN_OR_RETURN(Dataset * d, Find(dataset));
  if (d->restored_round == round) return OkStatus();  // another rank restored it already
  KEEL_RETURN_IF_ERROR(d->queue->Restore(position));
  d->restored_round = round;
  d->barriers.clear();
  return OkStatus();
}

}  // namespace keel::master
