#include "host/qemu/open_qemu.h"

#include <fmt/core.h>

#include "host/qemu/processes.h"
#include "host/qemu/ram_layout.h"

namespace nfm {

Result<std::unique_ptr<QemuRam>> open_qemu_process(pid_t pid, const QemuOpenOptions& options) {
  NFM_ASSIGN(const QemuProcessInfo process, read_qemu_process(pid));
  // A QEMU that exited but is not reaped yet (a zombie) has no memory left: its maps
  // read as empty, which would otherwise look like missing ptrace permission.
  if (process.state == 'Z' || process.state == 'X')
    return make_error(Errc::not_found, fmt::format("process {} has exited", pid));
  if (!process.cmdline) return make_error(Errc::bad_format, process.cmdline_error);
  // /proc/PID/maps needs the same ptrace access as reading memory.
  NFM_ASSIGN(const auto maps, read_proc_maps(pid));
  NFM_ASSIGN(RamLayout layout,
             qemu_ram_layout(*process.cmdline, maps, fmt::format("/proc/{}", pid)));
  return QemuRam::open(pid, process.name, std::move(layout), options.access);
}

}  // namespace nfm
