// SsdStore tests: options and directory rules, semantics against an in-memory oracle over
// a million random operations with compaction running, concurrent stress, corruption, and
// injected I/O failures through the FileOps seam.
#include "keel/embed/ssd_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "keel/embed/file_ops.h"
#include "keel/embed/segment_file.h"
#include "keel/embed/ssd_store_impl.h"

namespace keel::embed {
namespace {

namespace fs = std::filesystem;
using Record = std::vector<uint8_t>;
using Oracle = std::unordered_map<uint64_t, Record>;

// The record for (key, version): the two ids, then bytes derived from them, so any record
// read back can be checked on its own.
Record MakeRecord(uint64_t key, uint64_t version, int64_t record_bytes) {
  Record r(record_bytes);
  uint64_t x = key * 0x9E3779B97F4A7C15ull ^ (version + 0x632BE59BD9B4E019ull);
  for (int64_t i = 0; i < record_bytes; ++i) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    r[i] = static_cast<uint8_t>(x >> 56);
  }
  if (record_bytes >= 16) {
    std::memcpy(r.data(), &key, 8);
    std::memcpy(r.data() + 8, &version, 8);
  }
  return r;
}

bool SelfConsistent(uint64_t key, const uint8_t* record, int64_t record_bytes) {
  uint64_t k;
  uint64_t version;
  std::memcpy(&k, record, 8);
  std::memcpy(&version, record + 8, 8);
  Record expected = MakeRecord(key, version, record_bytes);
  return k == key && std::memcmp(expected.data(), record, record_bytes) == 0;
}

class SsdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "keel_ssd_store_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  SsdStore::Options Opts(int64_t record_bytes, int64_t segment_bytes = 64 << 10) const {
    return SsdStore::Options{.dir = (root_ / "store").string(),
                             .record_bytes = record_bytes,
                             .segment_bytes = segment_bytes,
                             .io_threads = 2};
  }
  static std::unique_ptr<SsdStore> MustOpen(const SsdStore::Options& o, FileOps* ops = nullptr) {
    auto store = internal::OpenSsdStore(o, {.file_ops = ops});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  static Status PutOne(SsdStore& s, uint64_t key, const Record& r) {
    return s.Put(std::span<const uint64_t>(&key, 1), r.data());
  }
  // Get of one key: the record, or empty when absent.
  static Record GetOne(SsdStore& s, uint64_t key, int64_t rb, Status* status = nullptr) {
    Record r(rb);
    uint8_t found = 0;
    Status st = s.Get(std::span<const uint64_t>(&key, 1), r.data(), &found);
    if (status != nullptr) *status = st;
    EXPECT_TRUE(status != nullptr || st.ok()) << st;
    return found ? r : Record();
  }
  fs::path root_;
};

TEST_F(SsdStoreTest, RejectsBadOptionsNamingThem) {
  auto expect_bad = [&](const SsdStore::Options& o, const std::string& name) {
    auto store = SsdStore::Open(o);
    ASSERT_FALSE(store.ok()) << name;
    EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument) << store.status();
    EXPECT_NE(store.status().message().find(name), std::string::npos) << store.status();
  };
  SsdStore::Options good = Opts(64);
  auto o = good;
  o.dir = "";
  expect_bad(o, "dir");
  o = good;
  o.record_bytes = 0;
  expect_bad(o, "record_bytes");
  o.record_bytes = -5;
  expect_bad(o, "record_bytes");
  o = good;
  o.segment_bytes = 64 + 15;  // one slot is 64 + 16 bytes
  expect_bad(o, "segment_bytes");
  o.segment_bytes = int64_t{1} << 40;  // more slots than 31-bit locations allow
  expect_bad(o, "segment_bytes");
  o = good;
  for (double r : {0.0, -0.5, 1.01, std::nan("")}) {
    o.compact_garbage_ratio = r;
    expect_bad(o, "compact_garbage_ratio");
  }
  o = good;
  o.io_threads = 0;
  expect_bad(o, "io_threads");
  EXPECT_FALSE(fs::exists(root_ / "store"));  // nothing created for bad options
}

