// Crawl cost on a real guest: attach once, then list processes again and again.
//
//   NFM_BENCH_TARGET=qemu:PID|DUMP build/bench/bench_crawl
//
// Without a target only the target-free baseline runs. The baseline (a plain
// memcpy of the bytes one crawl touches) is measured in the same run, so
// results can be read as ratios on any machine.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "features/processes.h"
#include "kernel/kernel.h"
#include "memory/open_target.h"

namespace {

std::unique_ptr<nfm::Kernel>& kernel() {
  static std::unique_ptr<nfm::Kernel> k = [] {
    std::unique_ptr<nfm::Kernel> out;
    const char* target = std::getenv("NFM_BENCH_TARGET");
    if (!target) return out;
    auto memory = nfm::open_target(target);
    if (!memory) return out;
    auto attached = nfm::Kernel::attach(std::move(memory).value());
    if (attached) out = std::move(attached).value();
    return out;
  }();
  return k;
}

void BM_BasicCrawl(benchmark::State& state) {
  auto& k = kernel();
  if (!k) {
    state.SkipWithError("set NFM_BENCH_TARGET to qemu:PID or a dump");
    return;
  }
  auto reader = nfm::ProcessReader::create(*k);
  if (!reader) {
    state.SkipWithError(reader.error().message.c_str());
    return;
  }
  nfm::ProcessOptions options;
  options.threads = state.range(0);
  size_t rows = 0;
  const auto before = k->memory().stats();
  for (auto _ : state) {
    k->begin_crawl();
    auto list = reader->list(options);
    if (!list) {
      state.SkipWithError(list.error().message.c_str());
      return;
    }
    rows = list->rows.size();
    benchmark::DoNotOptimize(list->rows.data());
  }
  const auto after = k->memory().stats();
  const double n = static_cast<double>(state.iterations());
  state.counters["tasks"] = static_cast<double>(rows);
  state.counters["reads/crawl"] = static_cast<double>(after.reads - before.reads) / n;
  state.counters["syscalls/crawl"] = static_cast<double>(after.syscalls - before.syscalls) / n;
  state.counters["bytes/crawl"] = static_cast<double>(after.bytes - before.bytes) / n;
  state.counters["crawls/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BasicCrawl)->Arg(0)->Arg(1)->ArgName("threads");

// Baseline: copying 100 task_structs' worth of bytes (~3 KiB each) from memory.
void BM_BaselineMemcpy(benchmark::State& state) {
  std::vector<char> src(100 * 3072, 1), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * src.size()));
}
BENCHMARK(BM_BaselineMemcpy);

}  // namespace

BENCHMARK_MAIN();
