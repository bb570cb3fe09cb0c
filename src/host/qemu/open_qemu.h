// Opening a running QEMU's guest RAM: the process (host/qemu/processes.h), its RAM
// layout (host/qemu/ram_layout.h) and the reader (memory/qemu_ram.h), in one call.
#pragma once

#include <sys/types.h>

#include <memory>

#include "memory/qemu_ram.h"
#include "util/result.h"

namespace nfm {

struct QemuOpenOptions {
  QemuAccess access = QemuAccess::automatic;
};

// Opens QEMU process `pid`. Errors: not_found ("no such process", "has exited"),
// invalid_argument ("not a QEMU"), permission (CAP_SYS_PTRACE), not_found (RAM not found).
Result<std::unique_ptr<QemuRam>> open_qemu_process(pid_t pid, const QemuOpenOptions& options = {});

}  // namespace nfm
