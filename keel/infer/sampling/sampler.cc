// Sampling pipeline (see sampler.h).
#include "keel/infer/sampling/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>
#include <vector>

namespace keel::infer {

Status Validate(const SamplerOptions& o) {
  auto bad = [](const char* name, double v, const char* rule) {
    return InvalidArgumentError(fmt::format("sampling: {} {} (must be {})", name, v, rule));
  };
  if (!std::isfinite(o.temperature)) return bad("temperature", o.temperature, "finite");
  if (!(o.top_p > 0 && o.top_p <= 1)) return bad("top_p", o.top_p, "in (0, 1]");
  if (!(o.min_p >= 0 && o.min_p < 1)) return bad("min_p", o.min_p, "in [0, 1)");
  if (!(o.repeat_penalty > 0 && std::isfinite(o.repeat_penalty))) {
    return bad("repeat_penalty", o.repeat_penalty, "> 0");
  }
  if (o.repeat_last_n < 0) return bad("repeat_last_n", o.repeat_last_n, ">= 0");
  return OkStatus();
}

int32_t Sampler::Sample(std::span<const float> logits, std::span<const int32_t> history) {
  std::vector<float> l(logits.begin(), logits.end());
  const int32_t n = static_cast<int32_t>(l.size());
  if (o_.repeat_penalty != 1.0f) {
    const size_t from =
        history.size() > size_t(o_.repeat_last_n) ? history.size() - o_.repeat_last_n : 0;
    std::unordered_set<int32_t> seen(history.begin() + from, history.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= n) continue;
      l[t] = l[t] > 0 ? l[t] / o_.repeat_penalty : l[t] * o_.repeat_penalty;
    }
  }
  if (o_.temperature <= 0) {
    return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  }
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  int32_t keep = n;
  if (o_.top_k > 0 && o_.top_k < n) keep = o_.top_k;
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(),
                    [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  ids.resize(keep);
  // Probabilities at temperature 1 for the top-p / min-p cuts, as llama.cpp's default chain.
  std::vector<double> p(keep);
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) sum += p[i] = std::exp(double(l[ids[i]]) - l[ids[0]]);
  for (double& x : p) x /= sum;
  int32_t cut = keep;
  if (o_.top_p < 1) {
    double acc = 0;
    for (int32_t i = 0; i < keep; ++i) {
      acc += p[i];
      if (acc >= o_.top_p) {
        cut = i + 1;
        break;
      }
    }
  }
  if (o_.min_p > 0) {
    int32_t m = 0;
    while (m < cut && p[m] >= o_.min_p * p[0]) ++m;
    cut = std::max(1, m);
  }
  std::vector<double> w(cut);
  for (int32_t i = 0; i < cut; ++i) {
    w[i] = std::exp((double(l[ids[i]]) - l[ids[0]]) / o_.temperature);
  }
  std::discrete_distribution<int32_t> dist(w.begin(), w.end());
  return ids[dist(rng_)];
}

}  // namespace keel::infer
