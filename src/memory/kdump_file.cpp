#include "memory/kdump_file.h"

#include <fmt/format.h>
#include <lzo/lzo1x.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <mutex>

namespace nfm {

namespace {

constexpr uint64_t kFlatHeaderSize = 4096;  // MAX_SIZE_MDF_HEADER
constexpr uint64_t kDiskDumpHeaderSize = 464;
constexpr uint64_t kSubHeaderSize = 104;  // kdump_sub_header, header_version 6
constexpr uint64_t kDescriptorSize = 24;  // page_desc_t
constexpr uint64_t kMaxVmcoreinfo = 1 << 20;

// page_desc_t.flags (makedumpfile diskdump_mod.h)
constexpr uint32_t kZlib = 0x1, kLzo = 0x2, kSnappy = 0x4, kZstd = 0x20;

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint64_t load_be64(const uint8_t* p) {
  return __builtin_bswap64(load<uint64_t>(p));
}

Error bad(const std::string& path, const std::string& why) {
  return make_error(Errc::bad_format, fmt::format("{}: kdump: {}", path, why));
}

// A stretch of the reassembled dump and where its bytes lie in the file.
struct Extent {
  uint64_t logical = 0, size = 0, file = 0;
  uint64_t end() const { return logical + size; }
};

// The dump at its reassembled ("logical") offsets, over the file's bytes.
class LogicalFile {
 public:
  LogicalFile(const uint8_t* data, std::vector<Extent> extents)
      : data_(data), extents_(std::move(extents)) {
    for (const auto& e : extents_) size_ = std::max(size_, e.end());
  }
  uint64_t size() const { return size_; }

  // The bytes in place when one extent holds all of them, else nullptr.
  const uint8_t* at(uint64_t off, uint64_t len) const {
    const Extent* e = find(off);
    if (!e || len > e->end() - off) return nullptr;
    return data_ + e->file + (off - e->logical);
  }
  // Gathers across extents; false if any byte is missing (a hole or past the end).
  bool copy(uint64_t off, void* dst, uint64_t len) const {
    auto* out = static_cast<uint8_t*>(dst);
    while (len > 0) {
      const Extent* e = find(off);
      if (!e) return false;
      const uint64_t n = std::min(len, e->end() - off);
      std::memcpy(out, data_ + e->file + (off - e->logical), n);
      out += n, off += n, len -= n;
    }
    return true;
  }

 private:
  const Extent* find(uint64_t off) const {
    auto it = std::upper_bound(extents_.begin(), extents_.end(), off,
                               [](uint64_t o, const Extent& e) { return o < e.end(); });
    return it != extents_.end() && it->logical <= off ? &*it : nullptr;
  }
  const uint8_t* data_;
  std::vector<Extent> extents_;  // sorted, non-overlapping
  uint64_t size_ = 0;
};

// makedumpfile's flattened format: a 4 KiB header, then {be64 offset, be64 size,
// data} records until offset == size == -1.
Result<std::vector<Extent>> read_flat_records(const std::string& path, const uint8_t* d,
                                              uint64_t size) {
  if (size < kFlatHeaderSize) return bad(path, "flattened header truncated");
  const uint64_t type = load_be64(d + 16), version = load_be64(d + 24);
  if (type != 1 || version != 1)
    return bad(path, fmt::format("flattened header type {} version {} (want 1, 1)", type, version));
  std::vector<Extent> out;
  uint64_t pos = kFlatHeaderSize;
  for (;;) {
    if (size - pos < 16)
      return bad(path, fmt::format("flattened stream ends at 0x{:x} without its end marker "
                                   "(truncated dump?)",
                                   size));
    const auto off = static_cast<int64_t>(load_be64(d + pos));
    const auto len = static_cast<int64_t>(load_be64(d + pos + 8));
    if (off == -1 && len == -1) break;
    if (off < 0 || len < 0)
      return bad(path,
                 fmt::format("flattened record at 0x{:x} has offset {} size {}", pos, off, len));
    pos += 16;
    if (static_cast<uint64_t>(len) > size - pos)
      return bad(path, fmt::format("flattened record at 0x{:x} ({} bytes) runs past the end of "
                                   "the file (truncated dump?)",
                                   pos - 16, len));
    if (len > 0) out.push_back({static_cast<uint64_t>(off), static_cast<uint64_t>(len), pos});
    pos += static_cast<uint64_t>(len);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Extent& a, const Extent& b) { return a.logical < b.logical; });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].logical < out[i - 1].end())
      return bad(path, fmt::format("flattened records overlap at offset 0x{:x}", out[i].logical));
  return out;
}

