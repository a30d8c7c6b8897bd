// keel::embed::Table under Zipf-distributed ids: the whole table in DRAM vs a DRAM budget of a
// fraction of it with the rest on the SSD tier, in the same run.
//
//   build/bench/keel_embed_table_bench --rows 10000000 --dim 16 --alpha 1.05
//       [--budget-fraction 0.2] [--ssd-dir /var/tmp/keel-embed-bench] [--warmup 1000]
//       [--runs 3] [--only all|budget]
//
// Every id of the table is created first (lookups of all `rows` ids in batches), so the table
// really holds `rows` rows; `warmup` batches bring it to its steady state (lookup + update);
// then, `runs` times, `batches` timed batches of lookups and `batches` timed batches of
// lookup + update, each set a separate draw of `batch` ids from Zipf(alpha) over the ranks, hot
// ranks scattered over the id space by a hash. Prints, per configuration, medians over the
// runs: ids/s (one thread) for lookups and for lookup+update (Adagrad), the DRAM hit rate of
// the lookup phase (per id, repeats included), p50 and p99 lookup-batch latency, DRAM
// rows/bytes as budgeted, and the process's resident memory.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "keel/embed/initializer.h"
#include "keel/embed/shard.h"
#include "keel/embed/table.h"

namespace {

using Clock = std::chrono::steady_clock;
using keel::embed::Mix64;
using keel::embed::Table;
using keel::embed::TableOptions;
using keel::embed::TableStats;

int64_t ResidentBytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// Batches of ids drawn from Zipf(alpha) over [0, rows) ranks, mapped to ids by a hash.
std::vector<std::vector<int64_t>> ZipfBatches(int64_t rows, double alpha, int batches, int batch,
                                              uint64_t seed) {
  std::vector<double> cdf(rows);
  double sum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    sum += std::pow(static_cast<double>(r + 1), -alpha);
    cdf[r] = sum;
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, sum);
  std::vector<std::vector<int64_t>> out(batches, std::vector<int64_t>(batch));
  for (auto& b : out) {
    for (auto& id : b) {
      const int64_t rank = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
      id = static_cast<int64_t>(Mix64(static_cast<uint64_t>(rank)) >> 1);
    }
  }
  return out;
}

