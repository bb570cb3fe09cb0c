// TARGET strings, as every command takes them: "qemu:PID", "qemu:NAME"
// (QEMU's -name), or the path of a memory image (format detected from its bytes).
#pragma once

#include <string>

#include "memory/dump_file.h"
#include "memory/physical_memory.h"
#include "memory/qemu_process.h"
#include "util/result.h"

namespace nfm {

struct TargetOptions {
  QemuAccess access = QemuAccess::automatic;  // live targets
  ImageOptions image;                         // memory images
};

Result<PhysicalMemoryPtr> open_target(const std::string& target, const TargetOptions& options = {});

}  // namespace nfm
