#include "kernel/kernel.h"

#include <fmt/core.h>

#include <algorithm>
#include <vector>

#include "kernel/kernel_image.h"
#include "kernel/object.h"
#include "memory/crawl_cache.h"

namespace nfm {

Kernel::Kernel(PhysicalMemoryPtr memory, CrawlCache* cache,
               std::unique_ptr<X86_64AddressSpace> space, KernelLocation location,
               LoadedProfile profile)
    : memory_(std::move(memory)),
      cache_(cache),
      space_(std::move(space)),
      location_(std::move(location)),
      symbols_(std::move(profile.symbols)),
      types_(std::move(profile.types)),
      regions_(profile.regions),
      image_file_(std::move(profile.image)) {
  space_->set_budget(&budget_);
  identity_.release = location_.release;
  identity_.banner = std::move(profile.banner);
  identity_.build_id = location_.build_id;
  identity_.symbols_source = std::move(profile.symbols_source);
  identity_.types_source = std::move(profile.types_source);
  identity_.profile_cache = std::move(profile.cache);
  read_percpu_offsets();
}

Result<std::shared_ptr<const KernelImage>> Kernel::image() {
  if (image_) return image_;
  if (image_file_.empty())
    return make_error(Errc::not_found,
                      "no kernel image to compare with (pass --kernel DIR or --vmlinux FILE)");
  NFM_ASSIGN(KernelImage image,
             load_kernel_image(image_file_, location_.kaslr_offset, symbols_, types_));
  // A profile cache or a System.map can fit where the image does not: the image
  // must be this very build, or every byte of text would differ.
  const bool same = !image.build_id.empty() && !identity_.build_id.empty()
                        ? image.build_id == identity_.build_id
                        : image.banner == identity_.banner;
  if (!same)
    return make_error(
        Errc::mismatch,
        fmt::format("{} is not the guest's kernel: it is \"{}\", the guest runs \"{}\"",
                    image_file_, image.banner, identity_.banner));
  image_ = std::make_shared<const KernelImage>(std::move(image));
  return image_;
}

Result<std::string> Kernel::read_string(uint64_t va, size_t max) {
  return read_c_string(*space_, va, max);
}

Result<std::unique_ptr<X86_64AddressSpace>> Kernel::user_space(uint64_t pgd_va) {
  if (!in_direct_map(pgd_va)) return fault_at(pgd_va, "page table pointer outside the direct map");
  auto space = std::make_unique<X86_64AddressSpace>(*memory_, pgd_va - regions_.page_offset_base,
                                                    location_.levels);
  // The kernel half of every process's tables is the kernel's own; keep the fast path.
  space->set_direct_map(regions_.page_offset_base, memory_->end());
  space->set_budget(&budget_);
  return space;
}

void Kernel::prefetch(std::span<const Range> ranges) {
  if (!cache_) return;
  constexpr uint64_t kPage = 4096;
  std::vector<ReadOp>& ops = prefetch_ops_;
  ops.clear();
  for (const Range& r : ranges) {
    // Page by page: virtually contiguous is not physically contiguous outside the direct map.
    for (uint64_t va = r.va, left = r.len; left > 0;) {
      const uint64_t n = std::min<uint64_t>(left, kPage - va % kPage);
      auto pa = space_->translate(va);
      if (!pa) break;
      ops.push_back({*pa, nullptr, static_cast<size_t>(n)});
      va += n, left -= n;
    }
  }
  cache_->prefetch(ops);
}

PhysicalMemory& Kernel::source_memory() {
  return cache_ ? cache_->inner() : *memory_;
}

AddressSpace& Kernel::fresh_space() {
  if (!cache_) return *space_;
  if (!fresh_space_) {
    fresh_space_ =
        std::make_unique<X86_64AddressSpace>(cache_->inner(), location_.dtb, location_.levels);
    fresh_space_->set_direct_map(regions_.page_offset_base, memory_->end());
    fresh_space_->set_budget(&budget_);
  }
  return *fresh_space_;
}

void Kernel::begin_crawl() {
  if (cache_) cache_->begin_crawl();
  space_->flush();
  if (fresh_space_) fresh_space_->flush();
  read_percpu_offsets();
}

void Kernel::forget_cached_pages() {
  if (cache_) cache_->begin_crawl();
  space_->flush();
  if (fresh_space_) fresh_space_->flush();
}

void Kernel::read_percpu_offsets() {
  // A uniprocessor build has neither symbol: every "per-cpu" variable is plain.
  percpu_offsets_.assign(1, 0);
  auto offsets = symbols_.lookup("__per_cpu_offset");
  auto online = symbols_.lookup("__cpu_online_mask");
  if (!offsets || !online) return;
  std::vector<uint64_t> found;
  constexpr int kMaxCpus = 8192;  // NR_CPUS on Debian's amd64 kernels
  for (int word = 0; word < kMaxCpus / 64; ++word) {
    auto bits = read_value<uint64_t>(*online + uint64_t{8} * word);
    if (!bits) break;
    for (uint64_t b = *bits; b; b &= b - 1) {
      const int cpu = word * 64 + __builtin_ctzll(b);
      auto off = read_value<uint64_t>(*offsets + uint64_t{8} * cpu);
      if (off) found.push_back(*off);
    }
    if (*bits == 0 && !found.empty()) break;  // online CPUs are dense from 0
  }
  if (!found.empty()) percpu_offsets_ = std::move(found);
}

}  // namespace nfm
