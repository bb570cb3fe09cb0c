// Pure helpers of the sysinfo features: /proc/loadavg rounding and x86 flag decoding.
#include <gtest/gtest.h>

#include "features/cpuinfo/cpuinfo.h"
#include "features/uptime/uptime.h"

namespace {

TEST(Loadavg, RoundsLikeProcLoadavg) {
  constexpr uint64_t kFixed1 = 1 << 11;
  EXPECT_EQ(nfm::loadavg_centi(0), 0u);
  EXPECT_EQ(nfm::loadavg_centi(kFixed1), 100u);     // 1.00
  EXPECT_EQ(nfm::loadavg_centi(kFixed1 / 2), 50u);  // 0.50
  EXPECT_EQ(nfm::loadavg_centi(3 * kFixed1 + 1), 300u);
  // +FIXED_1/200 rounds to the nearest hundredth: 0.0049 -> 0.00, 0.0051 -> 0.01.
  EXPECT_EQ(nfm::loadavg_centi(10), 0u);  // 10/2048 = 0.00488
  EXPECT_EQ(nfm::loadavg_centi(11), 1u);  // 11/2048 = 0.00537
  // 0.995 and above carry into the integer part.
  EXPECT_EQ(nfm::loadavg_centi(2038), 100u);  // 0.99512
  EXPECT_EQ(nfm::loadavg_centi(2027), 99u);   // 0.98975
}

TEST(Flags, DecodesSetBitsWithNames) {
  std::vector<std::string> names(64);
  names[0] = "fpu";
  names[4] = "tsc";
  names[33] = "sse3";
  // bit 5 set but unnamed: skipped; bit 64 (beyond the names: a bug bit) ignored.
  std::vector<uint32_t> words = {0x31, 0x2, 0x1};
  EXPECT_EQ(nfm::decode_flags(words, names), (std::vector<std::string>{"fpu", "tsc", "sse3"}));
  EXPECT_TRUE(nfm::decode_flags({0, 0}, names).empty());
  EXPECT_TRUE(nfm::decode_flags({}, names).empty());
}

}  // namespace
