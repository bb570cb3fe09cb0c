// Memory image files (ELF core, kdump in both forms, LiME, QEMU migration stream, raw):
// the bytes become a file, load_memory_image() sniffs and opens it, and a few reads
// go through whatever it indexed. A malformed image must be an error, never a crash.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "memory/dump_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A memfd: a real file (mapped like a dump) that never touches the disk.
  const int fd = memfd_create("nfm-fuzz-image", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  for (auto layout : {nfm::RawLayout::offset_is_pa, nfm::RawLayout::dense}) {
    auto image = nfm::load_memory_image(path, {.raw_layout = layout, .below_4g = 1 << 20});
    if (!image) continue;
    (void)(*image)->describe();
    (void)(*image)->vmcoreinfo().size();
    // The first and last bytes of the first ranges: every index the parser built is used.
    const auto& ranges = (*image)->ranges();
    std::vector<uint8_t> buf(4096);
    for (size_t i = 0; i < std::min<size_t>(ranges.size(), 8); ++i) {
      const nfm::PhysRange& r = ranges[i];
      const size_t len = static_cast<size_t>(std::min<uint64_t>(r.size, buf.size()));
      (void)(*image)->read(r.start, buf.data(), len);
      (void)(*image)->read(r.end() - len, buf.data(), len);
      (void)(*image)->view(r.start, len);
    }
  }
  close(fd);
  return 0;
}
