// The step functions of optimizers.h: check every tensor's buffers, then split the update
// into work items and run them on the pool with the SIMD kernels.
//
// Note [Work splitting]: dense tensors are cut into items of kChunk elements (a multiple of
// every vector width and of a cache line, so threads never share a line), and all items of
// all tensors go to one ParallelFor, so a model of many small tensors and one of a few large
// ones both use every thread. Sparse updates split by rows. Updates below kInline elements run
// on the calling thread: waking workers costs more than they would save.
#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "keel/common/thread_pool.h"
#include "keel/optim/kernel_args.h"
#include "keel/optim/optimizers.h"
#include "keel/optim/simd_kernels.h"

namespace keel::optim {
namespace {

using internal::Buffers;
using internal::Storage;

constexpr int64_t kChunk = 1 << 16;
constexpr int64_t kInline = 1 << 15;

StatusOr<Storage> ToStorage(DType t, const char* what, const char* optimizer) {
  if (t == DType::kFloat32) return Storage::kF32;
  if (t == DType::kBFloat16) return Storage::kBF16;
  return InvalidArgumentError(fmt::format("{}: {} has dtype {}; supported: float32, bfloat16",
                                          optimizer, what, DTypeName(t)));
}

// `required` is a bit mask of the slots the options need.
template <class T>
StatusOr<Buffers> MakeBuffers(const T& t, unsigned required, const char* optimizer, int64_t n) {
  Buffers b;
  KEEL_ASSIGN_OR_RETURN(b.param_type, ToStorage(t.param_dtype, "parameter", optimizer));
  KEEL_ASSIGN_OR_RETURN(b.grad_type, ToStorage(t.grad_dtype, "gradient", optimizer));
  if (t.grad_dtype != DType::kFloat32 && t.grad_dtype != t.param_dtype) {
    return InvalidArgumentError(fmt::format("{}: gradient dtype {} does not match parameter {}",
                                            optimizer, DTypeName(t.grad_dtype),
                                            DTypeName(t.param_dtype)));
  }
  if (n > 0 && (t.param == nullptr || t.grad == nullptr)) {
    return InvalidArgumentError(fmt::format("{}: missing parameter or gradient", optimizer));
  }
  for (int i = 0; i < 4; ++i) {
    if ((required >> i & 1) && n > 0 && t.slots[i] == nullptr) {
      return InvalidArgumentError(fmt::format("{}: state slot {} is missing", optimizer, i));
    }
  }
  b.param = t.param;
  b.grad = t.grad;
  b.s0 = t.slots[0];
  b.s1 = t.slots[1];
  b.s2 = t.slots[2];
  b.s3 = t.slots[3];
  return b;
}

Status CheckStep(int64_t step, const char* optimizer) {
  if (step >= 1) return OkStatus();
  return InvalidArgumentError(fmt::format("{}: step {} (steps count from 1)", optimizer, step));
}

Status CheckRows(const SparseRows& t, const char* optimizer) {
  if (t.num_rows < 0 || t.dim < 0 || t.num_touched < 0) {
    return InvalidArgumentError(fmt::format("{}: negative shape [{}, {}] or row count {}",
                                            optimizer, t.num_rows, t.dim, t.num_touched));
  }
  if (t.rows == nullptr) return OkStatus();
  std::vector<int64_t> sorted(t.rows, t.rows + t.num_touched);
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty() && (sorted.front() < 0 || sorted.back() >= t.num_rows)) {
    const int64_t bad = sorted.front() < 0 ? sorted.front() : sorted.back();
    return InvalidArgumentError(
        fmt::format("{}: row {} out of range [0, {})", optimizer, bad, t.num_rows));
  }
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return InvalidArgumentError(
        fmt::format("{}: row {} appears twice in one sparse update (coalesce the gradient first)",
                    optimizer, *dup));
  }
  return OkStatus();
}

void Run(ThreadPool* pool, int64_t items, int64_t elements,
         const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || elements < kInline || items < 2) {
    fn(0, items);
  } else {
    pool->ParallelFor(items, fn);
  }
}

// Dense update: `make_args(tensor, buffers)` gives the kernel's arguments for one tensor and
// `kernel(args, begin, end)` runs a range.
template <class Args, class MakeArgsFn, class Kernel>
Status DenseStep(std::span<const DenseTensor> tensors, unsigned required, const char* optimizer,
                 ThreadPool* pool, MakeArgsFn&& make_args, Kernel&& kernel) {
  std::vector<Args> args;
  args.reserve(tensors.size());
  struct Item {
    size_t tensor;
    int64_t begin, end;
  };
  std::vector<Item> items;
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const DenseTensor& t = tensors[i];
    if (t.n < 0) return InvalidArgumentError(fmt::format("{}: negative size {}", optimizer, t.n));
    KEEL_RETURN_IF_ERROR(CheckStep(t.step, optimizer));
    KEEL_ASSIGN_OR_RETURN(Buffers b, MakeBuffers(t, required, optimizer, t.n));
    args.push_back(make_args(t.step));
    args.back().buf = b;
    for (int64_t begin = 0; begin < t.n; begin += kChunk) {
      items.push_back({i, begin, std::min(t.n, begin + kChunk)});
    }
    total += t.n;
  }
  Run(pool, static_cast<int64_t>(items.size()), total, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) {
      kernel(args[items[k].tensor], items[k].begin, items[k].end);
    }
  });
  return OkStatus();
}

