// Memory image files (ELF core, kdump in both forms, LiME, QEMU migration stream, raw):
// the bytes become a file, load_memory_image() sniffs and opens it, and a few reads
// go through whatever it indexed. A malformed image must be an error, never a crash.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "input_file.h"
#include "memory/dump_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const InputFile file(data, size);
  if (!file.ok()) return 0;
  const std::string path = file.path();
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
  return 0;
}
