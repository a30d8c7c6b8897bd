// Replays the fuzzer's corpus (testdata/fuzz_corpus, grown by `make fuzz` with libFuzzer) through
// the reader on every build, whatever the compiler: every input is parsed or rejected with a
// message, and the seed files (seed_*) are valid.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "keel/infer/gguf/gguf_file.h"

namespace keel::infer {
namespace {

TEST(GgufCorpus, EveryInputParsesOrIsRejectedCleanly) {
  int files = 0, valid = 0;
  for (const auto& entry : std::filesystem::directory_iterator(KEEL_GGUF_CORPUS)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    auto f = GgufFile::Parse(bytes);
    ++files;
    const bool seed = entry.path().filename().string().rfind("seed_", 0) == 0;
    if (seed) {
      EXPECT_TRUE(f.ok()) << entry.path() << ": " << f.status();
    }
    if (!f.ok()) {
      EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument) << entry.path();
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    ++valid;
    for (const GgufTensor& t : (*f)->tensors()) {
      ASSERT_LE(t.data + t.nbytes, bytes.data() + bytes.size()) << entry.path();
    }
  }
  EXPECT_GE(files, 10);
  EXPECT_GE(valid, 2);
}

}  // namespace
}  // namespace keel::infer
