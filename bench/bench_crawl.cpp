// Crawl cost on a real guest, through every memory source.
//
//   build/bench/bench_crawl                     boots a 6.1-cloud lab guest (memfd RAM)
//   NFM_BENCH_TARGET=qemu:PID build/bench/...   uses a running guest instead
//
// One guest serves all live sources: its RAM is a memfd, so `mmap` maps it, and
// process_vm_readv and /proc/PID/mem are forced on the same process; an ELF dump of
// it is the file source. For each source: the basic crawl (every task's pid, ppid,
// comm, state, uid, RSS, CPU times), the full crawl (a whole frame) and each feature
// alone. Counters per crawl: guest bytes read, reads, system calls, page-table walks,
// p50/p99 latency, and the monitor's peak RSS. A memcpy baseline of one crawl's bytes
// runs in the same process so figures can be compared across machines as ratios.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "crawler/vm_set.h"
#include "features/processes/processes.h"
#include "frame/frame_crawler.h"
#include "guest.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "query/query_engine.h"

extern char** environ;

namespace {

struct Source {
  std::string name;  // mmap, vm_readv, proc_mem, elf
  std::unique_ptr<nfm::Kernel> kernel;
};

std::vector<Source>& sources() {
  static std::vector<Source> s;
  return s;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

// The monitor's own memory now (RssAnon): peak RSS also counts guest pages an
// mmap source has touched, which are the guest's RAM, not ours.
double anon_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("RssAnon:", 0) == 0) return std::stod(line.substr(8)) / 1024.0;
  return 0;
}

// Runs `crawl` as the benchmark body and reports per-crawl costs and latency percentiles.
template <typename Crawl>
void measure(benchmark::State& state, nfm::Kernel& kernel, Crawl&& crawl) {
  std::vector<double> latencies;
  latencies.reserve(1 << 16);
  const nfm::MemoryStats m0 = kernel.memory().stats();
  const nfm::PagingStats p0 = kernel.space().stats();
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!crawl()) {
      state.SkipWithError("crawl failed");
      return;
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (latencies.size() < latencies.capacity())
      latencies.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  const nfm::MemoryStats& m = kernel.memory().stats();
  const nfm::PagingStats& p = kernel.space().stats();
  const double n = static_cast<double>(state.iterations());
  state.counters["bytes"] = (m.bytes - m0.bytes) / n;
  state.counters["reads"] = (m.reads - m0.reads) / n;
  state.counters["syscalls"] = (m.syscalls - m0.syscalls) / n;
  state.counters["walks"] = (p.walks - p0.walks) / n;
  state.counters["crawls/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    state.counters["p50_us"] = latencies[latencies.size() / 2];
    state.counters["p99_us"] = latencies[latencies.size() * 99 / 100];
  }
  state.counters["peak_rss_MiB"] = peak_rss_mib();
  state.counters["anon_rss_MiB"] = anon_rss_mib();
}

