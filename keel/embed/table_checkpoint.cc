// Table::Save and Table::Load (format: docs/formats/embedding-checkpoint.md).
//
// Note [Save epochs]: every change to a row stamps it with the table's epoch (RowMeta::changed).
// A save first advances the epoch (E -> E + 1), so changes made while it runs belong to the
// next save; an incremental save writes the rows stamped after the previous save's start and
// the ids deleted since. A row changed during a save may be written by both: harmless, since a
// delta's rows replace earlier ones.
// Note [Commit]: a save writes its rows file under a temporary name, fsyncs and renames it,
// then writes MANIFEST.tmp listing the chain (the full file, then deltas in order), fsyncs and
// renames it over MANIFEST, and fsyncs the directory. Only then are files no longer listed
// removed. Until the rename a crash leaves the previous MANIFEST and its files intact.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "keel/embed/crc32c.h"
#include "keel/embed/table_impl.h"

namespace keel::embed {
namespace {

constexpr char kMagic[8] = {'K', 'E', 'E', 'L', 'R', 'O', 'W', 'S'};
constexpr uint32_t kVersion = 1;

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t dim;
  uint32_t num_slots;
  uint32_t record_bytes;
  int64_t step;
  uint64_t rows;
  uint64_t deletions;
  uint32_t optimizer;
  uint32_t header_crc;  // CRC-32C of this header with header_crc = 0
};
static_assert(sizeof(FileHeader) == 56);

Status IoError(const std::string& what, const std::string& path) {
  return InternalError(
      fmt::format("embedding checkpoint: {} {}: {}", what, path, std::strerror(errno)));
}

// A rows file written through stdio as it is produced: a header placeholder, the body with a
// running CRC, the CRC; Close then writes the real header (with its own CRC) and fsyncs.
class RowsWriter {
 public:
  explicit RowsWriter(std::string path) : path_(std::move(path)) {
    f_ = std::fopen(path_.c_str(), "wb");
    const FileHeader zero{};
    ok_ = f_ != nullptr && std::fwrite(&zero, sizeof(zero), 1, f_) == 1;
  }
  ~RowsWriter() {
    if (f_ != nullptr) std::fclose(f_);
  }
  void Write(const void* p, size_t n) {
    if (!ok_) return;
    crc_ = Crc32cExtend(crc_, p, n);
    ok_ = std::fwrite(p, 1, n, f_) == n;
  }
  Status Close(FileHeader h) {
    if (f_ == nullptr) return IoError("cannot create", path_);
    const uint32_t crc = crc_;
    h.header_crc = 0;
    h.header_crc = Crc32c(&h, sizeof(h));
    ok_ = ok_ && std::fwrite(&crc, 1, 4, f_) == 4;
    ok_ = ok_ && std::fseek(f_, 0, SEEK_SET) == 0 && std::fwrite(&h, sizeof(h), 1, f_) == 1;
    ok_ = ok_ && std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok_ || !closed) return IoError("cannot write", path_);
    return OkStatus();
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  bool ok_ = false;
  uint32_t crc_ = 0;
};

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return IoError("cannot open directory", dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return IoError("cannot fsync directory", dir);
  return OkStatus();
}

// A checkpoint's rows file read whole and checked: header, sizes, CRC.
struct RowsFile {
  FileHeader header;
  std::vector<uint8_t> bytes;  // the whole file
  const uint8_t* rows() const { return bytes.data() + sizeof(FileHeader); }
  const uint8_t* deletions(int64_t record_bytes) const {
    return rows() + header.rows * (8 + record_bytes);
  }
};

StatusOr<RowsFile> ReadRowsFile(const std::string& path, int64_t dim, int num_slots,
                                int64_t record_bytes, int optimizer) {
  RowsFile f;
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot open", path);
  f.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  auto bad = [&](const std::string& what) {
    return InvalidArgumentError(fmt::format("embedding checkpoint {}: {}", path, what));
  };
  if (f.bytes.size() < sizeof(FileHeader) + 4) return bad("truncated (no header)");
  std::memcpy(&f.header, f.bytes.data(), sizeof(FileHeader));
  const FileHeader& h = f.header;
  if (std::memcmp(h.magic, kMagic, 8) != 0) return bad("not a keel embedding rows file");
  FileHeader unsealed = h;
  unsealed.header_crc = 0;
  if (Crc32c(&unsealed, sizeof(unsealed)) != h.header_crc) return bad("header CRC mismatch");
  if (h.version != kVersion) return bad(fmt::format("version {} (this keel reads 1)", h.version));
  if (h.dim != dim || h.num_slots != static_cast<uint32_t>(num_slots) ||
      h.record_bytes != record_bytes || h.optimizer != static_cast<uint32_t>(optimizer)) {
    return bad(
        fmt::format("saved with dim {}, {} optimizer slots (optimizer {}); this table has "
                    "dim {}, {} slots (optimizer {})",
                    h.dim, h.num_slots, h.optimizer, dim, num_slots, optimizer));
  }
  const uint64_t want = sizeof(FileHeader) + h.rows * (8 + record_bytes) + h.deletions * 8 + 4;
  if (h.rows > (1ULL << 40) || h.deletions > (1ULL << 40) || f.bytes.size() != want) {
    return bad(fmt::format("{} bytes, expected {} for {} rows and {} deletions", f.bytes.size(),
                           want, h.rows, h.deletions));
  }
  uint32_t crc;
  std::memcpy(&crc, f.bytes.data() + want - 4, 4);
  if (Crc32c(f.bytes.data() + sizeof(FileHeader), want - 4 - sizeof(FileHeader)) != crc) {
    return bad("CRC mismatch (corrupt file)");
  }
  return f;
}

}  // namespace

