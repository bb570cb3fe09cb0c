#include "memory/dump_file.h"

#include <elf.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "memory/kdump_file.h"
#include "memory/migration_stream.h"

namespace nfm {

namespace {

constexpr uint64_t kFourGiB = 1ull << 32;
constexpr uint32_t kLimeMagic = 0x4C694D45;  // "EMiL" on disk (little-endian)

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Error bad(const std::string& path, const std::string& why) {
  return make_error(Errc::bad_format, fmt::format("{}: {}", path, why));
}

// QEMU ELF core: PT_LOAD p_paddr is the guest-physical address.
// Addresses from here up are the kernel's half of the x86-64 address space.
constexpr uint64_t kKernelHalf = 0xffff800000000000ull;

Result<void> parse_elf(const std::string& path, const uint8_t* d, uint64_t size,
                       std::vector<MemoryImage::Segment>& segs, std::span<const uint8_t>& notes) {
  if (size < sizeof(Elf64_Ehdr)) return bad(path, "truncated ELF header");
  if (d[EI_CLASS] != ELFCLASS64)
    return bad(path, "ELF is not 64-bit (only x86-64 dumps are supported)");
  if (d[EI_DATA] != ELFDATA2LSB) return bad(path, "ELF is not little-endian");
  const auto eh = load<Elf64_Ehdr>(d);
  if (eh.e_type != ET_CORE)
    return bad(path, fmt::format("ELF type {} is not a core dump (ET_CORE)", eh.e_type));
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return bad(path, "ELF program header size is not 56");
  uint64_t phnum = eh.e_phnum;
  if (phnum == PN_XNUM) {
    // Too many segments for e_phnum: the count is in section header 0's sh_info
    // (QEMU dump.c does this for guests with many RAM blocks).
    if (eh.e_shoff == 0 || eh.e_shoff > size || size - eh.e_shoff < sizeof(Elf64_Shdr)) {
      return bad(path, "ELF uses PN_XNUM but section header 0 is missing");
    }
    phnum = load<Elf64_Shdr>(d + eh.e_shoff).sh_info;
  }
  if (eh.e_phoff > size || phnum > (size - eh.e_phoff) / sizeof(Elf64_Phdr)) {
    return bad(path, "ELF program headers extend past end of file (truncated?)");
  }
  // A kernel's own vmcore (/proc/vmcore, makedumpfile's ELF output) maps the kernel
  // image twice: once by its kernel-virtual address, once inside the RAM segment
  // that holds it, with the same physical addresses. The alias adds nothing.
  std::vector<Elf64_Phdr> aliases;
  for (uint64_t i = 0; i < phnum; ++i) {
    const auto ph = load<Elf64_Phdr>(d + eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE) continue;
    if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset) {
      return bad(path,
                 fmt::format("ELF segment {} (offset 0x{:x}, size 0x{:x}) extends past end of file "
                             "(0x{:x} bytes; truncated dump?)",
                             i, ph.p_offset, ph.p_filesz, size));
    }
    if (ph.p_type == PT_NOTE) {
      if (notes.empty()) notes = {d + ph.p_offset, ph.p_filesz};
      continue;
    }
    if (ph.p_filesz == 0) continue;
    if (ph.p_paddr + ph.p_filesz < ph.p_paddr)
      return bad(path, fmt::format("ELF segment {} wraps around", i));
    if (ph.p_vaddr >= kKernelHalf) {
      aliases.push_back(ph);
      continue;
    }
    segs.push_back({{ph.p_paddr, ph.p_filesz}, ph.p_offset});
  }
  // Kernel-virtual segments inside another segment are dropped; any other is RAM
  // like the rest (QEMU's paging dumps give RAM kernel-virtual addresses too).
  // Largest first, so that of two such segments the one inside the other goes.
  std::sort(aliases.begin(), aliases.end(),
            [](const Elf64_Phdr& a, const Elf64_Phdr& b) { return a.p_filesz > b.p_filesz; });
  for (const Elf64_Phdr& ph : aliases) {
    const PhysRange r{ph.p_paddr, ph.p_filesz};
    const bool inside = std::any_of(segs.begin(), segs.end(), [&](const auto& s) {
      return r.start >= s.range.start && r.end() <= s.range.end();
    });
    if (!inside) segs.push_back({r, ph.p_offset});
  }
  if (segs.empty()) return bad(path, "ELF core has no PT_LOAD segments with data");
  return {};
}

// LiME: repeated {u32 magic, u32 version, u64 start, u64 end (inclusive), u8 reserved[8]} + data.
Result<void> parse_lime(const std::string& path, const uint8_t* d, uint64_t size,
                        std::vector<MemoryImage::Segment>& segs) {
  uint64_t off = 0;
  while (off < size) {
    if (size - off < 32) return bad(path, fmt::format("LiME header at 0x{:x} truncated", off));
    if (load<uint32_t>(d + off) != kLimeMagic)
      return bad(path, fmt::format("LiME header at 0x{:x}: bad magic", off));
    const uint64_t start = load<uint64_t>(d + off + 8), last = load<uint64_t>(d + off + 16);
    if (last < start) return bad(path, fmt::format("LiME header at 0x{:x}: end before start", off));
    const uint64_t len = last - start + 1;
    off += 32;
    if (len > size - off)
      return bad(path, fmt::format("LiME range at 0x{:x} extends past end of file", start));
    segs.push_back({{start, len}, off});
    off += len;
  }
  return {};
}

}  // namespace

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::raw:
      return "raw";
    case ImageFormat::elf:
      return "elf";
    case ImageFormat::lime:
      return "lime";
    case ImageFormat::kdump:
      return "kdump";
    case ImageFormat::migration:
      return "migration";
  }
  return "?";
}

