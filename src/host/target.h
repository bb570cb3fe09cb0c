// TARGET, as every command takes it: "qemu:PID", "qemu:NAME" (QEMU's -name), or the
// path of a memory image (its format detected from its bytes). Parsed once into a
// Target; a qemu:NAME is resolved to its pid by one /proc scan.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "host/qemu/open_qemu.h"
#include "host/qemu/processes.h"
#include "memory/dump_file.h"
#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

class Target {
 public:
  enum class Kind { qemu_pid, qemu_name, image };

  // Errors (invalid_argument): empty text, "qemu:" without a PID or name, a PID
  // that is not a positive number. A FILE is only checked when opened.
  static Result<Target> parse(std::string_view text);
  // A running QEMU by pid ("qemu:PID").
  static Target qemu(pid_t pid);

  Kind kind() const { return kind_; }
  bool live() const { return kind_ != Kind::image; }
  // The QEMU's pid: as given, or once a qemu:NAME is resolved; 0 before.
  pid_t pid() const { return pid_; }
  const std::string& vm_name() const { return vm_name_; }  // qemu:NAME's NAME
  const std::string& path() const { return path_; }        // a memory image's
  const std::string& text() const { return text_; }        // as the user wrote it

  // qemu:NAME -> the one QEMU of that -name among `processes` (keeps kind and text);
  // other targets are returned as they are. Errors: not_found, mismatch (several).
  Result<Target> resolve(const std::vector<QemuProcessInfo>& processes) const;
  // The same with a fresh /proc scan, only when there is a name to resolve.
  Result<Target> resolve() const;

  bool operator==(const Target&) const = default;

 private:
  Kind kind_ = Kind::image;
  pid_t pid_ = 0;
  std::string vm_name_, path_, text_;
};

struct TargetOptions {
  QemuAccess access = QemuAccess::automatic;  // live targets
  ImageOptions image;                         // memory images
};

// Opens the target's guest-physical memory (resolving a qemu:NAME first if needed).
Result<PhysicalMemoryPtr> open_target(const Target& target, const TargetOptions& options = {});
// Parses `text` as a Target and opens it.
Result<PhysicalMemoryPtr> open_target(const std::string& text, const TargetOptions& options = {});

}  // namespace nfm
