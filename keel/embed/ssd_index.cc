// SsdIndex: Robin Hood linear probing over packed 12-byte slots; see Note [Index bytes per
// row] in ssd_index.h.
#include "keel/embed/ssd_index.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "keel/common/logging.h"

namespace keel::embed {
namespace {

// A 64-bit finalizer (xor-shift-multiply), so sequential ids spread over the table.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

constexpr double kMaxLoad = 0.9;         // grow past this
constexpr double kLoadAfterGrow = 0.75;  // ... to this
constexpr double kMinLoad = 0.5;         // shrink under this
constexpr double kLoadAfterShrink = 0.8;

std::unique_ptr<uint8_t[]> EmptySlots(int64_t capacity) {
  auto slots = std::make_unique_for_overwrite<uint8_t[]>(capacity * SsdIndex::kSlotBytes);
  // Every location byte 0xFF = kEmpty; key bytes are don't-care but set for determinism.
  std::memset(slots.get(), 0xFF, capacity * SsdIndex::kSlotBytes);
  return slots;
}

}  // namespace

SsdIndex::SsdIndex() : slots_(EmptySlots(kMinCapacity)), capacity_(kMinCapacity) {}

int64_t SsdIndex::Home(uint64_t key) const {
  return static_cast<int64_t>(
      (static_cast<unsigned __int128>(Mix(key)) * static_cast<uint64_t>(capacity_)) >> 64);
}

int64_t SsdIndex::Locate(uint64_t key) const {
  int64_t i = Home(key);
  for (int64_t dist = 0;; ++dist, i = Next(i)) {
    if (LocationAt(i) == kEmpty) return -1;
    uint64_t k = KeyAt(i);
    if (k == key) return i;
    // Robin Hood invariant: had `key` been here, it would sit before any entry that is
    // closer to its own home than `key` is to its.
    if (Distance(i, Home(k)) < dist) return -1;
  }
}

uint32_t SsdIndex::Find(uint64_t key) const {
  int64_t i = Locate(key);
  return i < 0 ? kEmpty : LocationAt(i);
}

bool SsdIndex::Update(uint64_t key, uint32_t location) {
  KEEL_CHECK(location != kEmpty, "SsdIndex: location {:#x} is the empty marker", location);
  int64_t i = Locate(key);
  if (i < 0) return false;
  SetLocation(i, location);
  return true;
}

uint32_t SsdIndex::Upsert(uint64_t key, uint32_t location) {
  KEEL_CHECK(location != kEmpty, "SsdIndex: location {:#x} is the empty marker", location);
  int64_t i = Locate(key);
  if (i >= 0) {
    uint32_t old = LocationAt(i);
    SetLocation(i, location);
    return old;
  }
  if (static_cast<double>(size_ + 1) > kMaxLoad * static_cast<double>(capacity_)) {
    // floor: the load factor after growing is at least kLoadAfterGrow (≤ 16 B/row).
    Rehash(std::max<int64_t>(kMinCapacity, static_cast<int64_t>(std::floor(
                                               static_cast<double>(size_ + 1) / kLoadAfterGrow))));
  }
  InsertAbsent(key, location);
  ++size_;
  return kEmpty;
}

void SsdIndex::InsertAbsent(uint64_t key, uint32_t location) {
  int64_t i = Home(key);
  for (int64_t dist = 0;; ++dist, i = Next(i)) {
    uint32_t loc = LocationAt(i);
    if (loc == kEmpty) {
      SetSlot(i, key, location);
      return;
    }
    uint64_t k = KeyAt(i);
    int64_t their = Distance(i, Home(k));
    if (their < dist) {  // take the slot from the richer entry and carry it on
      SetSlot(i, key, location);
      key = k;
      location = loc;
      dist = their;
    }
  }
}

uint32_t SsdIndex::Erase(uint64_t key) {
  int64_t i = Locate(key);
  if (i < 0) return kEmpty;
  uint32_t old = LocationAt(i);
  // Backward shift: pull each following displaced entry one slot closer to its home.
  for (int64_t j = Next(i);; i = j, j = Next(j)) {
    uint32_t loc = LocationAt(j);
    if (loc == kEmpty) break;
    uint64_t k = KeyAt(j);
    if (Distance(j, Home(k)) == 0) break;
    SetSlot(i, k, loc);
  }
  SetLocation(i, kEmpty);
  --size_;
  if (capacity_ > kMinCapacity &&
      static_cast<double>(size_) < kMinLoad * static_cast<double>(capacity_)) {
    Rehash(std::max<int64_t>(kMinCapacity, static_cast<int64_t>(std::ceil(
                                               static_cast<double>(size_) / kLoadAfterShrink))));
  }
  return old;
}

void SsdIndex::Rehash(int64_t new_capacity) {
  std::unique_ptr<uint8_t[]> old = std::exchange(slots_, EmptySlots(new_capacity));
  int64_t old_capacity = std::exchange(capacity_, new_capacity);
  for (int64_t i = 0; i < old_capacity; ++i) {
    uint32_t loc;
    std::memcpy(&loc, old.get() + i * kSlotBytes + 8, sizeof(loc));
    if (loc == kEmpty) continue;
    uint64_t key;
    std::memcpy(&key, old.get() + i * kSlotBytes, sizeof(key));
    InsertAbsent(key, loc);
  }
}

}  // namespace keel::embed
