// CRC-32C (Castagnoli), the checksum of every record in an SsdStore segment file.
//
//   uint32_t crc = Crc32c(data, n);              // one buffer
//   crc = Crc32cExtend(crc, more, m);            // continue over a second buffer
//
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run time) and a
// table-driven byte loop otherwise; both give the same value (Crc32cTest checks them).
// Thread-safety: pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::embed {

// Extends `crc` (the value returned for the preceding bytes; 0 to start) over data[0, n).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }

namespace internal {
// The portable table-driven variant, exposed so the test can compare it with the fast one.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);
}  // namespace internal

}  // namespace keel::embed