Status TableImpl::WriteRows(const std::string& path, bool incremental, int64_t since) {
  RowsWriter w(path);
  FileHeader h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kVersion;
  h.dim = static_cast<uint32_t>(dim_);
  h.num_slots = static_cast<uint32_t>(NumSlots(o_.optimizer.kind));
  h.record_bytes = static_cast<uint32_t>(record_bytes_);
  h.step = step_.load();
  h.optimizer = static_cast<uint32_t>(o_.optimizer.kind);
  std::vector<uint8_t> record(record_bytes_);
  auto add = [&](uint64_t id, const uint8_t* rec) {
    w.Write(&id, 8);
    w.Write(rec, record_bytes_);
    ++h.rows;
  };
  for (auto& sp : shards_) {  // one shard locked at a time: each row saved as of one moment
    ShardState& s = *sp;
    MutexLock lock(&s.mu);
    for (int64_t row = 0; row < s.shard.rows_allocated(); ++row) {
      const RowMeta& m = s.shard.meta(row);
      if ((m.flags & kLive) == 0 || (incremental && m.changed <= since)) continue;
      s.shard.Pack(row, record.data());
      add(s.shard.id(row), record.data());
    }
  }
  if (ssd_ != nullptr) {
    const size_t meta_at = record_bytes_ - 8 - sizeof(RowMeta);
    KEEL_RETURN_IF_ERROR(ssd_->ForEach([&](uint64_t id, const uint8_t* rec) {
      RowMeta m;
      std::memcpy(&m, rec + meta_at, sizeof(m));
      if (!incremental || m.changed > since) add(id, rec);
      return OkStatus();
    }));
  }
  if (incremental) {
    MutexLock lock(&deleted_mu_);
    for (const auto& [id, epoch] : deleted_) {
      if (epoch > since) {
        w.Write(&id, 8);
        ++h.deletions;
      }
    }
  }
  return w.Close(h);
}

Status TableImpl::Save(const std::string& dir, bool incremental) {
  MutexLock lock(&save_mu_);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return InternalError(
        fmt::format("embedding checkpoint: cannot create {}: {}", dir, ec.message()));
  }
  const std::string canonical = std::filesystem::weakly_canonical(dir).string();
  incremental = incremental && last_save_start_ >= 0 && canonical == last_save_dir_;
  if (!incremental) {
    next_file_ = 1;
    chain_.clear();
    // Continue numbering after what is there, so a new full save never overwrites a listed file.
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      unsigned n = 0;
      if (std::sscanf(e.path().filename().c_str(), "%*[a-z]-%u.rows", &n) == 1) {
        next_file_ = std::max<int64_t>(next_file_, n + 1);
      }
    }
  }
  const int64_t since = last_save_start_;
  const int64_t start = epoch_.fetch_add(1);  // Note [Save epochs]
  const std::string name =
      fmt::format("{}-{:06d}.rows", incremental ? "delta" : "full", next_file_);
  const std::string tmp = dir + "/" + name + ".tmp";
  Status st = WriteRows(tmp, incremental, since);
  if (st.ok() && std::rename(tmp.c_str(), (dir + "/" + name).c_str()) != 0) {
    st = IoError("cannot rename", tmp);
  }
  std::vector<std::string> chain = chain_;
  chain.push_back(name);
  if (st.ok()) {  // Note [Commit]
    const int num_slots = NumSlots(o_.optimizer.kind);
    std::ostringstream m;
    m << "keel-embedding-checkpoint 1\n"
      << "dim " << dim_ << "\nslots " << num_slots << "\nrecord_bytes " << record_bytes_
      << "\noptimizer " << static_cast<int>(o_.optimizer.kind) << "\nstep " << step_.load() << "\n";
    for (const std::string& f : chain) m << "file " << f << "\n";
    const std::string manifest_tmp = dir + "/MANIFEST.tmp";
    std::ofstream out(manifest_tmp, std::ios::trunc);
    out << m.str();
    out.close();
    const int fd = ::open(manifest_tmp.c_str(), O_RDONLY);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!out || !synced) {
      st = IoError("cannot write", manifest_tmp);
    } else if (std::rename(manifest_tmp.c_str(), (dir + "/MANIFEST").c_str()) != 0) {
      st = IoError("cannot rename", manifest_tmp);
    } else {
      st = FsyncDir(dir);
    }
  }
  if (!st.ok()) {
    std::remove(tmp.c_str());
    return st;
  }
  chain_ = chain;
  ++next_file_;
  last_save_start_ = start;
  last_save_dir_ = canonical;
  track_deletions_.store(true);
  {
    MutexLock dl(&deleted_mu_);
    std::erase_if(deleted_, [&](const auto& d) { return d.second <= start; });
  }
  // Files no longer listed (older chains, leftovers of failed saves) go.
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    const bool ours = f.ends_with(".rows") || f.ends_with(".rows.tmp");
    if (ours && std::find(chain_.begin(), chain_.end(), f) == chain_.end()) {
      std::filesystem::remove(e.path(), ec);
    }
  }
  return OkStatus();
}

