// CheckpointTracker: commits need every rank; restores need every rank of the current world.
#include "keel/master/ckpt_tracker.h"

#include <gtest/gtest.h>

namespace keel::master {
namespace {

Member M(const std::string& id, int first_rank, int nproc) {
  return {.node_id = id, .group_rank = 0, .nproc = nproc, .first_rank = first_rank};
}

TEST(CheckpointTracker, CommitsOnceWhenEveryRankPersisted) {
  CheckpointTracker t;
  EXPECT_FALSE(t.Persisted("/d", {.rank = 0, .world_size = 3, .step = 10}));
  EXPECT_FALSE(t.Persisted("/d", {.rank = 2, .world_size = 3, .step = 10}));
  EXPECT_FALSE(t.Persisted("/d", {.rank = 2, .world_size = 3, .step = 10}));  // repeated
  EXPECT_FALSE(t.Persisted("/other", {.rank = 1, .world_size = 3, .step = 10}));
  EXPECT_EQ(t.committed_step(), -1);
  EXPECT_TRUE(t.Persisted("/d", {.rank = 1, .world_size = 3, .step = 10}));
  EXPECT_EQ(t.committed_step(), 10);
  EXPECT_EQ(t.committed_dir(), "/d");
  EXPECT_FALSE(t.Persisted("/d", {.rank = 1, .world_size = 3, .step = 10}));  // once only
}

TEST(CheckpointTracker, RejectsImpossibleRanks) {
  CheckpointTracker t;
  EXPECT_FALSE(t.Persisted("/d", {.rank = 1, .world_size = 1, .step = 1}));
  EXPECT_FALSE(t.Persisted("/d", {.rank = -1, .world_size = 1, .step = 1}));
  EXPECT_FALSE(t.Persisted("/d", {.rank = 0, .world_size = 0, .step = 1}));
  EXPECT_EQ(t.committed_step(), -1);
}

TEST(CheckpointTracker, RestoresTheNewestStepEveryRankHolds) {
  CheckpointTracker t;
  t.Update("a", {{0, 4, 20}, {0, 4, 30}, {1, 4, 20}, {1, 4, 30}}, {});
  t.Update("b", {{2, 4, 20}, {2, 4, 30}, {3, 4, 10}, {3, 4, 20}}, {});
  const std::vector<Member> world = {M("a", 0, 2), M("b", 2, 2)};
  EXPECT_EQ(t.RestoreStep(world, 4), 20);  // rank 3 never got to step 30
}

TEST(CheckpointTracker, FollowsTheLatestReports) {
  CheckpointTracker t;
  const std::vector<Member> world = {M("a", 0, 1)};
  EXPECT_EQ(t.RestoreStep(world, 1), -1);
  t.Update("a", {{0, 1, 5}}, {});
  EXPECT_EQ(t.RestoreStep(world, 1), 5);
  t.Update("a", {{0, 1, 6}, {0, 1, 5}}, {});
  EXPECT_EQ(t.RestoreStep(world, 1), 6);
}

TEST(CheckpointTracker, NoMemoryRestoreWhenTheWorldChanged) {
  CheckpointTracker t;
  t.Update("a", {{0, 2, 7}, {1, 2, 7}}, {});
  // Node "a" now runs ranks 0-1 of a world of 3 (saved at 2): the copies do not fit.
  EXPECT_EQ(t.RestoreStep({M("a", 0, 2), M("c", 2, 1)}, 3), -1);
  // A rank that moved to another node: that node does not hold it.
  CheckpointTracker u;
  u.Update("a", {{0, 2, 7}, {1, 2, 7}}, {});
  EXPECT_EQ(u.RestoreStep({M("c", 0, 1), M("a", 1, 1)}, 2), -1);
  // A node that left is forgotten.
  u.Retain({"c"});
  EXPECT_EQ(u.RestoreStep({M("a", 0, 2)}, 2), -1);
}

TEST(CheckpointTracker, SumsCountersAcrossNodes) {
  CheckpointTracker t;
  t.Update("a", {}, {.saves = 3, .dropped_steps = 1, .persisted_files = 2, .persisted_bytes = 10});
  t.Update("b", {}, {.saves = 4, .persisted_files = 1, .persisted_bytes = 5});
  t.Update("a", {}, {.saves = 5, .dropped_steps = 1, .persisted_files = 2, .persisted_bytes = 10});
  const CheckpointCounters c = t.Totals();
  EXPECT_EQ(c.saves, 9);
  EXPECT_EQ(c.dropped_steps, 1);
  EXPECT_EQ(c.persisted_files, 3);
  EXPECT_EQ(c.persisted_bytes, 15);
}

}  // namespace
}  // namespace keel::master
