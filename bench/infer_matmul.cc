// One weight matrix (TinyLlama's FFN shape, 5632 x 2048) times 1 and 4 activation rows, one
// thread, for Q8_0 and Q4_0: the float32-activation kernels, the Highway integer kernels on
// the file's layout, and the packed VNNI kernels (when the CPU has them). Median of 21 runs.
//   build/bench/keel_infer_matmul
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/kernels/kernels.h"
#include "keel/infer/kernels/packed.h"
#include "keel/infer/quant/quant.h"

using namespace keel::infer;  // NOLINT(google-build-using-namespace): a benchmark's main

int main() {
  const int64_t rows = 5632, cols = 2048;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(cols * 4), w_row(cols);
  for (float& v : x) v = normal(rng);
  std::vector<ActBlock> xq(cols / 32 * 4);
  QuantizeActivations(x.data(), cols * 4, xq.data());
  std::vector<float> y(rows * 4);
  fmt::print("{:5} {:>2} {:>22} {:>9} {:>8} {:>7}\n", "type", "n", "kernel", "ms", "GMAC/s",
             "GB/s");
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const int64_t row_bytes = *RowBytes(t, cols);
    std::vector<uint8_t> w(rows * row_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      for (float& v : w_row) v = normal(rng);
      (void)QuantizeRow(t, w_row, {w.data() + r * row_bytes, static_cast<size_t>(row_bytes)});
    }
    const Matrix m{t, rows, cols, w.data(), row_bytes};
    const PackedMatrix packed = PackedMatrix::Pack(m);
    Matrix mp = m;
    mp.packed = packed.empty() ? nullptr : &packed;
    for (int n : {1, 4}) {
      for (int kernel = 0; kernel < 3; ++kernel) {
        if (kernel == 2 && packed.empty()) continue;
        std::vector<double> times;
        for (int run = 0; run < 21; ++run) {
          const auto t0 = std::chrono::steady_clock::now();
          if (kernel == 0) {
            MatMul(m, x.data(), n, y.data(), nullptr);
          } else {
            MatMulQ(kernel == 1 ? m : mp, xq.data(), n, y.data(), nullptr);
          }
          times.push_back(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::nth_element(times.begin(), times.begin() + 10, times.end());
        const double s = times[10];
        const char* names[] = {"float32 activations", "integer (file layout)", "integer (packed)"};
        fmt::print("{:5} {:2} {:>22} {:9.3f} {:8.1f} {:7.1f}\n",
                   t == GgmlType::kQ8_0 ? "q8_0" : "q4_0", n, names[kernel], s * 1e3,
                   rows * cols * n / s / 1e9, rows * row_bytes / s / 1e9);
      }
    }
  }
  fmt::print("Highway target: {}; packed VNNI kernels: {}\n", simd::TargetName(),
             PackedMatrix::Supported() ? "yes" : "no (this CPU lacks AVX-512 VNNI)");
}
