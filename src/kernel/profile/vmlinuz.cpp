#include "kernel/profile/vmlinuz.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

namespace nfm {
namespace {

constexpr size_t kMaxVmlinux = size_t{1} << 30;  // no kernel image is near 1 GiB

uint16_t le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
uint64_t le64(const uint8_t* p) {
  return le32(p) | (uint64_t{le32(p + 4)} << 32);
}

bool starts_with(std::span<const uint8_t> d, std::initializer_list<uint8_t> magic) {
  return d.size() >= magic.size() && std::equal(magic.begin(), magic.end(), d.begin());
}

Error bad(std::string msg) {
  return make_error(Errc::bad_format, std::move(msg));
}

// Grows `out` so that at least `min_free` bytes are free after `used`.
void ensure_room(std::vector<uint8_t>& out, size_t used, size_t min_free) {
  if (out.size() - used < min_free) out.resize(std::max(out.size() * 2, used + min_free));
}

Result<std::vector<uint8_t>> decompress_lzma_family(std::span<const uint8_t> in, bool xz,
                                                    size_t hint) {
  lzma_stream s = LZMA_STREAM_INIT;
  // No LZMA_CONCATENATED: the stream is followed by the kernel's 4 size bytes.
  lzma_ret r = xz ? lzma_stream_decoder(&s, UINT64_MAX, 0) : lzma_alone_decoder(&s, UINT64_MAX);
  if (r != LZMA_OK) return make_error(Errc::io, "liblzma: decoder init failed");
  std::vector<uint8_t> out(std::max<size_t>(hint, 1 << 20));
  s.next_in = in.data();
  s.avail_in = in.size();
  size_t used = 0;
  while (true) {
    ensure_room(out, used, 1 << 20);
    s.next_out = out.data() + used;
    s.avail_out = out.size() - used;
    r = lzma_code(&s, LZMA_FINISH);
    used = out.size() - s.avail_out;
    if (r == LZMA_STREAM_END) break;
    if (r != LZMA_OK || used > kMaxVmlinux) {
      lzma_end(&s);
      return bad(fmt::format("{} stream is corrupt or truncated (liblzma error {}, {} bytes out)",
                             xz ? "xz" : "lzma", static_cast<int>(r), used));
    }
  }
  lzma_end(&s);
  out.resize(used);
  return out;
}

Result<std::vector<uint8_t>> decompress_gzip(std::span<const uint8_t> in, size_t hint) {
  z_stream s{};
  if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK) return make_error(Errc::io, "zlib: init failed");
  std::vector<uint8_t> out(std::max<size_t>(hint, 1 << 20));
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  size_t used = 0;
  while (true) {
    ensure_room(out, used, 1 << 20);
    s.next_out = out.data() + used;
    s.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - used, UINT32_MAX));
    int r = inflate(&s, Z_NO_FLUSH);
    used = s.next_out - out.data();
    if (r == Z_STREAM_END) break;
    if ((r != Z_OK && r != Z_BUF_ERROR) || (r == Z_BUF_ERROR && s.avail_in == 0) ||
        used > kMaxVmlinux) {
      inflateEnd(&s);
      return bad(fmt::format("gzip stream is corrupt or truncated (zlib error {})", r));
    }
  }
  inflateEnd(&s);
  out.resize(used);
  return out;
}

