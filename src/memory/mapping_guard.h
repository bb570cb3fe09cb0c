// A file mapping whose file shrinks under us (a dump rotated or rewritten, a
// guest's RAM file or memfd truncated when QEMU exits or unplugs memory) raises
// SIGBUS on the next read past the new end, wherever that read is: a page-table
// walk, a memcpy, a decompressor, a library. One such signal would kill the whole
// crawler and every VM it watches.
//
// Guarded mappings are registered here. On SIGBUS inside one, the handler maps
// zero pages over the rest of that mapping (so the faulting read, and every read
// after it, sees zeros instead of dying) and marks the mapping shrunk; the memory
// source then reports an error for that VM only (PhysicalMemory::check()). A
// SIGBUS anywhere else goes to whatever handler was installed before (the default
// kills, as it should: that is a bug, not a guest).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nfm {

class MappingGuard {
 public:
  MappingGuard() = default;
  MappingGuard(const MappingGuard&) = delete;
  MappingGuard& operator=(const MappingGuard&) = delete;
  MappingGuard(MappingGuard&& o) noexcept : slot_(o.slot_) { o.slot_ = -1; }
  MappingGuard& operator=(MappingGuard&& o) noexcept;
  ~MappingGuard() { release(); }

  // Guards [base, base + length) (page-aligned, a MAP_SHARED file mapping).
  // False when every slot is taken (the mapping is then not guarded).
  static bool guard(void* base, size_t length, MappingGuard* out);

  // A read inside the mapping hit the file's end (SIGBUS): its tail now reads as zeros.
  bool shrunk() const;
  // Stop guarding: before the mapping is unmapped.
  void release();

 private:
  int slot_ = -1;
};

}  // namespace nfm
