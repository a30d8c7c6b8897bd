// SsdStore: the SSD tier of keel's embedding table — fixed-size records (a row's value, its
// optimizer slots and metadata, packed by the table) keyed by 64-bit ids, in log-structured
// segment files under one directory, with an in-memory index of at most 16 bytes per resident
// row.
//
//   SsdStore::Options o{.dir = "/data/emb/tier", .record_bytes = 3 * 64 * 4 + 16};
//   KEEL_ASSIGN_OR_RETURN(auto store, SsdStore::Open(o));
//   KEEL_RETURN_IF_ERROR(store->Put(keys, records));           // rows evicted from DRAM
//   KEEL_RETURN_IF_ERROR(store->Take(keys, records, found));   // rows promoted back to DRAM
//
// Semantics: the store holds at most one record per key. Put replaces (appends the new record,
// the old one becomes garbage); Take reads and removes (the row lives in DRAM again, which is
// authoritative); Get reads without removing (checkpoints). Segment files whose garbage share
// passes `compact_garbage_ratio` are rewritten (live records appended anew) and deleted, so the
// space of rewritten rows comes back.
//
// The directory is the store's own scratch space: Open creates it (or empties a previous
// store's files there, refusing a directory holding anything else) and takes an exclusive
// lock on it (a second Open fails clearly). Durability is not the store's job — the table's
// checkpoints are (a crash loses the SSD tier, exactly like the DRAM tier).
//
// Errors: INVALID_ARGUMENT for bad options or a key count that does not match the buffers;
// an I/O failure is INTERNAL/UNAVAILABLE naming the file and errno, and leaves the store
// as it was before the call (a failed Put indexes none of its records).
// Thread-safety: all methods are thread-safe (internally synchronized); batch reads are split
// over an internal I/O thread pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "keel/common/status.h"

namespace keel::embed {

class SsdStore {
 public:
  struct Options {
    std::string dir;
    int64_t record_bytes = 0;                // > 0
    int64_t segment_bytes = 64 << 20;        // size at which the active segment is sealed
    double compact_garbage_ratio = 1.0 / 3;  // rewrite a sealed segment past this garbage share
    int io_threads = 4;                      // parallel preads for batched reads
  };

  struct Stats {
    int64_t rows = 0;             // resident records
    int64_t index_bytes = 0;      // DRAM the index takes (its allocated capacity)
    int64_t file_bytes = 0;       // bytes in segment files on disk
    int64_t garbage_bytes = 0;    // of which superseded or removed
    int64_t records_written = 0;  // by Put and compaction
    int64_t records_read = 0;
    int64_t compactions = 0;  // segments rewritten
  };

  static StatusOr<std::unique_ptr<SsdStore>> Open(const Options& options);
  virtual ~SsdStore() = default;

  // keys[i]'s record is records[i * record_bytes, (i + 1) * record_bytes). Keys in one call
  // must be distinct.
  virtual Status Put(std::span<const uint64_t> keys, const uint8_t* records) = 0;
  // For each key: if resident, copies its record to records[i * record_bytes ...], sets
  // found[i] = 1 and removes it; else found[i] = 0 (records[i] untouched).
  virtual Status Take(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found) = 0;
  // As Take, without removing.
  virtual Status Get(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found) = 0;
  // Removes the keys that are resident (others are ignored).
  virtual Status Erase(std::span<const uint64_t> keys) = 0;
  // Calls fn(key, record) for every resident record (order unspecified); Put/Take/Erase from
  // other threads wait until it returns. Stops at, and returns, fn's first error.
  virtual Status ForEach(const std::function<Status(uint64_t, const uint8_t*)>& fn) = 0;

  virtual Stats stats() const = 0;
};

}  // namespace keel::embed