Result<std::vector<uint8_t>> decompress_zstd(std::span<const uint8_t> in, size_t hint) {
  ZSTD_DStream* ds = ZSTD_createDStream();
  if (ds == nullptr) return make_error(Errc::io, "zstd: init failed");
  // The kernel compresses with a large window (--zstd22 / --ultra); allow it.
  ZSTD_DCtx_setParameter(ds, ZSTD_d_windowLogMax, 31);
  std::vector<uint8_t> out(std::max<size_t>(hint, 1 << 20));
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  size_t used = 0;
  while (true) {
    ensure_room(out, used, 1 << 20);
    ZSTD_outBuffer ob{out.data(), out.size(), used};
    size_t r = ZSTD_decompressStream(ds, &ob, &ib);
    used = ob.pos;
    if (ZSTD_isError(r)) {
      ZSTD_freeDStream(ds);
      return bad(fmt::format("zstd stream is corrupt: {}", ZSTD_getErrorName(r)));
    }
    if (r == 0) break;  // frame complete
    if ((ib.pos == ib.size && ob.pos < ob.size) || used > kMaxVmlinux) {
      ZSTD_freeDStream(ds);
      return bad("zstd stream is truncated");
    }
  }
  ZSTD_freeDStream(ds);
  out.resize(used);
  return out;
}

// The kernel uses lz4's *legacy* frame (lz4 -l, scripts/Makefile.lib): magic
// 0x184C2102, then blocks of {le32 compressed size, data}, each expanding to at
// most 8 MiB. Another magic may start a new run (lib/decompress_unlz4.c).
Result<std::vector<uint8_t>> decompress_lz4_legacy(std::span<const uint8_t> in, size_t hint) {
  constexpr uint32_t kMagic = 0x184C2102;
  constexpr size_t kBlock = 8 << 20;
  if (in.size() < 4 || le32(in.data()) != kMagic) return bad("not an lz4 legacy stream");
  std::vector<uint8_t> out(std::max(hint, kBlock));
  size_t used = 0;
  size_t pos = 4;
  while (pos + 4 <= in.size()) {
    uint32_t chunk = le32(in.data() + pos);
    if (chunk == kMagic) {
      pos += 4;
      continue;
    }
    // What follows the last block is the kernel's 4-byte size: a "chunk" that
    // would run past the end of the input.
    if (chunk > static_cast<uint32_t>(LZ4_compressBound(kBlock)) || pos + 4 + chunk > in.size()) {
      if (used == 0) return bad("lz4 stream is truncated");
      break;
    }
    pos += 4;
    ensure_room(out, used, kBlock);
    int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data() + pos),
                                reinterpret_cast<char*>(out.data() + used), static_cast<int>(chunk),
                                static_cast<int>(kBlock));
    if (n < 0) return bad(fmt::format("lz4 block at input offset {} is corrupt", pos));
    used += static_cast<size_t>(n);
    pos += chunk;
    if (used > kMaxVmlinux) return bad("lz4 output too large");
  }
  if (used == 0) return bad("lz4 stream holds no blocks");
  out.resize(used);
  return out;
}

}  // namespace

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::none:
      return "none";
    case Compression::gzip:
      return "gzip";
    case Compression::xz:
      return "xz";
    case Compression::lzma:
      return "lzma";
    case Compression::lz4:
      return "lz4";
    case Compression::zstd:
      return "zstd";
    case Compression::bzip2:
      return "bzip2";
    case Compression::lzo:
      return "lzo";
  }
  return "?";
}

Compression detect_compression(std::span<const uint8_t> d) {
  if (starts_with(d, {0x1f, 0x8b})) return Compression::gzip;
  if (starts_with(d, {0xfd, '7', 'z', 'X', 'Z', 0x00})) return Compression::xz;
  if (starts_with(d, {0x02, 0x21, 0x4c, 0x18})) return Compression::lz4;
  if (starts_with(d, {0x28, 0xb5, 0x2f, 0xfd})) return Compression::zstd;
  if (starts_with(d, {'B', 'Z', 'h'})) return Compression::bzip2;
  if (starts_with(d, {0x89, 'L', 'Z', 'O'})) return Compression::lzo;
  if (starts_with(d, {0x5d, 0x00, 0x00})) return Compression::lzma;
  return Compression::none;
}

