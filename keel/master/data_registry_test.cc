// DataRegistry: registration conflicts, unknown datasets, the checkpoint barrier, restores
// applied once per round, take-back when a round ends.
#include "keel/master/data_registry.h"

#include <gtest/gtest.h>

namespace keel::master {
namespace {

const TimePoint kT0{};

data::DatasetSpec Spec(uint64_t size = 1000, uint64_t shard = 100) {
  return {.name = "train", .size = size, .shard_size = shard, .epochs = 1, .seed = 1};
}

TEST(DataRegistry, RegistrationIsIdempotentAndConflictsAreNamed) {
  DataRegistry r;
  ASSERT_TRUE(r.Register(Spec()).ok());
  ASSERT_TRUE(r.Register(Spec()).ok());  // every worker registers: fine
  Status s = r.Register(Spec(2000));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("size 1000"), std::string::npos) << s;
  EXPECT_NE(s.message().find("size 2000"), std::string::npos) << s;
  EXPECT_EQ(r.Register(Spec(10, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.size(), 1u);
  bool finished = false;
  EXPECT_EQ(r.Next("nope", "w", kT0, &finished).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.Report("nope", 1, 1).code(), StatusCode::kNotFound);
}

TEST(DataRegistry, CheckpointBarrierGivesEveryRankTheSamePosition) {
  DataRegistry r;
  ASSERT_TRUE(r.Register(Spec()).ok());
  bool finished = false;
  auto a = *r.Next("train", "rank0", kT0, &finished);
  auto b = *r.Next("train", "rank1", kT0, &finished);
  auto first = r.AddConsumption("train", 7, 0, 2, {{a->id, 40}});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->has_value());                    // rank 1 has not reported
  auto c = *r.Next("train", "rank0", kT0, &finished);  // a prefetch after the report
  auto second = r.AddConsumption("train", 7, 1, 2, {{b->id, 100}});
  ASSERT_TRUE(second.ok() && second->has_value());
  const data::Position& p = **second;
  EXPECT_EQ(p.cursor, 3u);
  EXPECT_EQ(p.pending,
            (std::vector<data::ShardRef>{{0, a->shard.index, 40}, {0, c->shard.index, 0}}));
  EXPECT_EQ(r.PositionFor("train", 7), p);
  EXPECT_EQ(r.AddConsumption("train", 7, 0, 3, {}).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.AddConsumption("train", 8, 2, 2, {}).status().code(), StatusCode::kInvalidArgument);

  // A restart restores it once per round, whichever rank comes first.
  r.TakeBackAll();
  ASSERT_TRUE(r.Restore("train", 2, p).ok());
  auto again = *r.Next("train", "rank1", kT0, &finished);
  EXPECT_EQ(again->shard, (data::ShardRef{0, a->shard.index, 40}));
  ASSERT_TRUE(r.Restore("train", 2, p).ok());  // rank 1's copy: nothing happens
  EXPECT_EQ((*r.Next("train", "rank0", kT0, &finished))->shard,
            (data::ShardRef{0, c->shard.index, 0}));
  EXPECT_EQ(r.Restore("train", 3, data::Position{.epoch = 9}).code(), StatusCode::kInvalidArgument);
}

TEST(DataRegistry, ARoundEndingTakesEveryShardBack) {
  DataRegistry r;
  ASSERT_TRUE(r.Register(Spec(200, 100)).ok());
  bool finished = false;
  auto a = *r.Next("train", "w0", kT0, &finished);
  auto b = *r.Next("train", "w1", kT0, &finished);
  EXPECT_FALSE(*r.Next("train", "w2", kT0, &finished));
  EXPECT_FALSE(finished);  // others hold the rest: ask again
  ASSERT_TRUE(r.Report("train", a->id, 30).ok());
  r.TakeBackAll();
  auto a2 = *r.Next("train", "w0", kT0, &finished);
  EXPECT_EQ(a2->shard, (data::ShardRef{0, a->shard.index, 30}));
  ASSERT_TRUE(r.Report("train", a2->id, 100).ok());
  auto b2 = *r.Next("train", "w0", kT0, &finished);
  EXPECT_EQ(b2->shard.index, b->shard.index);
  ASSERT_TRUE(r.Report("train", b2->id, 100).ok());
  EXPECT_FALSE(*r.Next("train", "w0", kT0, &finished));
  EXPECT_TRUE(finished);
}

}  // namespace
}  // namespace keel::master
