// Row initializers (see initializer.h).
#include "keel/embed/initializer.h"

#include <cmath>
#include <cstdio>

namespace keel::embed {

StatusOr<Initializer> Initializer::Parse(const std::string& text, uint64_t seed) {
  Initializer init;
  init.seed_ = seed;
  if (text == "zeros") return init;
  char name[16] = {};
  float a = 0, b = 0;
  char tail = 0;
  const bool parsed = std::sscanf(text.c_str(), "%15[a-z](%f ,%f)%c", name, &a, &b, &tail) == 3;
  const std::string kind = name;
  if (parsed && kind == "normal" && std::isfinite(a) && std::isfinite(b) && b >= 0) {
    init.kind_ = Kind::kNormal;
  } else if (parsed && kind == "uniform" && std::isfinite(a) && std::isfinite(b) && a <= b) {
    init.kind_ = Kind::kUniform;
  } else {
    return InvalidArgumentError("init '" + text +
                                "' is not one of zeros, normal(mean,std) with std >= 0, "
                                "uniform(low,high) with low <= high");
  }
  init.a_ = a;
  init.b_ = b;
  return init;
}

void Initializer::Fill(uint64_t id, float* row, int64_t dim) const {
  if (kind_ == Kind::kZeros) {
    for (int64_t j = 0; j < dim; ++j) row[j] = 0.0f;
    return;
  }
  uint64_t state = Mix64(seed_ ^ Mix64(id));
  auto uniform01 = [&state] {  // (0, 1]
    state = Mix64(state);
    return (static_cast<double>(state >> 11) + 1.0) * 0x1.0p-53;
  };
  for (int64_t j = 0; j < dim; ++j) {
    if (kind_ == Kind::kUniform) {
      row[j] = static_cast<float>(a_ + (b_ - a_) * (uniform01() - 0x1.0p-53));
    } else {  // Box-Muller, one value per pair of draws
      const double r = std::sqrt(-2.0 * std::log(uniform01()));
      row[j] = static_cast<float>(a_ + b_ * r * std::cos(2.0 * M_PI * uniform01()));
    }
  }
}

}  // namespace keel::embed