class KdumpPages : public PageStore {
 public:
  KdumpPages(std::string path, LogicalFile file, std::vector<uint8_t> dumped, uint64_t max_pfn,
             uint64_t desc_off)
      : path_(std::move(path)),
        file_(std::move(file)),
        dumped_(std::move(dumped)),
        max_pfn_(max_pfn),
        desc_off_(desc_off) {
    // rank_[w]: dumped pages before word w of the bitmap (descriptors are in pfn order).
    const uint64_t words = (max_pfn_ + 63) / 64;
    rank_.resize(words + 1);
    for (uint64_t w = 0; w < words; ++w) rank_[w + 1] = rank_[w] + std::popcount(word(w));
    for (auto& slot : cache_) slot.pfn = UINT64_MAX;
  }
  uint64_t pages() const { return rank_.back(); }

  // Descriptor index of a dumped page, or nullopt.
  std::optional<uint64_t> index(uint64_t pfn) const {
    if (pfn >= max_pfn_) return std::nullopt;
    const uint64_t w = word(pfn / 64), bit = uint64_t{1} << (pfn % 64);
    if (!(w & bit)) return std::nullopt;
    return rank_[pfn / 64] + std::popcount(w & (bit - 1));
  }

  struct Descriptor {
    uint64_t offset = 0;
    uint32_t size = 0, flags = 0;
  };
  Result<Descriptor> descriptor(uint64_t index) const {
    uint8_t raw[kDescriptorSize];
    if (!file_.copy(desc_off_ + index * kDescriptorSize, raw, sizeof raw))
      return bad(path_, fmt::format("page descriptor {} is missing", index));
    Descriptor d{load<uint64_t>(raw), load<uint32_t>(raw + 8), load<uint32_t>(raw + 12)};
    if (d.offset > file_.size() || d.size > file_.size() - d.offset)
      return bad(path_, fmt::format("page descriptor {} points past the end of the dump "
                                    "(offset 0x{:x}, {} bytes; truncated?)",
                                    index, d.offset, d.size));
    if (d.size == 0 || d.size > kImagePageSize)
      return bad(path_, fmt::format("page descriptor {} has size {}", index, d.size));
    if (d.flags & ~(kZlib | kLzo | kSnappy | kZstd))
      return bad(path_, fmt::format("page descriptor {} has unknown flags 0x{:x}", index, d.flags));
    if (std::popcount(d.flags) > 1)
      return bad(path_, fmt::format("page descriptor {} claims two compressions (0x{:x})", index,
                                    d.flags));
    if (d.flags == 0 && d.size != kImagePageSize)
      return bad(path_,
                 fmt::format("page descriptor {}: uncompressed page of {} bytes", index, d.size));
    return d;
  }

  Result<void> read_page(uint64_t pfn, uint8_t* out) override {
    std::lock_guard lock(mu_);
    Slot& slot = cache_[pfn % cache_.size()];
    if (slot.pfn == pfn) {
      std::memcpy(out, slot.data.data(), kImagePageSize);
      return {};
    }
    auto i = index(pfn);
    if (!i) return fault_at(pfn * kImagePageSize, "page not in kdump " + path_);
    NFM_ASSIGN(Descriptor d, descriptor(*i));
    std::vector<uint8_t> gathered;
    const uint8_t* src = file_.at(d.offset, d.size);
    if (!src) {
      gathered.resize(d.size);
      if (!file_.copy(d.offset, gathered.data(), d.size))
        return bad(path_, fmt::format("data of page 0x{:x} is missing", pfn));
      src = gathered.data();
    }
    NFM_TRY(decompress(pfn, d, src, slot.data.data()));
    slot.pfn = pfn;
    std::memcpy(out, slot.data.data(), kImagePageSize);
    return {};
  }

  const uint8_t* view_page(uint64_t pfn) const override {
    auto i = index(pfn);
    if (!i) return nullptr;
    auto d = descriptor(*i);
    if (!d || d->flags != 0) return nullptr;
    return file_.at(d->offset, kImagePageSize);
  }

