#include "memory/open_target.h"

#include <sys/stat.h>

#include <charconv>

namespace nfm {

Result<PhysicalMemoryPtr> open_target(const std::string& target, const TargetOptions& options) {
  if (target.empty()) return make_error(Errc::invalid_argument, "empty target");
  if (target.rfind("qemu:", 0) == 0) {
    const std::string what = target.substr(5);
    if (what.empty())
      return make_error(Errc::invalid_argument, "target \"qemu:\" needs a PID or a VM name");
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(what.data(), what.data() + what.size(), pid);
    if (ec != std::errc() || end != what.data() + what.size()) {
      NFM_ASSIGN(pid, find_qemu_by_name(what));
    }
    QemuOpenOptions qemu_options;
    qemu_options.access = options.access;
    NFM_ASSIGN(auto process, open_qemu_process(pid, qemu_options));
    return PhysicalMemoryPtr(std::move(process));
  }
  struct stat st {};
  if (stat(target.c_str(), &st) != 0)
    return make_error(
        Errc::not_found,
        "target \"" + target + "\" is neither qemu:PID, qemu:NAME nor an existing file");
  return open_memory_image(target, options.image);
}

}  // namespace nfm
