// ShardQueue over streams: appended ranges cut into shards in append order, contiguity and
// re-append rules, closing, unbounded datasets, and the exactly-once property while a producer
// appends, workers die and the job rolls back to checkpoints (on the same queue, and on a new
// one as after a master restart, with the producer appending from the start again).
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "keel/data/shard_queue.h"

namespace keel::data {
namespace {

const TimePoint kT0{};

DatasetSpec Stream(uint64_t shard, int64_t epochs = 1) {
  return {.name = "s", .shard_size = shard, .epochs = epochs, .stream = true};
}

TEST(StreamQueue, RejectsBadSpecsAndAppends) {
  DatasetSpec sized = Stream(10);
  sized.size = 5;
  EXPECT_NE(sized.Validate().message().find("it has no size"), std::string::npos);
  DatasetSpec shuffled = Stream(10);
  shuffled.shuffle = true;
  EXPECT_NE(shuffled.Validate().message().find("shuffle must be off"), std::string::npos);
  EXPECT_NE(Stream(10, 2).Validate().message().find("read once"), std::string::npos);
  EXPECT_TRUE(Stream(10, 0).Validate().ok());
  EXPECT_TRUE(Stream(10, 1).Validate().ok());

  ShardQueue q(Stream(10));
  EXPECT_EQ(q.Append("", 0, 5, false).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(q.Append("p", 5, 4, false).status().code(), StatusCode::kInvalidArgument);
  ASSERT_EQ(q.Append("p", 100, 120, false).value(), 20u);  // a partition may start anywhere
  Status gap = q.Append("p", 130, 140, false).status();
  EXPECT_EQ(gap.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(gap.message().find("records 120-130 are missing"), std::string::npos) << gap;
  EXPECT_EQ(q.Append("p", 100, 125, false).value(), 5u);  // a repeat: only what is new counts
  ASSERT_EQ(q.Append("p", 125, 125, true).value(), 0u);   // closes
  EXPECT_EQ(q.Append("p", 125, 126, false).status().code(), StatusCode::kFailedPrecondition);

  ShardQueue fixed({.name = "f", .size = 10, .shard_size = 5});
  EXPECT_EQ(fixed.Append("p", 0, 1, false).status().code(), StatusCode::kFailedPrecondition);
}

TEST(StreamQueue, ShardsAreCutInAppendOrderAndTheStreamEndsWhenClosedAndConsumed) {
  ShardQueue q(Stream(4));
  EXPECT_FALSE(q.Next("w", kT0));  // nothing appended yet: ask again
  EXPECT_FALSE(q.finished());
  ASSERT_TRUE(q.Append("a", 0, 6, false).ok());
  ASSERT_TRUE(q.Append("b", 10, 13, false).ok());
  ASSERT_TRUE(q.Append("a", 6, 8, false).ok());
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> got;
  while (auto g = q.Next("w", kT0)) {
    got.emplace_back(g->shard.partition, g->begin, g->end);
    ASSERT_TRUE(q.Report(g->id, g->end - g->begin).ok());
  }
  using T = std::tuple<std::string, uint64_t, uint64_t>;
  EXPECT_EQ(got, (std::vector<T>{{"a", 0, 4}, {"a", 4, 6}, {"b", 10, 13}, {"a", 6, 8}}));
  EXPECT_FALSE(q.finished());  // not closed
  ASSERT_TRUE(q.Append("b", 13, 13, true).ok());
  EXPECT_TRUE(q.finished());

  ShardQueue unbounded(Stream(4, 0));
  ASSERT_TRUE(unbounded.Append("a", 0, 4, true).ok());
  auto g = unbounded.Next("w", kT0);
  ASSERT_TRUE(g && unbounded.Report(g->id, 4).ok());
  EXPECT_FALSE(unbounded.finished());  // epochs <= 0: never ends
}

TEST(StreamQueue, BacklogOfInterleavedAppendsIsBounded) {
  ShardQueue q(Stream(1));
  Status last;
  for (uint64_t i = 0; i < 200000 && last.ok(); ++i) {
    last = q.Append(i % 2 ? "a" : "b", i / 2, i / 2 + 1, false).status();
  }
  EXPECT_EQ(last.code(), StatusCode::kResourceExhausted) << last;
  EXPECT_NE(last.message().find("wait for consumers"), std::string::npos) << last;
  auto g = q.Next("w", kT0);
  ASSERT_TRUE(g && q.Report(g->id, 1).ok());
  EXPECT_TRUE(q.Append("b", 50000, 50001, false).ok());  // merges into the last range
}

TEST(StreamQueue, UnboundedFixedDatasetGoesOnAndRestoresFarEpochs) {
  ShardQueue q({.name = "u", .size = 10, .shard_size = 5, .epochs = 0, .shuffle = true});
  for (int i = 0; i < 100; ++i) {
    auto g = q.Next("w", kT0);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->shard.epoch, i / 2);
    ASSERT_TRUE(q.Report(g->id, 5).ok());
  }
  EXPECT_FALSE(q.finished());
  ASSERT_TRUE(q.Restore({.epoch = 1000000, .cursor = 1}).ok());
  EXPECT_EQ(q.Next("w", kT0)->shard.epoch, 1000000);
}

TEST(StreamQueue, StreamPositionsAreValidated) {
  ShardQueue q(Stream(4));
  EXPECT_EQ(q.Restore({.epoch = 1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(q.Restore({.pending = {{.partition = "a", .begin = 4, .end = 4}}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(q.Restore({.pending = {{.offset = 4, .partition = "a", .begin = 0, .end = 4}}}).code(),
            StatusCode::kInvalidArgument);
  ShardQueue fixed({.name = "f", .size = 10, .shard_size = 5});
  EXPECT_EQ(fixed.Restore({.partitions = {{"a", 3}}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(fixed.Restore({.pending = {{.partition = "a", .begin = 0, .end = 4}}}).code(),
            StatusCode::kInvalidArgument);
}

TEST(StreamQueue, RestoreHandsOutAgainWhatWasCutAfterTheCheckpoint) {
  ShardQueue q(Stream(4));
  ASSERT_TRUE(q.Append("a", 0, 6, false).ok());
  auto g = q.Next("w", kT0);  // a [0, 4)
  ASSERT_TRUE(g && q.Report(g->id, 3).ok());
  const Position at = q.CurrentPosition();  // a: cut 4, pending a [0, 4) from 3
  EXPECT_EQ(at.partitions, (std::vector<PartitionOffset>{{"a", 4}}));
  ASSERT_EQ(at.pending.size(), 1u);
  EXPECT_EQ(at.pending[0].offset, 3u);
  ASSERT_TRUE(q.Append("b", 50, 52, false).ok());  // a partition new after the checkpoint
  while (auto h = q.Next("w", kT0)) ASSERT_TRUE(q.Report(h->id, h->end - h->begin).ok());
  ASSERT_TRUE(q.Restore(at).ok());
  std::vector<std::tuple<std::string, uint64_t, uint64_t, uint64_t>> got;
  while (auto h = q.Next("w", kT0)) {
    got.emplace_back(h->shard.partition, h->begin, h->end, h->shard.offset);
    ASSERT_TRUE(q.Report(h->id, h->end - h->begin).ok());
  }
  using T = std::tuple<std::string, uint64_t, uint64_t, uint64_t>;
  EXPECT_EQ(got, (std::vector<T>{{"a", 0, 4, 3}, {"a", 4, 6, 0}, {"b", 50, 52, 0}}));
}

// A producer appends random ranges to 3 partitions while 6 workers consume, die and rejoin;
// checkpoints at random points; crashes roll the history back and restore the position — half
// of them on a new queue (a new master) whose producer appends everything from the start
// again. Every produced record appears exactly once in the surviving history.
TEST(StreamQueue, ExactlyOnceWhileAProducerAppendsThroughDeathsRollbacksAndNewMasters) {
  const uint64_t kPerPartition = 200'000;
  const std::vector<std::string> kParts = {"p0", "p1", "p2"};
  std::mt19937_64 rng(777);
  auto q = std::make_unique<ShardQueue>(Stream(500));
  std::map<std::string, uint64_t> produced;  // per partition: appended up to
  struct Worker {
    std::string name;
    std::optional<Grant> grant;
    uint64_t pos = 0;
  };
  std::vector<Worker> workers;
  workers.reserve(6);
  int next_worker = 0;
  for (int i = 0; i < 6; ++i) workers.push_back({"w" + std::to_string(next_worker++)});
  std::vector<std::pair<std::string, uint64_t>> history;
  struct Saved {
    Position position;
    size_t history_size = 0;
  };
  std::optional<Saved> checkpoint;
  int deaths = 0, crashes = 0, new_masters = 0, saves = 0;
  bool closed = false;
  for (int round = 0; !q->finished(); ++round) {
    ASSERT_LT(round, 1'000'000) << "the stream never finishes";
    if (!closed) {  // the producer
      const std::string& p = kParts[rng() % kParts.size()];
      const uint64_t n = std::min(kPerPartition - produced[p], 1 + rng() % 2000);
      ASSERT_TRUE(q->Append(p, produced[p], produced[p] + n, false).ok());
      produced[p] += n;
      closed = std::all_of(kParts.begin(), kParts.end(),
                           [&](const std::string& x) { return produced[x] == kPerPartition; });
      if (closed) {
        ASSERT_TRUE(q->Append(p, produced[p], produced[p], true).ok());
      }
    }
    for (Worker& w : workers) {
      if (!w.grant) {
        w.grant = q->Next(w.name, kT0);
        if (!w.grant) continue;
        w.pos = w.grant->shard.offset;
      }
      const uint64_t len = w.grant->end - w.grant->begin;
      const uint64_t upto = std::min(len, w.pos + 1 + rng() % 200);
      for (uint64_t i = w.pos; i < upto; ++i) {
        history.emplace_back(w.grant->shard.partition, w.grant->begin + i);
      }
      w.pos = upto;
      ASSERT_TRUE(q->Report(w.grant->id, w.pos).ok());
      if (w.pos == len) w.grant.reset();
    }
    const uint64_t dice = rng() % 100;
    if (dice < 3) {
      const size_t victim = rng() % workers.size();
      q->TakeBack(workers[victim].name);
      workers.erase(workers.begin() + static_cast<long>(victim));
      workers.push_back({"w" + std::to_string(next_worker++)});
      ++deaths;
    } else if (dice < 8) {
      std::map<uint64_t, uint64_t> consumed;
      for (const Worker& w : workers) {
        if (w.grant) consumed[w.grant->id] = w.pos;
      }
      checkpoint = Saved{q->PositionWith(consumed), history.size()};
      ++saves;
    } else if (dice < 10) {
      history.resize(checkpoint ? checkpoint->history_size : 0);
      if (rng() % 2) {  // a new master: the producer appends all it has again
        q = std::make_unique<ShardQueue>(Stream(500));
        for (const auto& [p, end] : produced) ASSERT_TRUE(q->Append(p, 0, end, false).ok());
        if (closed) {
          ASSERT_TRUE(q->Append(kParts[0], produced[kParts[0]], produced[kParts[0]], true).ok());
        }
        ++new_masters;
      }
      ASSERT_TRUE(q->Restore(checkpoint ? checkpoint->position : Position{}).ok());
      for (Worker& w : workers) w.grant.reset();
      ++crashes;
    }
  }
  EXPECT_GT(deaths, 10);
  EXPECT_GT(new_masters, 5);
  EXPECT_GT(crashes - new_masters, 5);
  EXPECT_GT(saves, 10);
  std::map<std::string, std::vector<uint8_t>> seen;
  for (const std::string& p : kParts) seen[p].assign(kPerPartition, 0);
  for (const auto& [p, record] : history) {
    ASSERT_LT(record, kPerPartition);
    ASSERT_EQ(seen[p][record]++, 0) << "record " << record << " of " << p << " twice";
  }
  for (const auto& [p, v] : seen) {
    for (uint64_t r = 0; r < kPerPartition; ++r) ASSERT_EQ(v[r], 1) << p << " " << r;
  }
}

}  // namespace
}  // namespace keel::data
