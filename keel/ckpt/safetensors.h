// safetensors files: keel's on-disk checkpoint format, readable by any safetensors reader.
//
// Layout (docs/formats/checkpoint.md): an 8-byte little-endian header length N, N bytes of
// JSON (padded with spaces to a multiple of 8), then the tensors' bytes back to back. The JSON
// maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the
// data part) and "__metadata__" to a string -> string map. keel adds the CRC-32 of the data
// part as __metadata__["keel.crc32"].
//
//   KEEL_RETURN_IF_ERROR(WriteSafetensors(path, {{"w", view}}, {{"step", "10"}}));
//   KEEL_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
//   KEEL_RETURN_IF_ERROR(file->VerifyChecksum());
//   TensorView w = *file->Get("w");   // points into the read-only mapping
//
// Writes are atomic: a temporary file is written, fsynced and renamed over `path`, and the
// directory is fsynced, so a crash leaves either the old file or the new one. Open validates
// everything (sizes, JSON, dtypes, shapes, offsets that must tile the data exactly) and
// returns INVALID_ARGUMENT / DATA_LOSS naming the file and the problem; hostile files never
// crash the reader. Thread-safety: a SafetensorsFile is immutable after Open.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "keel/common/status.h"
#include "keel/common/tensor_view.h"

namespace keel::ckpt {

// safetensors dtype names: "F32", "BF16", "I64", "BOOL", ...
const char* SafetensorsDType(DType dtype);
StatusOr<DType> ParseSafetensorsDType(const std::string& name);

struct NamedTensor {
  std::string name;
  TensorView view;  // CPU, contiguous
};

struct WriteOptions {
  // Record the data's CRC-32 in __metadata__["keel.crc32"] (costs a pass over the data).
  bool checksum = true;
  // fsync the file and its directory (pointless on tmpfs).
  bool durable = true;
  // Threads copying the data into the file (each writes its own byte ranges).
  int threads = 1;
};

// The bytes before the data of a safetensors file holding `tensors` (in this order) and
// `metadata`: the 8-byte header length and the JSON header, padded with spaces so the data
// starts 8-byte aligned. INVALID_ARGUMENT for a bad name, a repeated name or a tensor that is
// not contiguous on the CPU.
StatusOr<std::string> SafetensorsPrefix(const std::vector<NamedTensor>& tensors,
                                        const std::map<std::string, std::string>& metadata);

// Copies the tensors' bytes back to back into `dst` using `threads` threads.
void CopyTensorData(const std::vector<NamedTensor>& tensors, void* dst, int threads);

// Writes `tensors` (in this order) and `metadata` to `path` atomically.
Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata,
                        const WriteOptions& options = {});

class SafetensorsFile {
 public:
  // kCopyOnWrite maps the file writable and private: callers may modify the tensors in place
  // (the pages are copied on first write) while the file itself never changes.
  enum class Mapping { kReadOnly, kCopyOnWrite };
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path,
                                                         Mapping mapping = Mapping::kReadOnly);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensor names in file order (by data offset).
  std::vector<std::string> names() const;
  // A view into the mapping (read-only unless opened kCopyOnWrite); valid while this file is
  // open. NOT_FOUND if absent.
  StatusOr<TensorView> Get(const std::string& name) const;
  // The whole file as mapped (header and data), e.g. to copy it elsewhere unchanged.
  const void* file_bytes() const { return map_; }
  size_t file_size() const { return map_size_; }
  // DATA_LOSS if the data part's CRC-32 differs from __metadata__["keel.crc32"];
  // FAILED_PRECONDITION if the file has no keel checksum (written by another tool).
  Status VerifyChecksum() const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  SafetensorsFile() = default;

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data part
  uint64_t data_size_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace keel::ckpt
