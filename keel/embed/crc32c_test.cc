#include "keel/embed/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace keel::embed {
namespace {

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);  // the standard check value
  EXPECT_EQ(Crc32c("", 0), 0u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
}

TEST(Crc32cTest, FastPathMatchesPortableAndExtendComposes) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> data(1000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t n = 0; n <= data.size(); n += 37) {
    uint32_t fast = Crc32c(data.data(), n);
    EXPECT_EQ(fast, internal::Crc32cExtendPortable(0, data.data(), n)) << n;
    size_t cut = n / 3;
    EXPECT_EQ(Crc32cExtend(Crc32c(data.data(), cut), data.data() + cut, n - cut), fast) << n;
  }
}

}  // namespace
}  // namespace keel::embed
