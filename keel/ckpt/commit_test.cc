#include "keel/ckpt/commit.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace keel::ckpt {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path FreshDir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("keel_commit_" + std::to_string(getpid()) + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(CommitTest, WritesCommittedAndLatestAndKeepsTheNewestSteps) {
  fs::path d = FreshDir("keep");
  for (int step : {1, 5, 10, 20}) {
    fs::create_directories(d / ("step-" + std::to_string(step)));
    ASSERT_TRUE(CommitStep(d.string(), step, 2, 2).ok());
  }
  fs::create_directories(d / "step-30");  // half-written, newer: may still be committed
  fs::create_directories(d / "step-15");  // half-written, older than a committed step
  ASSERT_TRUE(CommitStep(d.string(), 20, 2, 2).ok());  // committing again is harmless
  EXPECT_EQ(Read(d / "latest"), "20\n");
  EXPECT_FALSE(fs::exists(d / "step-15"));
  EXPECT_EQ(Read(d / "step-20" / "COMMITTED"), "{\"step\": 20, \"world_size\": 2}\n");
  EXPECT_FALSE(fs::exists(d / "step-1"));
  EXPECT_FALSE(fs::exists(d / "step-5"));
  EXPECT_TRUE(fs::exists(d / "step-10" / "COMMITTED"));
  EXPECT_TRUE(fs::exists(d / "step-30"));
  EXPECT_FALSE(fs::exists(d / "latest.tmp"));
}

TEST(CommitTest, KeepLastZeroKeepsEverythingAndBadInputIsRejected) {
  fs::path d = FreshDir("all");
  for (int step : {1, 2, 3}) {
    fs::create_directories(d / ("step-" + std::to_string(step)));
    ASSERT_TRUE(CommitStep(d.string(), step, 1, 0).ok());
  }
  EXPECT_TRUE(fs::exists(d / "step-1" / "COMMITTED"));
  fs::create_directories(d / "step-0");  // uncommitted and older: removed even with keep 0
  ASSERT_TRUE(CommitStep(d.string(), 3, 1, 0).ok());
  EXPECT_FALSE(fs::exists(d / "step-0"));
  EXPECT_TRUE(fs::exists(d / "step-1" / "COMMITTED"));
  EXPECT_EQ(CommitStep(d.string(), -1, 1, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CommitStep(d.string(), 1, 0, 0).code(), StatusCode::kInvalidArgument);
  // A step whose directory is missing cannot be committed, and latest stays where it was.
  EXPECT_EQ(CommitStep(d.string(), 9, 1, 0).code(), StatusCode::kNotFound);
  EXPECT_EQ(Read(d / "latest"), "3\n");
}

}  // namespace
}  // namespace keel::ckpt
