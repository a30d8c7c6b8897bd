// The synthetic generator: valid, deterministic traces whose shape follows the options.
#include "keel/mem/trace_generator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace keel::mem {
namespace {

GeneratorOptions Small() {
  GeneratorOptions o;
  o.steps = 3;
  o.layers = 4;
  o.hidden = 512;
  o.heads = 8;
  o.vocab = 1000;
  o.min_seq = 64;
  o.max_seq = 512;
  return o;
}

TEST(TraceGeneratorTest, ProducesValidDeterministicTraces) {
  auto a = GenerateTrace(Small());
  auto b = GenerateTrace(Small());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->events, b->events);
  auto text = FormatTrace(*a);  // re-validates every event
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(ParseTrace(*text, "gen").ok());
  GeneratorOptions other = Small();
  other.seed = 2;
  EXPECT_NE(GenerateTrace(other)->events, a->events);
  EXPECT_THAT(a->comments[1], ::testing::HasSubstr("seed=1 steps=3 layers=4"));
}

TEST(TraceGeneratorTest, CheckpointingLowersThePeakAndAddsRecomputeAllocations) {
  GeneratorOptions o = Small();
  const TraceSummary plain = Summarize(*GenerateTrace(o));
  o.checkpointing = true;
  const TraceSummary ckpt = Summarize(*GenerateTrace(o));
  EXPECT_LT(ckpt.peak_live_bytes, plain.peak_live_bytes);
  EXPECT_GT(ckpt.allocs, plain.allocs);
}

TEST(TraceGeneratorTest, PersistentStateOutlivesTheStepsAndZero3AddsGathers) {
  GeneratorOptions o = Small();
  const TraceSummary s = Summarize(*GenerateTrace(o));
  // Embedding + per layer: param shard, grad shard, master, m, v.
  EXPECT_EQ(s.live_at_end, 1u + 4 * 5);
  o.optimizer_states = false;
  EXPECT_EQ(Summarize(*GenerateTrace(o)).live_at_end, 1u + 4 * 2);
  o.zero3 = false;
  EXPECT_LT(Summarize(*GenerateTrace(o)).allocs, s.allocs);
  o = Small();
  o.gather_stream = 1;
  EXPECT_EQ(Summarize(*GenerateTrace(o)).streams, 2);
}

TEST(TraceGeneratorTest, RejectsBadOptions) {
  GeneratorOptions o = Small();
  o.min_seq = 600;
  EXPECT_THAT(GenerateTrace(o).status().message(), ::testing::HasSubstr("sequence range"));
  o = Small();
  o.heads = 7;
  EXPECT_EQ(GenerateTrace(o).status().code(), StatusCode::kInvalidArgument);
  o = Small();
  o.steps = 0;
  EXPECT_FALSE(GenerateTrace(o).ok());
}

}  // namespace
}  // namespace keel::mem