void register_source(Source& source) {
  nfm::Kernel& k = *source.kernel;
  // Basic crawl: one row per task with the fields `top` needs (pid, ppid, comm,
  // state, uid, RSS, CPU times; no command lines: those are the processes feature's).
  // Real time: a crawl's system calls and copies are what a monitor waits for.
  benchmark::RegisterBenchmark(("basic_crawl/" + source.name).c_str(),
                               [&k](benchmark::State& state) {
                                 auto reader = nfm::ProcessReader::create(k);
                                 if (!reader)
                                   return state.SkipWithError(reader.error().message.c_str());
                                 size_t tasks = 0;
                                 measure(state, k, [&] {
                                   k.begin_crawl();
                                   auto list = reader->list({.cmdline = false});
                                   if (!list) return false;
                                   tasks = list->rows.size();
                                   benchmark::DoNotOptimize(list->rows.data());
                                   return true;
                                 });
                                 state.counters["tasks"] = static_cast<double>(tasks);
                               })
      ->UseRealTime();
  // Full crawl: a whole frame, every feature.
  benchmark::RegisterBenchmark(("full_crawl/" + source.name).c_str(), [&k](
                                                                          benchmark::State& state) {
    nfm::FrameCrawler crawler(k);
    measure(state, k, [&] {
      nfm::Frame f = crawler.crawl();
      benchmark::DoNotOptimize(f.meta.duration_ns);
      return true;
    });
  })->UseRealTime();
  // Each feature alone, to see where a full crawl's time goes.
  for (nfm::Feature feature : nfm::all_features()) {
    const std::string name =
        "feature/" + std::string(nfm::feature_name(feature)) + "/" + source.name;
    benchmark::RegisterBenchmark(name.c_str(), [&k, feature](benchmark::State& state) {
      nfm::FrameCrawler crawler(k);
      measure(state, k, [&] {
        nfm::Frame f = crawler.crawl({.features = {feature}});
        return f.meta.features.at(feature).ok;
      });
    })->UseRealTime();
  }
}

