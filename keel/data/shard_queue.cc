// ShardQueue: lazy shard order, leases, take-back and positions.
#include "keel/data/shard_queue.h"

#include <algorithm>

namespace keel::data {
namespace {

// Stream ranges appended but not yet cut into shards, beyond which Append pushes back.
constexpr size_t kMaxAppendBacklog = 100000;

}  // namespace

Status DatasetSpec::Validate() const {
  if (name.empty()) return InvalidArgumentError("a dataset needs a name");
  if (shard_size == 0) {
    return InvalidArgumentError("dataset '" + name + "': shard size must be > 0");
  }
  if (!stream) {
    if (size == 0) return InvalidArgumentError("dataset '" + name + "': size must be > 0");
    return OkStatus();
  }
  if (size != 0) {
    return InvalidArgumentError("dataset '" + name + "' is a stream: it has no size (got " +
                                std::to_string(size) + "); its producer appends records");
  }
  if (shuffle) {
    return InvalidArgumentError("dataset '" + name +
                                "' is a stream: its shards come in append order, shuffle must "
                                "be off (shuffle records within a shard instead)");
  }
  if (epochs > 1) {
    return InvalidArgumentError("dataset '" + name +
                                "' is a stream, read once: epochs must be 1 "
                                "(it ends when the producer closes it) or <= 0 (unbounded), "
                                "got " +
                                std::to_string(epochs));
  }
  return OkStatus();
}

ShardQueue::ShardQueue(DatasetSpec spec) : spec_(std::move(spec)) {
  num_shards_ = spec_.shard_size == 0 ? 0 : (spec_.size + spec_.shard_size - 1) / spec_.shard_size;
}

uint64_t ShardQueue::ShardLength(uint64_t index) const {
  return std::min(spec_.shard_size, spec_.size - index * spec_.shard_size);
}

StatusOr<uint64_t> ShardQueue::Append(const std::string& partition, uint64_t begin, uint64_t end,
                                      bool last) {
  const std::string what = "dataset '" + spec_.name + "'";
  if (!spec_.stream) {
    return FailedPreconditionError(what + " has a fixed size; only streams take appended records");
  }
  if (partition.empty()) return InvalidArgumentError(what + ": a partition needs a name");
  if (end < begin) {
    return InvalidArgumentError(what + ", partition '" + partition + "': range [" +
                                std::to_string(begin) + ", " + std::to_string(end) +
                                ") ends before it begins");
  }
  if (closed_ && end > begin) {
    return FailedPreconditionError(what + " was closed by its producer; it takes no more records");
  }
  auto it = partitions_.find(partition);
  if (it != partitions_.end() && begin > it->second.appended) {
    return InvalidArgumentError(
        what + ", partition '" + partition + "': records " + std::to_string(it->second.appended) +
        "-" + std::to_string(begin) + " are missing (appended up to " +
        std::to_string(it->second.appended) + "; ranges of a partition must be contiguous)");
  }
  const bool merges = !appends_.empty() && appends_.back().first == partition;
  if (!merges && appends_.size() >= kMaxAppendBacklog && end > begin) {
    return ResourceExhaustedError(what + ": " + std::to_string(appends_.size()) +
                                  " appended ranges wait for consumers; append later or in "
                                  "larger ranges");
  }
  if (it == partitions_.end()) {
    it = partitions_.emplace(partition, Partition{begin, begin, begin}).first;
  }
  Partition& p = it->second;
  uint64_t added = 0;
  if (end > p.appended) {
    added = end - p.appended;
    p.appended = end;
    if (merges) {
      appends_.back().second = end;
    } else {
      appends_.emplace_back(partition, end);
    }
  }
  if (last) closed_ = true;
  return added;
}

std::optional<ShardRef> ShardQueue::CutStreamShard() {
  while (!appends_.empty()) {
    auto& [name, end] = appends_.front();
    Partition& p = partitions_.at(name);
    if (p.cut >= end) {
      appends_.pop_front();
      continue;
    }
    ShardRef r{.partition = name, .begin = p.cut, .end = std::min(end, p.cut + spec_.shard_size)};
    p.cut = r.end;
    if (p.cut == end) appends_.pop_front();
    return r;
  }
  return std::nullopt;
}

std::optional<ShardRef> ShardQueue::TakeNextRef() {
  if (!todo_.empty()) {
    ShardRef r = todo_.front();
    todo_.pop_front();
    return r;
  }
  if (spec_.stream) return CutStreamShard();
  if ((Bounded() && epoch_ >= spec_.epochs) || num_shards_ == 0) return std::nullopt;
  const IndexPermutation order(num_shards_, spec_.seed + static_cast<uint64_t>(epoch_),
                               spec_.shuffle);
  ShardRef r{.epoch = epoch_, .index = order.At(cursor_), .offset = 0};
  if (++cursor_ == num_shards_) {
    ++epoch_;
    cursor_ = 0;
  }
  return r;
}

std::optional<Grant> ShardQueue::Next(const std::string& worker, TimePoint now) {
  std::optional<ShardRef> ref = TakeNextRef();
  if (!ref) return std::nullopt;
  Grant g{.id = next_id_++, .shard = *ref, .worker = worker};
  if (spec_.stream) {
    g.begin = ref->begin;
    g.end = ref->end;
  } else {
    g.begin = ref->index * spec_.shard_size;
    g.end = g.begin + ShardLength(ref->index);
  }
  granted_records_ += (g.end - g.begin) - ref->offset;
  in_flight_[g.id] = Lease{.grant = g, .reported = ref->offset, .start = now};
  return g;
}

Status ShardQueue::Report(uint64_t id, uint64_t consumed) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) {
    return NotFoundError("dataset '" + spec_.name + "': no grant " + std::to_string(id) +
                         " in flight (finished, taken back or never granted)");
  }
  Lease& l = it->second;
  const uint64_t length = l.grant.end - l.grant.begin;
  if (consumed < l.grant.shard.offset || consumed > length) {
    return InvalidArgumentError("dataset '" + spec_.name + "': grant " + std::to_string(id) +
                                " covers records " + std::to_string(l.grant.shard.offset) + "-" +
                                std::to_string(length) + " of its shard, not " +
                                std::to_string(consumed));
  }
  if (consumed == length) {
    in_flight_.erase(it);
  } else {
    l.reported = std::max(l.reported, consumed);
  }
  return OkStatus();
}