TEST_F(SsdStoreTest, DirectoryLockStaleFilesAndForeignFiles) {
  auto o = Opts(32);
  auto first = MustOpen(o);
  ASSERT_NE(first, nullptr);
  auto second = SsdStore::Open(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
  first.reset();

  // A previous store's segment files are removed; the lock is free again.
  std::ofstream(fs::path(o.dir) / SegmentFileName(7)) << "old data";
  auto again = MustOpen(o);
  ASSERT_NE(again, nullptr);
  EXPECT_FALSE(fs::exists(fs::path(o.dir) / SegmentFileName(7)));
  EXPECT_EQ(again->stats().file_bytes, 0);
  again.reset();

  // Anything else: refused, naming the file, and nothing deleted.
  std::ofstream(fs::path(o.dir) / "notes.txt") << "mine";
  std::ofstream(fs::path(o.dir) / SegmentFileName(3)) << "old";
  auto refused = SsdStore::Open(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("notes.txt"), std::string::npos) << refused.status();
  EXPECT_TRUE(fs::exists(fs::path(o.dir) / "notes.txt"));
}

TEST_F(SsdStoreTest, PutGetTakeEraseAndForEach) {
  const int64_t rb = 40;
  auto store = MustOpen(Opts(rb, 1 << 10));  // 18 slots a segment: several segments
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> keys;
  Record records;
  for (uint64_t k = 0; k < 100; ++k) {
    keys.push_back(k * 1000);
    Record r = MakeRecord(k * 1000, 1, rb);
    records.insert(records.end(), r.begin(), r.end());
  }
  ASSERT_TRUE(store->Put(keys, records.data()).ok());
  EXPECT_EQ(store->stats().rows, 100);
  EXPECT_EQ(GetOne(*store, 5000, rb), MakeRecord(5000, 1, rb));
  EXPECT_TRUE(GetOne(*store, 5001, rb).empty());

  // Replace, then Take: the new record comes back once.
  ASSERT_TRUE(PutOne(*store, 5000, MakeRecord(5000, 2, rb)).ok());
  EXPECT_EQ(store->stats().rows, 100);
  std::vector<uint64_t> take_keys = {5000, 5001, 7000};
  Record out(3 * rb, 0xAB);
  uint8_t found[3];
  ASSERT_TRUE(store->Take(take_keys, out.data(), found).ok());
  EXPECT_EQ(found[0], 1);
  EXPECT_EQ(found[1], 0);
  EXPECT_EQ(found[2], 1);
  EXPECT_EQ(Record(out.begin(), out.begin() + rb), MakeRecord(5000, 2, rb));
  EXPECT_EQ(Record(out.begin() + rb, out.begin() + 2 * rb), Record(rb, 0xAB));  // untouched
  EXPECT_EQ(Record(out.begin() + 2 * rb, out.end()), MakeRecord(7000, 1, rb));
  EXPECT_TRUE(GetOne(*store, 5000, rb).empty());
  EXPECT_EQ(store->stats().rows, 98);

  std::vector<uint64_t> erase_keys = {0, 1000, 123};
  ASSERT_TRUE(store->Erase(erase_keys).ok());
  EXPECT_EQ(store->stats().rows, 96);

  std::unordered_map<uint64_t, Record> seen;
  ASSERT_TRUE(store
                  ->ForEach([&](uint64_t key, const uint8_t* r) {
                    EXPECT_TRUE(seen.emplace(key, Record(r, r + rb)).second) << key;
                    return OkStatus();
                  })
                  .ok());
  EXPECT_EQ(seen.size(), 96u);
  for (const auto& [key, r] : seen) EXPECT_EQ(r, MakeRecord(key, 1, rb)) << key;
  // ForEach stops at fn's first error.
  int calls = 0;
  Status st = store->ForEach(
      [&](uint64_t, const uint8_t*) { return ++calls == 3 ? AbortedError("stop") : OkStatus(); });
  EXPECT_EQ(st.code(), StatusCode::kAborted);
  EXPECT_EQ(calls, 3);

  // Null buffers are refused, empty batches are fine.
  EXPECT_EQ(store->Put(keys, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Get(keys, nullptr, found).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store->Put({}, nullptr).ok());
}

TEST_F(SsdStoreTest, CompactionReclaimsSpace) {
  const int64_t rb = 48;  // 64-byte slots, 256 per 16 KiB segment
  auto store = MustOpen(Opts(rb, 16 << 10));
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> keys(1000);
  for (uint64_t k = 0; k < keys.size(); ++k) keys[k] = k;
  for (uint64_t version = 0; version < 20; ++version) {
    Record records;
    for (uint64_t k : keys) {
      Record r = MakeRecord(k, version, rb);
      records.insert(records.end(), r.begin(), r.end());
    }
    ASSERT_TRUE(store->Put(keys, records.data()).ok());
  }
  internal::WaitForCompactions(*store);
  SsdStore::Stats s = store->stats();
  EXPECT_EQ(s.rows, 1000);
  EXPECT_GT(s.compactions, 0);
  // 20 versions written, but sealed segments are kept at most 1/3 garbage.
  EXPECT_LT(s.file_bytes, 1000 * 64 * 3);
  for (uint64_t k : keys) ASSERT_EQ(GetOne(*store, k, rb), MakeRecord(k, 19, rb)) << k;

  // Removing most rows frees most of the files.
  std::vector<uint64_t> most(keys.begin(), keys.begin() + 950);
  ASSERT_TRUE(store->Erase(most).ok());
  internal::WaitForCompactions(*store);
  SsdStore::Stats after = store->stats();
  EXPECT_EQ(after.rows, 50);
  EXPECT_LT(after.file_bytes, s.file_bytes / 2);
  EXPECT_EQ(after.garbage_bytes, after.file_bytes - 50 * 64);
  for (uint64_t k = 950; k < 1000; ++k) ASSERT_EQ(GetOne(*store, k, rb), MakeRecord(k, 19, rb));
  store.reset();
  // Closing gives the disk back.
  for (const auto& entry : fs::directory_iterator(root_ / "store")) {
    EXPECT_EQ(entry.path().filename(), "LOCK");
  }
}

int64_t OracleOps() {
  if (const char* env = std::getenv("KEEL_SSD_TEST_OPS")) return std::atoll(env);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__OPTIMIZE__)
  return 100'000;  // sanitizer / debug builds: the same mix, scaled down
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return 100'000;
#else
  return 1'000'000;
#endif
#else
  return 1'000'000;
#endif
}

void ExpectMatchesOracle(SsdStore& store, const Oracle& oracle, int64_t rb) {
  ASSERT_EQ(store.stats().rows, static_cast<int64_t>(oracle.size()));
  int64_t visited = 0;
  ASSERT_TRUE(store
                  .ForEach([&](uint64_t key, const uint8_t* r) {
                    ++visited;
                    auto it = oracle.find(key);
                    if (it == oracle.end() || std::memcmp(it->second.data(), r, rb) != 0) {
                      return InternalError("ForEach record differs for key " + std::to_string(key));
                    }
                    return OkStatus();
                  })
                  .ok());
  EXPECT_EQ(visited, static_cast<int64_t>(oracle.size()));
}

// Random Put/Take/Get/Erase batches against an unordered_map; small segments so compaction
// runs many times underneath.
TEST_F(SsdStoreTest, MatchesOracleOverAMillionRandomOperations) {
  const int64_t rb = 24;                       // 40-byte slots
  auto store = MustOpen(Opts(rb, 40 * 1000));  // 1000 slots a segment
  ASSERT_NE(store, nullptr);
  const int64_t ops = OracleOps();
  const uint64_t key_space = 30000;
  Oracle oracle;
  std::mt19937_64 rng(42);
  uint64_t version = 0;
  std::vector<uint64_t> keys;
  Record buf;
  std::vector<uint8_t> found;
  int64_t peak_file_bytes = 0;
  for (int64_t op = 0; op < ops; ++op) {
    const int batch = 1 + static_cast<int>(rng() % 8);
    keys.clear();
    std::unordered_set<uint64_t> distinct;
    while (static_cast<int>(keys.size()) < batch) {
      uint64_t k = rng() % key_space;
      if (distinct.insert(k).second) keys.push_back(k);
    }
    buf.assign(batch * rb, 0);
    found.assign(batch, 0);
    const int kind = static_cast<int>(rng() % 100);
    if (kind < 40) {  // Put
      for (int i = 0; i < batch; ++i) {
        Record r = MakeRecord(keys[i], ++version, rb);
        std::memcpy(buf.data() + i * rb, r.data(), rb);
        oracle[keys[i]] = std::move(r);
      }
      ASSERT_TRUE(store->Put(keys, buf.data()).ok());
    } else if (kind < 90) {  // Take or Get
      const bool take = kind < 65;
      Status st = take ? store->Take(keys, buf.data(), found.data())
                       : store->Get(keys, buf.data(), found.data());
      ASSERT_TRUE(st.ok()) << st;
      for (int i = 0; i < batch; ++i) {
        auto it = oracle.find(keys[i]);
        ASSERT_EQ(found[i], it != oracle.end() ? 1 : 0) << "op " << op << " key " << keys[i];
        if (it == oracle.end()) continue;
        ASSERT_EQ(std::memcmp(buf.data() + i * rb, it->second.data(), rb), 0)
            << "op " << op << " key " << keys[i];
        if (take) oracle.erase(it);
      }
    } else {  // Erase
      ASSERT_TRUE(store->Erase(keys).ok());
      for (uint64_t k : keys) oracle.erase(k);
    }
    if (op % 100'000 == 99'999) {
      ASSERT_EQ(store->stats().rows, static_cast<int64_t>(oracle.size()));
      peak_file_bytes = std::max(peak_file_bytes, store->stats().file_bytes);
    }
  }
  internal::WaitForCompactions(*store);
  ExpectMatchesOracle(*store, oracle, rb);
  SsdStore::Stats s = store->stats();
  EXPECT_GT(s.compactions, 10);
  EXPECT_EQ(s.garbage_bytes, s.file_bytes - s.rows * 40);
  // Sealed segments hold at most 1/3 garbage (+ the active one and one being compacted).
  EXPECT_LE(s.file_bytes, s.rows * 40 * 3 / 2 + 2 * 40 * 1000);
  // Drain everything: the files go.
  std::vector<uint64_t> all;
  for (const auto& [k, r] : oracle) all.push_back(k);
  buf.assign(all.size() * rb, 0);
  found.assign(all.size(), 0);
  ASSERT_TRUE(store->Take(all, buf.data(), found.data()).ok());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(found[i], 1);
    ASSERT_EQ(std::memcmp(buf.data() + i * rb, oracle[all[i]].data(), rb), 0);
  }
  internal::WaitForCompactions(*store);
  EXPECT_EQ(store->stats().rows, 0);
  EXPECT_LE(store->stats().file_bytes, 40 * 1000);  // at most the active segment
  EXPECT_GE(peak_file_bytes, store->stats().file_bytes);
}

