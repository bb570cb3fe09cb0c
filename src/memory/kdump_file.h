// kdump-compressed dumps: what QEMU's `dump-guest-memory -f kdump-zlib|kdump-lzo|
// kdump-snappy` writes (QEMU 7.2: makedumpfile's *flattened* stream, records of
// {offset, size, data} to be reassembled) and makedumpfile's reassembled files
// ("KDUMP   " at offset 0). Layout (makedumpfile diskdump_mod.h, QEMU dump.h):
//   block 0: disk_dump_header; block 1: kdump_sub_header (+ ELF notes);
//   then two page bitmaps (present, dumped), a page descriptor per dumped page,
//   and the page data, each page stored plain or compressed.
// Pages are decompressed on demand, a few kept in a small cache.
#pragma once

#include <cstdint>
#include <string>

#include "memory/page_store.h"

namespace nfm {

// "makedumpfile" flattened header or "KDUMP   " disk_dump_header at offset 0.
bool looks_like_kdump(const uint8_t* data, uint64_t size);

// `data` (the mmap'ed file) must outlive the returned store.
Result<PagedImage> open_kdump(const std::string& path, const uint8_t* data, uint64_t size);

}  // namespace nfm
