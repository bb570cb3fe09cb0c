// Attach cost with and without the compiled-profile cache, on a memory dump:
//
//   NFM_BENCH_TARGET=DUMP build/bench/bench_profile
//
// Cold: a fresh cache directory every iteration, so kallsyms are decoded and BTF
// read from the guest image. Warm (file): the profile file is read and mapped,
// nothing else (the in-process registry is cleared). Warm (shared): the profile
// is already loaded in this process, as for the second of many VMs on one
// kernel. The "warm/cold" counter is the ratio of the mean times.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "kernel/kernel.h"
#include "kernel/profile_cache.h"
#include "memory/open_target.h"

namespace {

namespace fs = std::filesystem;

const char* target() {
  return std::getenv("NFM_BENCH_TARGET");
}

std::string bench_dir(const std::string& name) {
  return (fs::temp_directory_path() /
          ("nfm-bench-profile-" + std::to_string(getpid()) + "-" + name))
      .string();
}

double attach_seconds(const nfm::ProfileOptions& options, benchmark::State& state) {
  auto memory = nfm::open_target(target());
  if (!memory) {
    state.SkipWithError(memory.error().message.c_str());
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto k = nfm::Kernel::attach(std::move(memory).value(), options);
  const auto t1 = std::chrono::steady_clock::now();
  if (!k) state.SkipWithError(k.error().message.c_str());
  benchmark::DoNotOptimize(k);
  return std::chrono::duration<double>(t1 - t0).count();
}

double g_cold = 0;  // mean seconds of BM_AttachCold, for the ratio

void BM_AttachCold(benchmark::State& state) {
  if (!target()) {
    state.SkipWithError("set NFM_BENCH_TARGET to a dump");
    return;
  }
  double total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string dir = bench_dir("cold");
    fs::remove_all(dir);
    nfm::clear_profile_registry();
    nfm::ProfileOptions options;
    options.cache_dir = dir;
    state.ResumeTiming();
    total += attach_seconds(options, state);
  }
  fs::remove_all(bench_dir("cold"));
  g_cold = total / static_cast<double>(state.iterations());
}
BENCHMARK(BM_AttachCold)->Unit(benchmark::kMillisecond)->Iterations(5);

void warm(benchmark::State& state, bool shared) {
  if (!target()) {
    state.SkipWithError("set NFM_BENCH_TARGET to a dump");
    return;
  }
  const std::string dir = bench_dir("warm");
  nfm::ProfileOptions options;
  options.cache_dir = dir;
  nfm::clear_profile_registry();
  attach_seconds(options, state);  // builds and saves the profile
  double total = 0;
  for (auto _ : state) {
    if (!shared) nfm::clear_profile_registry();
    total += attach_seconds(options, state);
  }
  const double mean = total / static_cast<double>(state.iterations());
  if (g_cold > 0 && mean > 0) state.counters["cold/warm"] = g_cold / mean;
  fs::remove_all(dir);
  nfm::clear_profile_registry();
}

void BM_AttachWarmFile(benchmark::State& state) {
  warm(state, false);
}
BENCHMARK(BM_AttachWarmFile)->Unit(benchmark::kMillisecond)->Iterations(10);

void BM_AttachWarmShared(benchmark::State& state) {
  warm(state, true);
}
BENCHMARK(BM_AttachWarmShared)->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace
BENCHMARK_MAIN();
