// The on-disk format of SsdStore segment files (docs/embed.md, "Segment files").
//
// A segment file `segment-XXXXXXXX.ssd` (XXXXXXXX = segment id, 8 hex digits) is an array of
// fixed-size slots, slot s at byte offset s * SlotBytes(record_bytes):
//
//   offset 0   uint64  key            (little-endian, as are the other fields)
//   offset 8   uint32  crc            CRC-32C of bytes [12, 16) then [16, 16 + record_bytes)
//                                      then the key's 8 bytes
//   offset 12  uint32  magic          kRecordMagic
//   offset 16  record_bytes bytes     the record, opaque to the store
//
// Slots are written once, in order; a record that is later replaced or removed stays in
// place as garbage until the segment is compacted. There is no file header: the store's
// in-memory index is the only way into a file, and files do not outlive the store.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/common/status.h"

namespace keel::embed {

inline constexpr int64_t kRecordHeaderBytes = 16;
inline constexpr uint32_t kRecordMagic = 0x4B535344u;  // "DSSK" little-endian
inline constexpr std::string_view kLockFileName = "LOCK";

inline int64_t SlotBytes(int64_t record_bytes) { return kRecordHeaderBytes + record_bytes; }

// Fills header[0, 16) for `key` and `record`.
void EncodeRecordHeader(uint64_t key, const uint8_t* record, int64_t record_bytes, uint8_t* header);
// The CRC field EncodeRecordHeader would write.
uint32_t RecordCrc(uint64_t key, const uint8_t* record, int64_t record_bytes);

// Checks a slot read back from `path` at `offset`: magic, CRC and (when `expected_key` is
// set) the key. DATA_LOSS naming the file and offset when anything is off.
Status VerifyRecord(const uint8_t* header, const uint8_t* record, int64_t record_bytes,
                    std::optional<uint64_t> expected_key, const std::string& path, int64_t offset);
uint64_t RecordKey(const uint8_t* header);

std::string SegmentFileName(uint32_t id);
// True for names SegmentFileName produces.
bool IsSegmentFileName(std::string_view name);

}  // namespace keel::embed
