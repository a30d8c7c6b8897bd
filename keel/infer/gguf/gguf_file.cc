// GGUF reader: a bounds-checked cursor over the mapped bytes. Every length and count is
// checked against the bytes that remain before anything is allocated for it.
#include "keel/infer/gguf/gguf_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

namespace keel::infer {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxNameBytes = 63;   // ggml's GGML_MAX_NAME is 64 with the NUL
constexpr uint64_t kMaxKeyBytes = 65535;
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 2;

// Reads little-endian values from `bytes`, tracking the offset for error messages.
class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  uint64_t offset() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  Status Error(const std::string& what) const {
    return InvalidArgumentError(fmt::format("not a valid GGUF file: {} (at byte {})", what, pos_));
  }

  template <class T>
  Status Read(T* out, const char* what) {
    if (remaining() < sizeof(T)) {
      return Error(fmt::format("truncated while reading {} ({} bytes left)", what, remaining()));
    }
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return OkStatus();
  }

  Status ReadString(std::string* out, uint64_t max_len, const char* what) {
    uint64_t len = 0;
    KEEL_RETURN_IF_ERROR(Read(&len, what));
    if (len > remaining()) {
      return Error(fmt::format("{} of {} bytes runs past the end of the file", what, len));
    }
    if (len > max_len) return Error(fmt::format("{} of {} bytes (limit {})", what, len, max_len));
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return OkStatus();
  }

 private:
  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
};

// Smallest encoded size of one value of type `t` (for bounding counts before allocating).
uint64_t MinBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    case GgufValueType::kString:
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64:
      return 8;
    case GgufValueType::kArray:
      return 12;
  }
  return 1;
}

Status ReadValue(Cursor& c, GgufValueType type, int depth, GgufValue* out);

template <class T>
Status ReadScalar(Cursor& c, GgufValue* out, const char* what) {
  T v{};
  KEEL_RETURN_IF_ERROR(c.Read(&v, what));
  if constexpr (std::is_floating_point_v<T>) {
    out->f = v;
  } else if constexpr (std::is_signed_v<T>) {
    out->i = v;  // NOLINT(bugprone-signed-char-misuse): i8 is signed by definition
  } else {
    out->u = v;
  }
  return OkStatus();
}

Status ReadValue(Cursor& c, GgufValueType type, int depth, GgufValue* out) {
  out->type = type;
  switch (type) {
    case GgufValueType::kU8:
      return ReadScalar<uint8_t>(c, out, "a u8");
    case GgufValueType::kI8:
      return ReadScalar<int8_t>(c, out, "an i8");
    case GgufValueType::kU16:
      return ReadScalar<uint16_t>(c, out, "a u16");
    case GgufValueType::kI16:
      return ReadScalar<int16_t>(c, out, "an i16");
    case GgufValueType::kU32:
      return ReadScalar<uint32_t>(c, out, "a u32");
    case GgufValueType::kI32:
      return ReadScalar<int32_t>(c, out, "an i32");
    case GgufValueType::kF32:
      return ReadScalar<float>(c, out, "an f32");
    case GgufValueType::kU64:
      return ReadScalar<uint64_t>(c, out, "a u64");
    case GgufValueType::kI64:
      return ReadScalar<int64_t>(c, out, "an i64");
    case GgufValueType::kF64:
      return ReadScalar<double>(c, out, "an f64");
    case GgufValueType::kBool: {
      uint8_t b = 0;
      KEEL_RETURN_IF_ERROR(c.Read(&b, "a bool"));
      if (b > 1) return c.Error(fmt::format("bool value {} (must be 0 or 1)", b));
      out->u = b;
      return OkStatus();
    }
    case GgufValueType::kString:
      return c.ReadString(&out->str, std::numeric_limits<uint32_t>::max(), "a string");
    case GgufValueType::kArray: {
      if (depth >= kMaxArrayDepth) return c.Error("arrays nested deeper than 2");
      uint32_t elem = 0;
      uint64_t count = 0;
      KEEL_RETURN_IF_ERROR(c.Read(&elem, "an array's element type"));
      if (elem > 12) return c.Error(fmt::format("array element type {} is not a GGUF type", elem));
      KEEL_RETURN_IF_ERROR(c.Read(&count, "an array's length"));
      out->elem_type = static_cast<GgufValueType>(elem);
      if (count > c.remaining() / MinBytes(out->elem_type)) {
        return c.Error(fmt::format("array of {} {} cannot fit in the {} bytes left", count,
                                   GgufValueTypeName(out->elem_type), c.remaining()));
      }
      out->items.resize(count);
      for (GgufValue& item : out->items) {
        KEEL_RETURN_IF_ERROR(ReadValue(c, out->elem_type, depth + 1, &item));
      }
      return OkStatus();
    }
  }
  return c.Error("unknown value type");
}

