// One attached guest kernel: its memory, where it lies (KASLR), how to
// translate its addresses, its symbols and its types. Everything a feature
// needs to read kernel objects by name.
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
#include "kernel/locate.h"
#include "kernel/symbols.h"
#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

class CrawlCache;

// Where symbols and types come from. Empty = from the guest's own memory.
struct ProfileOptions {
  std::string system_map;  // System.map or /proc/kallsyms text
  std::string btf;         // raw BTF (/sys/kernel/btf/vmlinux) or an ELF with .BTF
  std::string vmlinux;     // vmlinux ELF or a vmlinuz: .BTF + its embedded kallsyms
  std::string kernel_dir;  // a directory holding vmlinuz-* (and maybe System.map-*)
  std::string dwarf;       // a DWARF vmlinux (linux-image-*-dbg): .symtab + DWARF types
  std::string isf;         // a Volatility 3 symbol table (.json or .json.xz)
  // Compiled-profile cache (kernel/profile/profile_cache.h): reuse a profile built by an
  // earlier attach to the same build, and keep the one built now.
  bool use_cache = true;
  std::string cache_dir;  // "" = profile_cache_dir()
  // Kernels to pass over while locating (by KernelLocation::dtb): after a guest reboot
  // the previous kernel's image may still lie intact in RAM next to the new one.
  std::vector<uint64_t> skip_kernels;
};

// Guest-wide facts found while attaching, for frame metadata and `nfm uname`.
struct KernelIdentity {
  std::string release;         // from VMCOREINFO OSRELEASE
  std::string banner;          // linux_banner, without the trailing newline
  std::string build_id;        // VMCOREINFO BUILD-ID, when present
  std::string symbols_source;  // "guest kallsyms", "System.map FILE", ...
  std::string types_source;    // "guest BTF", "BTF FILE", ...
  std::string profile_cache;   // "warm FILE", "cold, saved to FILE", "off", ...
};

class Kernel {
 public:
  // Finds the kernel in `memory` and loads its profile. Validates everything
  // against the guest's own objects; refuses a profile from another build.
  static Result<std::unique_ptr<Kernel>> attach(PhysicalMemoryPtr memory,
                                                const ProfileOptions& options = {});

  PhysicalMemory& memory() { return *memory_; }
  X86_64AddressSpace& space() { return *space_; }
  // The same address space without the per-crawl page cache, for a second look at
  // data that may have changed since this crawl first read it (the printk ring's
  // descriptors after its text). space() itself when nothing is cached.
  AddressSpace& fresh_space();
  const KernelLocation& location() const { return location_; }
  const KernelIdentity& identity() const { return identity_; }
  const SymbolTable& symbols() const { return symbols_; }
  const Types& types() const { return *types_; }

  uint64_t page_offset_base() const { return page_offset_base_; }
  uint64_t vmalloc_base() const { return vmalloc_base_; }
  uint64_t vmemmap_base() const { return vmemmap_base_; }

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
    return va >= page_offset_base_ && va - page_offset_base_ < memory_->end();
  }

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

  // Start of a crawl: drop cached translations and re-read what may change
  // between crawls (the guest runs on under us).
  void begin_crawl();

 private:
  Kernel() = default;
  Result<void> load_symbols(const ProfileOptions& options);
  Result<void> load_types(const ProfileOptions& options);
  Result<void> load_file_profile(const ProfileOptions& options);
  Result<void> check_symbols();
  Result<const std::vector<uint8_t>*> vmlinux_image(const std::string& path);
  Result<bool> attach_warm(const ProfileOptions& options, const std::string& key);
  void store_profile(const ProfileOptions& options, const std::string& key);
  std::string profile_source_key(const ProfileOptions& options) const;
  Result<void> read_layout_bases();
  void read_percpu_offsets();
  Result<void> validate();

  PhysicalMemoryPtr memory_;
  CrawlCache* cache_ = nullptr;  // memory_ itself, when it is a per-crawl cache
  std::vector<ReadOp> prefetch_ops_;
  std::unique_ptr<X86_64AddressSpace> space_;
  std::unique_ptr<X86_64AddressSpace> fresh_space_;  // over cache_->inner(), made on first use
  KernelLocation location_;
  KernelIdentity identity_;
  SymbolTable symbols_;
  std::optional<Types> types_;
  uint64_t page_offset_base_ = 0;
  uint64_t vmalloc_base_ = 0;
  uint64_t vmemmap_base_ = 0;
  std::vector<uint64_t> percpu_offsets_;
  struct ModuleTypes {
    uint64_t data = 0, size = 0;  // where the module's BTF copy was: a reload moves it
    Types types;
  };
  std::map<std::string, ModuleTypes, std::less<>> module_types_;

  // Attach-time scratch: a vmlinuz is decompressed once for symbols and types; a
  // DWARF or ISF profile is read once for both. Released when attach returns.
  struct FileProfile;
  std::string image_path_;
  std::vector<uint8_t> image_;
  std::shared_ptr<FileProfile> file_profile_;
};

}  // namespace nfm