int ShardQueue::TakeBackIf(const std::function<bool(const Lease&)>& pred) {
  std::vector<ShardRef> back;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (!pred(it->second)) {
      ++it;
      continue;
    }
    ShardRef r = it->second.grant.shard;
    r.offset = it->second.reported;
    back.push_back(std::move(r));
    it = in_flight_.erase(it);
  }
  todo_.insert(todo_.begin(), back.begin(), back.end());  // earliest grant first
  return static_cast<int>(back.size());
}

int ShardQueue::TakeBack(const std::string& worker) {
  return TakeBackIf([&worker](const Lease& l) { return l.grant.worker == worker; });
}

int ShardQueue::TakeBackAll() {
  return TakeBackIf([](const Lease&) { return true; });
}

int ShardQueue::Expire(TimePoint now, Duration timeout) {
  return TakeBackIf([&](const Lease& l) { return now - l.start > timeout; });
}

Position ShardQueue::PositionWith(const std::map<uint64_t, uint64_t>& consumed) const {
  Position p{.epoch = epoch_, .cursor = cursor_};
  p.pending.assign(todo_.begin(), todo_.end());
  for (const auto& [id, lease] : in_flight_) {  // by grant id: the order they were handed out
    auto c = consumed.find(id);
    const uint64_t offset = c != consumed.end() ? c->second : lease.reported;
    if (offset < lease.grant.end - lease.grant.begin) {
      p.pending.push_back(lease.grant.shard);
      p.pending.back().offset = offset;
    }
  }
  for (const auto& [name, part] : partitions_) p.partitions.push_back({name, part.cut});
  return p;
}

