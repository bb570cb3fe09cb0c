#include "crawler/vm_set.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

namespace nfm {

namespace {

using namespace std::chrono_literals;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

std::string human_bytes(uint64_t n) {
  if (n >= (1ull << 30) && n % (1ull << 30) == 0) return fmt::format("{} GiB", n >> 30);
  return fmt::format("{} MiB", n >> 20);
}

}  // namespace

std::chrono::milliseconds next_attach_backoff(std::chrono::milliseconds previous) {
  if (previous < 1s) return 1s;
  return std::min<std::chrono::milliseconds>(previous * 2, 30s);
}

VmSet::VmSet(VmSetOptions options) : options_(std::move(options)), host_(host_name()) {}

std::vector<WatchedVm> VmSet::resolve_targets() {
  std::vector<WatchedVm> out;
  // One /proc scan for every live target: names resolve against it, and it tells
  // each QEMU's name, UUID, start time and RAM.
  std::vector<QemuProcessInfo> processes;
  bool scanned = false;
  for (const std::string& text : options_.targets) {
    WatchedVm vm;
    vm.target = text;
    vm.id.host = host_;
    auto target = Target::parse(text);
    if (!target) {
      vm.key = text;
      vm.id.name = text;
      vm.error = target.error().to_string();
      out.push_back(std::move(vm));
      continue;
    }
    if (!target->live()) {
      vm.live = false;
      vm.resolved = *target;
      vm.id.name = std::filesystem::path(text).filename().string();
      vm.key = text;
      vm.ram = "memory image";
      out.push_back(std::move(vm));
      continue;
    }
    if (!scanned) processes = list_qemu_processes();
    scanned = true;
    auto resolved = target->resolve(processes);
    if (resolved) {
      vm.resolved = *resolved;
    } else {
      vm.resolved = *target;
      vm.error = resolved.error().to_string();
    }
    const pid_t pid = vm.resolved.pid();
    vm.id.pid = pid;
    vm.id.name = fmt::format("pid-{}", pid);
    for (const auto& q : processes) {
      if (q.pid != pid) continue;
      const DiscoveredVm d = describe_qemu(q);
      vm.id.name = d.name;
      vm.id.uuid = d.uuid;
      vm.start_time = d.start_time;
      vm.ram = fmt::format("{} RAM, {}", human_bytes(d.ram_size), d.ram_backend);
    }
    vm.key = fmt::format("{}@{}", text, pid);
    out.push_back(std::move(vm));
  }
  return out;
}

VmSetChanges VmSet::scan() {
  VmSetChanges changes;
  if (discovering()) {
    std::set<std::string> keys;
    for (const DiscoveredVm& d : discover_vms(options_.discovery)) {
      keys.insert(d.key());
      if (members_.count(d.key())) continue;
      WatchedVm vm;
      vm.key = d.key();
      vm.id = {.name = d.name, .uuid = d.uuid, .pid = d.pid, .host = host_};
      vm.target = fmt::format("qemu:{}", d.pid);
      vm.resolved = Target::qemu(d.pid);
      vm.ram = fmt::format("{} RAM, {}{}{}", human_bytes(d.ram_size), d.ram_backend,
                           d.qmp_socket.empty() ? "" : ", QMP " + d.qmp_socket,
                           d.libvirt ? ", libvirt" : "");
      vm.discovered = true;
      vm.start_time = d.start_time;
      members_[vm.key] = vm;
      changes.found.push_back(std::move(vm));
    }
    for (auto it = members_.begin(); it != members_.end();) {
      if (keys.count(it->first)) {
        ++it;
        continue;
      }
      changes.lost.push_back(it->first);
      it = members_.erase(it);
    }
    return changes;
  }
  if (!scanned_) {
    scanned_ = true;
    changes.found = resolve_targets();
    // Live targets are watched for their QEMU exiting; images and failures are not.
    for (const WatchedVm& vm : changes.found)
      if (vm.live && vm.error.empty()) members_[vm.key] = vm;
    return changes;
  }
  // Explicit live targets: lost when their QEMU exits (or the pid is reused).
  if (members_.empty()) return changes;
  std::map<pid_t, uint64_t> running;
  for (const auto& p : list_qemu_processes()) running[p.pid] = p.start_time;
  for (auto it = members_.begin(); it != members_.end();) {
    const WatchedVm& vm = it->second;
    auto run = running.find(static_cast<pid_t>(vm.id.pid));
    if (run != running.end() && run->second == vm.start_time) {
      ++it;
      continue;
    }
    changes.lost.push_back(it->first);
    it = members_.erase(it);
  }
  return changes;
}

void VmSet::forget(const std::string& key) {
  members_.erase(key);
}

Result<PhysicalMemoryPtr> VmSet::open(const WatchedVm& vm) const {
  if (!vm.error.empty()) return make_error(Errc::invalid_argument, vm.error);
  if (options_.open_memory) return options_.open_memory(vm);
  return open_target(vm.resolved, options_.target);
}

Result<std::unique_ptr<Kernel>> VmSet::attach(PhysicalMemoryPtr memory,
                                              const std::vector<uint64_t>& skip) const {
  ProfileOptions profile = options_.profile;
  profile.skip_kernels = skip;
  return Kernel::attach(std::move(memory), profile);
}

Result<std::unique_ptr<Kernel>> VmSet::attach(const WatchedVm& vm,
                                              const std::vector<uint64_t>& skip) const {
  NFM_ASSIGN(PhysicalMemoryPtr memory, open(vm));
  return attach(std::move(memory), skip);
}

std::string first_unresolved_target(const std::vector<WatchedVm>& vms) {
  for (const WatchedVm& vm : vms) {
    if (vm.discovered) continue;
    if (!vm.error.empty()) return vm.error;
    if (!vm.live && !std::filesystem::exists(vm.resolved.path()))
      return fmt::format("{}: no such file", vm.target);
  }
  return "";
}

}  // namespace nfm
