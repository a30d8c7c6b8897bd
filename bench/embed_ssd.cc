// SsdStore (the embedding table's SSD tier) under the table's access pattern: rows evicted
// from DRAM in batches (Put), promoted back in batches of 4096 (Take), re-evicted later.
// Measures
//   - Put records/s and MB/s (segment writes through the write buffer),
//   - index bytes per resident row (Stats::index_bytes / rows),
//   - batched Get and Take records/s and batch latency (p50, p99) with the page cache warm
//     and cold (segment files dropped from the page cache with POSIX_FADV_DONTNEED),
//   - read amplification: bytes the block layer read (/proc/self/io read_bytes) per record
//     byte returned, in the cold phase,
//   - a churn phase (Take 4096 random rows, Put them back) that keeps compaction busy:
//     records/s, file bytes over live bytes, compactions.
//
//   build/bench/keel_embed_ssd_bench --dir /tmp/keel_ssd_bench --rows 2000000 --record-bytes 784
//
// Run by hand, never as a test. Figures: docs/results/embedding.md ("SSD tier").
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "keel/embed/ssd_store.h"

namespace {

using Clock = std::chrono::steady_clock;
using keel::embed::SsdStore;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t ProcReadBytes() {
  std::ifstream in("/proc/self/io");
  std::string name;
  int64_t value = 0;
  while (in >> name >> value) {
    if (name == "read_bytes:") return value;
  }
  return -1;
}

// Writes back and drops the segment files' pages, so the next reads go to the device.
void DropPageCache(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

void Check(const keel::Status& s, const char* what) {
  if (!s.ok()) {
    fmt::print(stderr, "{}: {}\n", what, s.ToString());
    std::exit(1);
  }
}

struct Phase {
  double records_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double read_amplification = 0;
};

// `batches` batches of `batch` distinct random resident keys, read with Get or Take (Take puts
// the rows back afterwards, untimed, so the table keeps its size).
Phase ReadPhase(SsdStore& store, const std::vector<uint64_t>& keys, int64_t record_bytes, int batch,
                int batches, bool take, std::mt19937_64& rng) {
  std::vector<uint64_t> batch_keys(batch);
  std::vector<uint8_t> records(batch * record_bytes);
  std::vector<uint8_t> found(batch);
  std::vector<double> latencies;
  double total = 0;
  int64_t returned = 0;
  const int64_t read_before = ProcReadBytes();
  for (int b = 0; b < batches; ++b) {
    for (int i = 0; i < batch; ++i) batch_keys[i] = keys[rng() % keys.size()];
    std::sort(batch_keys.begin(), batch_keys.end());
    batch_keys.erase(std::unique(batch_keys.begin(), batch_keys.end()), batch_keys.end());
    auto t0 = Clock::now();
    Check(take ? store.Take(batch_keys, records.data(), found.data())
               : store.Get(batch_keys, records.data(), found.data()),
          "read");
    auto t1 = Clock::now();
    latencies.push_back(Seconds(t0, t1) * 1e3);
    total += Seconds(t0, t1);
    returned += static_cast<int64_t>(batch_keys.size());
    if (take) Check(store.Put(batch_keys, records.data()), "put back");
  }
  const int64_t read_after = ProcReadBytes();
  std::sort(latencies.begin(), latencies.end());
  Phase p;
  p.records_per_s = static_cast<double>(returned) / total;
  p.p50_ms = latencies[latencies.size() / 2];
  p.p99_ms = latencies[latencies.size() * 99 / 100];
  p.read_amplification =
      static_cast<double>(read_after - read_before) / static_cast<double>(returned * record_bytes);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SsdStore benchmark: batched Put/Get/Take of fixed-size records"};
  std::string dir = "/tmp/keel_ssd_bench";
  int64_t rows = 2'000'000;
  int64_t record_bytes = 784;  // dim 64, fp32 value + 2 optimizer slots, 16 B of metadata
  int batch = 4096;
  int batches = 200;
  int io_threads = 4;
  int64_t segment_mb = 64;
  app.add_option("--dir", dir, "store directory (emptied)");
  app.add_option("--rows", rows, "resident rows");
  app.add_option("--record-bytes", record_bytes, "bytes per record (784: dim 64; 80: dim 16)");
  app.add_option("--batch", batch, "keys per Get/Take batch");
  app.add_option("--batches", batches, "batches per read phase");
  app.add_option("--io-threads", io_threads, "SsdStore::Options::io_threads");
  app.add_option("--segment-mb", segment_mb, "SsdStore::Options::segment_bytes in MiB");
  CLI11_PARSE(app, argc, argv);

  std::filesystem::remove_all(dir);
  auto opened = SsdStore::Open(SsdStore::Options{.dir = dir,
                                                 .record_bytes = record_bytes,
                                                 .segment_bytes = segment_mb << 20,
                                                 .io_threads = io_threads});
  Check(opened.status(), "open");
  std::unique_ptr<SsdStore> store = std::move(*opened);
  std::mt19937_64 rng(1);

  // Fill: random 64-bit ids, evicted in batches.
  std::vector<uint64_t> keys(rows);
  for (auto& k : keys) k = rng();
  std::vector<uint8_t> records(static_cast<size_t>(batch) * record_bytes);
  for (auto& b : records) b = static_cast<uint8_t>(rng());
  auto t0 = Clock::now();
  for (int64_t first = 0; first < rows; first += batch) {
    const int64_t n = std::min<int64_t>(batch, rows - first);
    Check(store->Put(std::span<const uint64_t>(keys.data() + first, n), records.data()), "put");
  }
  const double put_s = Seconds(t0, Clock::now());
  SsdStore::Stats s = store->stats();
  fmt::print("rows {}  record {} B  io_threads {}  segment {} MiB  batch {}\n", rows, record_bytes,
             io_threads, segment_mb, batch);
  fmt::print("put:   {:.2f} M records/s  {:.0f} MB/s  index {:.2f} B/row  files {:.0f} MB\n",
             rows / put_s / 1e6, rows * record_bytes / put_s / 1e6,
             static_cast<double>(s.index_bytes) / s.rows, s.file_bytes / 1e6);

  for (bool cold : {false, true}) {
    for (bool take : {false, true}) {
      if (cold) DropPageCache(dir);
      Phase p = ReadPhase(*store, keys, record_bytes, batch, batches, take, rng);
      fmt::print("{} {}: {:.2f} M records/s  batch p50 {:.2f} ms  p99 {:.2f} ms  read amp {:.2f}\n",
                 take ? "take" : "get ", cold ? "cold" : "warm", p.records_per_s / 1e6, p.p50_ms,
                 p.p99_ms, p.read_amplification);
    }
  }

  // Churn: Take a random batch and Put it back, so every round supersedes `batch` records.
  const int64_t churn_rounds = std::max<int64_t>(1, rows / batch);
  std::vector<uint64_t> batch_keys(batch);
  std::vector<uint8_t> found(batch);
  t0 = Clock::now();
  for (int64_t r = 0; r < churn_rounds; ++r) {
    for (int i = 0; i < batch; ++i) batch_keys[i] = keys[rng() % keys.size()];
    std::sort(batch_keys.begin(), batch_keys.end());
    batch_keys.erase(std::unique(batch_keys.begin(), batch_keys.end()), batch_keys.end());
    Check(store->Take(batch_keys, records.data(), found.data()), "take");
    Check(store->Put(batch_keys, records.data()), "put");
  }
  const double churn_s = Seconds(t0, Clock::now());
  s = store->stats();
  fmt::print(
      "churn: {:.2f} M records/s (take+put)  files/live {:.2f}  compactions {}  "
      "written {:.2f}x rows\n",
      churn_rounds * batch / churn_s / 1e6,
      static_cast<double>(s.file_bytes) / static_cast<double>(s.rows * (record_bytes + 16)),
      s.compactions, static_cast<double>(s.records_written) / rows);
  store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
