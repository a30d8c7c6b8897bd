// The step functions: threads change nothing, bad input is rejected before anything is
// written, and the optimizers' defining properties hold (AGD's first step, Group Adam with
// no penalty is lazy Adam, the group test zeroes exactly the rows it should).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "keel/common/thread_pool.h"
#include "keel/optim/optimizers.h"

namespace keel::optim {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

struct Dense {
  std::vector<float> p, g, s[4];
  explicit Dense(size_t n, uint32_t seed) : p(Random(n, seed)), g(Random(n, seed + 1)) {
    for (auto& x : s) x.assign(n, 0.0f);
  }
  DenseTensor tensor(int64_t step) {
    return DenseTensor{.param = p.data(),
                       .grad = g.data(),
                       .slots = {s[0].data(), s[1].data(), s[2].data(), s[3].data()},
                       .n = static_cast<int64_t>(p.size()),
                       .step = step};
  }
};

TEST(OptimStep, ThreadsGiveTheSameBitsAsOneThread) {
  ThreadPool pool(3, "optim-test");
  const size_t sizes[] = {1, 100, 70000, 300001, 5};
  std::vector<Dense> alone, threaded;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    alone.emplace_back(sizes[i], 10 * i);
    threaded.emplace_back(sizes[i], 10 * i);
  }
  AGDOptions o{.lr = 1e-3f, .weight_decay = 0.01f, .amsgrad = true};
  for (int64_t step = 1; step <= 3; ++step) {
    std::vector<DenseTensor> a, t;
    for (auto& d : alone) a.push_back(d.tensor(step));
    for (auto& d : threaded) t.push_back(d.tensor(step));
    ASSERT_TRUE(AGDStep(o, a, nullptr).ok());
    ASSERT_TRUE(AGDStep(o, t, &pool).ok());
  }
  for (size_t i = 0; i < alone.size(); ++i) {
    ASSERT_EQ(alone[i].p, threaded[i].p);
    ASSERT_EQ(alone[i].s[2], threaded[i].s[2]);
  }
}

TEST(OptimStep, AGDFirstStepIsMinusLrTimesSign) {
  Dense d(1000, 3);
  const std::vector<float> before = d.p;
  std::vector<DenseTensor> t = {d.tensor(1)};
  ASSERT_TRUE(AGDStep(AGDOptions{.lr = 0.01f}, t, nullptr).ok());
  for (size_t i = 0; i < before.size(); ++i) {
    if (std::fabs(d.g[i]) < 1e-4f) continue;  // |g| near delta: not the sign regime
    EXPECT_NEAR(d.p[i], before[i] - 0.01f * std::copysign(1.0f, d.g[i]), 1e-6f) << i;
  }
}

TEST(OptimStep, BadInputIsRejectedAndNothingWritten) {
  Dense d(64, 5);
  const std::vector<float> before = d.p;
  auto rejected = [&](const Status& s, const std::string& needle) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
    EXPECT_EQ(d.p, before);
  };
  std::vector<DenseTensor> t = {d.tensor(1)};
  rejected(AdamWStep(AdamWOptions{.lr = -1.0f}, t, nullptr), "invalid lr -1");
  rejected(AdamWStep(AdamWOptions{.beta1 = 1.0f}, t, nullptr), "beta1");
  rejected(AGDStep(AGDOptions{.delta = 0.0f}, t, nullptr), "delta");
  rejected(AdamWStep(AdamWOptions{.eps = NAN}, t, nullptr), "eps");
  rejected(AdamWStep(AdamWOptions{.amsgrad = true},
                     std::vector<DenseTensor>{{.param = d.p.data(),
                                               .grad = d.g.data(),
                                               .slots = {d.s[0].data(), d.s[1].data()},
                                               .n = 64}},
                     nullptr),
           "slot 2 is missing");
  DenseTensor bad_dtype = d.tensor(1);
  bad_dtype.param_dtype = DType::kFloat16;
  rejected(AdamWStep(AdamWOptions{}, std::vector<DenseTensor>{bad_dtype}, nullptr), "float16");
  rejected(AdamWStep(AdamWOptions{}, std::vector<DenseTensor>{d.tensor(0)}, nullptr), "step 0");

  std::vector<uint8_t> row_flags(16);
  auto rows_update = [&](std::vector<int64_t> rows) {
    SparseRows r{.param = d.p.data(),
                 .grad = d.g.data(),
                 .slots = {d.s[0].data(), d.s[1].data(), d.s[2].data()},
                 .row_flags = row_flags.data(),
                 .num_rows = 16,
                 .dim = 4,
                 .rows = rows.data(),
                 .num_touched = static_cast<int64_t>(rows.size())};
    return GroupAdamStep(GroupAdamOptions{}, std::vector<SparseRows>{r}, nullptr);
  };
  rejected(rows_update({0, 16}), "row 16 out of range [0, 16)");
  rejected(rows_update({-1}), "row -1 out of range");
  rejected(rows_update({3, 1, 3}), "row 3 appears twice");
  EXPECT_TRUE(rows_update({3, 1}).ok());
}

