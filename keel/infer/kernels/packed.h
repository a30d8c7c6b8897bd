// Q8_0 / Q4_0 weight matrices repacked at load time for the VNNI integer kernels: 8 rows are
// interleaved per 32-weight block, so that one dpbusd multiplies 4 weights of each of 8 rows
// by the same 4 activations and the 8 lanes of the sum ARE the 8 rows' dot products: no
// horizontal sums, one conversion and one multiply-add per block for 8 rows.
//
//   PackedMatrix p = PackedMatrix::Pack(w);        // empty unless PackedMatrix::Supported()
//   MatMulPacked(p, xq, n, y, pool);               // == MatMulQ(w, xq, n, y, pool)
//
// Layout, per group of 8 rows (the last group padded with zero-scale rows), per block b:
//   8 x fp16 d (the rows' block scales), then
//   Q8_0: 8 chunks k of 32 bytes: for each row r, its q[4k..4k+3] + 128 (as unsigned bytes);
//   Q4_0: 4 chunks k of 32 bytes: for each row r, its packed bytes qs[4k..4k+3] (low nibbles
//         weights 4k..4k+3, high nibbles weights 16+4k..16+4k+3).
// The zero points (128, 8) come off as that times the activation block's sum.
// Thread-safety: a PackedMatrix is immutable after Pack.
#pragma once

#include <cstdint>
#include <memory>

#include "keel/infer/kernels/kernels.h"

namespace keel::infer {

struct ActBlock;

class PackedMatrix {
 public:
  // Whether this CPU runs the packed kernels (AVX-512 with VNNI).
  static bool Supported();
  // `w` (Q8_0 or Q4_0, cols a multiple of 32) repacked; an empty matrix for other types or
  // when !Supported().
  static PackedMatrix Pack(const Matrix& w);

  bool empty() const { return data_ == nullptr; }
  GgmlType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const uint8_t* group(int64_t g) const { return data_.get() + g * group_bytes_; }

 private:
  GgmlType type_ = GgmlType::kF32;
  int64_t rows_ = 0, cols_ = 0, group_bytes_ = 0;
  std::unique_ptr<uint8_t[]> data_;
};

// y[i][r] = DotRowQ(row r, xq row i) for n rows of activations (cols / 32 blocks each).
void MatMulPacked(const PackedMatrix& w, const ActBlock* xq, int64_t n, float* y,
                  ComputePool* pool);

}  // namespace keel::infer
