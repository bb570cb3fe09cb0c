// QEMU migration streams: what `migrate "exec:cat > FILE"` writes (QEMU 7.2's
// savevm format, version 3). Only the "ram" section matters to us: a block list
// (RAM_SAVE_FLAG_MEM_SIZE: idstr + length per RAM block), then page records
// (PAGE: 4 KiB of data, ZERO: a fill byte) spread over the START/PART/END
// sections of iterative migration, a later copy of a page replacing an earlier
// one. Other devices' sections are stepped over by the stream's own framing.
// The guest RAM block is laid out in guest-physical space with the pc/q35 split
// of the machine type the stream's configuration section names.
#pragma once

#include <cstdint>
#include <string>

#include "memory/page_store.h"

namespace nfm {

// "QEVM" (QEMU_VM_FILE_MAGIC) at offset 0.
bool looks_like_migration_stream(const uint8_t* data, uint64_t size);

// `data` (the mmap'ed file) must outlive the returned store.
Result<PagedImage> open_migration_stream(const std::string& path, const uint8_t* data,
                                         uint64_t size);

}  // namespace nfm
