// What `nfm check` costs on a live lab guest (6.1-cloud, its standard workload): each
// check on its own and all of them, as `nfm crawl` runs them every crawl (the Kernel,
// and so the decompressed kernel image, kept between runs). Baselines in the same run:
// copying the guest memory text_modified compares (its floor), and loading the image
// once (what a one-shot `nfm check --kernel` pays first).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "features/integrity/integrity.h"
#include "guest.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "kernel/kernel_image.h"

namespace {

nfm::Kernel* kernel_ = nullptr;

void BM_check(benchmark::State& state, const std::string& name) {
  nfm::IntegrityOptions options;
  if (name != "all") options.only = {name};
  size_t findings = 0;
  for (auto _ : state) {
    auto report = nfm::run_integrity_checks(*kernel_, options);
    if (!report) {
      state.SkipWithError(report.error().to_string().c_str());
      return;
    }
    for (const auto& c : report->checks)
      if (c.status != "clean") {
        state.SkipWithError((c.name + " is " + c.status + ": " + c.detail).c_str());
        return;
      }
    findings += report->findings.size();
  }
  state.counters["findings"] = static_cast<double>(findings);
}

// The floor of text_modified: copying the bytes it compares out of the guest.
void BM_copy_text(benchmark::State& state) {
  auto image = kernel_->image();
  if (!image) {
    state.SkipWithError(image.error().to_string().c_str());
    return;
  }
  std::vector<uint8_t> buf(size_t{64} * 1024);
  uint64_t bytes = 0;
  for (auto _ : state) {
    kernel_->forget_cached_pages();
    for (const auto* regions : {&(*image)->text, &(*image)->rodata})
      for (const nfm::ImageRegion& r : *regions)
        for (size_t off = 0; off < r.bytes.size(); off += buf.size()) {
          const size_t n = std::min(buf.size(), r.bytes.size() - off);
          if (!kernel_->fresh_space().read(r.va + off, buf.data(), n)) {
            state.SkipWithError("unreadable text");
            return;
          }
          bytes += n;
        }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_load_image(benchmark::State& state) {
  for (auto _ : state) {
    auto image = nfm::load_kernel_image(kernel_->image_file(), kernel_->location().kaslr_offset,
                                        kernel_->symbols(), kernel_->types());
    if (!image) {
      state.SkipWithError(image.error().to_string().c_str());
      return;
    }
    state.counters["patch_sites"] = static_cast<double>(image->sites.all().size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  auto guest = nfm::lab::Guest::boot({.kernel = "6.1-cloud",
                                      .ram_mib = 512,
                                      .backing = nfm::lab::Backing::memfd,
                                      .name = "nfm-bench-check",
                                      .append = "nfm.burn=0 nfm.snapshot=0"});
  if (!guest) {
    std::fprintf(stderr, "bench_check: %s\n", guest.error().to_string().c_str());
    return 1;
  }
  auto memory = nfm::open_target("qemu:" + std::to_string((*guest)->pid()), {});
  nfm::ProfileOptions profile{.kernel_dir = (*guest)->kernel_dir()};
  auto kernel = memory ? nfm::Kernel::attach(std::move(*memory), profile)
                       : nfm::Result<std::unique_ptr<nfm::Kernel>>(memory.error());
  if (!kernel) {
    std::fprintf(stderr, "bench_check: %s\n", kernel.error().to_string().c_str());
    return 1;
  }
  kernel_ = kernel->get();
  if (auto image = kernel_->image(); !image) {  // loaded once, as a crawl keeps it
    std::fprintf(stderr, "bench_check: %s\n", image.error().to_string().c_str());
    return 1;
  }
  benchmark::RegisterBenchmark("check/all/mmap", BM_check, std::string("all"))
      ->Unit(benchmark::kMillisecond);
  for (const nfm::CheckInfo& c : nfm::integrity_checks())
    benchmark::RegisterBenchmark(("check/" + std::string(c.name) + "/mmap").c_str(), BM_check,
                                 std::string(c.name))
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("check/baseline_copy_text/mmap", BM_copy_text)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("check/load_image", BM_load_image)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(3);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