TEST_F(SsdStoreTest, IndexTakesAtMost16BytesPerRow) {
  const int64_t rb = 8;
  auto store = MustOpen(Opts(rb, 4 << 20));
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> keys(1 << 16);
  Record records(keys.size() * rb, 7);
  for (uint64_t base = 0; base < 1'000'000; base += keys.size()) {
    for (uint64_t i = 0; i < keys.size(); ++i) keys[i] = (base + i) * 0x9E3779B97F4A7C15ull;
    ASSERT_TRUE(store->Put(keys, records.data()).ok());
  }
  SsdStore::Stats s = store->stats();
  EXPECT_GE(s.rows, 1'000'000);
  const double per_row = static_cast<double>(s.index_bytes) / static_cast<double>(s.rows);
  RecordProperty("index_bytes_per_row", std::to_string(per_row));
  EXPECT_LE(per_row, 16.0) << s.index_bytes << " bytes for " << s.rows << " rows";
}

// A segment-file byte flipped on disk: reads of that record fail with DATA_LOSS naming the
// file; other records still read; a failed Take removes nothing.
TEST_F(SsdStoreTest, CorruptRecordIsAnErrorNotData) {
  const int64_t rb = 32;
  const int64_t slot = SlotBytes(rb);
  auto o = Opts(rb, 10 * slot);  // 10 records a segment: keys 0..9 fill (and seal) segment 0
  auto store = MustOpen(o);
  ASSERT_NE(store, nullptr);
  std::vector<uint64_t> keys;
  Record records;
  for (uint64_t k = 0; k < 10; ++k) {
    keys.push_back(k);
    Record r = MakeRecord(k, 1, rb);
    records.insert(records.end(), r.begin(), r.end());
  }
  ASSERT_TRUE(store->Put(keys, records.data()).ok());
  const std::string path = (fs::path(o.dir) / SegmentFileName(0)).string();
  auto flip = [&](int64_t offset) {
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b;
    ASSERT_EQ(::pread(fd, &b, 1, offset), 1);
    b ^= 0x10;
    ASSERT_EQ(::pwrite(fd, &b, 1, offset), 1);
    ::close(fd);
  };
  flip(3 * slot + kRecordHeaderBytes + 5);  // record bytes of key 3
  flip(6 * slot + 13);                      // magic of key 6
  Status st;
  EXPECT_TRUE(GetOne(*store, 3, rb, &st).empty());
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find(path), std::string::npos) << st;
  EXPECT_TRUE(GetOne(*store, 6, rb, &st).empty());
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
  EXPECT_EQ(GetOne(*store, 2, rb, &st), MakeRecord(2, 1, rb));
  EXPECT_TRUE(st.ok());

  std::vector<uint64_t> take = {2, 3};
  Record out(2 * rb);
  uint8_t found[2] = {9, 9};
  st = store->Take(take, out.data(), found);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_EQ(found[0], 0);
  EXPECT_EQ(store->stats().rows, 10);                      // nothing removed
  EXPECT_EQ(GetOne(*store, 2, rb), MakeRecord(2, 1, rb));  // still there
  EXPECT_EQ(store->ForEach([](uint64_t, const uint8_t*) { return OkStatus(); }).code(),
            StatusCode::kDataLoss);
}

