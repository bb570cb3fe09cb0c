#include "host/target.h"

#include <fmt/core.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>

namespace nfm {

Result<Target> Target::parse(std::string_view text) {
  if (text.empty()) return make_error(Errc::invalid_argument, "empty target");
  Target t;
  t.text_ = std::string(text);
  constexpr std::string_view kQemu = "qemu:";
  if (text.substr(0, kQemu.size()) != kQemu) {
    t.kind_ = Kind::image;
    t.path_ = t.text_;
    return t;
  }
  const std::string_view what = text.substr(kQemu.size());
  if (what.empty())
    return make_error(Errc::invalid_argument, "target \"qemu:\" needs a PID or a VM name");
  // All digits (or a sign and digits): a pid; anything else is a -name.
  const std::string_view digits =
      what.front() == '-' || what.front() == '+' ? what.substr(1) : what;
  const bool numeric = !digits.empty() && std::all_of(digits.begin(), digits.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
  if (!numeric) {
    t.kind_ = Kind::qemu_name;
    t.vm_name_ = std::string(what);
    return t;
  }
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (what.front() == '-' || ec != std::errc() || end != digits.data() + digits.size() || pid <= 0)
    return make_error(Errc::invalid_argument,
                      fmt::format("target \"{}\": the PID must be a positive number", text));
  t.kind_ = Kind::qemu_pid;
  t.pid_ = pid;
  return t;
}

Target Target::qemu(pid_t pid) {
  Target t;
  t.kind_ = Kind::qemu_pid;
  t.pid_ = pid;
  t.text_ = fmt::format("qemu:{}", pid);
  return t;
}

Result<Target> Target::resolve(const std::vector<QemuProcessInfo>& processes) const {
  if (kind_ != Kind::qemu_name || pid_ > 0) return *this;
  Target t = *this;
  NFM_ASSIGN(t.pid_, find_qemu_by_name(vm_name_, processes));
  return t;
}

Result<Target> Target::resolve() const {
  if (kind_ != Kind::qemu_name || pid_ > 0) return *this;
  return resolve(list_qemu_processes());
}

Result<PhysicalMemoryPtr> open_target(const Target& target, const TargetOptions& options) {
  if (target.live()) {
    NFM_ASSIGN(const Target resolved, target.resolve());
    QemuOpenOptions qemu_options;
    qemu_options.access = options.access;
    NFM_ASSIGN(auto process, open_qemu_process(resolved.pid(), qemu_options));
    return PhysicalMemoryPtr(std::move(process));
  }
  struct stat st {};
  if (stat(target.path().c_str(), &st) != 0)
    return make_error(
        Errc::not_found,
        "target \"" + target.path() + "\" is neither qemu:PID, qemu:NAME nor an existing file");
  return open_memory_image(target.path(), options.image);
}

Result<PhysicalMemoryPtr> open_target(const std::string& text, const TargetOptions& options) {
  NFM_ASSIGN(const Target target, Target::parse(text));
  return open_target(target, options);
}

}  // namespace nfm
