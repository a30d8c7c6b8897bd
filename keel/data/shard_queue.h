// ShardQueue: one dataset's shards for the master to hand out — lazily generated, leased to
// workers, taken back from failed or slow ones, and checkpointable as a compact position.
//
// A dataset of `size` records is cut into shards of `shard_size` consecutive record indices
// (the last may be shorter); shard s holds records [s*shard_size, min((s+1)*shard_size,
// size)). Epoch e hands shards out in the order IndexPermutation(num_shards, seed + e):
// deterministic for a seed whatever worker asks. Nothing is stored per shard until it is
// granted, so memory grows with the shards in flight, not with the dataset (10^10 records
// cost the same as 10).
//
// A grant is (epoch, shard index, [begin, end) within the shard's records, in the shard's
// own order). Shards taken back (worker failed, left, lease expired) go to the front of the
// queue, starting where the holder was known to be. Position() is the exact job-wide data
// position given how far each in-flight shard was consumed (docs/formats/data-position.md);
// Restore(position) continues from it: every record of every epoch is handed out exactly
// once relative to that position.
// A **stream** (spec.stream) has no fixed size: a producer appends ranges of record offsets
// to named partitions (Append), and shards are cut from them, at most shard_size records each,
// in the order they were appended. Its position is, per partition, the offset up to which
// records were handed out (plus the pending shards), so it survives a new master: the producer
// may append from the start again and what the position covers is skipped.
// Thread-safety: not thread-safe (the master calls it under its mutex).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/status.h"
#include "keel/data/permutation.h"

namespace keel::data {

struct DatasetSpec {
  std::string name;
  uint64_t size = 0;        // records (0 for a stream)
  uint64_t shard_size = 0;  // records per shard
  int64_t epochs = 1;       // <= 0: unbounded; a stream: 1 (ends when closed) or <= 0
  bool shuffle = false;     // shard order per epoch (records within a shard: the client's job)
  uint64_t seed = 0;
  bool stream = false;  // no fixed size: records come from Append

  Status Validate() const;
  bool operator==(const DatasetSpec&) const = default;
};

// A shard within a dataset: (epoch, index) names it; `offset` records of it are consumed.
// A stream's shard is named by its partition and record offsets [begin, end) instead.
struct ShardRef {
  int64_t epoch = 0;
  uint64_t index = 0;
  uint64_t offset = 0;
  std::string partition;        // streams only
  uint64_t begin = 0, end = 0;  // streams only
  bool operator==(const ShardRef&) const = default;
};

// A stream partition's position: its records before `offset` were handed out.
struct PartitionOffset {
  std::string partition;
  uint64_t offset = 0;
  bool operator==(const PartitionOffset&) const = default;
};

struct Grant {
  uint64_t id = 0;              // unique per grant (a shard granted again gets a new id)
  ShardRef shard;               // offset: where this grant starts
  uint64_t begin = 0, end = 0;  // the shard's record range [begin, end); this grant covers
                                // positions [shard.offset, end - begin) of the shard's order
  std::string worker;
  // A stream's grant covers the partition's records [begin, end); shard.partition names it.
};

// The job-wide data position: every shard before `cursor` of `epoch` (and every shard of
// earlier epochs) is consumed, except those in `pending`, each consumed up to its offset.
// A stream's: every record before each partition's offset was consumed, except `pending`.
struct Position {
  int64_t epoch = 0;
  uint64_t cursor = 0;
  std::vector<ShardRef> pending;            // in the order they are handed out again
  std::vector<PartitionOffset> partitions;  // streams only, by name
  bool operator==(const Position&) const = default;
};

class ShardQueue {
 public:
  explicit ShardQueue(DatasetSpec spec);

  const DatasetSpec& spec() const { return spec_; }
  uint64_t num_shards() const { return num_shards_; }

  // Streams: appends the partition's records [begin, end). Ranges of a partition must be
  // contiguous (a gap is INVALID_ARGUMENT); records appended before are skipped, so a
  // producer may repeat itself. `last` closes the stream (it finishes once all is consumed).
  // Returns the number of new records.
  StatusOr<uint64_t> Append(const std::string& partition, uint64_t begin, uint64_t end, bool last);

  // The next shard for `worker`, or nullopt when none is available now (every epoch handed
  // out, or a stream's appended records all handed out).
  std::optional<Grant> Next(const std::string& worker, TimePoint now);
  // How far grant `id` was consumed (records of its shard, from the shard's start); a
  // consumed-to-the-end grant is done. NOT_FOUND for an unknown (e.g. expired) grant.
  Status Report(uint64_t id, uint64_t consumed);
  // Takes back every shard `worker` holds (it failed or left): they go to the front of the
  // queue from their reported offset. Returns how many.
  int TakeBack(const std::string& worker);
  // Takes back grants leased longer than `timeout` (a hung worker). Returns how many.
  int Expire(TimePoint now, Duration timeout);
  // Takes back every grant (the round that held them ended). Returns how many.
  int TakeBackAll();

  // The position if the model has consumed exactly `consumed` records of each in-flight
  // shard (by grant id; grants not listed: their reported offset).
  Position PositionWith(const std::map<uint64_t, uint64_t>& consumed) const;
  Position CurrentPosition() const { return PositionWith({}); }
  // Continues from `position` (INVALID_ARGUMENT if it does not fit this dataset); in-flight
  // grants are forgotten.
  Status Restore(const Position& position);

  bool finished() const;
  size_t in_flight() const { return in_flight_.size(); }
  uint64_t granted_records() const { return granted_records_; }

 private:
  struct Lease {
    Grant grant;
    uint64_t reported = 0;  // consumed records of the shard (>= grant.shard.offset)
    TimePoint start;
  };
  struct Partition {
    uint64_t first = 0;     // the first offset ever appended
    uint64_t cut = 0;       // records before it were cut into shards
    uint64_t appended = 0;  // records before it were appended
  };
  uint64_t ShardLength(uint64_t index) const;
  bool Bounded() const { return spec_.epochs > 0; }
  int TakeBackIf(const std::function<bool(const Lease&)>& pred);
  std::optional<ShardRef> TakeNextRef();
  std::optional<ShardRef> CutStreamShard();
  Status RestoreStream(const Position& position);

  DatasetSpec spec_;
  uint64_t num_shards_ = 0;
  int64_t epoch_ = 0;
  uint64_t cursor_ = 0;
  std::deque<ShardRef> todo_;            // taken back / restored, handed out first
  std::map<uint64_t, Lease> in_flight_;  // by grant id
  uint64_t next_id_ = 1;
  uint64_t granted_records_ = 0;
  // Streams: partitions, and (partition, end) in append order, cut front to back.
  std::map<std::string, Partition> partitions_;
  std::deque<std::pair<std::string, uint64_t>> appends_;
  bool closed_ = false;
};

}  // namespace keel::data
