// One attached guest kernel: its memory, where it lies (KASLR), how to
// translate its addresses, its symbols and its types. Everything a feature
// needs to read kernel objects by name. Attaching (locate, translate, load and
// check the profile) is src/kernel/attach.cpp; the profile sources are
// src/kernel/profile/.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/x86_64_paging.h"
#include "kernel/btf_types.h"
#include "kernel/identity.h"
#include "kernel/locate.h"
#include "kernel/profile/profile.h"
#include "kernel/symbols.h"
#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

class CrawlCache;
struct KernelImage;

class Kernel {
 public:
  // Finds the kernel in `memory` and loads its profile. Validates everything
  // against the guest's own objects; refuses a profile from another build.
  // (src/kernel/attach.cpp)
  static Result<std::unique_ptr<Kernel>> attach(PhysicalMemoryPtr memory,
                                                const ProfileOptions& options = {});

  PhysicalMemory& memory() { return *memory_; }
  // The source itself, without the per-crawl page cache: for bulk reads (a scan of
  // process memory) that would only churn the cache. Not charged to budget().
  PhysicalMemory& source_memory();
  X86_64AddressSpace& space() { return *space_; }
  // The same address space without the per-crawl page cache, for a second look at
  // data that may have changed since this crawl first read it (the printk ring's
  // descriptors after its text). space() itself when nothing is cached.
  AddressSpace& fresh_space();
  const KernelLocation& location() const { return location_; }
  const KernelIdentity& identity() const { return identity_; }
  const SymbolTable& symbols() const { return symbols_; }
  const Types& types() const { return types_; }

  uint64_t page_offset_base() const { return regions_.page_offset_base; }
  uint64_t vmalloc_base() const { return regions_.vmalloc_base; }
  uint64_t vmemmap_base() const { return regions_.vmemmap_base; }

  Result<uint64_t> symbol(std::string_view name) const { return symbols_.lookup(name); }

  // Reads through the kernel's address space.
  Result<void> read(uint64_t va, void* dst, size_t len) { return space_->read(va, dst, len); }
  template <typename T>
  Result<T> read_value(uint64_t va) {
    return space_->read_value<T>(va);
  }
  Result<uint64_t> read_pointer(uint64_t va) { return read_value<uint64_t>(va); }
  // A NUL-terminated string of at most `max` bytes (no terminator needed at max).
  Result<std::string> read_string(uint64_t va, size_t max);

  // An address space for user memory of a process whose mm->pgd is `pgd_va`
  // (a direct-map address). Shares this kernel's physical memory.
  Result<std::unique_ptr<X86_64AddressSpace>> user_space(uint64_t pgd_va);

  // Direct-map virtual -> physical, without a walk.
  bool in_direct_map(uint64_t va) const {
    return va >= regions_.page_offset_base && va - regions_.page_offset_base < memory_->end();
  }

  // The kernel image file given with the profile options (--vmlinux, --kernel), or "".
  const std::string& image_file() const { return image_file_; }
  // That image, relocated as this kernel runs, with its self-patching sites
  // (kernel/kernel_image.h): loaded on first use, checked to be this kernel's build.
  // Errc::not_found without an image file.
  Result<std::shared_ptr<const KernelImage>> image();

  // Per-CPU offsets (__per_cpu_offset[cpu]) of the online CPUs: a per-cpu
  // variable's copy for a CPU is at its address + the CPU's offset.
  const std::vector<uint64_t>& percpu_offsets() const { return percpu_offsets_; }

  // The types of a loaded module: its split BTF (CONFIG_DEBUG_INFO_BTF_MODULES)
  // on top of types(), for structs private to a driver. Parsed once per module
  // load and cached (src/kernel/module_btf.cpp).
  Result<Types> module_types(std::string_view module);

  // The reads about to come, when they are known ahead (a range per object: start
  // and length, kernel virtual): a source whose reads are system calls fetches
  // every missing page of them in one batched call now instead of one call per page
  // later. A no-op for zero-copy sources; a range that does not translate is skipped.
  struct Range {
    uint64_t va;
    size_t len;
  };
  void prefetch(std::span<const Range> ranges);
  // Whether prefetch() does anything: callers skip gathering ranges when not.
  bool prefetches() const { return cache_ != nullptr; }

  // What the current crawl may still read (memory/read_budget.h): every read
  // through space(), fresh_space() and user spaces is checked against it. FrameCrawler starts
  // and ends it; outside a crawl nothing is charged.
  ReadBudget& budget() { return budget_; }

  // Start of a crawl: drop cached translations and re-read what may change
  // between crawls (the guest runs on under us).
  void begin_crawl();
  // Drops the crawl's cached pages and translations only: what a feature reads next
  // is the guest's memory as it is now, not as an earlier feature of the crawl saw it
  // (the integrity checks read views twice and compare them).
  void forget_cached_pages();

 private:
  // What attach() found and loaded. `cache`: `memory` itself, when it is a per-crawl
  // page cache; `space` reads through `memory`.
  Kernel(PhysicalMemoryPtr memory, CrawlCache* cache, std::unique_ptr<X86_64AddressSpace> space,
         KernelLocation location, LoadedProfile profile);
  void read_percpu_offsets();

  PhysicalMemoryPtr memory_;
  CrawlCache* cache_ = nullptr;  // memory_ itself, when it is a per-crawl cache
  std::vector<ReadOp> prefetch_ops_;
  std::unique_ptr<X86_64AddressSpace> space_;
  std::unique_ptr<X86_64AddressSpace> fresh_space_;  // over cache_->inner(), made on first use
  KernelLocation location_;
  KernelIdentity identity_;
  SymbolTable symbols_;
  Types types_;
  KernelRegions regions_;
  std::vector<uint64_t> percpu_offsets_;
  std::string image_file_;
  std::shared_ptr<const KernelImage> image_;
  ReadBudget budget_;
  struct ModuleTypes {
    uint64_t data = 0, size = 0;  // where the module's BTF copy was: a reload moves it
    Types types;
  };
  std::map<std::string, ModuleTypes, std::less<>> module_types_;
};

}  // namespace nfm