Result<std::unique_ptr<MemoryImage>> load_memory_image(const std::string& path,
                                                       const ImageOptions& options) {
  NFM_ASSIGN(MappedFile file, MappedFile::open(path));
  const uint8_t* d = file.data();
  const uint64_t size = file.size();

  auto img = std::unique_ptr<MemoryImage>(new MemoryImage());
  img->path_ = path;
  auto& segs = img->segments_;
  if (size >= 4 && std::memcmp(d, ELFMAG, SELFMAG) == 0) {
    img->format_ = ImageFormat::elf;
    NFM_TRY(parse_elf(path, d, size, segs, img->notes_));
    img->vmcoreinfo_ = elf_note_desc(img->notes_.data(), img->notes_.size(), "VMCOREINFO");
  } else if (size >= 4 && load<uint32_t>(d) == kLimeMagic) {
    img->format_ = ImageFormat::lime;
    NFM_TRY(parse_lime(path, d, size, segs));
  } else if (looks_like_kdump(d, size) || looks_like_migration_stream(d, size)) {
    const bool kdump = looks_like_kdump(d, size);
    img->format_ = kdump ? ImageFormat::kdump : ImageFormat::migration;
    NFM_ASSIGN(PagedImage paged,
               kdump ? open_kdump(path, d, size) : open_migration_stream(path, d, size));
    img->pages_ = std::move(paged.store);
    img->ranges_ = std::move(paged.ranges);
    img->vmcoreinfo_ = std::move(paged.vmcoreinfo);
    img->detail_ = std::move(paged.detail);
    img->file_ = std::move(file);
    return img;
  } else {
    if (size % 4096 != 0) {
      return bad(
          path,
          fmt::format("not ELF or LiME, and size {} is not a multiple of 4 KiB for a raw image",
                      size));
    }
    img->format_ = ImageFormat::raw;
    if (options.raw_layout == RawLayout::dense && size > options.below_4g) {
      segs.push_back({{0, options.below_4g}, 0});
      segs.push_back({{kFourGiB, size - options.below_4g}, options.below_4g});
    } else {
      segs.push_back({{0, size}, 0});
    }
  }

  std::sort(segs.begin(), segs.end(),
            [](const auto& a, const auto& b) { return a.range.start < b.range.start; });
  for (size_t i = 1; i < segs.size(); ++i) {
    if (segs[i].range.start < segs[i - 1].range.end()) {
      return bad(path, fmt::format("memory ranges overlap at 0x{:x}", segs[i].range.start));
    }
  }
  for (const auto& s : segs) img->ranges_.push_back(s.range);
  img->file_ = std::move(file);
  return img;
}

Result<PhysicalMemoryPtr> open_memory_image(const std::string& path, const ImageOptions& options) {
  NFM_ASSIGN(auto img, load_memory_image(path, options));
  return PhysicalMemoryPtr(std::move(img));
}

const MemoryImage::Segment* MemoryImage::find(uint64_t pa) const {
  // First segment ending beyond pa.
  auto it = std::upper_bound(segments_.begin(), segments_.end(), pa,
                             [](uint64_t a, const Segment& s) { return a < s.range.end(); });
  return it != segments_.end() && it->range.start <= pa ? &*it : nullptr;
}

const uint8_t* MemoryImage::view(uint64_t pa, size_t len) const {
  if (pages_) {
    if (len > kImagePageSize - pa % kImagePageSize) return nullptr;  // one page at most
    const uint8_t* page = pages_->view_page(pa / kImagePageSize);
    return page ? page + pa % kImagePageSize : nullptr;
  }
  const Segment* s = find(pa);
  if (!s || !s->range.contains(pa, len)) return nullptr;
  return file_.data() + s->file_offset + (pa - s->range.start);
}

Result<void> MemoryImage::read(uint64_t pa, void* dst, size_t len) {
  ++stats_.reads;
  auto* out = static_cast<uint8_t*>(dst);
  if (pages_) {
    while (len > 0) {
      const uint64_t in_page = pa % kImagePageSize;
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(len, kImagePageSize - in_page));
      const uint8_t* page = pages_->view_page(pa / kImagePageSize);
      if (!page) {
        auto r = pages_->read_page(pa / kImagePageSize, scratch_.data());
        if (!r) {
          ++stats_.failures;
          Error e = r.error();
          e.address = pa;
          return e;
        }
        page = scratch_.data();
      }
      std::memcpy(out, page + in_page, chunk);
      stats_.bytes += chunk;
      pa += chunk;
      out += chunk;
      len -= chunk;
    }
    return {};
  }
  while (len > 0) {  // a read may span adjacent segments
    const Segment* s = find(pa);
    if (!s) {
      ++stats_.failures;
      return fault_at(pa, "physical address not in " + path_);
    }
    const uint64_t off = pa - s->range.start;
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(len, s->range.size - off));
    std::memcpy(out, file_.data() + s->file_offset + off, chunk);
    stats_.bytes += chunk;
    pa += chunk;
    out += chunk;
    len -= chunk;
  }
  return {};
}

std::string MemoryImage::describe() const {
  uint64_t total = 0;
  for (const auto& r : ranges_) total += r.size;
  return fmt::format("{} ({} image{}{}, mmap, {} MiB in {} ranges)", path_,
                     image_format_name(format_), detail_.empty() ? "" : ": ", detail_, total >> 20,
                     ranges_.size());
}

}  // namespace nfm
