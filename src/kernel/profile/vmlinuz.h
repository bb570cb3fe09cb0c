// The kernel image a distribution ships (bzImage "vmlinuz") and the vmlinux ELF
// inside it: decompression, a minimal ELF64 view, the .BTF blob and the banner.
//
// Debian's linux-image packages carry no vmlinux and a stub System.map, but the
// vmlinux inside vmlinuz keeps .BTF (struct layouts) and the kallsyms tables, so
// it is enough to build a profile (DESIGN.md §3).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/address_space.h"
#include "util/result.h"

namespace nfm {

enum class Compression { none, gzip, xz, lzma, lz4, zstd, bzip2, lzo };
const char* compression_name(Compression c);

// Recognises a compressed stream by its magic bytes (Compression::none if unknown).
Compression detect_compression(std::span<const uint8_t> data);

// Decompresses one stream of a format the kernel uses for its payload. Trailing
// bytes after the end of the stream (the kernel appends the 4-byte uncompressed
// size) are ignored. `size_hint` preallocates the output.
Result<std::vector<uint8_t>> decompress(std::span<const uint8_t> data, Compression c,
                                        size_t size_hint = 0);

struct BzImageInfo {
  uint16_t boot_protocol = 0;  // setup header "version", e.g. 0x020f
  uint32_t setup_sects = 0;
  uint64_t payload_offset = 0;     // file offset of the compressed vmlinux
  uint64_t payload_length = 0;     // includes the trailing 4-byte size
  uint32_t uncompressed_size = 0;  // those 4 bytes (little-endian)
  Compression compression = Compression::none;
};

// Parses the x86 boot setup header (Documentation/arch/x86/boot.rst): "HdrS" at
// 0x202, protocol >= 2.08 for payload_offset (0x248) / payload_length (0x24c).
Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image);

// vmlinuz -> vmlinux ELF bytes. An input that already is an ELF is returned as is.
Result<std::vector<uint8_t>> extract_vmlinux(std::span<const uint8_t> image);

// Whole-file helpers.
Result<std::vector<uint8_t>> read_file_bytes(const std::string& path);
Result<std::vector<uint8_t>> extract_vmlinux_file(const std::string& path);

// A bounds-checked view over an ELF64 little-endian image (the bytes must outlive it).
class ElfImage {
 public:
  struct Section {
    std::string name;
    uint32_t type = 0;
    uint64_t flags = 0;
    uint64_t addr = 0;
    uint64_t offset = 0;
    uint64_t size = 0;
  };
  struct Segment {  // PT_LOAD only
    uint64_t vaddr = 0;
    uint64_t paddr = 0;
    uint64_t offset = 0;
    uint64_t filesz = 0;
    uint64_t memsz = 0;
    uint32_t flags = 0;
  };

  static Result<ElfImage> parse(std::span<const uint8_t> bytes);

  std::span<const uint8_t> bytes() const { return bytes_; }
  const std::vector<Section>& sections() const { return sections_; }
  const std::vector<Segment>& load_segments() const { return segments_; }
  const Section* section(std::string_view name) const;
  // File bytes of a section (empty for SHT_NOBITS).
  Result<std::span<const uint8_t>> section_bytes(std::string_view name) const;

 private:
  std::span<const uint8_t> bytes_;
  std::vector<Section> sections_;
  std::vector<Segment> segments_;
};

// The vmlinux image as the kernel sees it before relocation: each PT_LOAD mapped
// at its link-time virtual address (translate() gives its p_paddr). Lets the code
// that reads guest memory (kallsyms, banner) run on a vmlinux file.
class ElfAddressSpace : public AddressSpace {
 public:
  explicit ElfAddressSpace(const ElfImage& elf) : elf_(elf) {}
  Result<void> read(uint64_t va, void* dst, size_t len) override;
  Result<uint64_t> translate(uint64_t va) override;
  // [lowest, highest) virtual address of the kernel-image segments (>= 0xffffffff80000000).
  std::pair<uint64_t, uint64_t> image_range() const;

 private:
  const ElfImage::Segment* segment_of(uint64_t va) const;
  const ElfImage& elf_;
};

// The raw BTF blob of vmlinux (its .BTF section); Errc::not_found when the kernel
// was built without CONFIG_DEBUG_INFO_BTF.
Result<std::span<const uint8_t>> read_vmlinux_btf(const ElfImage& elf);

// "Linux version 6.1.0-56-amd64 (...) #1 SMP ... Debian 6.1.158-1 (2025-...)" from
// .rodata, without the trailing newline: the kernel's own identity string, the
// same bytes as linux_banner in guest memory.
Result<std::string> read_linux_banner(const ElfImage& elf);

// Finds the banner in any byte range: a NUL-terminated "Linux version <digit>...\n".
// 6.1+ images hold two such strings: init/version.c's weak linux_banner, compiled
// once with an empty build number ("... # SMP ..."), which the linker discards in
// favour of init/version-timestamp.c's ("... #1 SMP ..."); the bytes of both stay.
// The stamped one is preferred; a caller scanning in chunks should keep looking
// while `stamped` is false.
struct BannerMatch {
  size_t offset = 0;
  std::string text;      // without the newline
  bool stamped = false;  // has a build number after '#'
};
std::optional<BannerMatch> find_linux_banner(std::span<const uint8_t> bytes);

}  // namespace nfm
