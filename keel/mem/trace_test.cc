// Trace parser/writer: round trips (plain and gzip), every malformed case with its message,
// and random mutations of a valid trace (must give a value or an error, never a crash).
#include "keel/mem/trace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace keel::mem {
namespace {

using ::testing::HasSubstr;
using Kind = TraceEvent::Kind;

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("keel_trace_test_" + std::to_string(getpid()) + "_" + name))
      .string();
}

Trace Sample() {
  Trace t;
  t.comments = {"source: unit test", "made: by hand"};
  t.events = {{Kind::kAlloc, 0, 1, 4096, 0},
              {Kind::kAlloc, 5, 2, 3ull << 30, 1},
              {Kind::kFree, 9, 1},
              {Kind::kAlloc, 9, 1, 512, 0},  // id 1 reused after its free
              {Kind::kFree, 12, 2}};
  return t;
}

TEST(TraceTest, RoundTripsThroughTextPlainAndGzipFiles) {
  const Trace t = Sample();
  auto text = FormatTrace(t);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, ::testing::StartsWith("keel-alloc-trace 1\n# source: unit test\n"));
  auto back = ParseTrace(*text, "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->events, t.events);
  EXPECT_EQ(back->comments, t.comments);
  for (const std::string name : {"t.trace", "t.trace.gz"}) {
    const std::string path = TempPath(name);
    ASSERT_TRUE(WriteTrace(t, path).ok());
    auto read = ReadTrace(path);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->events, t.events);
    std::ifstream in(path, std::ios::binary);
    char magic[2] = {};
    in.read(magic, 2);
    const bool gzip = magic[0] == '\x1f' && magic[1] == '\x8b';
    EXPECT_EQ(gzip, name.ends_with(".gz")) << name;
    std::filesystem::remove(path);
  }
}

TEST(TraceTest, SummaryCountsPeaksAndLiveBlocks) {
  const TraceSummary s = Summarize(Sample());
  EXPECT_EQ(s.allocs, 3u);
  EXPECT_EQ(s.frees, 2u);
  EXPECT_EQ(s.peak_live_bytes, 4096 + (3ull << 30));
  EXPECT_EQ(s.live_at_end, 1u);
  EXPECT_EQ(s.streams, 2);
  EXPECT_EQ(s.duration_us, 12u);
}

TEST(TraceTest, AcceptsBlankLinesCommentsAnywhereTabsAndCrlf) {
  auto t = ParseTrace("keel-alloc-trace 1\r\n\n# x\na\t1 7 10 0\r\n# y\n\nf 2  7\n", "t");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->events.size(), 2u);
  EXPECT_EQ(t->comments, (std::vector<std::string>{"x", "y"}));
}

struct BadCase {
  std::string text, message;
};