// VmHWM of a running process, in MiB (0 once it is gone).
double high_water_mib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// The monitor as deployed: a whole `nfm crawl` process watching this one VM through
// process_vm_readv, full frames 10 times a second into SQLite for a few seconds.
// Its peak RSS (code, libraries, the mapped profile, crawl cache, frames and the
// store together) is the "one VM" figure. Read from the child's VmHWM while it runs:
// a spawned child's ru_maxrss would count its parent's memory from before the exec.
void BM_daemon_rss(benchmark::State& state, const std::string& target) {
  const std::string db = std::filesystem::temp_directory_path() /
                         ("nfm-bench-daemon-" + std::to_string(getpid()) + ".db");
  std::vector<std::string> args = {NFM_BINARY, "crawl",      target,         "--access",
                                   "vm_readv", "--interval", "100ms",        "--duration",
                                   "5s",       "--emit",     "sqlite:" + db, "--no-libvirt"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  double peak_mib = 0;
  for (auto _ : state) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return state.SkipWithError("cannot start nfm crawl");
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      peak_mib = std::max(peak_mib, high_water_mib(pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return state.SkipWithError("nfm crawl failed");
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  state.counters["peak_rss_MiB"] = peak_mib;
}

// Baseline: copying the bytes of one basic crawl (~200 KiB) inside our own memory.
void BM_baseline_memcpy(benchmark::State& state) {
  std::vector<char> src(200 * 1024, 1), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.counters["copies/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_baseline_memcpy);

// `nfm query`'s push-down case on a warm engine: one VM, one pid. The statement
// crawls the task list and uptime and answers through SQLite's virtual tables. The
// same two crawls without SQL are timed after it: x_crawl_only is the ratio.
void register_query(const std::string& target) {
  benchmark::RegisterBenchmark(
      "query/pushdown/vm_readv",
      [target](benchmark::State& state) {
        nfm::VmSetOptions vms{.targets = {target}, .target = {.access = nfm::QemuAccess::vm_readv}};
        auto source = nfm::query::open_live(vms, {});
        if (!source) return state.SkipWithError(source.error().message.c_str());
        const std::string vm = (*source)->snapshots().at(0).name;
        auto engine = nfm::query::QueryEngine::open(std::move(*source));
        if (!engine) return state.SkipWithError(engine.error().message.c_str());
        const std::string sql = "SELECT * FROM processes WHERE vm = '" + vm + "' AND pid = 1";
        if (!(*engine)->run(sql)) return state.SkipWithError("the first statement failed");
        const auto t0 = std::chrono::steady_clock::now();
        for (auto _ : state) {
          auto r = (*engine)->run(sql);
          if (!r || r->at(0).rows.size() != 1) return state.SkipWithError("no row for pid 1");
        }
        const double statement_ns =
            std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0)
                .count() /
            static_cast<double>(state.iterations());
        // The baseline: a FrameCrawler of its own doing the statement's two crawls.
        auto memory = nfm::open_target(target, {.access = nfm::QemuAccess::vm_readv});
        auto kernel = memory ? nfm::Kernel::attach(std::move(*memory))
                             : nfm::Result<std::unique_ptr<nfm::Kernel>>(memory.error());
        if (!kernel) return state.SkipWithError(kernel.error().message.c_str());
        nfm::FrameCrawler crawler(**kernel);
        const nfm::FrameOptions options{
            .features = {nfm::Feature::named("processes"), nfm::Feature::named("uptime")}};
        benchmark::DoNotOptimize(crawler.crawl(options).meta.duration_ns);
        const int rounds = 200;
        const auto t1 = std::chrono::steady_clock::now();
        for (int i = 0; i < rounds; ++i)
          benchmark::DoNotOptimize(crawler.crawl(options).meta.duration_ns);
        const double crawl_ns =
            std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t1)
                .count() /
            rounds;
        state.counters["crawl_only_ms"] = crawl_ns / 1e6;
        state.counters["x_crawl_only"] = statement_ns / crawl_ns;
      })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

int fail(const std::string& message) {
  std::fprintf(stderr, "bench_crawl: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::unique_ptr<nfm::lab::Guest> guest;
  std::string target;
  std::string dump;
  if (const char* t = std::getenv("NFM_BENCH_TARGET")) {
    target = t;
  } else {
    // The standard workload, burner off: the guest should be quiet while we measure.
    auto g = nfm::lab::Guest::boot({.kernel = "6.1-cloud",
                                    .ram_mib = 512,
                                    .backing = nfm::lab::Backing::memfd,
                                    .name = "nfm-bench",
                                    .append = "nfm.burn=0 nfm.snapshot=0"});
    if (!g) return fail(g.error().to_string());
    guest = std::move(*g);
    target = "qemu:" + std::to_string(guest->pid());
    dump = guest->run_dir() + "/bench.elf";
    if (auto r = guest->dump_elf(dump); !r) return fail(r.error().to_string());
  }

  struct Spec {
    const char* name;
    std::string target;
    nfm::QemuAccess access;
  };
  std::vector<Spec> specs;
  if (target.rfind("qemu:", 0) == 0) {
    specs.push_back({"mmap", target, nfm::QemuAccess::automatic});
    specs.push_back({"vm_readv", target, nfm::QemuAccess::vm_readv});
    specs.push_back({"proc_mem", target, nfm::QemuAccess::proc_mem});
  } else {
    specs.push_back({"file", target, nfm::QemuAccess::automatic});
  }
  if (!dump.empty()) specs.push_back({"elf", dump, nfm::QemuAccess::automatic});

  for (const Spec& spec : specs) {
    auto memory = nfm::open_target(spec.target, {.access = spec.access});
    if (!memory) return fail(spec.target + ": " + memory.error().to_string());
    auto kernel = nfm::Kernel::attach(std::move(*memory));
    if (!kernel) return fail(spec.target + ": " + kernel.error().to_string());
    // "auto" on a guest whose RAM is not a shared file falls back to a syscall path.
    std::string name = spec.name;
    if (name == "mmap" && (*kernel)->memory().view(0x100000, 8) == nullptr)
      name = "auto(" + (*kernel)->memory().describe() + ")";
    sources().push_back({name, std::move(*kernel)});
  }
  for (Source& s : sources()) register_source(s);
  if (target.rfind("qemu:", 0) == 0) register_query(target);
  if (target.rfind("qemu:", 0) == 0)
    benchmark::RegisterBenchmark("daemon/nfm_crawl_1vm/vm_readv", BM_daemon_rss, target)
        ->Iterations(1)
        ->Unit(benchmark::kSecond)
        ->UseRealTime();

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  sources().clear();
  if (!dump.empty()) std::filesystem::remove(dump);
  return 0;
}