struct Result {
  double lookups_per_s = 0, updates_per_s = 0, hit_rate = 0, p50_ms = 0, p99_ms = 0;
  TableStats stats;
  int64_t rss = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Result Run(const TableOptions& o, int64_t rows, int64_t warmup, int runs, double alpha,
           int num_batches, int64_t batch) {
  auto table = Table::Create(o);
  if (!table.ok()) {
    fmt::print(stderr, "{}\n", table.status().ToString());
    std::exit(1);
  }
  Table& t = **table;
  std::vector<float> out(batch * o.dim), grads(batch * o.dim, 0.01f);
  std::vector<int64_t> ids(batch);
  for (int64_t first = 0; first < rows; first += batch) {  // create every row
    const int64_t n = std::min(batch, rows - first);
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(Mix64(first + i) >> 1);
    if (!t.Lookup({ids.data(), static_cast<size_t>(n)}, out.data()).ok()) std::exit(2);
  }
  // Warm-up on other draws of the same distribution: the tiers reach their steady state.
  for (int64_t done = 0; done < warmup;) {
    for (const auto& b :
         ZipfBatches(rows, alpha, static_cast<int>(std::min<int64_t>(warmup - done, 1000)),
                     static_cast<int>(batch), 7 + 1000 * done)) {
      if (!t.Lookup(b, out.data()).ok() || !t.ApplyGradients(b, grads.data()).ok()) std::exit(2);
      ++done;
    }
  }
  std::vector<double> lookups, updates, hits, p50, p99;
  for (int run = 0; run < runs; ++run) {
    const auto batches = ZipfBatches(rows, alpha, num_batches, static_cast<int>(batch), 42 + run);
    const auto updates_batches =
        ZipfBatches(rows, alpha, num_batches, static_cast<int>(batch), 99 + run);
    const TableStats before = t.stats();
    std::vector<double> ms;
    auto start = Clock::now();
    for (const auto& b : batches) {
      const auto t0 = Clock::now();
      if (!t.Lookup(b, out.data()).ok()) std::exit(3);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    const double lookup_s = std::chrono::duration<double>(Clock::now() - start).count();
    const TableStats after = t.stats();
    start = Clock::now();
    for (const auto& b : updates_batches) {
      if (!t.Lookup(b, out.data()).ok() || !t.ApplyGradients(b, grads.data()).ok()) std::exit(4);
    }
    const double update_s = std::chrono::duration<double>(Clock::now() - start).count();
    std::sort(ms.begin(), ms.end());
    const double total = static_cast<double>(batches.size() * batch);
    lookups.push_back(total / lookup_s);
    updates.push_back(total / update_s);
    const int64_t looked = after.lookups - before.lookups;
    hits.push_back(looked > 0 ? static_cast<double>(after.dram_hits - before.dram_hits) / looked
                              : 0);
    p50.push_back(ms[ms.size() / 2]);
    p99.push_back(ms[std::min(ms.size() - 1, ms.size() * 99 / 100)]);
  }
  Result r;
  r.lookups_per_s = Median(lookups);
  r.updates_per_s = Median(updates);
  r.hit_rate = Median(hits);
  r.p50_ms = Median(p50);
  r.p99_ms = Median(p99);
  r.stats = t.stats();
  r.rss = ResidentBytes();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("keel embedding table: all-DRAM vs a DRAM budget + SSD tier, Zipf ids");
  int64_t rows = 10'000'000, dim = 16;
  double alpha = 1.05, fraction = 0.2;
  int batches = 200, batch = 4096, runs = 3;
  int64_t warmup = 1000;
  std::string ssd_dir = "/var/tmp/keel-embed-bench", only;
  app.add_option("--rows", rows, "rows in the table")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 34));
  app.add_option("--dim", dim, "row width")->check(CLI::Range(1, 4096));
  app.add_option("--alpha", alpha, "Zipf exponent")->check(CLI::Range(0.1, 3.0));
  app.add_option("--budget-fraction", fraction, "DRAM budget / table bytes")
      ->check(CLI::Range(0.001, 1.0));
  app.add_option("--batches", batches, "timed batches")->check(CLI::Range(10, 100000));
  app.add_option("--batch", batch, "ids per batch")->check(CLI::Range(1, 1 << 20));
  app.add_option("--ssd-dir", ssd_dir, "directory for the SSD tier");
  app.add_option("--warmup", warmup, "untimed batches before the runs")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--runs", runs, "timed runs (medians are printed)")->check(CLI::Range(1, 100));
  app.add_option("--only", only, "run one configuration")->check(CLI::IsMember({"all", "budget"}));
  CLI11_PARSE(app, argc, argv);

  TableOptions o{.dim = dim,
                 .optimizer = {.kind = keel::embed::OptimizerKind::kAdagrad, .lr = 0.05f},
                 .init = "normal(0,0.01)"};
  fmt::print(
      "rows {}  dim {}  alpha {}  batch {}  warm-up {}  timed batches {} x {} runs (medians)  "
      "adagrad, 1 thread\n",
      rows, dim, alpha, batch, warmup, batches, runs);
  fmt::print("{:>12} {:>12} {:>14} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}\n", "config", "lookups/s",
             "lookup+upd/s", "hit", "p50 ms", "p99 ms", "DRAM rows", "DRAM MiB", "RSS MiB");
  Result all;
  for (int pass = 0; pass < 2; ++pass) {
    if ((pass == 0 && only == "budget") || (pass == 1 && only == "all")) continue;
    TableOptions c = o;
    if (pass == 1) {  // the budget: a fraction of the table's bytes as the DRAM tier counts them
      c.dram_budget_bytes = static_cast<int64_t>(
          static_cast<double>(rows) * static_cast<double>(keel::embed::Shard::BytesPerRow(dim, 1)) *
          fraction);
      c.ssd_path = ssd_dir;
    }
    const Result r = Run(c, rows, warmup, runs, alpha, batches, batch);
    if (pass == 0) all = r;
    fmt::print("{:>12} {:>12.0f} {:>14.0f} {:>8.3f} {:>8.2f} {:>8.2f} {:>10} {:>10.0f} {:>10.0f}\n",
               pass == 0 ? "all DRAM" : fmt::format("{:.0f}% DRAM", fraction * 100),
               r.lookups_per_s, r.updates_per_s, r.hit_rate, r.p50_ms, r.p99_ms, r.stats.dram_rows,
               r.stats.dram_bytes / 1048576.0, r.rss / 1048576.0);
    if (pass == 1 && only.empty()) {
      fmt::print("budget/all-DRAM throughput: lookups {:.2f}, lookup+update {:.2f}\n",
                 r.lookups_per_s / all.lookups_per_s, r.updates_per_s / all.updates_per_s);
    }
  }
  std::filesystem::remove_all(ssd_dir);
}
