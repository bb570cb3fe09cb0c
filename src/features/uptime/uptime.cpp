#include "features/uptime/uptime.h"

#include "kernel/object.h"

namespace nfm {

namespace {

constexpr uint64_t kFshift = 11;  // include/linux/sched/loadavg.h
constexpr uint64_t kFixed1 = 1ull << kFshift;
constexpr int64_t kNsPerSec = 1'000'000'000;

// tk_core is an anonymous struct { seqcount_raw_spinlock_t seq; struct
// timekeeper timekeeper; ... } (kernel/time/timekeeping.c), so BTF has no name
// for it: the timekeeper follows the seqcount, aligned as a struct of u64s.
// (seqcount_raw_spinlock_t since 5.10, plain seqcount_t before.)
Result<uint64_t> timekeeper_address(Kernel& kernel) {
  NFM_ASSIGN(uint64_t tk_core, kernel.symbol("tk_core"));
  const Types& t = kernel.types();
  auto seq = t.size_of("seqcount_raw_spinlock_t");
  if (!seq) seq = t.size_of("seqcount_t");
  if (!seq) seq = t.size_of("seqcount");
  if (!seq) return seq.error();
  return tk_core + ((*seq + 7) & ~uint64_t{7});
}

}  // namespace

uint64_t loadavg_centi(uint64_t avenrun) {
  const uint64_t a = avenrun + kFixed1 / 200;
  const uint64_t whole = a >> kFshift;
  const uint64_t frac = ((a & (kFixed1 - 1)) * 100) >> kFshift;
  return whole * 100 + frac;
}

Result<UptimeInfo> read_uptime(Kernel& kernel) {
  ObjectContext ctx = object_context(kernel);
  UptimeInfo info;

  // /proc/uptime is ktime_get_boottime(): ktime_get() + offs_boot, where
  // ktime_get() = tkr_mono.base + ((tkr_mono.xtime_nsec + clocksource delta) >> shift).
  // The clocksource delta since the last update needs the guest's TSC: left out.
  NFM_ASSIGN(uint64_t tk_address, timekeeper_address(kernel));
  NFM_ASSIGN(TypeRef tk_type, kernel.types().find_struct("timekeeper"));
  const Object tk(ctx, tk_address, tk_type);
  auto field = [&](const char* path) -> Result<int64_t> {
    NFM_ASSIGN(Object o, tk.member(path));
    return o.as_signed();
  };
  NFM_ASSIGN(int64_t base, field("tkr_mono.base"));
  NFM_ASSIGN(int64_t xtime_nsec, field("tkr_mono.xtime_nsec"));
  NFM_ASSIGN(int64_t shift, field("tkr_mono.shift"));
  NFM_ASSIGN(int64_t offs_boot, field("offs_boot"));
  NFM_ASSIGN(int64_t offs_real, field("offs_real"));
  if (shift < 0 || shift >= 64 || base < 0 || offs_boot < 0)
    return make_error(Errc::mismatch, "timekeeper at tk_core does not look like one");
  info.uptime_ns =
      static_cast<uint64_t>(base + offs_boot) + (static_cast<uint64_t>(xtime_nsec) >> shift);
  // getboottime64(): offs_real - offs_boot, i.e. the wall clock when CLOCK_BOOTTIME was 0.
  const int64_t boot = offs_real - offs_boot;
  info.boot_time = boot >= 0 ? boot / kNsPerSec : -((-boot + kNsPerSec - 1) / kNsPerSec);

  NFM_ASSIGN(uint64_t avenrun, kernel.symbol("avenrun"));
  for (int i = 0; i < 3; ++i) {
    NFM_ASSIGN(uint64_t v, kernel.read_value<uint64_t>(avenrun + 8 * i));
    info.load_centi[i] = loadavg_centi(v);
  }

  // jiffies is the low word of jiffies_64 (a linker alias on 64-bit).
  auto j = kernel.symbol("jiffies_64");
  if (!j) j = kernel.symbol("jiffies");
  if (!j) return j.error();
  NFM_ASSIGN(info.jiffies, kernel.read_value<uint64_t>(*j));
  return info;
}

}  // namespace nfm
