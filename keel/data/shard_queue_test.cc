// ShardQueue: shard order, leases, take-back, positions; and the exactly-once property with
// workers dying and the job rolled back to checkpoints at random.
#include "keel/data/shard_queue.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <vector>

namespace keel::data {
namespace {

const TimePoint kT0{};

DatasetSpec Spec(uint64_t size, uint64_t shard, int64_t epochs = 1, bool shuffle = false) {
  return {.name = "d",
          .size = size,
          .shard_size = shard,
          .epochs = epochs,
          .shuffle = shuffle,
          .seed = 3};
}

TEST(ShardQueue, RejectsBadSpecs) {
  EXPECT_EQ(Spec(0, 1).Validate().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(Spec(10, 0).Validate().message().find("shard size must be > 0"), std::string::npos);
  EXPECT_TRUE(Spec(10, 1, 0).Validate().ok());  // epochs <= 0: unbounded
  DatasetSpec unnamed = Spec(10, 1);
  unnamed.name.clear();
  EXPECT_EQ(unnamed.Validate().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Spec(10, 20).Validate().ok());
}

TEST(ShardQueue, EveryShardOncePerEpochInASeededOrderWhoeverAsks) {
  ShardQueue a(Spec(1050, 100, 2, true)), b(Spec(1050, 100, 2, true));
  EXPECT_EQ(a.num_shards(), 11u);
  std::vector<std::multiset<uint64_t>> per_epoch(2);
  uint64_t records = 0;
  for (int i = 0; i < 22; ++i) {
    auto g = a.Next(i % 2 ? "w1" : "w0", kT0);
    auto h = b.Next("other", kT0);
    ASSERT_TRUE(g && h);
    EXPECT_EQ(g->shard, h->shard);  // same order whoever asks
    per_epoch[g->shard.epoch].insert(g->shard.index);
    EXPECT_EQ(g->begin, g->shard.index * 100);
    EXPECT_EQ(g->end - g->begin, g->shard.index == 10 ? 50u : 100u);  // the last is short
    records += g->end - g->begin;
    ASSERT_TRUE(a.Report(g->id, g->end - g->begin).ok());
  }
  for (const auto& e : per_epoch)
    EXPECT_EQ(e, (std::multiset<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(records, 2100u);
  EXPECT_FALSE(a.Next("w0", kT0));
  EXPECT_TRUE(a.finished());
}

TEST(ShardQueue, ShardsOfAFailedWorkerComeBackFirstFromWhereItStopped) {
  ShardQueue q(Spec(1000, 100));
  auto g0 = q.Next("dead", kT0);
  auto g1 = q.Next("alive", kT0);
  ASSERT_TRUE(q.Report(g0->id, 30).ok());
  EXPECT_EQ(q.TakeBack("dead"), 1);
  EXPECT_EQ(q.Report(g0->id, 40).code(), StatusCode::kNotFound);  // no longer its grant
  auto again = q.Next("alive", kT0);
  EXPECT_EQ(again->shard, (ShardRef{0, g0->shard.index, 30}));
  EXPECT_NE(again->id, g0->id);
  EXPECT_EQ(q.granted_records(), 100u + 100u + 70u);
  (void)g1;
}

TEST(ShardQueue, LeasesExpire) {
  ShardQueue q(Spec(1000, 100));
  auto g = q.Next("slow", kT0);
  EXPECT_EQ(q.Expire(kT0 + std::chrono::seconds(10), std::chrono::seconds(30)), 0);
  EXPECT_EQ(q.Expire(kT0 + std::chrono::seconds(31), std::chrono::seconds(30)), 1);
  EXPECT_EQ(q.Next("fast", kT0)->shard.index, g->shard.index);
}

TEST(ShardQueue, ReportsOutsideTheGrantAreRejected) {
  ShardQueue q(Spec(1000, 100));
  auto g = q.Next("w", kT0);
  EXPECT_EQ(q.Report(g->id, 101).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(q.Report(999, 1).code(), StatusCode::kNotFound);
  ASSERT_TRUE(q.Report(g->id, 50).ok());
  ASSERT_TRUE(q.Report(g->id, 40).ok());  // late, older report: keeps 50
  EXPECT_EQ(q.CurrentPosition().pending, (std::vector<ShardRef>{{0, g->shard.index, 50}}));
}

TEST(ShardQueue, PositionsRoundTripAndBadOnesAreRejected) {
  ShardQueue q(Spec(1000, 100, 2, true));
  auto a = q.Next("w0", kT0);
  auto b = q.Next("w1", kT0);
  ASSERT_TRUE(q.Report(a->id, 100).ok());
  const Position p = q.PositionWith({{b->id, 20}});
  EXPECT_EQ(p.epoch, 0);
  EXPECT_EQ(p.cursor, 2u);
  EXPECT_EQ(p.pending, (std::vector<ShardRef>{{0, b->shard.index, 20}}));
  ShardQueue r(Spec(1000, 100, 2, true));
  ASSERT_TRUE(r.Restore(p).ok());
  EXPECT_EQ(r.CurrentPosition(), p);
  EXPECT_EQ(r.Next("x", kT0)->shard, p.pending[0]);
  EXPECT_EQ(r.Next("x", kT0)->shard.index, q.Next("y", kT0)->shard.index);  // then the cursor

  EXPECT_EQ(r.Restore({.epoch = 3}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Restore({.epoch = 0, .cursor = 11}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Restore({.epoch = 0, .cursor = 0, .pending = {{0, 10, 0}}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Restore({.epoch = 0, .cursor = 0, .pending = {{0, 1, 100}}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(r.Restore({.epoch = 2}).ok());  // the end
  EXPECT_TRUE(r.finished());
}

TEST(ShardQueue, MemoryDoesNotGrowWithTheDataset) {
  ShardQueue q(Spec(10'000'000'000ULL, 1000, 3, true));
  EXPECT_EQ(q.num_shards(), 10'000'000u);
  for (int i = 0; i < 1000; ++i) {
    auto g = q.Next("w", kT0);
    ASSERT_TRUE(g);
    ASSERT_TRUE(q.Report(g->id, g->end - g->begin).ok());
  }
  EXPECT_EQ(q.in_flight(), 0u);
  EXPECT_TRUE(q.CurrentPosition().pending.empty());
}

// The property: workers consume their shards batch by batch (the model consumes what they
// report), random workers die (their shards are taken back) and new ones join, the job saves
// its position at random points and sometimes crashes, rolling the model's history back to
// the last checkpoint. In the history that survives, every record of every epoch appears
// exactly once.
TEST(ShardQueue, ExactlyOncePerEpochThroughDeathsAndRollbacks) {
  const uint64_t kRecords = 1'000'000, kShard = 1000;
  const int64_t kEpochs = 3;
  std::mt19937_64 rng(12345);
  ShardQueue q(Spec(kRecords, kShard, kEpochs, true));
  struct Worker {
    std::string name;
    std::optional<Grant> grant;
    uint64_t pos = 0;  // consumed records of the grant's shard
  };
  std::vector<Worker> workers;
  workers.reserve(8);
  int next_worker = 0;
  for (int i = 0; i < 8; ++i) workers.push_back({"w" + std::to_string(next_worker++)});
  std::vector<std::pair<int64_t, uint64_t>> history;  // (epoch, record) the model consumed
  struct Saved {
    Position position;
    size_t history_size = 0;
  };
  std::optional<Saved> checkpoint;
  int deaths = 0, crashes = 0, saves = 0;
  while (!q.finished()) {
    for (Worker& w : workers) {
      if (!w.grant) {
        w.grant = q.Next(w.name, kT0);
        if (!w.grant) continue;  // nothing left to hand out right now
        w.pos = w.grant->shard.offset;
      }
      const uint64_t len = w.grant->end - w.grant->begin;
      const uint64_t batch = 1 + rng() % 300;
      const uint64_t upto = std::min(len, w.pos + batch);
      for (uint64_t i = w.pos; i < upto; ++i) {
        history.emplace_back(w.grant->shard.epoch, w.grant->begin + i);
      }
      w.pos = upto;
      ASSERT_TRUE(q.Report(w.grant->id, w.pos).ok());
      if (w.pos == len) w.grant.reset();
    }
    const uint64_t dice = rng() % 100;
    if (dice < 3 && workers.size() > 1) {  // a worker dies; a new one joins
      const size_t victim = rng() % workers.size();
      q.TakeBack(workers[victim].name);
      workers.erase(workers.begin() + static_cast<long>(victim));
      workers.push_back({"w" + std::to_string(next_worker++)});
      ++deaths;
    } else if (dice < 8) {  // checkpoint: the model has consumed exactly `history`
      std::map<uint64_t, uint64_t> consumed;
      for (const Worker& w : workers) {
        if (w.grant) consumed[w.grant->id] = w.pos;
      }
      checkpoint = Saved{q.PositionWith(consumed), history.size()};
      ++saves;
    } else if (dice < 10) {  // crash: every worker restarts from the last checkpoint
      history.resize(checkpoint ? checkpoint->history_size : 0);
      ASSERT_TRUE(q.Restore(checkpoint ? checkpoint->position : Position{}).ok());
      for (Worker& w : workers) w.grant.reset();
      ++crashes;
    }
  }
  EXPECT_GT(deaths, 10);
  EXPECT_GT(crashes, 10);
  EXPECT_GT(saves, 10);
  std::vector<std::vector<uint8_t>> seen(kEpochs, std::vector<uint8_t>(kRecords));
  for (const auto& [epoch, record] : history) {
    ASSERT_LT(record, kRecords);
    ASSERT_EQ(seen[epoch][record]++, 0) << "record " << record << " twice in epoch " << epoch;
  }
  for (int64_t e = 0; e < kEpochs; ++e) {
    for (uint64_t r = 0; r < kRecords; ++r) ASSERT_EQ(seen[e][r], 1) << e << " " << r;
  }
}

}  // namespace
}  // namespace keel::data
