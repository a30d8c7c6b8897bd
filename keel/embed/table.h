// keel::embed::Table — an embedding table for sparse models: 64-bit ids -> trainable rows of
// `dim` floats with their optimizer state, under a DRAM budget, with an optional SSD tier.
//
//   TableOptions o{.dim = 64, .dram_budget_bytes = 2LL << 30, .ssd_path = "/data/emb",
//                  .optimizer = {.kind = OptimizerKind::kAdagrad, .lr = 0.05f},
//                  .admit_after = 2, .init = "normal(0,0.01)", .seed = 0};
//   KEEL_ASSIGN_OR_RETURN(auto table, Table::Create(o));
//   KEEL_RETURN_IF_ERROR(table->Lookup(ids, out));          // out: ids.size() x dim floats
//   KEEL_RETURN_IF_ERROR(table->ApplyGradients(ids, grads));  // grads: ids.size() x dim
//
// Rows. A row is its value, its optimizer slots and metadata (sightings, the step it was last
// seen, whether it changed since the last save), always moved, evicted and saved together.
// Admission: an id gets a row once it has been seen `admit_after` times in training lookups
// (counted in a count-min sketch, so ids that never qualify cost no row); until then lookups
// return zeros and its gradients are dropped. A new row starts from `init`, drawn from a
// generator seeded by (seed, id): the same id gets the same initial row on every run.
// Tiers. Rows live in DRAM while their bytes (value, slots, metadata and index share) fit the
// budget; past it, rows of the lowest (sightings, last seen) among a random sample are evicted
// to the SSD tier (or dropped if there is none, counted in stats) and come back on access.
// Lookups and updates always work on DRAM rows. Expiry: with `ttl_steps`, rows not seen for
// that many steps (one step per ApplyGradients call) are deleted.
//
// Checkpoints: Save (full or incremental) and Load; format in docs/formats/embedding-checkpoint.md.
//
// Errors: INVALID_ARGUMENT for bad options (naming the option and value) and mismatched
// buffer sizes; SSD I/O errors propagate with the file named. A failed call leaves every row
// it did not reach unchanged.
// Thread-safety: all methods are thread-safe; concurrent lookups and updates of the same rows
// are serialised per shard.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "keel/common/status.h"

namespace keel::embed {

enum class OptimizerKind { kSgd, kAdagrad, kAdam, kGroupAdam, kGroupFtrl };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdagrad;
  float lr = 0.01f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // Adam, Group Adam
  float initial_accumulator_value = 0.1f;           // Adagrad, Group FTRL
  float lr_power = -0.5f;                           // Group FTRL
  float l1 = 0.0f, l2 = 0.0f, l21 = 0.0f;           // group optimizers
};

struct TableOptions {
  int64_t dim = 0;
  int64_t dram_budget_bytes = 0;  // 0: no limit
  std::string ssd_path;           // empty: no SSD tier
  OptimizerOptions optimizer;
  int64_t admit_after = 0;     // 0 or 1: every id is admitted at its first sighting
  int64_t ttl_steps = 0;       // 0: rows never expire
  std::string init = "zeros";  // "zeros", "normal(mean,std)", "uniform(low,high)"
  uint64_t seed = 0;
  int shards = 64;  // independent locks; a power of two
};

struct TableStats {
  int64_t step = 0;
  int64_t dram_rows = 0, dram_bytes = 0;  // bytes: rows + metadata + index, as budgeted
  int64_t ssd_rows = 0, ssd_bytes = 0;    // bytes: segment files on disk
  int64_t ssd_index_bytes = 0;
  // lookups: ids looked up, repeats in a batch included; dram_hits: those already in DRAM;
  // ssd_hits: rows read back from the SSD tier (once per batch however often repeated).
  int64_t lookups = 0, dram_hits = 0, ssd_hits = 0;
  int64_t admissions = 0, rejected = 0;  // rows created; lookups of ids not admitted yet
  int64_t evictions = 0, dropped = 0;    // rows moved to SSD; rows lost (no SSD tier)
  int64_t expired = 0;
};

class Table {
 public:
  static StatusOr<std::unique_ptr<Table>> Create(const TableOptions& options);
  virtual ~Table() = default;

  int64_t dim() const { return dim_; }
  // out[i * dim, (i + 1) * dim) = row of ids[i]. With `train`, lookups count as sightings
  // (admission, recency) and may create rows; without, they only read (zeros for ids without
  // a row).
  virtual Status Lookup(std::span<const int64_t> ids, float* out, bool train = true) = 0;
  // One optimizer step on the rows of `ids` (gradients of repeated ids are summed); ids
  // without a row are skipped. Advances the table's step by one.
  virtual Status ApplyGradients(std::span<const int64_t> ids, const float* grads) = 0;
  // Deletes rows not seen for ttl_steps (also done every ttl_steps steps by ApplyGradients).
  virtual Status Expire() = 0;
  // Writes the table to `dir` (created if needed): every row with its slots and metadata, the
  // step. With `incremental`, and a previous Save to (or Load from) the same directory by this
  // table, only rows changed since then and the ids deleted since then are written, as a
  // delta applied over the earlier files; otherwise a full save, after which older files there
  // are removed. A save is committed by an atomic rename of dir/MANIFEST: a crash or error
  // mid-save leaves the previous save loadable. Lookups and updates may run meanwhile (each
  // row is saved as it was at one moment).
  virtual Status Save(const std::string& dir, bool incremental) = 0;
  // Replaces the table's rows and step with a save's (its full file and deltas). Files are
  // checked (CRC, header vs. this table's dim and optimizer) before anything is replaced: a bad
  // or mismatched checkpoint is an error and leaves the table as it was.
  virtual Status Load(const std::string& dir) = 0;
  virtual TableStats stats() const = 0;

 protected:
  explicit Table(int64_t dim) : dim_(dim) {}
  const int64_t dim_;
};

// Parses a budget: bytes, or a number with K/M/G/T (KiB-based, optional "iB"/"B").
StatusOr<int64_t> ParseBytes(const std::string& text);

}  // namespace keel::embed
