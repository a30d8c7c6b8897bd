// A test fixture shared by the per-policy allocator tests: one policy over a fresh simulated
// backend (2 MiB chunks), with helpers that fail the test on unexpected errors.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem {

inline constexpr uint64_t kMiB = 1ull << 20;

class PolicyTest : public ::testing::Test {
 protected:
  explicit PolicyTest(std::string policy) : policy_(std::move(policy)) {}

  // A fresh backend of `capacity` bytes and the policy over it.
  void Make(uint64_t capacity, AllocatorOptions o = {}) {
    alloc_.reset();  // before the backend it borrows
    auto m = MakeSimulatedMemory({.chunk_bytes = 2 * kMiB, .capacity_bytes = capacity});
    ASSERT_TRUE(m.ok());
    backend_ = std::move(*m);
    auto a = MakeAllocator(policy_, backend_.get(), o);
    ASSERT_TRUE(a.ok());
    alloc_ = std::move(*a);
  }
  Allocation Alloc(uint64_t bytes, int stream = 0) {
    StatusOr<Allocation> a = alloc_->Allocate(bytes, stream);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? *a : Allocation{};
  }
  void Free(const Allocation& a) { ASSERT_TRUE(alloc_->Free(a.ptr).ok()); }
  static uintptr_t Addr(const Allocation& a) { return reinterpret_cast<uintptr_t>(a.ptr); }
  AllocatorStats Stats() { return alloc_->stats(); }

  std::string policy_;
  std::unique_ptr<PhysicalMemory> backend_;
  std::unique_ptr<Allocator> alloc_;
};

}  // namespace keel::mem
