// The sampling pipeline: greedy, the cut-offs, seeded reproducibility, the distribution it
// draws from, the repetition penalty, and option validation.
#include "keel/infer/sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace keel::infer {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f};

TEST(Sampler, GreedyAndTopKOneAreArgmax) {
  Sampler greedy({.temperature = 0});
  EXPECT_EQ(greedy.Sample(kLogits, {}), 1);
  Sampler top1({.temperature = 1.5f, .top_k = 1, .top_p = 1, .min_p = 0, .seed = 3});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(top1.Sample(kLogits, {}), 1);
}

TEST(Sampler, SameSeedSameTokensAndDrawsFollowTheSoftmax) {
  const SamplerOptions o{.temperature = 0.7f, .top_k = 0, .top_p = 1, .min_p = 0, .seed = 42};
  Sampler a(o), b(o);
  std::vector<int> counts(kLogits.size());
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) {
    const int32_t t = a.Sample(kLogits, {});
    ASSERT_EQ(t, b.Sample(kLogits, {}));
    ++counts[t];
  }
  double z = 0;
  for (float l : kLogits) z += std::exp(l / 0.7);
  for (size_t i = 0; i < kLogits.size(); ++i) {
    const double p = std::exp(kLogits[i] / 0.7) / z;
    EXPECT_NEAR(counts[i] / double(draws), p, 4 * std::sqrt(p * (1 - p) / draws) + 1e-4) << i;
  }
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  // p at T=1: token 1 .37, 5 .33, 2 .22, 0 .05, 4 .02, 3 .01. top_p 0.9 keeps {1, 5, 2}.
  Sampler top_p({.temperature = 1, .top_k = 0, .top_p = 0.9f, .min_p = 0, .seed = 1});
  Sampler min_p({.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0.5f, .seed = 1});
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = top_p.Sample(kLogits, {});
    EXPECT_TRUE(t == 1 || t == 5 || t == 2) << t;
    const int32_t m = min_p.Sample(kLogits, {});  // >= 0.5 * p(1): tokens 1, 5, 2
    EXPECT_TRUE(m == 1 || m == 5 || m == 2) << m;
  }
}

TEST(Sampler, RepetitionPenaltyDiscouragesRecentTokens) {
  Sampler s({.temperature = 0, .repeat_penalty = 1.2f, .repeat_last_n = 2});
  const std::vector<int32_t> recent = {7, 1};
  EXPECT_EQ(s.Sample(kLogits, recent), 5);     // 3.0 / 1.2 = 2.5 < 2.9
  const std::vector<int32_t> old = {1, 7, 8};  // token 1 outside the last 2
  EXPECT_EQ(s.Sample(kLogits, old), 1);
}

TEST(Sampler, ValidateNamesTheBadOption) {
  EXPECT_NE(Validate({.top_p = 0}).message().find("top_p 0"), std::string::npos);
  EXPECT_NE(Validate({.min_p = 1}).message().find("min_p"), std::string::npos);
  EXPECT_NE(Validate({.repeat_penalty = 0}).message().find("repeat_penalty"), std::string::npos);
  EXPECT_NE(Validate({.temperature = NAN}).message().find("temperature"), std::string::npos);
  EXPECT_TRUE(Validate({}).ok());
}

}  // namespace
}  // namespace keel::infer
