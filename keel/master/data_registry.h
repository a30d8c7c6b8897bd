// DataRegistry: the master's datasets for dynamic sharding (keel/data/shard_queue.h) — named
// registration, grants, progress, take-back when a round ends, lease expiry, and the
// checkpoint barrier that turns every rank's consumption into one job-wide position
// (docs/formats/data-position.md).
// Thread-safety: not thread-safe; MasterService calls it under its mutex.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/status.h"
#include "keel/data/shard_queue.h"

namespace keel::master {

class DataRegistry {
 public:
  // Registers `spec`, or checks it against the registered one: a different size, shard size,
  // epoch count, shuffle or seed under the same name is FAILED_PRECONDITION naming both.
  Status Register(const data::DatasetSpec& spec);
  // Appends records to a stream (data::ShardQueue::Append).
  StatusOr<uint64_t> Append(const std::string& dataset, const std::string& partition,
                            uint64_t begin, uint64_t end, bool last);
  // The next shard of `dataset` for `worker`; nullopt with *finished false means "none right
  // now, ask again" (others hold the rest), with *finished true that every epoch is done.
  StatusOr<std::optional<data::Grant>> Next(const std::string& dataset, const std::string& worker,
                                            TimePoint now, bool* finished);
  Status Report(const std::string& dataset, uint64_t grant_id, uint64_t consumed);
  // A round ended (workers failed or the world changed): every shard in flight goes back, and
  // the old round's checkpoint barriers are forgotten.
  void TakeBackAll();
  // Takes back grants older than `timeout`.
  void Expire(TimePoint now, Duration timeout);

  // Checkpoint barrier: rank `rank` of `world_size` reports, for `checkpoint`, how far it
  // consumed its grants. Returns the position once every rank reported (the same one for
  // all), nullopt before.
  // `unconsumed`: shards the rank reported finished that the model has not consumed to the end.
  StatusOr<std::optional<data::Position>> AddConsumption(
      const std::string& dataset, int64_t checkpoint, int rank, int world_size,
      const std::map<uint64_t, uint64_t>& consumed,
      const std::vector<data::ShardRef>& unconsumed = {});
  std::optional<data::Position> PositionFor(const std::string& dataset, int64_t checkpoint) const;
  // Continues `dataset` from `position`, once per round: later identical requests in the
  // same round do nothing, so every rank may send it.
  Status Restore(const std::string& dataset, int64_t round, const data::Position& position);

  size_t size() const { return datasets_.size(); }

 private:
  struct Barrier {
    int world_size = 0;
    std::set<int> ranks;
    std::map<uint64_t, uint64_t> consumed;
    std::vector<data::ShardRef> unconsumed;
    std::optional<data::Position> position;
  };
  struct Dataset {
    std::unique_ptr<data::ShardQueue> queue;
    std::map<int64_t, Barrier> barriers;  // by checkpoint id; the newest few are kept
    int64_t restored_round = -1;
  };
  StatusOr<Dataset*> Find(const std::string& name);

  std::map<std::string, Dataset> datasets_;
};

}  // namespace keel::master
