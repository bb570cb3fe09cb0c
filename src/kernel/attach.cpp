// Kernel::attach(): the attach procedure. Locate the kernel (KASLR), build its
// address space, load and check its profile (kernel/profile/profile.h); the result
// is the read facade. Every VMCOREINFO copy in memory is only a candidate (a guest
// process can plant one): each is tried until one passes every check.
#include <fmt/format.h>

#include "kernel/kernel.h"
#include "kernel/profile/profile_cache.h"
#include "memory/crawl_cache.h"
#include "memory/dump_file.h"

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
  // A dump file does not change: the page its VMCOREINFO lay in last time is read
  // before RAM is scanned for it, and the hash of its kernel's bytes is not taken
  // again (together most of a warm one-shot command's time).
  std::string image;
  std::optional<ProfileCache::ImageHint> hint;
  const ProfileCache hints(options.cache_dir.empty() ? profile_cache_dir() : options.cache_dir);
  if (const auto* dump = dynamic_cast<const MemoryImage*>(&raw);
      dump && options.use_cache && dump->vmcoreinfo().empty()) {
    image = dump->identity();
    hint = hints.image_hint(image);
  }
  std::vector<std::string> rejected;
  std::optional<Error> first_error;
  std::unique_ptr<Kernel> kernel;
  locate_kernels(
      raw, options.skip_kernels,
      [&](KernelLocation location) {
        auto space = std::make_unique<X86_64AddressSpace>(*memory, location.dtb, location.levels);
        const uint64_t found_at = location.vmcoreinfo ? location.vmcoreinfo->found_at : 0;
        std::optional<uint64_t> known_hash;
        if (hint && found_at == hint->vmcoreinfo_pa && hint->content_hash)
          known_hash = hint->content_hash;
        auto profile = load_profile(options, ProfileTarget{location, *space, known_hash});
        if (!profile) {
          if (location.vmcoreinfo && location.vmcoreinfo->found_at)
            rejected.push_back(fmt::format("VMCOREINFO at 0x{:x}: {}",
                                           location.vmcoreinfo->found_at, profile.error().message));
          if (!first_error) first_error = profile.error();
          return true;  // the next candidate
        }
        // Remembered only when it was the first candidate: then trying it first
        // finds what the scan finds (no rejected copies go unreported).
        const ProfileCache::ImageHint now{found_at, profile->content_hash};
        if (!image.empty() && rejected.empty() && found_at && now != hint)
          hints.remember_image(image, now);
        kernel.reset(new Kernel(nullptr, cache, std::move(space), std::move(location),
                                std::move(profile).value()));
        return false;
      },
      &rejected, /*kallsyms=*/true,
      hint ? std::optional<uint64_t>(hint->vmcoreinfo_pa) : std::nullopt);
  if (!kernel) {
    if (first_error) return *first_error;
    return no_kernel_found(rejected);
  }
  kernel->memory_ = std::move(memory);
  // Candidates that failed while another passed: planted or stale copies, worth a look.
  for (std::string& r : rejected) kernel->identity_.warnings.push_back("rejected " + r);
  return kernel;
}

}  // namespace nfm
