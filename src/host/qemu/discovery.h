// Finding the host's QEMU/KVM guests: one scan of /proc (list_qemu_processes), each
// QEMU described by its command line (name, UUID, RAM layout and backend, QMP socket)
// and, when libvirt is installed and libvirtd answers, by its libvirt domain (name,
// UUID). Nothing here prints; libvirt's own error output is silenced.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "host/qemu/processes.h"

namespace nfm {

struct DiscoveredVm {
  pid_t pid = 0;
  uint64_t start_time = 0;  // /proc/PID/stat starttime: with pid, the VM's identity
  std::string name;         // libvirt domain, else -name, else "pid-N"
  std::string uuid;         // libvirt domain UUID, else -uuid, else ""
  std::string qmp_socket;   // from the command line, when there is one
  uint64_t ram_size = 0;    // bytes
  std::string ram_backend;  // "anonymous", "memory-backend-memfd", "memory-backend-file PATH", ...
  std::string machine;      // -machine type
  bool libvirt = false;     // name/uuid confirmed by libvirt
  std::string cmdline_error;  // QEMU's argv did not parse (the VM is still listed)

  // "PID@STARTTIME": stable for one QEMU process, new for a recycled pid.
  std::string key() const;
};

// The pure part: one /proc entry as a VM.
DiscoveredVm describe_qemu(const QemuProcessInfo& process);

// A libvirt domain as libvirt names it.
struct LibvirtDomain {
  std::string name, uuid;
};
// Renames VMs whose -uuid matches a libvirt domain (libvirt's name wins: -name is
// "guest=NAME,debug-threads=on" there, but a domain can be renamed).
void apply_libvirt(std::vector<DiscoveredVm>& vms, const std::vector<LibvirtDomain>& domains);

// Shell-style glob (fnmatch) on a VM name; an empty pattern list matches every VM.
bool name_matches(std::string_view name, const std::vector<std::string>& patterns);

struct DiscoveryOptions {
  std::vector<std::string> match;  // name globs (empty: all)
  bool libvirt = true;             // ask libvirt (qemu:///system, read-only) when built with it
  std::string libvirt_uri = "qemu:///system";
};

// Active libvirt domains; empty when libvirt is not built in, not installed, or
// libvirtd does not answer (that is normal: plain QEMU hosts have none).
std::vector<LibvirtDomain> libvirt_domains(const std::string& uri);
bool libvirt_available();  // built with libvirt's headers and libvirt.so.0 loads

// Every QEMU on the host, sorted by pid, filtered by `options.match`.
std::vector<DiscoveredVm> discover_vms(const DiscoveryOptions& options = {});

}  // namespace nfm
