#include "host/qemu/discovery.h"

#include <fmt/core.h>
#include <fnmatch.h>

#include <map>

#ifdef NFM_HAVE_LIBVIRT
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "util/shared_library.h"
#endif

namespace nfm {

std::string DiscoveredVm::key() const {
  return fmt::format("{}@{}", pid, start_time);
}

DiscoveredVm describe_qemu(const QemuProcessInfo& p) {
  DiscoveredVm vm;
  vm.pid = p.pid;
  vm.start_time = p.start_time;
  vm.cmdline_error = p.cmdline_error;
  if (p.cmdline) {
    const QemuCmdline& c = *p.cmdline;
    vm.name = c.name;
    vm.uuid = c.uuid;
    vm.qmp_socket = c.qmp_socket;
    vm.ram_size = c.ram_size;
    vm.machine = c.machine;
    const auto backends = c.ram_backends();
    if (backends.empty()) {
      vm.ram_backend = c.mem_path.empty() ? "anonymous" : "mem-path " + c.mem_path;
    } else {
      // NUMA guests have several; they are all of one kind in practice.
      const QemuMemoryBackend* b = backends.front();
      vm.ram_backend = b->type;
      if (!b->mem_path.empty()) vm.ram_backend += " " + b->mem_path;
      if (b->share) vm.ram_backend += " (shared)";
    }
  }
  if (vm.name.empty()) vm.name = fmt::format("pid-{}", p.pid);
  return vm;
}

void apply_libvirt(std::vector<DiscoveredVm>& vms, const std::vector<LibvirtDomain>& domains) {
  std::map<std::string, const LibvirtDomain*> by_uuid;
  for (const auto& d : domains) by_uuid[d.uuid] = &d;
  for (auto& vm : vms) {
    if (vm.uuid.empty()) continue;
    auto it = by_uuid.find(vm.uuid);
    if (it == by_uuid.end()) continue;
    vm.name = it->second->name;
    vm.libvirt = true;
  }
}

bool name_matches(std::string_view name, const std::vector<std::string>& patterns) {
  if (patterns.empty()) return true;
  const std::string n(name);
  for (const auto& p : patterns)
    if (fnmatch(p.c_str(), n.c_str(), 0) == 0) return true;
  return false;
}

#ifdef NFM_HAVE_LIBVIRT
namespace {

void quiet_libvirt(void*, virErrorPtr) {}

// The part of libvirt we use, loaded on first use (util/shared_library.h): a host
// without libvirt runs nfm all the same.
// clang-format off
#define NFM_LIBVIRT_FUNCTIONS(X) \
  X(virSetErrorFunc) X(virConnectOpenReadOnly) X(virConnectListAllDomains) \
  X(virDomainGetName) X(virDomainGetUUIDString) X(virDomainFree) X(virConnectClose)
// clang-format on
NFM_LIBRARY_API(Libvirt, NFM_LIBVIRT_FUNCTIONS);

Result<Libvirt> load_libvirt() {
  NFM_ASSIGN(SharedLibrary lib, SharedLibrary::open("libvirt.so.0"));
  NFM_ASSIGN(Libvirt v, Libvirt::bind(lib));
  // libvirt prints every error on stderr by default; a host without libvirtd is normal.
  v.virSetErrorFunc(nullptr, quiet_libvirt);
  return v;
}

const Result<Libvirt>& libvirt() {
  static const Result<Libvirt> api = load_libvirt();
  return api;
}

}  // namespace
#endif

bool libvirt_available() {
#ifdef NFM_HAVE_LIBVIRT
  return libvirt().ok();
#else
  return false;
#endif
}

std::vector<LibvirtDomain> libvirt_domains([[maybe_unused]] const std::string& uri) {
  std::vector<LibvirtDomain> out;
#ifdef NFM_HAVE_LIBVIRT
  if (!libvirt()) return out;
  const Libvirt& lib = *libvirt();
  virConnectPtr conn = lib.virConnectOpenReadOnly(uri.c_str());
  if (!conn) return out;
  virDomainPtr* domains = nullptr;
  const int n = lib.virConnectListAllDomains(conn, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  for (int i = 0; i < n; ++i) {
    LibvirtDomain d;
    if (const char* name = lib.virDomainGetName(domains[i])) d.name = name;
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    if (lib.virDomainGetUUIDString(domains[i], uuid) == 0) d.uuid = uuid;
    if (!d.name.empty() && !d.uuid.empty()) out.push_back(std::move(d));
    lib.virDomainFree(domains[i]);
  }
  free(domains);  // NOLINT: allocated by libvirt
  lib.virConnectClose(conn);
#endif
  return out;
}

std::vector<DiscoveredVm> discover_vms(const DiscoveryOptions& options) {
  std::vector<DiscoveredVm> vms;
  bool any_uuid = false;
  for (const auto& p : list_qemu_processes()) {
    vms.push_back(describe_qemu(p));
    any_uuid |= !vms.back().uuid.empty();
  }
  // Only libvirt-started QEMUs have a -uuid that libvirt knows: skip the connect otherwise.
  if (options.libvirt && any_uuid && libvirt_available())
    apply_libvirt(vms, libvirt_domains(options.libvirt_uri));
  std::erase_if(vms, [&](const DiscoveredVm& vm) { return !name_matches(vm.name, options.match); });
  return vms;
}

}  // namespace nfm
