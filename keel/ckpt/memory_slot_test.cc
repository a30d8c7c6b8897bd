// SlotWriter: slots are valid safetensors files, rewritten in place while warm, replaced (not
// changed under the reader) once a restore mapped them.
#include "keel/ckpt/memory_slot.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <numeric>

namespace keel::ckpt {
namespace {

class SlotWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/keel_slot_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static TensorView View(std::vector<float>* v) {
    return TensorView::Contiguous(v->data(), DType::kFloat32, {static_cast<int64_t>(v->size())});
  }
  static ino_t Inode(const std::string& path) {
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
  }

  std::string dir_;
};

TEST_F(SlotWriterTest, WritesValidFilesAndRewritesThemInPlace) {
  std::vector<float> a(1000), b(33);
  std::iota(a.begin(), a.end(), 0.f);
  std::iota(b.begin(), b.end(), 5.f);
  SlotWriter w(dir_, 3, 2);
  ASSERT_TRUE(w.Write(1, {{"a", View(&a)}, {"b", View(&b)}}, {{"keel.step", "7"}}).ok());
  const std::string path = SlotPath(dir_, 3, 1);
  EXPECT_EQ(path, dir_ + "/rank-3.slot-1.safetensors");
  const ino_t first = Inode(path);
  {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ((*f)->metadata().at("keel.step"), "7");
    const float* ra = static_cast<const float*>((*f)->Get("a")->data);
    const float* rb = static_cast<const float*>((*f)->Get("b")->data);
    EXPECT_EQ(std::vector<float>(ra, ra + a.size()), a);
    EXPECT_EQ(std::vector<float>(rb, rb + b.size()), b);
  }
  a[999] = -1.f;
  ASSERT_TRUE(w.Write(1, {{"a", View(&a)}, {"b", View(&b)}}, {{"keel.step", "8"}}).ok());
  EXPECT_EQ(Inode(path), first);  // same file, same pages
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("keel.step"), "8");
  EXPECT_EQ(static_cast<const float*>((*f)->Get("a")->data)[999], -1.f);
}

TEST_F(SlotWriterTest, ChangedLayoutsAndLeftoverFilesStayValid) {
  std::vector<float> big(5000, 1.f), small(10, 2.f);
  {
    SlotWriter old_process(dir_, 0, 1);
    ASSERT_TRUE(old_process.Write(0, {{"x", View(&big)}}, {}).ok());
  }
  // A new worker process reuses the file it finds (smaller state: the file shrinks).
  SlotWriter w(dir_, 0, 1);
  ASSERT_TRUE(w.Write(0, {{"y", View(&small)}}, {{"k", "v"}}).ok());
  auto f = SafetensorsFile::Open(SlotPath(dir_, 0, 0));
  ASSERT_TRUE(f.ok()) << f.status();  // validation rejects trailing bytes: none are left
  EXPECT_EQ((*f)->names(), std::vector<std::string>{"y"});
  // And grows again.
  ASSERT_TRUE(w.Write(0, {{"x", View(&big)}, {"y", View(&small)}}, {}).ok());
  ASSERT_TRUE(SafetensorsFile::Open(SlotPath(dir_, 0, 0)).ok());
}

TEST_F(SlotWriterTest, DetachedSlotsAreReplacedNotChangedUnderTheReader) {
  std::vector<float> v(4096, 3.f);
  SlotWriter w(dir_, 0, 2);
  ASSERT_TRUE(w.Write(0, {{"v", View(&v)}}, {{"keel.step", "1"}}).ok());
  const std::string path = SlotPath(dir_, 0, 0);
  auto restored = SafetensorsFile::Open(path, SafetensorsFile::Mapping::kCopyOnWrite);
  ASSERT_TRUE(restored.ok()) << restored.status();
  w.Detach(0);
  std::vector<float> next(4096, 9.f);
  ASSERT_TRUE(w.Write(0, {{"v", View(&next)}}, {{"keel.step", "2"}}).ok());
  // The restored tensors still hold step 1, and are writable (copy on write) ...
  float* r = static_cast<float*>((*restored)->Get("v")->data);
  EXPECT_EQ(r[0], 3.f);
  r[0] = 100.f;
  // ... without touching the slot, which now holds step 2.
  auto now = SafetensorsFile::Open(path);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ((*now)->metadata().at("keel.step"), "2");
  EXPECT_EQ(static_cast<const float*>((*now)->Get("v")->data)[0], 9.f);
  EXPECT_FALSE(std::filesystem::exists(path + ".new"));
}

TEST_F(SlotWriterTest, WarmsTheOtherSlotWithoutTouchingOneThatHoldsData) {
  std::vector<float> v(100000, 1.f);
  {
    SlotWriter w(dir_, 0, 1);
    ASSERT_TRUE(w.Write(0, {{"v", View(&v)}}, {}).ok());
  }  // joins the warmer: slot 1 now exists at the same size, unwritten
  EXPECT_EQ(std::filesystem::file_size(SlotPath(dir_, 0, 1)),
            std::filesystem::file_size(SlotPath(dir_, 0, 0)));
  // A slot file of another size holds data (say, a step being persisted): left alone.
  std::vector<float> small(10, 7.f);
  {
    SlotWriter w(dir_, 1, 1);
    ASSERT_TRUE(w.Write(1, {{"s", View(&small)}}, {{"keel.step", "3"}}).ok());
  }
  const auto before = std::filesystem::file_size(SlotPath(dir_, 1, 1));
  {
    SlotWriter w(dir_, 1, 1);
    ASSERT_TRUE(w.Write(0, {{"v", View(&v)}}, {}).ok());
  }
  EXPECT_EQ(std::filesystem::file_size(SlotPath(dir_, 1, 1)), before);
  auto f = SafetensorsFile::Open(SlotPath(dir_, 1, 1));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("keel.step"), "3");
}

TEST_F(SlotWriterTest, RejectsBadSlotsAndTensors) {
  std::vector<float> v(4);
  SlotWriter w(dir_, 0, 1);
  EXPECT_EQ(w.Write(2, {{"v", View(&v)}}, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.Write(0, {{"v", View(&v)}, {"v", View(&v)}}, {}).code(),
            StatusCode::kInvalidArgument);
  TensorView strided = View(&v);
  strided.shape = {2};
  strided.strides = {2};
  Status s = w.Write(0, {{"s", strided}}, {});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("contiguous"), std::string::npos) << s;
}

TEST_F(SlotWriterTest, AMissingDirectoryIsAClearError) {
  std::vector<float> v(4);
  SlotWriter w(dir_ + "/gone", 0, 1);
  Status s = w.Write(0, {{"v", View(&v)}}, {});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("gone"), std::string::npos) << s;
}

}  // namespace
}  // namespace keel::ckpt
