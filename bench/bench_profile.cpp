// Start-up cost with and without the compiled-profile cache, on an ELF dump of the
// standard lab guest (booted here, dumped, then stopped), or on NFM_BENCH_TARGET:
//
//   build/bench/bench_profile                          boots 6.1-cloud and dumps it
//   NFM_BENCH_TARGET=DUMP build/bench/bench_profile    any dump
//
// attach/cold: a fresh cache directory every iteration, so kallsyms are decoded and
// BTF read from the guest image. attach/warm_file: the profile file is mapped and
// used in place (the in-process registry is cleared). attach/warm_shared: the profile
// is already loaded in this process, as for the second of many VMs on one kernel.
// startup/ps_json/elf/{cold,warm}: the whole `nfm ps --json DUMP` process, as a user
// runs it. "cold/warm" counters are the ratios of the mean times in this run.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "guest.h"
#include "kernel/kernel.h"
#include "host/target.h"
#include "kernel/profile/profile_cache.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;

std::string g_dump;
double g_attach_cold = 0, g_startup_cold = 0;  // mean seconds, for the ratios

std::string bench_dir(const std::string& name) {
  return (fs::temp_directory_path() /
          ("nfm-bench-profile-" + std::to_string(getpid()) + "-" + name))
      .string();
}

double attach_seconds(const nfm::ProfileOptions& options, benchmark::State& state) {
  auto memory = nfm::open_target(g_dump);
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

void BM_AttachCold(benchmark::State& state) {
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
  g_attach_cold = total / static_cast<double>(state.iterations());
}

void attach_warm(benchmark::State& state, bool shared) {
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
  if (g_attach_cold > 0 && mean > 0) state.counters["cold/warm"] = g_attach_cold / mean;
  fs::remove_all(dir);
  nfm::clear_profile_registry();
}

// Runs `nfm ps --json DUMP` with its output discarded; returns its wall time.
double run_nfm_ps(const std::string& cache_dir, benchmark::State& state) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("NFM_PROFILE_CACHE_DIR=", 0) != 0) env_strings.emplace_back(*e);
  env_strings.push_back("NFM_PROFILE_CACHE_DIR=" + cache_dir);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string binary = NFM_BINARY, ps = "ps", json = "--json", dump = g_dump;
  char* argv[] = {binary.data(), ps.data(), json.data(), dump.data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, envp.data());
  int status = 0;
  if (rc == 0) waitpid(pid, &status, 0);
  const auto t1 = std::chrono::steady_clock::now();
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    state.SkipWithError("nfm ps --json failed");
  return std::chrono::duration<double>(t1 - t0).count();
}

void BM_StartupCold(benchmark::State& state) {
  double total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string dir = bench_dir("startup-cold");
    fs::remove_all(dir);
    state.ResumeTiming();
    total += run_nfm_ps(dir, state);
  }
  fs::remove_all(bench_dir("startup-cold"));
  g_startup_cold = total / static_cast<double>(state.iterations());
}

void BM_StartupWarm(benchmark::State& state) {
  const std::string dir = bench_dir("startup-warm");
  run_nfm_ps(dir, state);  // builds and saves the profile
  double total = 0;
  for (auto _ : state) total += run_nfm_ps(dir, state);
  const double mean = total / static_cast<double>(state.iterations());
  if (g_startup_cold > 0 && mean > 0) state.counters["cold/warm"] = g_startup_cold / mean;
  fs::remove_all(dir);
}

int fail(const std::string& message) {
  std::fprintf(stderr, "bench_profile: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::string scratch;
  if (const char* t = std::getenv("NFM_BENCH_TARGET")) {
    g_dump = t;
  } else {
    auto g = nfm::lab::Guest::boot({.kernel = "6.1-cloud",
                                    .ram_mib = 512,
                                    .name = "nfm-bench-profile",
                                    .append = "nfm.burn=0 nfm.snapshot=0"});
    if (!g) return fail(g.error().to_string());
    scratch = bench_dir("dump");
    fs::create_directories(scratch);
    g_dump = scratch + "/guest.elf";
    if (auto r = (*g)->dump_elf(g_dump); !r) return fail(r.error().to_string());
    // The guest is not needed any more: stop it so it does not compete for the CPU.
  }
  benchmark::RegisterBenchmark("attach/cold", BM_AttachCold)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);
  benchmark::RegisterBenchmark("attach/warm_file", [](benchmark::State& s) {
    attach_warm(s, false);
  })->Unit(benchmark::kMillisecond)->Iterations(20);
  benchmark::RegisterBenchmark("attach/warm_shared", [](benchmark::State& s) {
    attach_warm(s, true);
  })->Unit(benchmark::kMillisecond)->Iterations(20);
  benchmark::RegisterBenchmark("startup/ps_json/elf/cold", BM_StartupCold)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);
  benchmark::RegisterBenchmark("startup/ps_json/elf/warm", BM_StartupWarm)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(20);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!scratch.empty()) fs::remove_all(scratch);
  return 0;
}
