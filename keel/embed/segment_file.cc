// Encoding and checking of segment-file record slots; see segment_file.h for the layout.
#include "keel/embed/segment_file.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>

#include "keel/embed/crc32c.h"

namespace keel::embed {

static_assert(std::endian::native == std::endian::little,
              "segment files are little-endian; add byte swaps for big-endian hosts");

uint32_t RecordCrc(uint64_t key, const uint8_t* record, int64_t record_bytes) {
  uint32_t magic = kRecordMagic;
  uint32_t crc = Crc32c(&magic, sizeof(magic));
  crc = Crc32cExtend(crc, record, static_cast<size_t>(record_bytes));
  return Crc32cExtend(crc, &key, sizeof(key));
}

void EncodeRecordHeader(uint64_t key, const uint8_t* record, int64_t record_bytes,
                        uint8_t* header) {
  uint32_t crc = RecordCrc(key, record, record_bytes);
  uint32_t magic = kRecordMagic;
  std::memcpy(header, &key, 8);
  std::memcpy(header + 8, &crc, 4);
  std::memcpy(header + 12, &magic, 4);
}

uint64_t RecordKey(const uint8_t* header) {
  uint64_t key;
  std::memcpy(&key, header, 8);
  return key;
}

Status VerifyRecord(const uint8_t* header, const uint8_t* record, int64_t record_bytes,
                    std::optional<uint64_t> expected_key, const std::string& path, int64_t offset) {
  uint64_t key = RecordKey(header);
  uint32_t crc;
  uint32_t magic;
  std::memcpy(&crc, header + 8, 4);
  std::memcpy(&magic, header + 12, 4);
  if (magic != kRecordMagic) {
    return DataLossError(fmt::format(
        "SsdStore: corrupt record at offset {} of {}: magic {:#010x}, expected {:#010x}", offset,
        path, magic, kRecordMagic));
  }
  if (expected_key && key != *expected_key) {
    return DataLossError(
        fmt::format("SsdStore: corrupt record at offset {} of {}: key {}, the index expects key {}",
                    offset, path, key, *expected_key));
  }
  uint32_t actual = RecordCrc(key, record, record_bytes);
  if (actual != crc) {
    return DataLossError(fmt::format(
        "SsdStore: corrupt record for key {} at offset {} of {}: CRC-32C {:#010x}, stored "
        "{:#010x}",
        key, offset, path, actual, crc));
  }
  return OkStatus();
}

std::string SegmentFileName(uint32_t id) { return fmt::format("segment-{:08x}.ssd", id); }

bool IsSegmentFileName(std::string_view name) {
  constexpr std::string_view kPrefix = "segment-";
  constexpr std::string_view kSuffix = ".ssd";
  if (name.size() != kPrefix.size() + 8 + kSuffix.size()) return false;
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return false;
  for (char c : name.substr(kPrefix.size(), 8)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace keel::embed