Status TableImpl::Load(const std::string& dir) {
  MutexLock lock(&save_mu_);
  const int num_slots = NumSlots(o_.optimizer.kind);
  const int optimizer = static_cast<int>(o_.optimizer.kind);
  std::ifstream in(dir + "/MANIFEST");
  if (!in) return IoError("cannot open", dir + "/MANIFEST");
  std::string line, magic;
  std::getline(in, magic);
  if (magic != "keel-embedding-checkpoint 1") {
    return InvalidArgumentError(
        fmt::format("embedding checkpoint {}/MANIFEST: first line '{}' "
                    "is not 'keel-embedding-checkpoint 1'",
                    dir, magic));
  }
  std::vector<std::string> chain;
  int64_t step = -1;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key, value;
    fields >> key >> value;
    if (key == "file" && !value.empty() && value.find('/') == std::string::npos) {
      chain.push_back(value);
    } else if (key == "step") {
      step = std::strtoll(value.c_str(), nullptr, 10);
    }
  }
  if (chain.empty() || step < 0) {
    return InvalidArgumentError(
        fmt::format("embedding checkpoint {}/MANIFEST lists no files or no step (damaged?)", dir));
  }
  // Read and check every file before touching the table.
  std::vector<RowsFile> files;
  for (const std::string& f : chain) {
    KEEL_ASSIGN_OR_RETURN(RowsFile rf, ReadRowsFile(fmt::format("{}/{}", dir, f), dim_, num_slots,
                                                    record_bytes_, optimizer));
    files.push_back(std::move(rf));
  }
  // Clear both tiers.
  for (auto& sp : shards_) {
    MutexLock sl(&sp->mu);
    for (int64_t row = 0; row < sp->shard.rows_allocated(); ++row) {
      if (sp->shard.meta(row).flags & kLive) sp->shard.Remove(row);
    }
  }
  if (ssd_ != nullptr) {
    std::vector<uint64_t> all;
    KEEL_RETURN_IF_ERROR(ssd_->ForEach([&](uint64_t id, const uint8_t*) {
      all.push_back(id);
      return OkStatus();
    }));
    KEEL_RETURN_IF_ERROR(ssd_->Erase(all));
  }
  // Apply the chain in order: a file's deletions, then its rows (a delta replaces rows).
  for (const RowsFile& f : files) {
    const uint8_t* del = f.deletions(record_bytes_);
    std::vector<uint64_t> ids(f.header.deletions);
    if (!ids.empty()) std::memcpy(ids.data(), del, ids.size() * 8);
    for (uint64_t id : ids) {
      ShardState& s = *shards_[ShardOf(id)];
      MutexLock sl(&s.mu);
      const int64_t row = s.shard.Find(id);
      if (row >= 0) s.shard.Remove(row);
    }
    if (ssd_ != nullptr && !ids.empty()) KEEL_RETURN_IF_ERROR(ssd_->Erase(ids));
    for (uint64_t i = 0; i < f.header.rows; ++i) {
      const uint8_t* at = f.rows() + i * (8 + record_bytes_);
      uint64_t id;
      std::memcpy(&id, at, 8);
      ShardState& s = *shards_[ShardOf(id)];
      MutexLock sl(&s.mu);
      int64_t row = s.shard.Find(id);
      if (row < 0) {
        if (ssd_ != nullptr) KEEL_RETURN_IF_ERROR(ssd_->Erase({&id, 1}));
        row = s.shard.Insert(id);
      }
      s.shard.Unpack(at + 8, row);
      s.shard.meta(row).changed = 0;
      if (s.shard.size() > max_rows_ + 1024 || i + 1 == f.header.rows) {
        KEEL_RETURN_IF_ERROR(EvictToBudget(s));
      }
    }
  }
  for (auto& sp : shards_) {  // every shard back within its budget
    MutexLock sl(&sp->mu);
    KEEL_RETURN_IF_ERROR(EvictToBudget(*sp));
  }
  step_.store(step);
  epoch_.store(2);  // loaded rows are stamped 0: "saved" as of epoch 1
  last_save_start_ = 1;
  last_save_dir_ = std::filesystem::weakly_canonical(dir).string();
  chain_ = chain;
  next_file_ = 1;
  for (const std::string& f : chain) {
    unsigned n = 0;
    if (std::sscanf(f.c_str(), "%*[a-z]-%u.rows", &n) == 1) {
      next_file_ = std::max<int64_t>(next_file_, n + 1);
    }
  }
  track_deletions_.store(true);
  MutexLock dl(&deleted_mu_);
  deleted_.clear();
  return OkStatus();
}

}  // namespace keel::embed