Result<std::vector<uint8_t>> decompress(std::span<const uint8_t> data, Compression c,
                                        size_t size_hint) {
  size_hint = std::min(size_hint, kMaxVmlinux);
  switch (c) {
    case Compression::gzip:
      return decompress_gzip(data, size_hint);
    case Compression::xz:
      return decompress_lzma_family(data, true, size_hint);
    case Compression::lzma:
      return decompress_lzma_family(data, false, size_hint);
    case Compression::lz4:
      return decompress_lz4_legacy(data, size_hint);
    case Compression::zstd:
      return decompress_zstd(data, size_hint);
    case Compression::none:
      return bad("unknown compression (no known magic bytes)");
    case Compression::bzip2:
    case Compression::lzo:
      return make_error(Errc::unsupported,
                        fmt::format("{} kernel payloads are not supported", compression_name(c)));
  }
  return bad("unknown compression");
}

Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image) {
  if (image.size() < 0x250) return bad("not a bzImage: file shorter than the setup header");
  if (std::memcmp(image.data() + 0x202, "HdrS", 4) != 0) {
    return bad("not a bzImage: no \"HdrS\" setup header magic at offset 0x202");
  }
  BzImageInfo info;
  info.boot_protocol = le16(image.data() + 0x206);
  if (info.boot_protocol < 0x0208) {
    return bad(fmt::format("bzImage boot protocol {:#x} predates payload_offset (2.08)",
                           info.boot_protocol));
  }
  info.setup_sects = image[0x1f1] == 0 ? 4 : image[0x1f1];  // 0 means 4 (boot.rst)
  uint64_t pm_start = (uint64_t{info.setup_sects} + 1) * 512;
  info.payload_offset = pm_start + le32(image.data() + 0x248);
  info.payload_length = le32(image.data() + 0x24c);
  if (info.payload_length < 8 || info.payload_offset + info.payload_length > image.size()) {
    return bad(fmt::format("bzImage is truncated: payload [{:#x}, +{:#x}) beyond file size {:#x}",
                           info.payload_offset, info.payload_length, image.size()));
  }
  auto payload = image.subspan(info.payload_offset, info.payload_length);
  info.uncompressed_size = le32(payload.data() + payload.size() - 4);
  info.compression = detect_compression(payload);
  return info;
}

Result<std::vector<uint8_t>> extract_vmlinux(std::span<const uint8_t> image) {
  if (starts_with(image, {0x7f, 'E', 'L', 'F'}))
    return std::vector<uint8_t>(image.begin(), image.end());
  NFM_ASSIGN(BzImageInfo info, parse_bzimage(image));
  if (info.compression == Compression::none) {
    auto p = image.subspan(info.payload_offset, 8);
    return bad(fmt::format("bzImage payload has unknown compression (first bytes {:02x})",
                           fmt::join(p, " ")));
  }
  // Drop the 4 trailing size bytes the kernel build appends to every payload.
  auto payload = image.subspan(info.payload_offset, info.payload_length - 4);
  NFM_ASSIGN(std::vector<uint8_t> out,
             decompress(payload, info.compression, info.uncompressed_size));
  if (out.size() != info.uncompressed_size) {
    return bad(fmt::format("{} payload decompressed to {} bytes, the image says {}",
                           compression_name(info.compression), out.size(), info.uncompressed_size));
  }
  if (!starts_with(out, {0x7f, 'E', 'L', 'F'}))
    return bad("decompressed payload is not an ELF file");
  return out;
}

Result<std::vector<uint8_t>> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return make_error(Errc::not_found, fmt::format("cannot open {}", path));
  auto size = static_cast<size_t>(f.tellg());
  std::vector<uint8_t> bytes(size);
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    return make_error(Errc::io, fmt::format("cannot read {}", path));
  }
  return bytes;
}

Result<std::vector<uint8_t>> extract_vmlinux_file(const std::string& path) {
  NFM_ASSIGN(std::vector<uint8_t> image, read_file_bytes(path));
  auto r = extract_vmlinux(image);
  if (!r) return Error{r.error().code, path + ": " + r.error().message, {}};
  return r;
}

