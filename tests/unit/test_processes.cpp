// Pure helpers of the process feature: the kernel's cputime_adjust() arithmetic,
// /proc/PID/cmdline splitting, and CPU shares between two crawls.
#include <gtest/gtest.h>

#include "features/processes/processes.h"

namespace nfm {
std::ostream& operator<<(std::ostream& o, const CpuTimes& t) {
  return o << "{utime " << t.utime << ", stime " << t.stime << "}";
}
}  // namespace nfm

namespace {

using nfm::adjust_cputime;
using nfm::CpuTimes;

constexpr uint64_t kTick = 4'000'000;  // one tick at HZ=250, in ns

TEST(AdjustCputime, ScalesTheTickSplitToTheExactRuntime) {
  // 3 user ticks, 1 system tick, 10 ms of real runtime: stime = 1/4 of it.
  EXPECT_EQ(adjust_cputime(3 * kTick, kTick, 10'000'000, {}), (CpuTimes{7'500'000, 2'500'000}));
  // No system ticks yet: all of it is user time (and the other way round).
  EXPECT_EQ(adjust_cputime(2 * kTick, 0, 9'000'000, {}), (CpuTimes{9'000'000, 0}));
  EXPECT_EQ(adjust_cputime(0, 0, 9'000'000, {}), (CpuTimes{9'000'000, 0}));
  EXPECT_EQ(adjust_cputime(0, 2 * kTick, 9'000'000, {}), (CpuTimes{0, 9'000'000}));
  // Exact 128-bit product: no overflow on long-lived tasks.
  const uint64_t big = 1ull << 62;
  EXPECT_EQ(adjust_cputime(big, big, big, {}), (CpuTimes{big / 2, big / 2}));
}

TEST(AdjustCputime, NeverGoesBackwards) {
  // Runtime not past the last answer: the last answer again.
  EXPECT_EQ(adjust_cputime(kTick, kTick, 5'000'000, {3'000'000, 2'000'000}),
            (CpuTimes{3'000'000, 2'000'000}));
  EXPECT_EQ(adjust_cputime(kTick, kTick, 4'000'000, {3'000'000, 2'000'000}),
            (CpuTimes{3'000'000, 2'000'000}));
  // The ratio would lower stime below what was shown: stime holds, utime takes the rest.
  EXPECT_EQ(adjust_cputime(9 * kTick, kTick, 10'000'000, {1'000'000, 5'000'000}),
            (CpuTimes{5'000'000, 5'000'000}));
  // ... or utime: utime holds, stime takes the rest.
  EXPECT_EQ(adjust_cputime(kTick, 9 * kTick, 10'000'000, {6'000'000, 1'000'000}),
            (CpuTimes{6'000'000, 4'000'000}));
}

TEST(SplitCmdline, SplitsAtNulsLikeProcReaders) {
  using V = std::vector<std::string>;
  using namespace std::literals;
  EXPECT_EQ(nfm::split_cmdline(""sv), V{});
  EXPECT_EQ(nfm::split_cmdline("/bin/sh\0-c\0echo hi\0"sv), (V{"/bin/sh", "-c", "echo hi"}));
  // setproctitle() text without a final NUL, and empty arguments.
  EXPECT_EQ(nfm::split_cmdline("nginx: worker"sv), V{"nginx: worker"});
  EXPECT_EQ(nfm::split_cmdline("a\0\0b\0"sv), (V{"a", "", "b"}));
}

nfm::ProcessRow row(uint64_t task, uint64_t start, uint64_t runtime) {
  nfm::ProcessRow r;
  r.task = task, r.start_time_ns = start, r.runtime_ns = runtime;
  return r;
}

TEST(CpuOverInterval, RuntimeGainedOverTheGuestsElapsedTime) {
  nfm::ProcessList before, after;
  before.clock_ns = 10'000'000'000;
  after.clock_ns = 12'000'000'000;  // 2 s of guest time
  before.rows = {row(0xa, 0, 1'000'000'000), row(0xb, 5, 7), row(0xc, 1, 50)};
  after.rows = {row(0xa, 0, 1'500'000'000),              // +0.5 s: 25%
                row(0xb, 5, 7),                          // idle
                row(0xc, 9, 100'000'000),                // address reused by a task born at 9 ns
                row(0xd, 11'000'000'000, 100'000'000)};  // born 1 s ago, ran 0.1 s
  nfm::measure_cpu_over_interval(after, before);
  EXPECT_DOUBLE_EQ(after.rows[0].cpu_pct, 25.0);
  EXPECT_DOUBLE_EQ(after.rows[1].cpu_pct, 0.0);
  EXPECT_DOUBLE_EQ(after.rows[2].cpu_pct, 5.0);  // all its runtime, over the interval
  EXPECT_DOUBLE_EQ(after.rows[3].cpu_pct, 10.0);

  // A guest that was paused all along: no time passed, no share.
  after.clock_ns = before.clock_ns;
  nfm::measure_cpu_over_interval(after, before);
  for (const auto& r : after.rows) EXPECT_EQ(r.cpu_pct, 0.0);
}

}  // namespace
