// SsdIndex: the in-memory index of an SsdStore — 64-bit key → 32-bit record location, in
// 12 bytes per slot (8 B key + 4 B location, packed) of one open-addressing array.
//
//   SsdIndex index;
//   index.Upsert(key, location);       // returns the previous location or kEmpty
//   uint32_t loc = index.Find(key);     // kEmpty when absent
//   index.Erase(key);
//
// Note [Index bytes per row]: Robin Hood linear probing (short, even probe sequences at a
// high load factor; backward-shift deletion, so no tombstones) over a capacity that is not a
// power of two (the home slot is hash * capacity >> 64). The table grows when the load factor
// would pass 0.9, to a capacity where it is 0.75 again, and shrinks when it falls under 0.5,
// to 0.8. So once past its 1024-slot minimum, it uses 12/0.9 = 13.3 to 12/0.75 = 16 bytes
// per row while growing, and at most 24 while shrinking. A grow or shrink rehashes every
// entry (amortized 5 moves per insert); callers hold their lock through it.
// Locations must not equal kEmpty (the empty-slot marker), any other 32-bit value is allowed.
// Thread-safety: not thread-safe (SsdStore guards it with its mutex).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>

namespace keel::embed {

class SsdIndex {
 public:
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  static constexpr int64_t kSlotBytes = 12;
  static constexpr int64_t kMinCapacity = 1024;

  SsdIndex();

  // The location of `key`, or kEmpty.
  uint32_t Find(uint64_t key) const;
  // Sets key → location (location != kEmpty); returns the previous location or kEmpty.
  uint32_t Upsert(uint64_t key, uint32_t location);
  // Sets the location of a present key; false (and no change) if the key is absent.
  bool Update(uint64_t key, uint32_t location);
  // Removes `key`; returns its location, or kEmpty if it was absent.
  uint32_t Erase(uint64_t key);
  // Starts loading `key`'s home slot: call it for a batch of keys before working on them, so
  // their cache misses overlap.
  void Prefetch(uint64_t key) const { __builtin_prefetch(slots_.get() + Home(key) * kSlotBytes); }

  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  // DRAM the slot array takes.
  int64_t bytes() const { return capacity_ * kSlotBytes; }

  // Calls fn(key, location) for every entry. fn must not modify the index.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (int64_t i = 0; i < capacity_; ++i) {
      uint32_t loc = LocationAt(i);
      if (loc != kEmpty) fn(KeyAt(i), loc);
    }
  }

 private:
  uint64_t KeyAt(int64_t i) const {
    uint64_t key;
    std::memcpy(&key, slots_.get() + i * kSlotBytes, sizeof(key));
    return key;
  }
  uint32_t LocationAt(int64_t i) const {
    uint32_t loc;
    std::memcpy(&loc, slots_.get() + i * kSlotBytes + 8, sizeof(loc));
    return loc;
  }
  void SetSlot(int64_t i, uint64_t key, uint32_t loc) {
    std::memcpy(slots_.get() + i * kSlotBytes, &key, sizeof(key));
    std::memcpy(slots_.get() + i * kSlotBytes + 8, &loc, sizeof(loc));
  }
  void SetLocation(int64_t i, uint32_t loc) {
    std::memcpy(slots_.get() + i * kSlotBytes + 8, &loc, sizeof(loc));
  }
  int64_t Home(uint64_t key) const;
  int64_t Next(int64_t i) const { return i + 1 == capacity_ ? 0 : i + 1; }
  int64_t Distance(int64_t slot, int64_t home) const {
    return slot >= home ? slot - home : slot + capacity_ - home;
  }
  // The slot holding `key`, or -1.
  int64_t Locate(uint64_t key) const;
  // Inserts a key known to be absent, with capacity to spare.
  void InsertAbsent(uint64_t key, uint32_t location);
  void Rehash(int64_t new_capacity);

  std::unique_ptr<uint8_t[]> slots_;
  int64_t capacity_ = 0;
  int64_t size_ = 0;
};

}  // namespace keel::embed
