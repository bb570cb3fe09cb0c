// What `nfm scan` costs: YARA with the example rule set (contrib/yara, 57 rules) over
// all resident process memory of a live lab guest (6.1-cloud, anonymous RAM: reads
// through process_vm_readv; and memfd RAM: zero-copy), in MB per second of CPU. The
// baselines, in the same run: the Debian `yara` command on a raw dump of the same
// guest (its own speed on a file, measured as CPU time of the child), and the same
// libyara scanner over that file mapped in this process (YARA alone, no guest walk).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "features/scan/memory_scan.h"
#include "guest.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "memory/mapped_file.h"

namespace {

const std::string kRules = NFM_SOURCE_DIR "/contrib/yara";
std::shared_ptr<const nfm::YaraRules> rules_;

void BM_scan_processes(benchmark::State& state, nfm::Kernel* kernel) {
  auto scanner = nfm::MemoryScanner::create(*kernel);
  if (!scanner) {
    state.SkipWithError(scanner.error().to_string().c_str());
    return;
  }
  nfm::ScanOptions options;
  options.rules = rules_;
  uint64_t bytes = 0, matches = 0;
  for (auto _ : state) {
    auto r = scanner->scan(options);
    if (!r) {
      state.SkipWithError(r.error().to_string().c_str());
      return;
    }
    bytes += r->total.bytes_scanned;
    matches += r->total.matches;
    state.counters["processes"] = static_cast<double>(r->processes.size());
    state.counters["resident_MiB"] = static_cast<double>(r->total.bytes_scanned) / (1 << 20);
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["matches"] = static_cast<double>(matches);
}

// libyara alone over the raw dump, mapped: 16 MiB blocks, as the scanner hands them.
void BM_libyara_raw_file(benchmark::State& state, const std::string& dump) {
  auto file = nfm::MappedFile::open(dump);
  if (!file) {
    state.SkipWithError(file.error().to_string().c_str());
    return;
  }
  nfm::YaraScanner scanner(rules_);
  std::vector<nfm::YaraBlock> blocks;
  constexpr uint64_t kBlock = 16 << 20;
  for (uint64_t at = 0; at < file->size(); at += kBlock)
    blocks.push_back({at, std::min(kBlock, file->size() - at)});
  uint64_t bytes = 0;
  for (auto _ : state) {
    auto r = scanner.scan(blocks, [&](size_t i) { return file->data() + blocks[i].base; });
    if (!r) {
      state.SkipWithError(r.error().to_string().c_str());
      return;
    }
    bytes += file->size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

// The yara command on the raw dump: CPU seconds of the child (user + system), so that
// MB/s per core compares with the others. Manual time: the child's, not ours.
void BM_yara_command_raw_file(benchmark::State& state, const std::string& dump) {
  std::vector<std::string> args{"yara", "--threads=1", "--no-warnings"};
  for (const auto& e : std::filesystem::directory_iterator(kRules))
    if (e.path().extension() == ".yar") args.push_back(e.path());
  args.push_back(dump);
  const uint64_t size = std::filesystem::file_size(dump);
  uint64_t bytes = 0;
  for (auto _ : state) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      freopen("/dev/null", "w", stdout);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    int status = 0;
    rusage usage{};
    wait4(pid, &status, 0, &usage);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("yara failed (is the yara package installed?)");
      return;
    }
    const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    state.SetIterationTime(cpu);
    bytes += size;
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  auto rules = nfm::YaraRules::load(kRules, "");
  if (!rules) {
    std::fprintf(stderr, "bench_scan: %s\n", rules.error().to_string().c_str());
    return 1;
  }
  rules_ = *rules;
  std::vector<std::unique_ptr<nfm::lab::Guest>> guests;
  std::vector<std::unique_ptr<nfm::Kernel>> kernels;
  std::string dump;
  for (auto backing : {nfm::lab::Backing::anonymous, nfm::lab::Backing::memfd}) {
    const std::string kind = nfm::lab::backing_name(backing);
    auto guest = nfm::lab::Guest::boot({.kernel = "6.1-cloud",
                                        .ram_mib = 512,
                                        .backing = backing,
                                        .name = "nfm-bench-scan-" + kind,
                                        .append = "nfm.burn=0 nfm.snapshot=0"});
    if (!guest) {
      std::fprintf(stderr, "bench_scan: %s\n", guest.error().to_string().c_str());
      return 1;
    }
    auto memory = nfm::open_target("qemu:" + std::to_string((*guest)->pid()), {});
    auto kernel = memory ? nfm::Kernel::attach(std::move(*memory), {})
                         : nfm::Result<std::unique_ptr<nfm::Kernel>>(memory.error());
    if (!kernel) {
      std::fprintf(stderr, "bench_scan: %s\n", kernel.error().to_string().c_str());
      return 1;
    }
    if (dump.empty()) {
      dump = (*guest)->run_dir() + "/ram.raw";
      if (auto saved = (*guest)->pmemsave(dump); !saved) {
        std::fprintf(stderr, "bench_scan: %s\n", saved.error().to_string().c_str());
        return 1;
      }
    }
    benchmark::RegisterBenchmark(("scan/processes/" + kind).c_str(), BM_scan_processes,
                                 kernel->get())
        ->Unit(benchmark::kMillisecond);
    kernels.push_back(std::move(*kernel));
    guests.push_back(std::move(*guest));
  }
  benchmark::RegisterBenchmark("scan/baseline_libyara_raw_dump", BM_libyara_raw_file, dump)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("scan/baseline_yara_command_raw_dump", BM_yara_command_raw_file,
                               dump)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