  std::vector<uint8_t> dumped_bits() const { return dumped_; }

 private:
  uint64_t word(uint64_t w) const {
    uint64_t v = 0;
    const uint64_t from = w * 8;
    std::memcpy(&v, dumped_.data() + from, std::min<uint64_t>(8, dumped_.size() - from));
    // Bits past max_pfn do not count.
    const uint64_t last = max_pfn_ - w * 64;
    if (last < 64) v &= (uint64_t{1} << last) - 1;
    return v;
  }

  Result<void> decompress(uint64_t pfn, const Descriptor& d, const uint8_t* src, uint8_t* out) {
    size_t got = 0;
    const char* how = "stored";
    switch (d.flags) {
      case 0:
        std::memcpy(out, src, kImagePageSize);
        got = kImagePageSize;
        break;
      case kZlib: {
        how = "zlib";
        uLongf n = kImagePageSize;
        if (uncompress(out, &n, src, d.size) == Z_OK) got = n;
        break;
      }
      case kLzo: {
        how = "lzo";
        lzo_uint n = kImagePageSize;
        if (lzo1x_decompress_safe(src, d.size, out, &n, nullptr) == LZO_E_OK) got = n;
        break;
      }
      case kSnappy: {
        how = "snappy";
        size_t n = 0;
        if (snappy_uncompressed_length(reinterpret_cast<const char*>(src), d.size, &n) ==
                SNAPPY_OK &&
            n == kImagePageSize &&
            snappy_uncompress(reinterpret_cast<const char*>(src), d.size,
                              reinterpret_cast<char*>(out), &n) == SNAPPY_OK)
          got = n;
        break;
      }
      case kZstd: {
        how = "zstd";
        const size_t n = ZSTD_decompress(out, kImagePageSize, src, d.size);
        if (!ZSTD_isError(n)) got = n;
        break;
      }
    }
    if (got != kImagePageSize)
      return bad(path_, fmt::format("page 0x{:x} ({} bytes, {}) does not decompress to one page",
                                    pfn, d.size, how));
    return {};
  }

  struct Slot {
    uint64_t pfn = UINT64_MAX;
    std::array<uint8_t, kImagePageSize> data{};
  };

  std::string path_;
  LogicalFile file_;
  std::vector<uint8_t> dumped_;  // the second bitmap: pages with a descriptor
  uint64_t max_pfn_;
  uint64_t desc_off_;
  std::vector<uint64_t> rank_;
  std::mutex mu_;
  std::array<Slot, 64> cache_;  // direct-mapped by pfn: page-table walks revisit pages
};

const char* compression_name(uint32_t flags) {
  if (flags & kZlib) return "zlib";
  if (flags & kLzo) return "lzo";
  if (flags & kSnappy) return "snappy";
  if (flags & kZstd) return "zstd";
  return "uncompressed";
}

}  // namespace

bool looks_like_kdump(const uint8_t* d, uint64_t size) {
  if (size >= 8 && std::memcmp(d, "KDUMP   ", 8) == 0) return true;
  return size >= 16 && std::memcmp(d, "makedumpfile\0\0\0\0", 16) == 0;
}

