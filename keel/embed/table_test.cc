// The embedding table against an in-memory oracle: rows never lost or corrupted while moving
// between DRAM and the SSD tier under a budget of a few rows per shard; admission and expiry;
// the optimizers' first steps written out; concurrent lookups and updates (SGD updates
// commute, so the final rows are known whatever the interleaving); bad options.
#include "keel/embed/table.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "keel/embed/initializer.h"
#include "keel/embed/shard.h"

namespace keel::embed {
namespace {

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/keel-embed-" + name + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

// Rows per shard the budget allows, for options with SGD (no slots).
int64_t Budget(int64_t dim, int shards, int64_t rows_per_shard) {
  return shards * rows_per_shard * Shard::BytesPerRow(dim, 0);
}

// The oracle: what every row must hold, for SGD with admission at the first sighting.
struct Oracle {
  Initializer init;
  int64_t dim;
  float lr;
  std::map<int64_t, std::vector<float>> rows;

  std::vector<float> Lookup(int64_t id) {
    auto it = rows.find(id);
    if (it == rows.end()) {
      std::vector<float> v(dim);
      init.Fill(static_cast<uint64_t>(id), v.data(), dim);
      it = rows.emplace(id, v).first;
    }
    return it->second;
  }
  void Apply(int64_t id, const float* g) {
    auto it = rows.find(id);
    if (it == rows.end()) return;
    for (int64_t j = 0; j < dim; ++j) it->second[j] -= lr * g[j];
  }
};

TEST(Table, RowsSurviveTierMovesUnderATinyBudget) {
  const int64_t dim = 8;
  const int shards = 4;
  TableOptions o{.dim = dim,
                 .dram_budget_bytes = Budget(dim, shards, 3),
                 .ssd_path = TempDir("moves"),
                 .optimizer = {.kind = OptimizerKind::kSgd, .lr = 0.5f},
                 .init = "normal(0,1)",
                 .seed = 7,
                 .shards = shards};
  auto table = Table::Create(o);
  ASSERT_TRUE(table.ok()) << table.status();
  Oracle oracle{*Initializer::Parse("normal(0,1)", 7), dim, 0.5f, {}};
  std::mt19937_64 rng(3);
  const int64_t ops = std::getenv("KEEL_SANITIZED") ? 100'000 : 1'000'000;  // rows touched
  int64_t touched = 0;
  while (touched < ops) {
    const int n = 1 + static_cast<int>(rng() % 32);
    std::vector<int64_t> ids(n);
    for (auto& id : ids) id = static_cast<int64_t>(rng() % 400) - 50;  // negative ids too
    touched += n;
    if (rng() % 2 == 0) {
      std::vector<float> out(n * dim);
      ASSERT_TRUE((*table)->Lookup(ids, out.data()).ok());
      for (int i = 0; i < n; ++i) {
        const std::vector<float> want = oracle.Lookup(ids[i]);
        for (int64_t j = 0; j < dim; ++j) {
          ASSERT_EQ(out[i * dim + j], want[j]) << "id " << ids[i] << " after " << touched;
        }
      }
    } else {
      std::vector<float> g(n * dim);
      for (auto& v : g) v = static_cast<float>(static_cast<int>(rng() % 9) - 4);  // exact sums
      ASSERT_TRUE((*table)->ApplyGradients(ids, g.data()).ok());
      // Repeated ids: their gradients are summed (in batch order) before the step.
      std::map<int64_t, std::vector<float>> summed;
      for (int i = 0; i < n; ++i) {
        auto& acc = summed.try_emplace(ids[i], std::vector<float>(dim, 0.0f)).first->second;
        for (int64_t j = 0; j < dim; ++j) acc[j] += g[i * dim + j];
      }
      for (const auto& [id, acc] : summed) oracle.Apply(id, acc.data());
    }
  }
  const TableStats s = (*table)->stats();
  EXPECT_EQ(s.dram_rows + s.ssd_rows, static_cast<int64_t>(oracle.rows.size()));
  EXPECT_LE(s.dram_rows, shards * 3);
  EXPECT_GT(s.evictions, 1000);
  EXPECT_GT(s.ssd_hits, 1000);
  EXPECT_EQ(s.dropped, 0);
}

TEST(Table, WithoutAnSsdTierRowsPastTheBudgetAreDroppedAndCounted) {
  TableOptions o{.dim = 4,
                 .dram_budget_bytes = Budget(4, 1, 10),
                 .optimizer = {.kind = OptimizerKind::kSgd},
                 .shards = 1};
  auto table = *Table::Create(o);
  std::vector<int64_t> ids(100);
  for (int i = 0; i < 100; ++i) ids[i] = i;
  std::vector<float> out(400);
  ASSERT_TRUE(table->Lookup(ids, out.data()).ok());
  EXPECT_EQ(table->stats().dram_rows, 10);
  EXPECT_EQ(table->stats().dropped, 90);
}

TEST(Table, EvictionKeepsFrequentlySeenRowsInDram) {
  TableOptions o{.dim = 2,
                 .dram_budget_bytes = Budget(2, 1, 10),
                 .ssd_path = TempDir("lfu"),
                 .optimizer = {.kind = OptimizerKind::kSgd},
                 .shards = 1};
  auto table = *Table::Create(o);
  std::vector<float> out(4);
  const std::vector<int64_t> hot = {1, 2};
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(table->Lookup(hot, out.data()).ok());
  for (int64_t cold = 100; cold < 200; ++cold) {  // a scan of ids seen once
    ASSERT_TRUE(table->Lookup({&cold, 1}, out.data()).ok());
  }
  EXPECT_GT(table->stats().evictions, 80);
  const int64_t ssd_hits = table->stats().ssd_hits;
  ASSERT_TRUE(table->Lookup(hot, out.data(), /*train=*/false).ok());
  EXPECT_EQ(table->stats().ssd_hits, ssd_hits);  // both were still in DRAM
}

TEST(Table, RowsOfTheRunningStepAreNotEvictedBeforeTheirGradient) {
  TableOptions o{.dim = 2,
                 .dram_budget_bytes = Budget(2, 1, 10),
                 .ssd_path = TempDir("step"),
                 .optimizer = {.kind = OptimizerKind::kSgd},
                 .shards = 1};
  auto table = *Table::Create(o);
  std::vector<float> out(2), grad(2, 0.5f);
  std::vector<int64_t> hot(10);
  for (int64_t i = 0; i < 10; ++i) hot[i] = i + 1;
  std::vector<float> hot_out(20);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(table->Lookup(hot, hot_out.data()).ok());
  // Each new id is the least-seen row when the lookup evicts down to the budget; it is kept
  // for its gradient, and a hot row or an older new id goes instead.
  for (int64_t id = 100; id < 140; ++id) {
    ASSERT_TRUE(table->Lookup({&id, 1}, out.data()).ok());
    const int64_t ssd_hits = table->stats().ssd_hits;
    ASSERT_TRUE(table->ApplyGradients({&id, 1}, grad.data()).ok());
    EXPECT_EQ(table->stats().ssd_hits, ssd_hits) << "id " << id << " was evicted and read back";
  }
  EXPECT_GE(table->stats().evictions, 40);
}

TEST(Table, IdsGetARowOnlyAfterAdmitAfterSightings) {
  TableOptions o{.dim = 4,
                 .optimizer = {.kind = OptimizerKind::kSgd, .lr = 1.0f},
                 .admit_after = 3,
                 .init = "uniform(1,2)"};
  auto table = *Table::Create(o);
  std::vector<float> out(8), g(8, 1.0f);
  const std::vector<int64_t> ids = {42, 43};
  for (int sighting = 1; sighting <= 2; ++sighting) {  // not admitted: zeros, updates dropped
    ASSERT_TRUE(table->Lookup(ids, out.data()).ok());
    for (float v : out) EXPECT_EQ(v, 0.0f) << "sighting " << sighting;
    ASSERT_TRUE(table->ApplyGradients(ids, g.data()).ok());
  }
  EXPECT_EQ(table->stats().dram_rows, 0);
  EXPECT_EQ(table->stats().rejected, 4);
  ASSERT_TRUE(table->Lookup(ids, out.data()).ok());  // third sighting: admitted, initialised
  for (float v : out) EXPECT_TRUE(v >= 1.0f && v <= 2.0f) << v;
  std::vector<float> before = out;
  ASSERT_TRUE(table->ApplyGradients(ids, g.data()).ok());
  ASSERT_TRUE(table->Lookup(ids, out.data(), /*train=*/false).ok());
  for (int j = 0; j < 8; ++j) EXPECT_FLOAT_EQ(out[j], before[j] - 1.0f);
  EXPECT_EQ(table->stats().admissions, 2);
  // A batch repeating an id counts every occurrence; eval lookups count nothing.
  const std::vector<int64_t> thrice = {7, 7, 7}, eval = {9, 9, 9, 9};
  std::vector<float> out3(12), out4(16);
  ASSERT_TRUE(table->Lookup(eval, out4.data(), /*train=*/false).ok());
  ASSERT_TRUE(table->Lookup(thrice, out3.data()).ok());
  EXPECT_EQ(table->stats().admissions, 3);
  EXPECT_NE(out3[0], 0.0f);
}

TEST(Table, RowsUnseenForTtlStepsExpireFromBothTiers) {
  TableOptions o{.dim = 2,
                 .dram_budget_bytes = Budget(2, 1, 2),
                 .ssd_path = TempDir("ttl"),
                 .optimizer = {.kind = OptimizerKind::kSgd},
                 .ttl_steps = 5,
                 .shards = 1};
  auto table = *Table::Create(o);
  std::vector<float> out(2 * 6), g(2, 0.0f);
  const std::vector<int64_t> old = {1, 2, 3, 4, 5, 6}, hot = {6};
  ASSERT_TRUE(table->Lookup(old, out.data()).ok());  // 2 in DRAM, 4 on SSD
  EXPECT_EQ(table->stats().ssd_rows, 4);
  for (int step = 0; step < 10; ++step) {
    ASSERT_TRUE(table->Lookup(hot, out.data()).ok());
    ASSERT_TRUE(table->ApplyGradients(hot, g.data()).ok());
  }
  const TableStats s = table->stats();
  EXPECT_EQ(s.dram_rows + s.ssd_rows, 1);
  EXPECT_EQ(s.expired, 5);
}

TEST(Table, AdagradAndAdamFirstStepsAsWrittenOut) {
  const float lr = 0.1f, g = 0.5f;
  for (OptimizerKind kind : {OptimizerKind::kAdagrad, OptimizerKind::kAdam}) {
    TableOptions o{.dim = 3, .optimizer = {.kind = kind, .lr = lr}, .init = "uniform(1,1)"};
    auto table = *Table::Create(o);
    const std::vector<int64_t> ids = {5};
    std::vector<float> out(3), grad(3, g);
    ASSERT_TRUE(table->Lookup(ids, out.data()).ok());
    ASSERT_TRUE(table->ApplyGradients(ids, grad.data()).ok());
    ASSERT_TRUE(table->ApplyGradients(ids, grad.data()).ok());
    ASSERT_TRUE(table->Lookup(ids, out.data(), false).ok());
    double w = 1;
    if (kind == OptimizerKind::kAdagrad) {  // sum starts at 0.1
      double sum = 0.1;
      for (int t = 0; t < 2; ++t) {
        sum += g * g;
        w -= lr * g / (std::sqrt(sum) + 1e-10);
      }
    } else {  // Adam, bias-corrected, no weight decay
      double m = 0, v = 0;
      for (int t = 1; t <= 2; ++t) {
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        w -= lr * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.999, t))) + 1e-8);
      }
    }
    for (float v : out) EXPECT_NEAR(v, w, 1e-6) << static_cast<int>(kind);
  }
}