// FileOps that fails writes, segment creation or reads on demand.
class FaultyFileOps final : public FileOps {
 public:
  int Open(const char* path, int flags, mode_t mode) override {
    if (fail_opens.load()) {
      errno = EMFILE;
      return -1;
    }
    return FileOps::Posix().Open(path, flags, mode);
  }
  ssize_t Pwrite(int fd, const void* buf, size_t n, off_t offset) override {
    if (writes_before_failure.load() >= 0 && writes_before_failure.fetch_sub(1) == 0) {
      writes_before_failure.store(0);
      errno = ENOSPC;
      return -1;
    }
    return FileOps::Posix().Pwrite(fd, buf, n, offset);
  }
  ssize_t Preadv(int fd, const iovec* iov, int iovcnt, off_t offset) override {
    if (fail_reads.load()) {
      errno = EIO;
      return -1;
    }
    return FileOps::Posix().Preadv(fd, iov, iovcnt, offset);
  }
  std::atomic<int> writes_before_failure{-1};  // -1: never; n: n more succeed, then all fail
  std::atomic<bool> fail_opens{false};
  std::atomic<bool> fail_reads{false};
};

TEST_F(SsdStoreTest, FailedIoLeavesTheStoreAsItWas) {
  const int64_t rb = 32;
  const int64_t slot = SlotBytes(rb);
  FaultyFileOps ops;
  auto store = MustOpen(Opts(rb, 8 * slot), &ops);  // 8 records a segment, flushed when full
  ASSERT_NE(store, nullptr);
  Oracle oracle;
  auto put = [&](uint64_t first, uint64_t count, uint64_t version) {
    std::vector<uint64_t> keys;
    Record records;
    for (uint64_t k = first; k < first + count; ++k) {
      keys.push_back(k);
      Record r = MakeRecord(k, version, rb);
      records.insert(records.end(), r.begin(), r.end());
    }
    return store->Put(keys, records.data());
  };
  ASSERT_TRUE(put(0, 13, 1).ok());  // segment 0 sealed, 5 records buffered in segment 1
  for (uint64_t k = 0; k < 13; ++k) oracle[k] = MakeRecord(k, 1, rb);
  const SsdStore::Stats before = store->stats();

  auto expect_unchanged = [&] {
    SsdStore::Stats s = store->stats();
    EXPECT_EQ(s.rows, before.rows);
    EXPECT_EQ(s.file_bytes, before.file_bytes);
    EXPECT_EQ(s.records_written, before.records_written);
    for (uint64_t k = 0; k < 40; ++k) {
      auto it = oracle.find(k);
      EXPECT_EQ(GetOne(*store, k, rb), it == oracle.end() ? Record() : it->second) << k;
    }
  };
  // Disk full on the first flush, then after one, then after two (across seals).
  for (int ok_writes : {0, 1, 2}) {
    ops.writes_before_failure = ok_writes;
    Status st = put(5, 30, 2);  // replaces 5..12, adds 13..34: needs several flushes
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st;
    EXPECT_NE(st.message().find("segment-"), std::string::npos) << st;
    EXPECT_NE(st.message().find("No space left"), std::string::npos) << st;
    ops.writes_before_failure = -1;
    expect_unchanged();
  }
  ops.fail_opens = true;
  EXPECT_FALSE(put(5, 30, 2).ok());
  ops.fail_opens = false;
  expect_unchanged();

  // Failed reads: an error, nothing taken.
  ops.fail_reads = true;
  std::vector<uint64_t> take = {1, 2, 12};
  Record out(3 * rb);
  uint8_t found[3];
  Status st = store->Take(take, out.data(), found);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Input/output error"), std::string::npos) << st;
  ops.fail_reads = false;
  expect_unchanged();

  // And the store works on afterwards.
  ASSERT_TRUE(put(5, 30, 3).ok());
  for (uint64_t k = 5; k < 35; ++k) oracle[k] = MakeRecord(k, 3, rb);
  for (uint64_t k = 0; k < 40; ++k) {
    auto it = oracle.find(k);
    EXPECT_EQ(GetOne(*store, k, rb), it == oracle.end() ? Record() : it->second) << k;
  }
  EXPECT_EQ(store->stats().rows, 35);
}