// ---- ELF ----

namespace {
// [offset, offset + length) lies within `total` bytes, without the sum wrapping (a
// section of 2^64 - 2 bytes at offset 2 "ends" at 0: found by the dwarf fuzzer).
bool within(uint64_t offset, uint64_t length, uint64_t total) {
  return offset <= total && length <= total - offset;
}
}  // namespace

Result<ElfImage> ElfImage::parse(std::span<const uint8_t> b) {
  constexpr size_t kEhdr = 64, kShdr = 64, kPhdr = 56;
  if (b.size() < kEhdr || !starts_with(b, {0x7f, 'E', 'L', 'F'})) return bad("not an ELF file");
  if (b[4] != 2 || b[5] != 1) return bad("not a little-endian ELF64 file");
  const uint8_t* h = b.data();
  uint64_t phoff = le64(h + 0x20), shoff = le64(h + 0x28);
  uint16_t phentsize = le16(h + 0x36), phnum = le16(h + 0x38);
  uint16_t shentsize = le16(h + 0x3a), shnum = le16(h + 0x3c), shstrndx = le16(h + 0x3e);
  if ((phnum && phentsize < kPhdr) || (shnum && shentsize < kShdr) ||
      !within(phoff, uint64_t{phnum} * phentsize, b.size()) ||
      !within(shoff, uint64_t{shnum} * shentsize, b.size())) {
    return bad("ELF header tables lie outside the file");
  }
  ElfImage elf;
  elf.bytes_ = b;
  for (unsigned i = 0; i < phnum; ++i) {
    const uint8_t* p = h + phoff + uint64_t{i} * phentsize;
    if (le32(p) != 1) continue;  // PT_LOAD
    Segment s{le64(p + 0x10), le64(p + 0x18), le64(p + 0x08),
              le64(p + 0x20), le64(p + 0x28), le32(p + 4)};
    if (!within(s.offset, s.filesz, b.size()))
      return bad("ELF PT_LOAD segment lies outside the file");
    elf.segments_.push_back(s);
  }
  if (shnum == 0) return elf;
  if (shstrndx >= shnum) return bad("ELF section name table index out of range");
  const uint8_t* strsh = h + shoff + uint64_t{shstrndx} * shentsize;
  uint64_t str_off = le64(strsh + 0x18), str_size = le64(strsh + 0x20);
  if (!within(str_off, str_size, b.size()))
    return bad("ELF section name table lies outside the file");
  for (unsigned i = 0; i < shnum; ++i) {
    const uint8_t* s = h + shoff + uint64_t{i} * shentsize;
    Section sec;
    uint32_t name = le32(s);
    sec.type = le32(s + 4);
    sec.flags = le64(s + 8);
    sec.addr = le64(s + 0x10);
    sec.offset = le64(s + 0x18);
    sec.size = le64(s + 0x20);
    if (name < str_size) {
      const char* n = reinterpret_cast<const char*>(h + str_off + name);
      sec.name.assign(n, strnlen(n, str_size - name));
    }
    if (sec.type != 8 /*SHT_NOBITS*/ && !within(sec.offset, sec.size, b.size())) {
      return bad(fmt::format("ELF section {} lies outside the file", sec.name));
    }
    elf.sections_.push_back(std::move(sec));
  }
  return elf;
}