TEST(Table, ConcurrentLookupsAndUpdatesLoseNothing) {
  const int64_t dim = 4;
  TableOptions o{.dim = dim,
                 .dram_budget_bytes = Budget(dim, 8, 4),
                 .ssd_path = TempDir("threads"),
                 .optimizer = {.kind = OptimizerKind::kSgd, .lr = 1.0f},
                 .shards = 8};
  auto table = *Table::Create(o);
  const int threads = 4, rounds = std::getenv("KEEL_SANITIZED") ? 300 : 2000;
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<float> out(16 * dim), g(16 * dim, 1.0f);
      for (int r = 0; r < rounds; ++r) {
        std::vector<int64_t> ids(16);
        for (auto& id : ids) id = rng() % 200;
        ASSERT_TRUE(table->Lookup(ids, out.data()).ok());
        ASSERT_TRUE(table->ApplyGradients(ids, g.data()).ok());
      }
    });
  }
  for (auto& w : workers) w.join();
  // Every id was looked up before its own updates, so every gradient applied: row = -count.
  std::map<int64_t, int> count;
  for (int t = 0; t < threads; ++t) {
    std::mt19937 rng(t);
    for (int r = 0; r < rounds; ++r) {
      for (int k = 0; k < 16; ++k) ++count[rng() % 200];
    }
  }
  std::vector<int64_t> ids;
  ids.reserve(count.size());
  for (const auto& [id, c] : count) ids.push_back(id);
  std::vector<float> out(ids.size() * dim);
  ASSERT_TRUE(table->Lookup(ids, out.data(), false).ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(out[i * dim + j], -count[ids[i]]) << ids[i];
  }
}

