// safetensors writer (atomic) and validating mmap reader.
#include "keel/ckpt/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "keel/ckpt/commit.h"
#include "keel/common/thread_pool.h"

namespace keel::ckpt {
namespace {

using Json = nlohmann::json;

// Same cap as the reference implementation: a header larger than this is not a checkpoint.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr char kChecksumKey[] = "keel.crc32";

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kNames[] = {
    {DType::kFloat32, "F32"},   {DType::kFloat64, "F64"}, {DType::kFloat16, "F16"},
    {DType::kBFloat16, "BF16"}, {DType::kInt8, "I8"},     {DType::kInt16, "I16"},
    {DType::kInt32, "I32"},     {DType::kInt64, "I64"},   {DType::kUInt8, "U8"},
    {DType::kBool, "BOOL"},
};

uint32_t Crc32(const uint8_t* data, uint64_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(size, 1u << 30));
    crc = crc32(crc, data, chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

// a * b, or nullopt on overflow (both non-negative).
std::optional<uint64_t> MulChecked(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

}  // namespace

const char* SafetensorsDType(DType dtype) {
  for (const DTypeName& n : kNames) {
    if (n.dtype == dtype) return n.name;
  }
  return "?";
}

StatusOr<DType> ParseSafetensorsDType(const std::string& name) {
  for (const DTypeName& n : kNames) {
    if (name == n.name) return n.dtype;
  }
  return InvalidArgumentError("unsupported safetensors dtype '" + name + "'");
}

// Copies `size` bytes to `fd` at `offset` (pwrite: threads may write disjoint ranges).
Status PwriteAll(int fd, const void* data, size_t size, uint64_t offset, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "writing '" + path + "'");
    p += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<size_t>(n);
  }
  return OkStatus();
}

StatusOr<std::string> SafetensorsPrefix(const std::vector<NamedTensor>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return InvalidArgumentError("invalid tensor name '" + t.name + "'");
    }
    if (header.contains(t.name)) {
      return InvalidArgumentError("tensor name '" + t.name + "' appears twice");
    }
    if (t.view.device != DeviceType::kCpu || !t.view.is_contiguous()) {
      return InvalidArgumentError("tensor '" + t.name + "' must be a contiguous CPU tensor, got " +
                                  t.view.DebugString());
    }
    const uint64_t bytes = t.view.nbytes();
    header[t.name] = {{"dtype", SafetensorsDType(t.view.dtype)},
                      {"shape", t.view.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  Json meta = Json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data part starts 8-byte aligned
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>(uint64_t{text.size()} >> (8 * i));
  return prefix + text;
}

void CopyTensorData(const std::vector<NamedTensor>& tensors, void* dst, int threads) {
  // ~16 MiB pieces, so the threads share the work whatever the tensor sizes.
  struct Piece {
    const char* src;
    size_t size;
    char* dst;
  };
  std::vector<Piece> pieces;
  char* at = static_cast<char*>(dst);
  for (const NamedTensor& t : tensors) {
    const char* p = static_cast<const char*>(t.view.data);
    for (size_t done = 0, n = t.view.nbytes(); done < n;) {
      const size_t chunk = std::min<size_t>(n - done, size_t{16} << 20);
      pieces.push_back({p + done, chunk, at});
      done += chunk;
      at += chunk;
    }
  }
  auto copy = [&pieces](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(pieces[i].dst, pieces[i].src, pieces[i].size);
  };
  if (threads <= 1 || pieces.size() <= 1) {
    copy(0, static_cast<int64_t>(pieces.size()));
    return;
  }
  ThreadPool pool(std::min<int>(threads, static_cast<int>(pieces.size())) - 1, "ckpt-copy");
  pool.ParallelFor(static_cast<int64_t>(pieces.size()), copy);
}

Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata,
                        const WriteOptions& options) {
  std::map<std::string, std::string> meta = metadata;
  if (options.checksum) {
    uLong crc = crc32(0L, Z_NULL, 0);
    for (const NamedTensor& t : tensors) {
      if (t.view.device != DeviceType::kCpu || !t.view.is_contiguous()) break;  // Prefix says
      for (uint64_t done = 0, bytes = t.view.nbytes(); done < bytes;) {
        const uInt chunk = static_cast<uInt>(std::min<uint64_t>(bytes - done, 1u << 30));
        crc = crc32(crc, static_cast<const Bytef*>(t.view.data) + done, chunk);
        done += chunk;
      }
    }
    meta[kChecksumKey] = std::to_string(static_cast<uint32_t>(crc));
  }
  StatusOr<std::string> prefix = SafetensorsPrefix(tensors, meta);
  if (!prefix.ok()) {
    return Status(prefix.status().code(), prefix.status().message() + " (writing '" + path + "')");
  }
  const std::string& text = *prefix;
  return WriteAtomically(
      path,
      [&](int fd, const std::string& tmp) {
        Status s = WriteAll(fd, text.data(), text.size(), tmp);
        if (s.ok() && options.threads <= 1) {
          for (size_t i = 0; s.ok() && i < tensors.size(); ++i) {
            s = WriteAll(fd, tensors[i].view.data, tensors[i].view.nbytes(), tmp);
          }
        } else if (s.ok()) {
          // Cut the data into ~64 MiB pieces and let the threads pwrite them in place.
          struct Piece {
            const char* data;
            size_t size;
            uint64_t offset;
          };
          std::vector<Piece> pieces;
          uint64_t at = text.size();
          for (const NamedTensor& t : tensors) {
            const char* p = static_cast<const char*>(t.view.data);
            for (size_t done = 0, n = t.view.nbytes(); done < n;) {
              const size_t chunk = std::min<size_t>(n - done, size_t{64} << 20);
              pieces.push_back({p + done, chunk, at});
              done += chunk;
              at += chunk;
            }
          }
          std::vector<Status> results(pieces.size());
          ThreadPool pool(options.threads, "ckpt-write");
          pool.ParallelFor(static_cast<int64_t>(pieces.size()), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              results[i] = PwriteAll(fd, pieces[i].data, pieces[i].size, pieces[i].offset, tmp);
            }
          });
          for (const Status& r : results) {
            if (!r.ok()) s = r;
          }
        }
        return s;
      },
      options.durable);
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path,
                                                                 Mapping mapping) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  auto bad = [&path](const std::string& why) {
    return InvalidArgumentError("'" + path + "' is not a valid safetensors file: " + why);
  };
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening '" + path + "'");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoError(err, "stat of '" + path + "'");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    close(fd);
    return bad("only " + std::to_string(size) + " bytes (truncated?)");
  }
  const int prot = mapping == Mapping::kCopyOnWrite ? PROT_READ | PROT_WRITE : PROT_READ;
  void* map = mmap(nullptr, size, prot, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return ErrnoError(errno, "mmap of '" + path + "'");
  f->map_ = map;
  f->map_size_ = size;
  const uint8_t* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t{bytes[i]} << (8 * i);
  if (header_len > kMaxHeaderBytes) {
    return bad("header length " + std::to_string(header_len) + " exceeds the 100 MiB limit");
  }
  if (header_len > size - 8) {
    return bad("header length " + std::to_string(header_len) + " runs past the end of the " +
               std::to_string(size) + "-byte file (truncated?)");
  }
  Json header = Json::parse(bytes + 8, bytes + 8 + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("the header is not a JSON object");
  f->data_ = bytes + 8 + header_len;
  f->data_size_ = size - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return bad("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) return bad("__metadata__['" + m.key() + "'] is not a string");
        f->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      return bad("tensor '" + name + "' lacks a valid dtype, shape or data_offsets");
    }
    Entry e;
    StatusOr<DType> dtype = ParseSafetensorsDType(v["dtype"].get<std::string>());
    if (!dtype.ok()) return bad("tensor '" + name + "': " + dtype.status().message());
    e.dtype = *dtype;
    uint64_t numel = 1;
    for (const Json& d : v["shape"]) {
      if (!d.is_number_unsigned())
        return bad("tensor '" + name + "' has a negative or non-integer dimension");
      std::optional<uint64_t> n = MulChecked(numel, d.get<uint64_t>());
      if (!n) return bad("tensor '" + name + "' has a shape whose size overflows");
      numel = *n;
      e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    const Json& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return bad("tensor '" + name + "' has non-integer data_offsets");
    }
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    std::optional<uint64_t> nbytes = MulChecked(numel, DTypeSize(e.dtype));
    if (e.end < e.begin || e.end > f->data_size_) {
      return bad("tensor '" + name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                 std::to_string(e.end) + ") fall outside the " + std::to_string(f->data_size_) +
                 "-byte data (truncated?)");
    }
    if (!nbytes || e.end - e.begin != *nbytes) {
      return bad("tensor '" + name + "' has " + std::to_string(e.end - e.begin) +
                 " bytes of data but its dtype and shape need " +
                 (nbytes ? std::to_string(*nbytes) : std::string("more")));
    }
    ranges.emplace_back(e.begin, e.end);
    f->entries_.emplace(name, std::move(e));
  }
  // The tensors must tile the data part exactly: no overlap, no hole, nothing after.
  std::sort(ranges.begin(), ranges.end());
  uint64_t expected = 0;
  for (const auto& [b, e] : ranges) {
    if (b != expected)
      return bad("tensor data overlaps or leaves a hole at byte " +
                 std::to_string(std::min(b, expected)));
    expected = e;
  }
  if (expected != f->data_size_) {
    return bad(std::to_string(f->data_size_ - expected) + " bytes after the last tensor");
  }
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [name, e] : entries_) order.emplace_back(e.begin, name);
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  out.reserve(order.size());
  for (auto& [b, name] : order) out.push_back(std::move(name));
  return out;
}

StatusOr<TensorView> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return NotFoundError("no tensor '" + name + "' in '" + path_ + "'");
  }
  // Writable only if opened kCopyOnWrite.
  return TensorView::Contiguous(const_cast<uint8_t*>(data_ + it->second.begin), it->second.dtype,
                                it->second.shape);
}

Status SafetensorsFile::VerifyChecksum() const {
  auto it = metadata_.find(kChecksumKey);
  if (it == metadata_.end()) {
    return FailedPreconditionError("'" + path_ + "' has no keel checksum (" + kChecksumKey + ")");
  }
  const std::string actual = std::to_string(Crc32(data_, data_size_));
  if (actual != it->second) {
    return DataLossError("'" + path_ + "' is corrupt: CRC-32 of its data is " + actual +
                         ", the header says " + it->second);
  }
  return OkStatus();
}

}  // namespace keel::ckpt