const ElfImage::Section* ElfImage::section(std::string_view name) const {
  for (const auto& s : sections_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Result<std::span<const uint8_t>> ElfImage::section_bytes(std::string_view name) const {
  const Section* s = section(name);
  if (s == nullptr) return make_error(Errc::not_found, fmt::format("ELF has no {} section", name));
  if (s->type == 8) return std::span<const uint8_t>{};
  return bytes_.subspan(s->offset, s->size);
}

const ElfImage::Segment* ElfAddressSpace::segment_of(uint64_t va) const {
  for (const auto& s : elf_.load_segments()) {
    if (va >= s.vaddr && va - s.vaddr < s.memsz) return &s;
  }
  return nullptr;
}

Result<void> ElfAddressSpace::read(uint64_t va, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  while (len > 0) {
    const ElfImage::Segment* s = segment_of(va);
    if (s == nullptr) return fault_at(va, "address not in any PT_LOAD segment of the vmlinux");
    uint64_t off = va - s->vaddr;
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, s->memsz - off));
    size_t from_file =
        off < s->filesz ? static_cast<size_t>(std::min<uint64_t>(n, s->filesz - off)) : 0;
    std::memcpy(out, elf_.bytes().data() + s->offset + off, from_file);
    std::memset(out + from_file, 0, n - from_file);  // .bss beyond p_filesz
    out += n;
    va += n;
    len -= n;
  }
  return {};
}

Result<uint64_t> ElfAddressSpace::translate(uint64_t va) {
  const ElfImage::Segment* s = segment_of(va);
  if (s == nullptr) return fault_at(va, "address not in any PT_LOAD segment of the vmlinux");
  return s->paddr + (va - s->vaddr);
}

std::pair<uint64_t, uint64_t> ElfAddressSpace::image_range() const {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& s : elf_.load_segments()) {
    if (s.vaddr < 0xffffffff80000000ull) continue;  // the per-cpu segment is linked at 0
    lo = std::min(lo, s.vaddr);
    hi = std::max(hi, s.vaddr + s.memsz);
  }
  return lo < hi ? std::pair{lo, hi} : std::pair<uint64_t, uint64_t>{0, 0};
}

Result<std::span<const uint8_t>> read_vmlinux_btf(const ElfImage& elf) {
  auto btf = elf.section_bytes(".BTF");
  if (!btf) {
    return make_error(Errc::not_found,
                      "vmlinux has no .BTF section (kernel built without "
                      "CONFIG_DEBUG_INFO_BTF?)");
  }
  if (btf->size() < 24 || (*btf)[0] != 0x9f || (*btf)[1] != 0xeb) {
    return bad(".BTF section does not start with the BTF magic 0xeb9f");
  }
  return btf;
}

std::optional<BannerMatch> find_linux_banner(std::span<const uint8_t> bytes) {
  static constexpr std::string_view kPrefix = "Linux version ";
  const auto* base = reinterpret_cast<const char*>(bytes.data());
  std::optional<BannerMatch> first;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const void* hit = memmem(base + pos, bytes.size() - pos, kPrefix.data(), kPrefix.size());
    if (hit == nullptr) break;
    size_t start = static_cast<const char*>(hit) - base;
    pos = start + 1;
    size_t after = start + kPrefix.size();
    if (after >= bytes.size() || bytes[after] < '0' || bytes[after] > '9') continue;
    // linux_banner is a C string ending in "\n" (init/version.c).
    const void* nul = memchr(base + after, 0, std::min<size_t>(bytes.size() - after, 1024));
    if (nul == nullptr) continue;
    size_t end = static_cast<const char*>(nul) - base;
    if (end == after || base[end - 1] != '\n') continue;
    BannerMatch m{start, std::string(base + start, end - 1 - start)};
    size_t hash = m.text.find(") #");
    m.stamped = hash != std::string::npos && hash + 3 < m.text.size() && m.text[hash + 3] >= '0' &&
                m.text[hash + 3] <= '9';
    if (m.stamped) return m;
    if (!first) first = std::move(m);
  }
  return first;
}

Result<std::string> read_linux_banner(const ElfImage& elf) {
  NFM_ASSIGN(auto rodata, elf.section_bytes(".rodata"));
  auto m = find_linux_banner(rodata);
  if (!m) return make_error(Errc::not_found, "no \"Linux version ...\\n\" banner in .rodata");
  return m->text;
}

}  // namespace nfm