TEST(Table, BadOptionsAreRejectedWithTheReason) {
  auto message = [](const TableOptions& o) { return Table::Create(o).status().message(); };
  EXPECT_NE(message({.dim = 0}).find("dim 0"), std::string::npos);
  EXPECT_NE(message({.dim = 4, .dram_budget_bytes = -1}).find("dram_budget -1"), std::string::npos);
  EXPECT_NE(message({.dim = 4, .dram_budget_bytes = 10}).find("less than one row"),
            std::string::npos);
  EXPECT_NE(message({.dim = 4, .init = "gauss(0,1)"}).find("gauss"), std::string::npos);
  EXPECT_NE(message({.dim = 4, .init = "normal(0,-1)"}).find("std >= 0"), std::string::npos);
  EXPECT_NE(message({.dim = 4, .shards = 3}).find("power of two"), std::string::npos);
  EXPECT_NE(message({.dim = 4, .optimizer = {.lr = -1}}).find("lr"), std::string::npos);
  EXPECT_FALSE(Table::Create({.dim = 4, .ssd_path = "/proc/keel-cannot-write-here"}).ok());
  auto table = *Table::Create({.dim = 4});
  (void)table;
}

TEST(ParseBytes, SizesAndGarbage) {
  EXPECT_EQ(*ParseBytes("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(*ParseBytes("512M"), int64_t{512} << 20);
  EXPECT_EQ(*ParseBytes("1.5K"), 1536);
  EXPECT_EQ(*ParseBytes("4096"), 4096);
  EXPECT_EQ(*ParseBytes("10B"), 10);
  for (const char* bad : {"", "-1G", "2X", "G", "1GiBs", "nan"}) {
    EXPECT_FALSE(ParseBytes(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace keel::embed
