// ShardQueue: lazy shard order, leases, take-back and positions.
#include "keel/data/shard_queue.h"

#include <algorithm>

namespace keel::data {

Status DatasetSpec::Validate() const {
  if (name.empty()) return InvalidArgumentError("a dataset needs a name");
  if (size == 0) return InvalidArgumentError("dataset '" + name + "': size must be > 0");
  if (shard_size == 0) {
    return InvalidArgumentError("dataset '" + name + "': shard size must be > 0");
  }
  if (epochs < 1) {
    return InvalidArgumentError("dataset '" + name + "': epochs must be >= 1, got " +
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

std::optional<ShardRef> ShardQueue::TakeNextRef() {
  if (!todo_.empty()) {
    ShardRef r = todo_.front();
    todo_.pop_front();
    return r;
  }
  if (epoch_ >= spec_.epochs || num_shards_ == 0) return std::nullopt;
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
  g.begin = ref->index * spec_.shard_size;
  g.end = g.begin + ShardLength(ref->index);
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
    back.push_back(
        {it->second.grant.shard.epoch, it->second.grant.shard.index, it->second.reported});
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
      p.pending.push_back({lease.grant.shard.epoch, lease.grant.shard.index, offset});
    }
  }
  return p;
}

Status ShardQueue::Restore(const Position& p) {
  auto bad = [this](const std::string& why) {
    return InvalidArgumentError("dataset '" + spec_.name + "': the position does not fit (" + why +
                                ")");
  };
  if (p.epoch < 0 || p.epoch > spec_.epochs) {
    return bad("epoch " + std::to_string(p.epoch) + " of " + std::to_string(spec_.epochs));
  }
  if (p.cursor > num_shards_ || (p.epoch == spec_.epochs && p.cursor != 0)) {
    return bad("cursor " + std::to_string(p.cursor) + " of " + std::to_string(num_shards_) +
               " shards");
  }
  for (const ShardRef& r : p.pending) {
    if (r.epoch < 0 || r.epoch >= spec_.epochs || r.index >= num_shards_ ||
        r.offset >= ShardLength(r.index)) {
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
  return todo_.empty() && in_flight_.empty() && epoch_ >= spec_.epochs;
}

}  // namespace keel::data