// Writers on disjoint key ranges with their own oracles, plus two threads Putting and Taking
// the same shared keys: every record read is one that was written for its key, and no
// version is ever taken twice. Compaction runs underneath throughout.
TEST_F(SsdStoreTest, ConcurrentStress) {
  const int64_t rb = 32;
  auto o = Opts(rb, 48 * 200);  // 200 slots a segment
  o.io_threads = 3;
  auto store = MustOpen(o);
  ASSERT_NE(store, nullptr);
  const int kOwners = 4;
  const int kShared = 2;
  const int iterations = OracleOps() / 20;
  std::vector<Oracle> oracles(kOwners);
  std::vector<std::vector<uint64_t>> taken_versions(kShared);
  std::atomic<bool> failed{false};
  auto owner = [&](int t) {
    std::mt19937_64 rng(100 + t);
    Oracle& oracle = oracles[t];
    uint64_t version = 0;
    for (int it = 0; it < iterations && !failed; ++it) {
      std::vector<uint64_t> keys;
      std::unordered_set<uint64_t> distinct;
      const int batch = 1 + static_cast<int>(rng() % 16);
      while (static_cast<int>(keys.size()) < batch) {
        uint64_t k = static_cast<uint64_t>(t) * 1'000'000 + rng() % 2000;
        if (distinct.insert(k).second) keys.push_back(k);
      }
      Record buf(batch * rb);
      std::vector<uint8_t> found(batch);
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 4) {
        for (int i = 0; i < batch; ++i) {
          Record r = MakeRecord(keys[i], ++version, rb);
          std::memcpy(buf.data() + i * rb, r.data(), rb);
          oracle[keys[i]] = std::move(r);
        }
        if (!store->Put(keys, buf.data()).ok()) failed = true;
      } else if (kind < 9) {
        const bool take = kind < 6;
        Status st = take ? store->Take(keys, buf.data(), found.data())
                         : store->Get(keys, buf.data(), found.data());
        if (!st.ok()) failed = true;
        for (int i = 0; i < batch; ++i) {
          auto e = oracle.find(keys[i]);
          if (found[i] != (e != oracle.end() ? 1 : 0) ||
              (found[i] && std::memcmp(buf.data() + i * rb, e->second.data(), rb) != 0)) {
            ADD_FAILURE() << "thread " << t << " key " << keys[i];
            failed = true;
          }
          if (take && e != oracle.end()) oracle.erase(e);
        }
      } else {
        if (!store->Erase(keys).ok()) failed = true;
        for (uint64_t k : keys) oracle.erase(k);
      }
    }
  };
  auto sharer = [&](int t) {
    std::mt19937_64 rng(200 + t);
    uint64_t counter = 0;
    for (int it = 0; it < iterations && !failed; ++it) {
      std::vector<uint64_t> keys;
      std::unordered_set<uint64_t> distinct;
      const int batch = 1 + static_cast<int>(rng() % 8);
      while (static_cast<int>(keys.size()) < batch) {
        uint64_t k = 9'000'000 + rng() % 64;
        if (distinct.insert(k).second) keys.push_back(k);
      }
      Record buf(batch * rb);
      std::vector<uint8_t> found(batch);
      if (rng() % 2 == 0) {
        for (int i = 0; i < batch; ++i) {
          Record r = MakeRecord(keys[i], (static_cast<uint64_t>(t) << 40) | ++counter, rb);
          std::memcpy(buf.data() + i * rb, r.data(), rb);
        }
        if (!store->Put(keys, buf.data()).ok()) failed = true;
      } else {
        if (!store->Take(keys, buf.data(), found.data()).ok()) failed = true;
        for (int i = 0; i < batch; ++i) {
          if (!found[i]) continue;
          if (!SelfConsistent(keys[i], buf.data() + i * rb, rb)) {
            ADD_FAILURE() << "torn record for shared key " << keys[i];
            failed = true;
          }
          uint64_t version;
          std::memcpy(&version, buf.data() + i * rb + 8, 8);
          taken_versions[t].push_back(version);
        }
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(kOwners + kShared);
  for (int t = 0; t < kOwners; ++t) threads.emplace_back(owner, t);
  for (int t = 0; t < kShared; ++t) threads.emplace_back(sharer, t);
  for (auto& th : threads) th.join();
  ASSERT_FALSE(failed);

  internal::WaitForCompactions(*store);
  EXPECT_GT(store->stats().compactions, 0);
  int64_t expected_rows = 0;
  for (int t = 0; t < kOwners; ++t) {
    expected_rows += static_cast<int64_t>(oracles[t].size());
    for (const auto& [k, r] : oracles[t]) ASSERT_EQ(GetOne(*store, k, rb), r) << k;
  }
  // Whatever shared keys remain are self-consistent; no version was taken twice.
  std::unordered_set<uint64_t> versions;
  for (const auto& list : taken_versions) {
    for (uint64_t v : list) EXPECT_TRUE(versions.insert(v).second) << "taken twice: " << v;
  }
  int64_t shared_rows = 0;
  for (uint64_t k = 9'000'000; k < 9'000'064; ++k) {
    Record r = GetOne(*store, k, rb);
    if (r.empty()) continue;
    ++shared_rows;
    EXPECT_TRUE(SelfConsistent(k, r.data(), rb));
  }
  EXPECT_EQ(store->stats().rows, expected_rows + shared_rows);
}

}  // namespace
}  // namespace keel::embed
