// GGUF writer: version 3, little-endian, tensors in the order added, each at an offset aligned
// to general.alignment (32 by default) — the layout llama.cpp writes and reads.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "keel/infer/gguf/gguf_file.h"

namespace keel::infer {
namespace {

class Bytes {
 public:
  template <class T>
  void Put(T v) {
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  void PutString(std::string_view s) {
    Put<uint64_t>(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void PadTo(uint64_t alignment) {
    while (out_.size() % alignment != 0) out_.push_back(0);
  }
  void Append(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  std::vector<uint8_t>& data() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

Status PutValue(Bytes& b, const GgufValue& v, int depth) {
  switch (v.type) {
    case GgufValueType::kU8:
    case GgufValueType::kBool:
      b.Put<uint8_t>(static_cast<uint8_t>(v.u));
      break;
    case GgufValueType::kI8:
      b.Put<int8_t>(static_cast<int8_t>(v.i));
      break;
    case GgufValueType::kU16:
      b.Put<uint16_t>(static_cast<uint16_t>(v.u));
      break;
    case GgufValueType::kI16:
      b.Put<int16_t>(static_cast<int16_t>(v.i));
      break;
    case GgufValueType::kU32:
      b.Put<uint32_t>(static_cast<uint32_t>(v.u));
      break;
    case GgufValueType::kI32:
      b.Put<int32_t>(static_cast<int32_t>(v.i));
      break;
    case GgufValueType::kF32:
      b.Put<float>(static_cast<float>(v.f));
      break;
    case GgufValueType::kU64:
      b.Put<uint64_t>(v.u);
      break;
    case GgufValueType::kI64:
      b.Put<int64_t>(v.i);
      break;
    case GgufValueType::kF64:
      b.Put<double>(v.f);
      break;
    case GgufValueType::kString:
      b.PutString(v.str);
      break;
    case GgufValueType::kArray:
      if (depth >= 2) return InvalidArgumentError("GGUF arrays nest at most 2 deep");
      b.Put<uint32_t>(static_cast<uint32_t>(v.elem_type));
      b.Put<uint64_t>(v.items.size());
      for (const GgufValue& item : v.items) {
        if (item.type != v.elem_type) {
          return InvalidArgumentError(fmt::format("GGUF array of {} holds a {}",
                                                  GgufValueTypeName(v.elem_type),
                                                  GgufValueTypeName(item.type)));
        }
        KEEL_RETURN_IF_ERROR(PutValue(b, item, depth + 1));
      }
      break;
  }
  return OkStatus();
}

}  // namespace

void GgufWriter::Set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::SetUInt32(const std::string& key, uint32_t v) {
  Set(key, GgufValue::UInt(GgufValueType::kU32, v));
}
void GgufWriter::SetFloat32(const std::string& key, float v) {
  Set(key, GgufValue::Float(GgufValueType::kF32, v));
}
void GgufWriter::SetString(const std::string& key, std::string v) {
  Set(key, GgufValue::String(std::move(v)));
}
void GgufWriter::SetBool(const std::string& key, bool v) { Set(key, GgufValue::Bool(v)); }
void GgufWriter::SetStringArray(const std::string& key, const std::vector<std::string>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (const std::string& s : v) items.push_back(GgufValue::String(s));
  Set(key, GgufValue::Array(GgufValueType::kString, std::move(items)));
}

Status GgufWriter::AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                             std::span<const uint8_t> data) {
  if (name.empty() || name.size() > 63) {
    return InvalidArgumentError(fmt::format("tensor name '{}' must be 1..63 bytes", name));
  }
  for (const Tensor& t : tensors_) {
    if (t.name == name) return InvalidArgumentError("tensor '" + name + "' added twice");
  }
  const std::optional<GgmlTypeTraits> traits = TraitsOf(static_cast<uint32_t>(type));
  if (!traits) return InvalidArgumentError(fmt::format("tensor '{}': unknown type", name));
  if (ne.empty() || ne.size() > 4) {
    return InvalidArgumentError(
        fmt::format("tensor '{}' has {} dimensions (1..4)", name, ne.size()));
  }
  int64_t numel = 1;
  for (int64_t d : ne) {
    if (d <= 0 || d > (int64_t{1} << 62) / numel) {
      return InvalidArgumentError(fmt::format("tensor '{}' has a bad dimension {}", name, d));
    }
    numel *= d;
  }
  if (ne[0] % traits->block_size != 0) {
    return InvalidArgumentError(
        fmt::format("tensor '{}': rows of {} are not whole {} blocks "
                    "of {}",
                    name, ne[0], traits->name, traits->block_size));
  }
  const uint64_t want = numel / traits->block_size * traits->bytes_per_block;
  if (data.size() != want) {
    return InvalidArgumentError(fmt::format("tensor '{}' ({} {}) needs {} bytes, got {}", name,
                                            numel, traits->name, want, data.size()));
  }
  tensors_.push_back({name, type, std::move(ne), {data.begin(), data.end()}});
  return OkStatus();
}

StatusOr<std::vector<uint8_t>> GgufWriter::Serialize() const {
  uint64_t alignment = 32;
  for (const auto& [k, v] : metadata_) {
    if (k == "general.alignment") {
      if (v.type != GgufValueType::kU32 || v.u == 0 || (v.u & (v.u - 1)) != 0) {
        return InvalidArgumentError("general.alignment must be a u32 power of two");
      }
      alignment = v.u;
    }
  }
  Bytes b;
  b.Put<uint32_t>(0x46554747);  // "GGUF"
  b.Put<uint32_t>(3);
  b.Put<uint64_t>(tensors_.size());
  b.Put<uint64_t>(metadata_.size());
  for (const auto& [k, v] : metadata_) {
    b.PutString(k);
    b.Put<uint32_t>(static_cast<uint32_t>(v.type));
    KEEL_RETURN_IF_ERROR(PutValue(b, v, 0));
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    b.PutString(t.name);
    b.Put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) b.Put<uint64_t>(static_cast<uint64_t>(d));
    b.Put<uint32_t>(static_cast<uint32_t>(t.type));
    b.Put<uint64_t>(offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  b.PadTo(alignment);
  for (const Tensor& t : tensors_) {
    b.Append(t.data);
    b.PadTo(alignment);
  }
  return std::move(b.data());
}

Status GgufWriter::Write(const std::string& path) const {
  KEEL_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, Serialize());
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "creating '" + tmp + "'");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return ErrnoError(err, "writing '" + tmp + "'");
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, "flushing '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, "renaming '" + tmp + "' to '" + path + "'");
  }
  return OkStatus();
}

}  // namespace keel::infer