Status ShardQueue::RestoreStream(const Position& p) {
  auto bad = [this](const std::string& why) {
    return InvalidArgumentError("stream '" + spec_.name + "': the position does not fit (" + why +
                                ")");
  };
  if (p.epoch != 0 || p.cursor != 0) return bad("a stream's position has no epoch or cursor");
  for (const ShardRef& r : p.pending) {
    if (r.partition.empty() || r.begin >= r.end || r.offset >= r.end - r.begin) {
      return bad("pending shard [" + std::to_string(r.begin) + ", " + std::to_string(r.end) +
                 ") of partition '" + r.partition + "' at offset " + std::to_string(r.offset));
    }
  }
  for (const PartitionOffset& o : p.partitions) {
    if (o.partition.empty()) return bad("a partition without a name");
  }
  std::map<std::string, uint64_t> offsets;
  for (const PartitionOffset& o : p.partitions) offsets[o.partition] = o.offset;
  for (auto& [name, part] : partitions_) {  // appended after the checkpoint: from the start
    if (!offsets.contains(name)) part.cut = part.first;
  }
  for (const auto& [name, offset] : offsets) {
    auto [it, fresh] = partitions_.try_emplace(name, Partition{offset, offset, offset});
    it->second.cut = offset;
    it->second.appended = std::max(it->second.appended, offset);
  }
  appends_.clear();  // what is appended past each cut is handed out again, partition by partition
  for (const auto& [name, part] : partitions_) {
    if (part.cut < part.appended) appends_.emplace_back(name, part.appended);
  }
  in_flight_.clear();
  todo_.assign(p.pending.begin(), p.pending.end());
  return OkStatus();
}

Status ShardQueue::Restore(const Position& p) {
  if (spec_.stream) return RestoreStream(p);
  auto bad = [this](const std::string& why) {
    return InvalidArgumentError("dataset '" + spec_.name + "': the position does not fit (" + why +
                                ")");
  };
  if (!p.partitions.empty()) return bad("it is a stream's position");
  if (p.epoch < 0 || (Bounded() && p.epoch > spec_.epochs)) {
    return bad("epoch " + std::to_string(p.epoch) + " of " + std::to_string(spec_.epochs));
  }
  if (p.cursor > num_shards_ || (Bounded() && p.epoch == spec_.epochs && p.cursor != 0)) {
    return bad("cursor " + std::to_string(p.cursor) + " of " + std::to_string(num_shards_) +
               " shards");
  }
  for (const ShardRef& r : p.pending) {
    if (!r.partition.empty() || r.epoch < 0 || (Bounded() && r.epoch >= spec_.epochs) ||
        r.index >= num_shards_ || r.offset >= ShardLength(r.index)) {
      return bad("pending shard " + std::to_string(r.index) + " of epoch " +
                 std::to_string(r.epoch) + " at offset " + std::to_string(r.offset));
    }
  }
  in_flight_.clear();
  todo_.assign(p.pending.begin(), p.pending.end());
  epoch_ = p.epoch;
  cursor_ = p.cursor;
  if (cursor_ == num_shards_) {
    ++epoch_;
    cursor_ = 0;
  }
  return OkStatus();
}

bool ShardQueue::finished() const {
  if (!Bounded() || !todo_.empty() || !in_flight_.empty()) return false;
  if (spec_.stream) {
    return closed_ && std::all_of(partitions_.begin(), partitions_.end(),
                                  [](const auto& p) { return p.second.cut == p.second.appended; });
  }
  return epoch_ >= spec_.epochs;
}

}  // namespace keel::data