Result<PagedImage> open_kdump(const std::string& path, const uint8_t* d, uint64_t size) {
  static const bool lzo_ready = lzo_init() == LZO_E_OK;
  if (!lzo_ready) return make_error(Errc::io, "lzo_init failed");

  std::vector<Extent> extents;
  const bool flattened = std::memcmp(d, "KDUMP   ", 8) != 0;
  if (flattened) {
    NFM_ASSIGN(extents, read_flat_records(path, d, size));
  } else {
    extents.push_back({0, size, 0});
  }
  LogicalFile file(d, std::move(extents));

  uint8_t h[kDiskDumpHeaderSize];
  if (!file.copy(0, h, sizeof h)) return bad(path, "disk_dump_header truncated");
  if (std::memcmp(h, "KDUMP   ", 8) != 0)
    return bad(path, "no \"KDUMP   \" signature in the disk_dump_header");
  const uint32_t version = load<uint32_t>(h + 8);
  const uint32_t block_size = load<uint32_t>(h + 428);
  const uint32_t sub_hdr_blocks = load<uint32_t>(h + 432);
  const uint32_t bitmap_blocks = load<uint32_t>(h + 436);
  uint64_t max_pfn = load<uint32_t>(h + 440);
  if (block_size != kImagePageSize)
    return make_error(
        Errc::unsupported,
        fmt::format("{}: kdump block size {} (only 4 KiB pages are supported)", path, block_size));
  if (version < 1 || version > 100)
    return bad(path, fmt::format("implausible header_version {}", version));

  // kdump_sub_header: later versions append fields; read what this one has.
  uint8_t sub[kSubHeaderSize] = {};
  const uint64_t sub_len = version >= 6 ? 104 : version >= 5 ? 80 : version >= 4 ? 64 : 48;
  if (!file.copy(block_size, sub, sub_len)) return bad(path, "kdump_sub_header truncated");
  if (version >= 6) max_pfn = load<uint64_t>(sub + 96);

  const uint64_t bitmap_off = (1 + uint64_t{sub_hdr_blocks}) * block_size;
  const uint64_t bitmap_len = uint64_t{bitmap_blocks} * block_size;
  if (bitmap_len == 0 || bitmap_off > file.size() || bitmap_len > file.size() - bitmap_off)
    return bad(path, fmt::format("bitmaps ({} blocks at 0x{:x}) lie outside the dump",
                                 bitmap_blocks, bitmap_off));
  // Two bitmaps of equal size: pages that exist, pages that were dumped.
  const uint64_t half = bitmap_len / 2;
  if (max_pfn == 0 || max_pfn > half * 8)
    return bad(path,
               fmt::format("max_mapnr {} does not fit bitmaps of {} bits", max_pfn, half * 8));
  std::vector<uint8_t> dumped(half);
  if (!file.copy(bitmap_off + half, dumped.data(), half))
    return bad(path, "second bitmap is missing (truncated dump?)");

  // VMCOREINFO: sub-header fields (header_version 3+; QEMU points them at the
  // note's text), else a note among the ELF notes (4+).
  std::string vmcoreinfo;
  if (version >= 3) {
    const uint64_t off = load<uint64_t>(sub + 32), len = load<uint64_t>(sub + 40);
    if (off != 0 && len != 0) {
      if (len > kMaxVmcoreinfo) return bad(path, fmt::format("VMCOREINFO of {} bytes", len));
      vmcoreinfo.resize(len);
      if (!file.copy(off, vmcoreinfo.data(), len))
        return bad(path, "VMCOREINFO lies outside the dump");
      vmcoreinfo.resize(strnlen(vmcoreinfo.data(), len));
    }
  }
  if (vmcoreinfo.empty() && version >= 4) {
    const uint64_t off = load<uint64_t>(sub + 48), len = load<uint64_t>(sub + 56);
    if (off != 0 && len != 0 && len <= kMaxVmcoreinfo) {
      std::vector<uint8_t> notes(len);
      if (file.copy(off, notes.data(), len))
        vmcoreinfo = elf_note_desc(notes.data(), len, "VMCOREINFO");
    }
  }

  const uint64_t desc_off = bitmap_off + bitmap_len;
  auto pages =
      std::make_unique<KdumpPages>(path, std::move(file), std::move(dumped), max_pfn, desc_off);
  const uint64_t count = pages->pages();
  if (count == 0) return bad(path, "the bitmap marks no page as dumped");
  // Every descriptor must point inside the dump: a bad bitmap or a cut file shows here.
  uint32_t seen_flags = 0;
  for (uint64_t i = 0; i < count; ++i) {
    auto desc = pages->descriptor(i);
    if (!desc) {
      if (i == 0 || desc.error().message.find("missing") != std::string::npos)
        return bad(path, fmt::format("the bitmap marks {} pages but only {} page descriptors "
                                     "are in the file (bad bitmap or truncated dump)",
                                     count, i));
      return desc.error();
    }
    seen_flags |= desc->flags;
  }

  PagedImage out;
  out.ranges = ranges_from_page_bits(pages->dumped_bits(), max_pfn);
  out.detail =
      fmt::format("{}kdump, {}", flattened ? "flattened " : "", compression_name(seen_flags));
  out.vmcoreinfo = std::move(vmcoreinfo);
  out.store = std::move(pages);
  return out;
}

}  // namespace nfm
