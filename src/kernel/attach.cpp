// Kernel::attach(): the attach procedure. Locate the kernel (KASLR), build its
// address space, check the page tables against the kernel's own description, load
// and check its profile (kernel/profile/profile.h); the result is the read facade.
#include <fmt/format.h>

#include "kernel/kernel.h"
#include "memory/crawl_cache.h"

namespace nfm {

Result<std::unique_ptr<Kernel>> Kernel::attach(PhysicalMemoryPtr memory,
                                               const ProfileOptions& options) {
  // Sources read by system calls get a per-crawl page cache; mapped ones are
  // already as fast as a cache would be.
  CrawlCache* cache = nullptr;
  const auto& ranges = memory->ranges();
  if (!ranges.empty() && memory->view(ranges.front().start, 1) == nullptr) {
    auto cached = std::make_unique<CrawlCache>(std::move(memory));
    cache = cached.get();
    memory = std::move(cached);
  }
  // Locating probes a few bytes of every page: past the cache, which would copy
  // (and keep resident) whole pages for them.
  PhysicalMemory& raw = cache ? cache->inner() : *memory;
  NFM_ASSIGN(KernelLocation location, locate_kernel(raw, options.skip_kernels));
  auto space = std::make_unique<X86_64AddressSpace>(*memory, location.dtb, location.levels);

  // The page tables and phys_base must agree on where the kernel text is.
  if (auto stext = location.reference_symbol("_stext")) {
    auto pa = space->translate(*stext);
    if (!pa || *pa != location.image_pa(*stext))
      return make_error(
          Errc::mismatch,
          fmt::format("kernel page table at 0x{:x} does not map _stext where phys_base "
                      "says (the kernel's own description is stale or forged)",
                      location.dtb));
  }
  NFM_ASSIGN(LoadedProfile profile, load_profile(options, ProfileTarget{location, *space}));
  return std::unique_ptr<Kernel>(new Kernel(std::move(memory), cache, std::move(space),
                                            std::move(location), std::move(profile)));
}

}  // namespace nfm