// TF-style lazy Adam (epsilon outside the bias correction), the λ = 0 limit of Group Adam.
TEST(OptimStep, GroupAdamWithoutPenaltyIsLazyAdam) {
  const int64_t rows = 20, dim = 8;
  std::vector<float> w = Random(rows * dim, 1), m(rows * dim), v(rows * dim), z(rows * dim);
  std::vector<uint8_t> flags(rows);
  std::vector<double> rw(w.begin(), w.end()), rm(rows * dim), rv(rows * dim);
  const GroupAdamOptions o{.lr = 0.01f};
  std::mt19937 rng(7);
  for (int64_t step = 1; step <= 200; ++step) {
    std::vector<int64_t> touched;
    for (int64_t r = 0; r < rows; ++r) {
      if (rng() % 3 == 0) touched.push_back(r);
    }
    std::vector<float> g = Random(touched.size() * dim, 1000 + step);
    SparseRows t{.param = w.data(),
                 .grad = g.data(),
                 .slots = {m.data(), v.data(), z.data()},
                 .row_flags = flags.data(),
                 .num_rows = rows,
                 .dim = dim,
                 .rows = touched.data(),
                 .num_touched = static_cast<int64_t>(touched.size()),
                 .step = step};
    ASSERT_TRUE(GroupAdamStep(o, std::vector<SparseRows>{t}, nullptr).ok());
    const double alpha = o.lr * std::sqrt(1 - std::pow(0.999, step)) / (1 - std::pow(0.9, step));
    for (size_t k = 0; k < touched.size(); ++k) {
      for (int64_t j = 0; j < dim; ++j) {
        const size_t i = touched[k] * dim + j;
        rm[i] = 0.9 * rm[i] + 0.1 * g[k * dim + j];
        rv[i] = 0.999 * rv[i] + 0.001 * double(g[k * dim + j]) * g[k * dim + j];
        rw[i] -= alpha * rm[i] / (std::sqrt(rv[i]) + 1e-8);
      }
    }
  }
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], rw[i], 2e-4) << i;
}

TEST(OptimStep, GroupTestZeroesExactlyTheRowsBelowThreshold) {
  const int64_t rows = 6, dim = 16;
  std::vector<float> w(rows * dim, 0.0f), n(rows * dim, 0.1f), z(rows * dim, 0.0f);
  // Row r gets a gradient of norm proportional to r; with l21 between, small rows zero.
  std::vector<float> g(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) g[r * dim + j] = 0.1f * r;
  }
  // FTRL from w = 0: z = g, u = -g, |u| = 0.1 r sqrt(dim); threshold l21 sqrt(dim) = 0.25
  // sqrt(dim).
  const GroupFtrlOptions o{.lr = 0.1f, .l21 = 0.25f};
  SparseRows t{.param = w.data(),
               .grad = g.data(),
               .slots = {n.data(), z.data()},
               .num_rows = rows,
               .dim = dim};
  ASSERT_TRUE(GroupFtrlStep(o, std::vector<SparseRows>{t}, nullptr).ok());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) {
      if (r <= 2) {
        EXPECT_EQ(w[r * dim + j], 0.0f) << r;  // 0, 0.1, 0.2 <= 0.25
      } else {
        EXPECT_LT(w[r * dim + j], 0.0f) << r;  // kept, moved against the gradient
      }
    }
  }
}

}  // namespace
}  // namespace keel::optim
