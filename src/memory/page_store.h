// Guest pages that a memory image stores one by one rather than as plain runs:
// compressed (kdump), or scattered through a stream with later copies winning
// (QEMU migration). The image indexes them when opened and fetches each page on
// demand, so opening a many-GiB image costs an index, not its size.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

constexpr uint64_t kImagePageSize = 4096;

class PageStore {
 public:
  virtual ~PageStore() = default;
  // Copies guest page `pfn` (4 KiB) to `out`. Errc::fault if the image does not
  // hold it, Errc::bad_format if its stored bytes are corrupt.
  virtual Result<void> read_page(uint64_t pfn, uint8_t* out) = 0;
  // The page's bytes in place (stored uncompressed), else nullptr.
  virtual const uint8_t* view_page(uint64_t pfn) const = 0;
};

// What a page-indexed format parser hands to MemoryImage.
struct PagedImage {
  std::unique_ptr<PageStore> store;
  std::vector<PhysRange> ranges;  // sorted, non-overlapping, page-aligned
  std::string vmcoreinfo;         // the kernel's VMCOREINFO text when the image carries it
  std::string detail;             // for describe(): "kdump-zlib", "machine pc-i440fx-7.2", ...
};

// Runs of set bits in a page bitmap, as guest-physical ranges (LSB-first bytes).
std::vector<PhysRange> ranges_from_page_bits(const std::vector<uint8_t>& bits, uint64_t max_pfn);

}  // namespace nfm

namespace nfm {

// The descriptor bytes of the first ELF note named `name` (and of type `type`, when
// given) in a note blob (4-byte aligned name and desc), or nullopt. Every size is
// checked against the blob: a note that overruns it ends the walk.
std::optional<std::span<const uint8_t>> find_elf_note(std::span<const uint8_t> notes,
                                                      std::string_view name,
                                                      std::optional<uint32_t> type = {});

// That descriptor as text up to its first NUL (VMCOREINFO), or empty.
std::string elf_note_desc(const uint8_t* notes, uint64_t size, const std::string& name);

}  // namespace nfm