TEST(TraceTest, RejectsEveryMalformedInputNamingTheLine) {
  const std::string h = "keel-alloc-trace 1\n";
  const std::vector<BadCase> cases = {
      {"", "t:1: empty file"},
      {"keel-trace 1\n", "t:1: not a keel allocation trace"},
      {"keel-alloc-trace\n", "t:1: malformed header"},
      {"keel-alloc-trace one\n", "t:1: malformed header"},
      {"keel-alloc-trace 2\n", "t:1: trace format version 2 is not supported"},
      {h + "x 1 2\n", "t:2: unknown event 'x'"},
      {h + "a 1 2 3\n", "t:2: 'a' event has 4 fields, expected 5"},
      {h + "a 1 2 3 0 9\n", "t:2: 'a' event has 6 fields"},
      {h + "f 1\n", "t:2: 'f' event has 2 fields, expected 3"},
      {h + "a x 2 3 0\n", "t:2: time 'x' is not a non-negative integer"},
      {h + "a 1 -2 3 0\n", "t:2: id '-2'"},
      {h + "a 1 2 3k 0\n", "t:2: size '3k'"},
      {h + "a 1 2 3 s\n", "t:2: stream 's'"},
      {h + "a 1 2 99999999999999999999 0\n", "t:2: size '99999999999999999999'"},
      {h + "a 1 2 0 0\n", "t:2: alloc of id 2 has size 0"},
      {h + "a 1 2 2251799813685249 0\n", "t:2: alloc of id 2 has size 2251799813685249 > the"},
      {h + "a 1 2 8 1048577\n", "t:2: stream 1048577 is outside"},
      {h + "# c\nf 1 2\n", "t:3: free of id 2, which is not live"},
      {h + "a 1 2 8 0\na 2 2 8 0\n", "t:3: id 2 is allocated again while still live"},
      {h + "a 5 2 8 0\nf 4 2\n", "t:3: time 4 us goes back (previous event at 5 us)"},
      {h + "a 1 2 8 0\nf 2 2\nf 3 2\n", "t:4: free of id 2, which is not live"},
      {h + std::string(5000, 'a') + "\n", "t:2: line is 5000 bytes long"},
  };
  for (const BadCase& c : cases) {
    auto t = ParseTrace(c.text, "t");
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(t.status().message(), HasSubstr(c.message)) << c.text;
  }
  // A NUL inside the line (std::string with an explicit length).
  auto nul = ParseTrace(h + std::string("a 1 2 8 0\0x\n", 12), "t");
  EXPECT_THAT(nul.status().message(), HasSubstr("NUL byte"));
}

TEST(TraceTest, WriterRefusesInvalidEventsAndComments) {
  Trace t = Sample();
  t.events.push_back({Kind::kFree, 20, 99});
  auto s = FormatTrace(t);
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("trace event 5: free of id 99"));
  EXPECT_FALSE(WriteTrace(t, TempPath("bad.trace")).ok());
  EXPECT_FALSE(std::filesystem::exists(TempPath("bad.trace")));
  Trace c = Sample();
  c.comments.emplace_back("two\nlines");
  EXPECT_FALSE(FormatTrace(c).ok());
}

TEST(TraceTest, MissingFileIsNotFoundAndTruncatedGzipIsDataLoss) {
  auto missing = ReadTrace(TempPath("nope.trace"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.trace"));

  Trace big;
  for (uint64_t i = 0; i < 20000; ++i) big.events.push_back({Kind::kAlloc, i, i, 1 + i * 7, 0});
  const std::string path = TempPath("trunc.trace.gz");
  ASSERT_TRUE(WriteTrace(big, path).ok());
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  auto t = ReadTrace(path);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kDataLoss) << t.status();
  EXPECT_THAT(t.status().message(), HasSubstr("trunc.trace.gz"));

  // Corrupt bytes in the middle of the deflate stream.
  ASSERT_TRUE(WriteTrace(big, path).ok());
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 3));
    const std::string junk(64, '\x55');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto corrupt = ReadTrace(path);
  EXPECT_FALSE(corrupt.ok());
  std::filesystem::remove(path);
}

// Random byte-level mutations of a valid trace: each parse returns a trace or an error naming
// a line; a returned trace must satisfy the format's rules (FormatTrace re-validates).
TEST(TraceTest, RandomMutationsNeverCrash) {
  auto base = FormatTrace(Sample());
  ASSERT_TRUE(base.ok());
  std::mt19937_64 rng(1234);
  const std::string alphabet("af# \n\t0123456789-x\r\0", 20);
  int errors = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = *base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !s.empty(); ++k) {
      const size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.erase(at, 1 + rng() % 8);
          break;
        case 2:
          s.insert(at, 1, static_cast<char>(rng() % 256));
          break;
        default:
          s.insert(at, s.substr(rng() % s.size(), rng() % 20));
      }
    }
    auto t = ParseTrace(s, "m");
    if (!t.ok()) {
      ++errors;
      EXPECT_THAT(t.status().message(), HasSubstr("m:"));
      continue;
    }
    EXPECT_TRUE(FormatTrace(*t).ok());
  }
  EXPECT_GT(errors, 1000);
}

}  // namespace
}  // namespace keel::mem