StatusOr<uint64_t> ToUInt(const GgufValue& v, std::string_view key) {
  switch (v.type) {
    case GgufValueType::kU8:
    case GgufValueType::kU16:
    case GgufValueType::kU32:
    case GgufValueType::kU64:
      return v.u;
    case GgufValueType::kI8:
    case GgufValueType::kI16:
    case GgufValueType::kI32:
    case GgufValueType::kI64:
      if (v.i >= 0) return static_cast<uint64_t>(v.i);
      return InvalidArgumentError(fmt::format("GGUF key '{}' is {} (must be >= 0)", key, v.i));
    default:
      return InvalidArgumentError(
          fmt::format("GGUF key '{}' is a {}, not an integer", key, GgufValueTypeName(v.type)));
  }
}

}  // namespace

std::string_view GgufValueTypeName(GgufValueType t) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                "i32", "f32", "bool", "string", "array",
                                                "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

GgufValue GgufValue::UInt(GgufValueType t, uint64_t v) {
  GgufValue r;
  r.type = t;
  r.u = v;
  return r;
}
GgufValue GgufValue::Int(GgufValueType t, int64_t v) {
  GgufValue r;
  r.type = t;
  r.i = v;
  return r;
}
GgufValue GgufValue::Float(GgufValueType t, double v) {
  GgufValue r;
  r.type = t;
  r.f = v;
  return r;
}
GgufValue GgufValue::Bool(bool v) { return UInt(GgufValueType::kBool, v ? 1 : 0); }
GgufValue GgufValue::String(std::string v) {
  GgufValue r;
  r.type = GgufValueType::kString;
  r.str = std::move(v);
  return r;
}
GgufValue GgufValue::Array(GgufValueType elem, std::vector<GgufValue> items) {
  GgufValue r;
  r.type = GgufValueType::kArray;
  r.elem_type = elem;
  r.items = std::move(items);
  return r;
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

GgufFile::~GgufFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening '" + path + "'");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(err, "stat of '" + path + "'");
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return InvalidArgumentError("'" + path + "' is not a regular file");
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  if (st.st_size > 0) {
    void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    close(fd);
    if (map == MAP_FAILED) return ErrnoError(err, "mmap of '" + path + "'");
    f->map_ = map;
    f->map_size_ = static_cast<size_t>(st.st_size);
  } else {
    close(fd);
  }
  Status s = f->ParseAll({static_cast<const uint8_t*>(f->map_), f->map_size_});
  if (!s.ok()) return InvalidArgumentError("'" + path + "': " + std::string(s.message()));
  return f;
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  KEEL_RETURN_IF_ERROR(f->ParseAll(bytes));
  return f;
}

