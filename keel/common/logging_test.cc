#include "keel/common/logging.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace keel::log {
namespace {

class LevelGuard {
 public:
  LevelGuard() : saved_(GetLevel()) {}
  ~LevelGuard() { SetLevel(saved_); }

 private:
  Level saved_;
};

TEST(LoggingTest, ParseLevelAcceptsNamesAndRejectsGarbage) {
  EXPECT_EQ(*ParseLevel("DEBUG"), Level::kDebug);
  EXPECT_EQ(*ParseLevel("warning"), Level::kWarn);
  EXPECT_EQ(*ParseLevel("off"), Level::kOff);
  StatusOr<Level> bad = ParseLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'loud'"), std::string::npos);
}

TEST(LoggingTest, LinesCarryLevelPidFileLineAndMessage) {
  LevelGuard guard;
  SetLevel(Level::kInfo);
  ScopedCapture capture;
  KEEL_LOG(Info, "joined round {} with {} nodes", 3, 2);
  const int line = __LINE__ - 1;
  std::string text = capture.Text();
  EXPECT_NE(text.find("joined round 3 with 2 nodes"), std::string::npos) << text;
  EXPECT_NE(text.find("[I]"), std::string::npos) << text;
  EXPECT_NE(text.find("[" + std::to_string(getpid()) + "]"), std::string::npos) << text;
  EXPECT_NE(text.find("logging_test.cc:" + std::to_string(line)), std::string::npos) << text;
}

TEST(LoggingTest, LevelFiltersLowerSeverities) {
  LevelGuard guard;
  SetLevel(Level::kWarn);
  ScopedCapture capture;
  KEEL_LOG(Info, "quiet");
  KEEL_LOG(Debug, "quieter");
  KEEL_LOG(Error, "loud");
  std::string text = capture.Text();
  EXPECT_EQ(text.find("quiet"), std::string::npos);
  EXPECT_NE(text.find("loud"), std::string::npos);
  SetLevel(Level::kOff);
  KEEL_LOG(Error, "silenced");
  EXPECT_EQ(capture.Text().find("silenced"), std::string::npos);
}

TEST(LoggingTest, FileSinkWritesLinesAndBadPathIsAnError) {
  std::string path = ::testing::TempDir() + "/keel_log_" + std::to_string(getpid()) + ".txt";
  ASSERT_TRUE(AddFileSink(path).ok());
  KEEL_LOG(Warn, "to the file {}", 42);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find("to the file 42"), std::string::npos);
  Status bad = AddFileSink("/dev/null/y.log");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("/dev/null/y.log"), std::string::npos);
}

TEST(LoggingDeathTest, CheckAbortsWithConditionAndMessage) {
  int size = 3;
  EXPECT_DEATH(KEEL_CHECK(size > 5, "size was {}", size), "check failed: size > 5: size was 3");
  EXPECT_DEATH(KEEL_CHECK(size == 0), "check failed: size == 0");
}

}  // namespace
}  // namespace keel::log
