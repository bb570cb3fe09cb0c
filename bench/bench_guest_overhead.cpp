// What monitoring costs the guest: a CPU- and memory-bound loop inside a lab guest
// (the reporter's "perf SECS" command) reports its throughput with nobody reading the
// guest, then while nfm crawls it (full frames through process_vm_readv) at 10 Hz and
// at 100 Hz. Rounds alternate so a drift of the host's load hits every rate alike.
//
//   build/bench/bench_guest_overhead [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "frame/frame_crawler.h"
#include "guest.h"
#include "kernel/kernel.h"
#include "host/target.h"

namespace {

constexpr double kSeconds = 3;  // one measurement inside the guest

std::unique_ptr<nfm::lab::Guest>& guest() {
  static std::unique_ptr<nfm::lab::Guest> g;
  return g;
}

// Asks the guest for one throughput measurement and waits for its answer line.
double guest_ops_per_second(nfm::lab::Guest& g) {
  auto size_of_log = [&] {
    std::ifstream f(g.truth_log(), std::ios::ate | std::ios::binary);
    return static_cast<std::streamoff>(f.tellg());
  };
  const std::streamoff from = size_of_log();
  if (!g.send_command("perf " + std::to_string(kSeconds))) return -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::ifstream f(g.truth_log(), std::ios::binary);
    f.seekg(from);
    std::stringstream rest;
    rest << f.rdbuf();
    const std::string text = rest.str();
    const size_t at = text.find("==NFM== perf ");
    if (at != std::string::npos && text.find('\n', at) != std::string::npos)
      return std::stod(text.substr(at + 13));
  }
  return -1;
}

void BM_guest_throughput(benchmark::State& state) {
  const int hz = static_cast<int>(state.range(0));
  nfm::lab::Guest& g = *guest();
  auto memory = nfm::open_target("qemu:" + std::to_string(g.pid()),
                                 {.access = nfm::QemuAccess::vm_readv});
  if (!memory) return state.SkipWithError(memory.error().message.c_str());
  auto kernel = nfm::Kernel::attach(std::move(*memory));
  if (!kernel) return state.SkipWithError(kernel.error().message.c_str());

  double ops_sum = 0;
  uint64_t crawls = 0;
  for (auto _ : state) {
    std::atomic<bool> stop{false};
    std::thread crawler([&] {
      if (hz == 0) return;
      nfm::FrameCrawler c(**kernel);
      const auto period = std::chrono::microseconds(1'000'000 / hz);
      auto next = std::chrono::steady_clock::now();
      while (!stop) {
        c.crawl();
        ++crawls;
        next += period;
        std::this_thread::sleep_until(next);
      }
    });
    const double ops = guest_ops_per_second(g);
    stop = true;
    crawler.join();
    if (ops <= 0) return state.SkipWithError("the guest did not answer the perf command");
    ops_sum += ops;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["guest_ops_per_s"] = ops_sum / n;
  state.counters["crawls"] = static_cast<double>(crawls) / n;
}
// Each iteration is one in-guest measurement of kSeconds.
BENCHMARK(BM_guest_throughput)
    ->ArgName("crawl_hz")
    ->Arg(0)
    ->Arg(10)
    ->Arg(100)
    ->Arg(0)
    ->Iterations(3)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  auto g = nfm::lab::Guest::boot({.kernel = "6.1-cloud",
                                  .ram_mib = 512,
                                  .name = "nfm-bench-overhead",
                                  .append = "nfm.burn=0 nfm.snapshot=0"});
  if (!g) {
    std::fprintf(stderr, "bench_guest_overhead: %s\n", g.error().to_string().c_str());
    return 1;
  }
  guest() = std::move(*g);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  guest().reset();
  return 0;
}