Status GgufFile::ParseAll(std::span<const uint8_t> bytes) {
  Cursor c(bytes);
  uint32_t magic = 0;
  KEEL_RETURN_IF_ERROR(c.Read(&magic, "the magic"));
  if (magic != kMagic) return c.Error("the magic is not 'GGUF'");
  KEEL_RETURN_IF_ERROR(c.Read(&version_, "the version"));
  if (version_ == 0x03000000 || version_ == 0x02000000) {
    return c.Error("big-endian GGUF files are not supported");
  }
  if (version_ != 2 && version_ != 3) {
    return c.Error(fmt::format("version {} (keel reads versions 2 and 3)", version_));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  KEEL_RETURN_IF_ERROR(c.Read(&n_tensors, "the tensor count"));
  KEEL_RETURN_IF_ERROR(c.Read(&n_kv, "the metadata count"));
  // A key-value pair takes >= 13 bytes, a tensor info >= 28: bound the counts by the file.
  if (n_kv > c.remaining() / 13) {
    return c.Error(fmt::format("{} metadata entries cannot fit in {} bytes", n_kv, c.remaining()));
  }
  if (n_tensors > c.remaining() / 28) {
    return c.Error(fmt::format("{} tensors cannot fit in {} bytes", n_tensors, c.remaining()));
  }
  metadata_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    KEEL_RETURN_IF_ERROR(c.ReadString(&key, kMaxKeyBytes, "a metadata key"));
    if (key.empty()) return c.Error("an empty metadata key");
    if (key_index_.count(key)) return c.Error("metadata key '" + key + "' appears twice");
    uint32_t type = 0;
    KEEL_RETURN_IF_ERROR(c.Read(&type, "a value type"));
    if (type > 12) {
      return c.Error(fmt::format("key '{}' has value type {} (not a GGUF type)", key, type));
    }
    GgufValue value;
    KEEL_RETURN_IF_ERROR(ReadValue(c, static_cast<GgufValueType>(type), 0, &value));
    key_index_[key] = metadata_.size();
    metadata_.emplace_back(std::move(key), std::move(value));
  }
  if (const GgufValue* a = Find("general.alignment")) {
    if (a->type != GgufValueType::kU32 || a->u == 0 || (a->u & (a->u - 1)) != 0) {
      return c.Error("general.alignment must be a u32 power of two");
    }
    alignment_ = a->u;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensor info;
    KEEL_RETURN_IF_ERROR(c.ReadString(&info.name, kMaxNameBytes, "a tensor name"));
    if (info.name.empty()) return c.Error("a tensor with an empty name");
    if (tensor_index_.count(info.name)) {
      return c.Error("tensor '" + info.name + "' appears twice");
    }
    uint32_t n_dims = 0;
    KEEL_RETURN_IF_ERROR(c.Read(&n_dims, "a tensor's dimension count"));
    if (n_dims < 1 || n_dims > kMaxDims) {
      return c.Error(fmt::format("tensor '{}' has {} dimensions (1..4)", info.name, n_dims));
    }
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t n = 0;
      KEEL_RETURN_IF_ERROR(c.Read(&n, "a tensor dimension"));
      if (n == 0 || n > (uint64_t{1} << 62) / numel) {
        return c.Error(
            fmt::format("tensor '{}' dimension {} is {} (zero, or the element count "
                        "overflows)",
                        info.name, d, n));
      }
      numel *= n;
      info.ne.push_back(static_cast<int64_t>(n));
    }
    uint32_t type = 0;
    KEEL_RETURN_IF_ERROR(c.Read(&type, "a tensor type"));
    const std::optional<GgmlTypeTraits> traits = TraitsOf(type);
    if (!traits) {
      return c.Error(fmt::format("tensor '{}' has type {} (not a ggml type)", info.name, type));
    }
    info.type = static_cast<GgmlType>(type);
    if (info.ne[0] % traits->block_size != 0) {
      return c.Error(
          fmt::format("tensor '{}' rows of {} are not a whole number of {} blocks "
                      "of {}",
                      info.name, info.ne[0], traits->name, traits->block_size));
    }
    info.nbytes = numel / traits->block_size * traits->bytes_per_block;
    KEEL_RETURN_IF_ERROR(c.Read(&info.offset, "a tensor offset"));
    if (info.offset % alignment_ != 0) {
      return c.Error(fmt::format("tensor '{}' offset {} is not a multiple of the alignment {}",
                                 info.name, info.offset, alignment_));
    }
    tensor_index_[info.name] = tensors_.size();
    tensors_.push_back(std::move(info));
  }
  // The data section starts at the next multiple of the alignment.
  const uint64_t data_start = (c.offset() + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_start > bytes.size()) {
    return c.Error(
        fmt::format("the data section would start at byte {}, past the end of the "
                    "{}-byte file (truncated?)",
                    data_start, bytes.size()));
  }
  const uint64_t data_size = tensors_.empty() ? 0 : bytes.size() - data_start;
  std::vector<std::pair<uint64_t, size_t>> by_offset;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& t = tensors_[i];
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      return InvalidArgumentError(fmt::format(
          "not a valid GGUF file: tensor '{}' ({} bytes at data offset {}) runs past the end "
          "of the file (data section is {} bytes; truncated?)",
          t.name, t.nbytes, t.offset, data_size));
    }
    t.data = bytes.data() + data_start + t.offset;
    by_offset.emplace_back(t.offset, i);
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const GgufTensor& prev = tensors_[by_offset[k - 1].second];
    if (prev.offset + prev.nbytes > by_offset[k].first) {
      return InvalidArgumentError(
          fmt::format("not a valid GGUF file: tensors '{}' and '{}' "
                      "overlap",
                      prev.name, tensors_[by_offset[k].second].name));
    }
  }
  return OkStatus();
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status Missing(std::string_view key) {
  return NotFoundError(fmt::format("GGUF key '{}' is missing", key));
}
}  // namespace

StatusOr<uint64_t> GgufFile::GetUInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  return ToUInt(*v, key);
}

StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type == GgufValueType::kI8 || v->type == GgufValueType::kI16 ||
      v->type == GgufValueType::kI32 || v->type == GgufValueType::kI64) {
    return v->i;
  }
  KEEL_ASSIGN_OR_RETURN(uint64_t u, ToUInt(*v, key));
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return InvalidArgumentError(fmt::format("GGUF key '{}' = {} does not fit in int64", key, u));
  }
  return static_cast<int64_t>(u);
}

StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type == GgufValueType::kF32 || v->type == GgufValueType::kF64) return v->f;
  KEEL_ASSIGN_OR_RETURN(int64_t i, GetInt(key));
  return static_cast<double>(i);
}

StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kString) {
    return InvalidArgumentError(
        fmt::format("GGUF key '{}' is a {}, not a string", key, GgufValueTypeName(v->type)));
  }
  return v->str;
}

StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kBool) {
    return InvalidArgumentError(
        fmt::format("GGUF key '{}' is a {}, not a bool", key, GgufValueTypeName(v->type)));
  }
  return v->u != 0;
}

StatusOr<const GgufValue*> GgufFile::GetArray(std::string_view key, GgufValueType elem) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kArray || v->elem_type != elem) {
    return InvalidArgumentError(
        fmt::format("GGUF key '{}' is not an array of {}", key, GgufValueTypeName(elem)));
  }
  return v;
}

}  // namespace keel::infer
