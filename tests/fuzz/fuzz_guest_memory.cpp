// The memory fuzzer: a hostile guest played on the lab's checked-in 6.1 dump. Each
// input is a list of patches laid over the bytes that a clean crawl reads (so the
// mutations land where the walkers look: task lists, fd tables, maple nodes, sockets,
// the printk ring...), then one frame with every feature runs on the patched memory
// under a small budget. Whatever the guest writes must end as rows, row errors or a
// spent budget: never a crash, a sanitizer report, a hang or a memory blow-up.
//
// Input: records of [u32 which read][u16 offset in it][u8 length][length bytes].
// NFM_FUZZ_DUMP names an uncompressed dump to use instead of tests/golden's;
// NFM_FUZZ_VERBOSE prints what each feature did.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "frame/frame_crawler.h"
#include "fuzz_target.h"
#include "golden_dump.h"
#include "kernel/kernel.h"
#include "memory/dump_file.h"
#include "patched_memory.h"

namespace {

struct Guest {
  nfm::testing::PatchedMemory* memory = nullptr;  // owned by kernel
  std::unique_ptr<nfm::Kernel> kernel;
  std::vector<nfm::PhysRange> touched;  // the reads of a clean crawl, distinct
};

std::string dump_to_fuzz() {
  if (const char* p = std::getenv("NFM_FUZZ_DUMP"); p && *p) return p;
  return nfm::testing::golden_dump_path();
}

nfm::FrameOptions options() {
  nfm::FrameOptions o;
  o.processes.threads = true;
  // Small: a patched pointer that makes a walk huge must end in the budget, fast.
  o.budget = {.max_bytes = uint64_t{64} << 20, .max_time = std::chrono::seconds(2)};
  return o;
}

Guest& guest() {
  static Guest g = [] {
    Guest g;
    const std::string dump = dump_to_fuzz();
    auto image = nfm::open_memory_image(dump);
    if (!image) {
      std::fprintf(stderr, "fuzz_guest_memory: no dump (%s)\n", dump.c_str());
      std::abort();
    }
    auto patched = std::make_unique<nfm::testing::PatchedMemory>(std::move(image).value());
    g.memory = patched.get();
    nfm::ProfileOptions profile;
    profile.use_cache = false;
    auto kernel = nfm::Kernel::attach(std::move(patched), profile);
    if (!kernel) {
      std::fprintf(stderr, "fuzz_guest_memory: %s\n", kernel.error().to_string().c_str());
      std::abort();
    }
    g.kernel = std::move(kernel).value();
    g.memory->log_reads(&g.touched);
    nfm::FrameCrawler(*g.kernel).crawl(options());
    g.memory->log_reads(nullptr);
    std::sort(g.touched.begin(), g.touched.end(), [](const auto& a, const auto& b) {
      return a.start != b.start ? a.start < b.start : a.size < b.size;
    });
    g.touched.erase(std::unique(g.touched.begin(), g.touched.end(),
                                [](const auto& a, const auto& b) {
                                  return a.start == b.start && a.size == b.size;
                                }),
                    g.touched.end());
    return g;
  }();
  return g;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  guest();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Guest& g = guest();
  g.memory->clear();
  size_t at = 0;
  while (size - at >= 7 && !g.touched.empty()) {
    uint32_t which;
    uint16_t offset;
    std::memcpy(&which, data + at, 4);
    std::memcpy(&offset, data + at + 4, 2);
    const size_t len = std::min<size_t>(data[at + 6], size - at - 7);
    const nfm::PhysRange& r = g.touched[which % g.touched.size()];
    g.memory->write(r.start + offset % std::max<uint64_t>(r.size, 1), data + at + 7, len);
    at += 7 + len;
  }
  const nfm::Frame frame = nfm::FrameCrawler(*g.kernel).crawl(options());
  // NFM_FUZZ_VERBOSE: what each feature did with this input (for studying a finding).
  if (std::getenv("NFM_FUZZ_VERBOSE")) {
    for (const auto& [feature, status] : frame.meta.features)
      std::fprintf(stderr, "%-14s %8.1f ms  ok %d  walk %s  rows %llu  %s\n",
                   std::string(feature.name()).c_str(), status.duration_ns / 1e6, status.ok,
                   status.walk.c_str(), static_cast<unsigned long long>(status.rows),
                   status.error.c_str());
    std::fprintf(stderr, "budget: %s\n", frame.meta.budget_spent.c_str());
  }
  // The budget must bound the crawl. A frame that ran far past its time budget (with
  // room for a loaded machine) has a loop the budget does not stop: a finding.
  const auto limit = 2 * options().budget.max_time + std::chrono::seconds(2);
  if (std::chrono::nanoseconds(frame.meta.duration_ns) > limit) {
    std::fprintf(stderr, "fuzz_guest_memory: the frame took %.1f s, its budget %s\n",
                 frame.meta.duration_ns / 1e9, frame.meta.budget_spent.c_str());
    std::abort();
  }
  return 0;
}