// Sparse-row update: `row_kernel(args_for_row, row, tensor)` updates one row.
template <class Args, class MakeArgsFn, class RowKernel>
Status RowStep(std::span<const SparseRows> tensors, unsigned required, const char* optimizer,
               ThreadPool* pool, MakeArgsFn&& make_args, RowKernel&& row_kernel) {
  for (const SparseRows& t : tensors) {
    KEEL_RETURN_IF_ERROR(CheckStep(t.step, optimizer));
    KEEL_RETURN_IF_ERROR(CheckRows(t, optimizer));
    const int64_t touched = t.rows == nullptr ? t.num_rows : t.num_touched;
    KEEL_ASSIGN_OR_RETURN(Buffers b, MakeBuffers(t, required, optimizer, touched * t.dim));
    Args args = make_args(t);
    args.buf = b;
    Run(pool, touched, touched * t.dim, [&](int64_t first, int64_t last) {
      for (int64_t k = first; k < last; ++k) {
        const int64_t row = t.rows == nullptr ? k : t.rows[k];
        Args row_args = args;
        row_args.buf = internal::Offset(b, row * t.dim, k * t.dim);
        row_kernel(row_args, row, t);
      }
    });
  }
  return OkStatus();
}

unsigned AdamWSlots(const AdamWOptions& o) { return 0b11u | (o.amsgrad ? 0b100u : 0u); }
unsigned AGDSlots(const AGDOptions& o) {
  return 0b11u | (o.amsgrad ? 0b100u : 0u) | (o.win ? 0b1000u : 0u);
}

}  // namespace

Status AdamWStep(const AdamWOptions& o, std::span<const DenseTensor> tensors, ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return DenseStep<internal::AdamWArgs>(
      tensors, AdamWSlots(o), "AdamW", pool,
      [&](int64_t step) { return internal::MakeArgs(o, step); },
      [](const internal::AdamWArgs& a, int64_t b, int64_t e) { simd::AdamW(a, b, e); });
}

Status AGDStep(const AGDOptions& o, std::span<const DenseTensor> tensors, ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return DenseStep<internal::AGDArgs>(
      tensors, AGDSlots(o), "AGD", pool, [&](int64_t step) { return internal::MakeArgs(o, step); },
      [](const internal::AGDArgs& a, int64_t b, int64_t e) { simd::AGD(a, b, e); });
}

Status AdagradStep(const AdagradOptions& o, std::span<const DenseTensor> tensors,
                   ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return DenseStep<internal::AdagradArgs>(
      tensors, 0b1u, "Adagrad", pool, [&](int64_t step) { return internal::MakeArgs(o, step); },
      [](const internal::AdagradArgs& a, int64_t b, int64_t e) { simd::Adagrad(a, b, e); });
}

Status AdamWSparseStep(const AdamWOptions& o, std::span<const SparseRows> tensors,
                       ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return RowStep<internal::AdamWArgs>(
      tensors, AdamWSlots(o), "AdamW", pool,
      [&](const SparseRows& t) { return internal::MakeArgs(o, t.step); },
      [](const internal::AdamWArgs& a, int64_t, const SparseRows& t) { simd::AdamW(a, 0, t.dim); });
}

Status AGDSparseStep(const AGDOptions& o, std::span<const SparseRows> tensors, ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return RowStep<internal::AGDArgs>(
      tensors, AGDSlots(o), "AGD", pool,
      [&](const SparseRows& t) { return internal::MakeArgs(o, t.step); },
      [](const internal::AGDArgs& a, int64_t, const SparseRows& t) { simd::AGD(a, 0, t.dim); });
}

Status AdagradSparseStep(const AdagradOptions& o, std::span<const SparseRows> tensors,
                         ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return RowStep<internal::AdagradArgs>(
      tensors, 0b1u, "Adagrad", pool,
      [&](const SparseRows& t) { return internal::MakeArgs(o, t.step); },
      [](const internal::AdagradArgs& a, int64_t, const SparseRows& t) {
        simd::Adagrad(a, 0, t.dim);
      });
}

Status GroupAdamStep(const GroupAdamOptions& o, std::span<const SparseRows> tensors,
                     ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  for (const SparseRows& t : tensors) {
    if (t.row_flags == nullptr && t.num_rows > 0) {
      return InvalidArgumentError("GroupAdam: row_flags (one byte per row) is missing");
    }
  }
  return RowStep<internal::GroupAdamArgs>(
      tensors, 0b111u, "GroupAdam", pool,
      [&](const SparseRows& t) { return internal::MakeArgs(o, t.step, t.dim); },
      [](const internal::GroupAdamArgs& a, int64_t row, const SparseRows& t) {
        simd::GroupAdamRow(a, t.row_flags[row] == 0);
        t.row_flags[row] = 1;
      });
}

Status GroupFtrlStep(const GroupFtrlOptions& o, std::span<const SparseRows> tensors,
                     ThreadPool* pool) {
  KEEL_RETURN_IF_ERROR(Validate(o));
  return RowStep<internal::GroupFtrlArgs>(
      tensors, 0b11u, "GroupFTRL", pool,
      [&](const SparseRows& t) { return internal::MakeArgs(o, t.dim); },
      [](const internal::GroupFtrlArgs& a, int64_t, const SparseRows&) { simd::GroupFtrlRow(a); });
}

const char* SimdTarget() { return simd::TargetName(); }

}  // namespace keel::optim
