// Every SIMD target compiled in, against the scalar reference: elementwise kernels bit for
// bit (Note [Bit-identical variants]), group kernels' state bit for bit and their weights
// within float rounding, on random and edge-case inputs (zeros, huge and tiny values, odd
// lengths, bfloat16 parameters).
#include "keel/optim/simd_kernels.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <bit>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "keel/common/bfloat16.h"
#include "keel/optim/reference_kernels.h"

namespace keel::optim {
namespace {

using internal::Buffers;
using internal::Storage;

// Inputs for one kernel call: parameter (f32 or bf16 bits), gradient, four state slots.
struct Case {
  Storage param_type = Storage::kF32;
  Storage grad_type = Storage::kF32;
  std::vector<float> param, grad;
  std::vector<uint16_t> param16, grad16;
  std::vector<float> slots[4];

  Buffers buffers() {
    Buffers b;
    b.param_type = param_type;
    b.grad_type = grad_type;
    b.param = param_type == Storage::kF32 ? static_cast<void*>(param.data()) : param16.data();
    b.grad = grad_type == Storage::kF32 ? static_cast<const void*>(grad.data()) : grad16.data();
    b.s0 = slots[0].data();
    b.s1 = slots[1].data();
    b.s2 = slots[2].data();
    b.s3 = slots[3].data();
    return b;
  }
  float param_at(size_t i) const {
    return param_type == Storage::kF32 ? param[i] : BFloat16ToFloat(param16[i]);
  }
};

enum class Values { kRandom, kZeros, kHuge, kTiny, kMixed };

float Draw(Values kind, std::mt19937& rng) {
  std::normal_distribution<float> normal(0, 1);
  switch (kind) {
    case Values::kRandom:
      return normal(rng);
    case Values::kZeros:
      return 0.0f;
    case Values::kHuge:
      return normal(rng) * 1e18f;
    case Values::kTiny:
      return normal(rng) * 1e-38f;  // subnormal products
    case Values::kMixed: {
      const float scales[] = {0.0f, 1e-30f, 1e-6f, 1.0f, 1e6f, 1e30f};
      return normal(rng) * scales[rng() % 6];
    }
  }
  return 0;
}

Case MakeCase(size_t n, Values kind, Storage param_type, Storage grad_type, uint32_t seed) {
  std::mt19937 rng(seed);
  Case c;
  c.param_type = param_type;
  c.grad_type = grad_type;
  for (size_t i = 0; i < n; ++i) {
    c.param.push_back(Draw(kind, rng));
    c.grad.push_back(Draw(kind, rng));
    c.param16.push_back(FloatToBFloat16(c.param.back()));
    c.grad16.push_back(FloatToBFloat16(c.grad.back()));
  }
  for (auto& s : c.slots) {
    for (size_t i = 0; i < n; ++i) s.push_back(std::fabs(Draw(kind, rng)));  // v-like: >= 0
  }
  return c;
}

// Equal bit patterns, or both NaN.
bool Same(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

void ExpectBitIdentical(const Case& want, const Case& got, const std::string& what) {
  for (size_t i = 0; i < want.param.size(); ++i) {
    ASSERT_TRUE(Same(want.param_at(i), got.param_at(i)))
        << what << " param[" << i << "]: " << want.param_at(i) << " vs " << got.param_at(i);
    for (int s = 0; s < 4; ++s) {
      ASSERT_TRUE(Same(want.slots[s][i], got.slots[s][i]))
          << what << " slot" << s << "[" << i << "]: " << want.slots[s][i] << " vs "
          << got.slots[s][i];
    }
  }
}

// Runs `body` once per SIMD target this CPU supports, with dispatch forced to that target.
void ForEachTarget(const std::function<void(const std::string&)>& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    const std::string name = hwy::TargetName(target);
    ASSERT_EQ(name, simd::TargetName());
    body(name);
  }
  hwy::SetSupportedTargetsForTest(0);
}

const size_t kLengths[] = {0, 1, 3, 7, 8, 15, 16, 17, 31, 64, 100, 1000, 1027};
const Values kKinds[] = {Values::kRandom, Values::kZeros, Values::kHuge, Values::kTiny,
                         Values::kMixed};
const std::pair<Storage, Storage> kTypes[] = {{Storage::kF32, Storage::kF32},
                                              {Storage::kBF16, Storage::kBF16},
                                              {Storage::kBF16, Storage::kF32}};

// Applies `run(args-with-buffers, begin, end)` from both the reference and each target to
// the same inputs, over every length, value kind and dtype pair, for three steps.
template <class Args>
void CheckElementwise(const std::vector<Args>& configs,
                      void (*reference)(const Args&, int64_t, int64_t),
                      void (*simd)(const Args&, int64_t, int64_t)) {
  ForEachTarget([&](const std::string& target) {
    uint32_t seed = 1;
    for (const Args& config : configs) {
      for (size_t n : kLengths) {
        for (Values kind : kKinds) {
          for (auto [pt, gt] : kTypes) {
            Case want = MakeCase(n, kind, pt, gt, seed);
            Case got = MakeCase(n, kind, pt, gt, seed++);
            for (int step = 0; step < 3; ++step) {
              Args a = config;
              a.buf = want.buffers();
              reference(a, 0, static_cast<int64_t>(n));
              a.buf = got.buffers();
              // Two calls: a range may start anywhere (threads split tensors).
              simd(a, 0, static_cast<int64_t>(n / 3));
              simd(a, static_cast<int64_t>(n / 3), static_cast<int64_t>(n));
            }
            ExpectBitIdentical(
                want, got,
                target + " n=" + std::to_string(n) + " seed=" + std::to_string(seed - 1));
            if (::testing::Test::HasFatalFailure()) return;
          }
        }
      }
    }
  });
}

TEST(SimdKernels, AdamWMatchesReferenceBitForBit) {
  std::vector<internal::AdamWArgs> configs;
  for (bool amsgrad : {false, true}) {
    for (int64_t step : {1, 2, 1000}) {
      AdamWOptions o{.lr = 1e-3f, .weight_decay = 0.01f, .amsgrad = amsgrad};
      configs.push_back(internal::MakeArgs(o, step));
    }
  }
  CheckElementwise(configs, &reference::AdamW, &simd::AdamW);
}

TEST(SimdKernels, AGDMatchesReferenceBitForBit) {
  std::vector<internal::AGDArgs> configs;
  for (int variant = 0; variant < 6; ++variant) {
    for (int64_t step : {1, 2, 500}) {
      AGDOptions o{.lr = 1e-3f, .delta = variant == 5 ? 1e-14f : 1e-5f, .weight_decay = 0.1f};
      o.amsgrad = variant == 1;
      o.win = variant == 2;
      o.weight_decouple = variant != 3;
      o.fixed_decay = variant == 4;
      o.clip = variant == 5 ? 5.0f : 0.0f;
      configs.push_back(internal::MakeArgs(o, step));
    }
  }
  CheckElementwise(configs, &reference::AGD, &simd::AGD);
}

TEST(SimdKernels, AdagradMatchesReferenceBitForBit) {
  std::vector<internal::AdagradArgs> configs;
  for (float wd : {0.0f, 0.1f}) {
    for (int64_t step : {1, 10}) {
      AdagradOptions o{.lr = 0.01f, .lr_decay = 0.01f, .weight_decay = wd};
      configs.push_back(internal::MakeArgs(o, step));
    }
  }
  CheckElementwise(configs, &reference::Adagrad, &simd::Adagrad);
}

// Group kernels: a few rows per case; state must match bit for bit, weights within rounding,
// and the keep/zero decision the same.
template <class Args, class Ref, class Simd>
void CheckRows(const std::vector<Args>& configs, Ref reference, Simd simd) {
  ForEachTarget([&](const std::string& target) {
    uint32_t seed = 100;
    for (const Args& config : configs) {
      for (int64_t dim : {1, 4, 8, 12, 16, 24, 64, 100}) {
        for (Values kind : {Values::kRandom, Values::kZeros, Values::kMixed}) {
          for (auto [pt, gt] : kTypes) {
            Case want = MakeCase(dim, kind, pt, gt, seed);
            Case got = MakeCase(dim, kind, pt, gt, seed++);
            for (int step = 0; step < 3; ++step) {
              Args a = config;
              a.dim = dim;
              a.buf = want.buffers();
              const bool want_keep = reference(a, step == 0);
              a.buf = got.buffers();
              ASSERT_EQ(want_keep, simd(a, step == 0)) << target << " dim=" << dim;
            }
            for (int64_t i = 0; i < dim; ++i) {
              for (int s = 0; s < 3; ++s) {
                ASSERT_TRUE(Same(want.slots[s][i], got.slots[s][i])) << target << " slot " << s;
              }
              const float w = want.param_at(i), g = got.param_at(i);
              const float tol = pt == Storage::kF32 ? 1e-5f : 1e-2f;
              ASSERT_NEAR(w, g, tol * std::fabs(w) + 1e-30f)
                  << target << " dim=" << dim << " i=" << i << " kind=" << int(kind);
            }
          }
        }
      }
    }
  });
}

TEST(SimdKernels, GroupAdamMatchesReference) {
  std::vector<internal::GroupAdamArgs> configs;
  for (float l21 : {0.0f, 1e-4f, 10.0f}) {
    GroupAdamOptions o{.lr = 1e-2f, .l1 = 1e-3f, .l2 = 1e-3f, .l21 = l21};
    configs.push_back(internal::MakeArgs(o, 3, 1));
  }
  CheckRows(configs, &reference::GroupAdamRow, &simd::GroupAdamRow);
}

TEST(SimdKernels, GroupFtrlMatchesReference) {
  std::vector<internal::GroupFtrlArgs> configs;
  for (float power : {-0.5f, -0.3f}) {
    for (float l21 : {0.0f, 1e-3f, 10.0f}) {
      GroupFtrlOptions o{.lr = 0.05f,
                         .lr_power = power,
                         .l1 = 1e-3f,
                         .l2 = 1e-3f,
                         .l21 = l21,
                         .l2_shrinkage = 1e-3f};
      configs.push_back(internal::MakeArgs(o, 1));
    }
  }
  CheckRows(
      configs, [](const internal::GroupFtrlArgs& a, bool) { return reference::GroupFtrlRow(a); },
      [](const internal::GroupFtrlArgs& a, bool) { return simd::GroupFtrlRow(a); });
}

}  // namespace
}  // namespace keel::optim
