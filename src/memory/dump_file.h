// Guest memory from a file: a QEMU ELF core (`dump-guest-memory`), a kdump-
// compressed dump (`dump-guest-memory -f kdump-*`), a QEMU migration stream
// (`migrate "exec:cat > FILE"`), a LiME image, or a raw image (`pmemsave`,
// /dev/shm RAM file). The format is detected from the file's bytes, never its
// name. The file is mmap'ed read-only, so large sparse images cost no memory:
// plain runs of pages are read in place (view() is zero-copy), and kdump and
// migration pages are found through an index built when the file is opened.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "memory/mapped_file.h"
#include "memory/page_store.h"
#include "memory/physical_memory.h"

namespace nfm {

enum class ImageFormat { raw, elf, lime, kdump, migration };
const char* image_format_name(ImageFormat f);

// How a raw image's file offsets map to guest-physical addresses.
enum class RawLayout {
  offset_is_pa,  // file offset == physical address (pmemsave of [0, end), sparse files)
  dense,         // low RAM then high RAM back to back: [0, below_4g) then [4 GiB, ...)
};

struct ImageOptions {
  RawLayout raw_layout = RawLayout::offset_is_pa;
  // For RawLayout::dense: how much RAM sits below 4 GiB (see qemu_ram_split()).
  uint64_t below_4g = 3ull << 30;
};

class MemoryImage : public PhysicalMemory {
 public:
  struct Segment {
    PhysRange range;
    uint64_t file_offset = 0;
  };

  const std::vector<PhysRange>& ranges() const override { return ranges_; }
  Result<void> read(uint64_t pa, void* dst, size_t len) override;
  const uint8_t* view(uint64_t pa, size_t len) const override;
  Result<void> check() const override { return file_.check(); }
  std::string describe() const override;

  ImageFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  const std::vector<Segment>& segments() const { return segments_; }
  // ELF PT_NOTE contents (QEMU writes per-CPU NT_PRSTATUS, QEMU CPU state and,
  // if the guest registered it, VMCOREINFO); empty for other formats.
  std::span<const uint8_t> notes() const { return notes_; }
  // The kernel's VMCOREINFO text when the image carries it (an ELF note named
  // VMCOREINFO, a kdump sub-header's), else empty: locate prefers it to a scan.
  const std::string& vmcoreinfo() const { return vmcoreinfo_; }
  // The file as it is now (device, inode, size, modification time): what an
  // earlier process found in it still holds while this is unchanged.
  std::string identity() const { return file_.identity(); }

 private:
  friend Result<std::unique_ptr<MemoryImage>> load_memory_image(const std::string&,
                                                                const ImageOptions&);
  const Segment* find(uint64_t pa) const;

  std::string path_;
  ImageFormat format_ = ImageFormat::raw;
  MappedFile file_;
  std::vector<Segment> segments_;  // sorted by pa, non-overlapping
  std::vector<PhysRange> ranges_;
  std::span<const uint8_t> notes_;
  std::string vmcoreinfo_;
  std::unique_ptr<PageStore> pages_;  // kdump, migration: page by page (segments_ empty)
  std::string detail_;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(kImagePageSize);
};

// Opens and validates a memory image; Errc::bad_format with a one-line reason
// for truncated or unrecognized files.
Result<std::unique_ptr<MemoryImage>> load_memory_image(const std::string& path,
                                                       const ImageOptions& options = {});
Result<PhysicalMemoryPtr> open_memory_image(const std::string& path,
                                            const ImageOptions& options = {});

}  // namespace nfm
