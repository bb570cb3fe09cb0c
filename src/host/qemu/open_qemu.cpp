#include "host/qemu/open_qemu.h"

#include <fmt/core.h>

#include "host/qemu/processes.h"
#include "host/qemu/ram_layout.h"

namespace nfm {

Result<std::unique_ptr<QemuRam>> open_qemu_process(pid_t pid, const QemuOpenOptions& options) {
  NFM_ASSIGN(const QemuProcessInfo process, read_qemu_process(pid));
  if (!process.cmdline) return make_error(Errc::bad_format, process.cmdline_error);
  // /proc/PID/maps needs the same ptrace access as reading memory.
  NFM_ASSIGN(const auto maps, read_proc_maps(pid));
  NFM_ASSIGN(RamLayout layout,
             qemu_ram_layout(*process.cmdline, maps, fmt::format("/proc/{}", pid)));
  return QemuRam::open(pid, process.name, std::move(layout), options.access);
}

}  // namespace nfm
