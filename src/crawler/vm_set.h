// The VMs nfm watches, for every command that follows live guests (nfm crawl, nfm
// top, nfm shell): explicit targets (parsed and resolved once: one /proc scan for
// all of them) or the host's QEMU guests (discovered again at each scan), which of
// them appeared or went away, attaching each to its kernel, and the back-off
// between failed attaches.
//
// scan() is for one owner thread; open() and attach() only read the set's options
// and may run on any thread (the crawler attaches on its workers).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "frame/frame.h"
#include "host/qemu/discovery.h"
#include "host/target.h"
#include "kernel/kernel.h"

namespace nfm {

struct WatchedVm;

struct VmSetOptions {
  // Explicit targets (qemu:PID, qemu:NAME, memory images). Empty: discover the host's VMs.
  std::vector<std::string> targets;
  DiscoveryOptions discovery;  // name globs, libvirt
  ProfileOptions profile;
  TargetOptions target;
  // Opens a VM's memory instead of its target (tests and the fleet benchmark: VMs whose
  // memory is a patched or shared image). Empty: open the target.
  std::function<Result<PhysicalMemoryPtr>(const WatchedVm&)> open_memory;
};

// One VM of the set, as known before attaching.
struct WatchedVm {
  // Identity within the set: "PID@STARTTIME" for a discovered VM (a recycled pid is
  // another VM), "TARGET@PID" for an explicit live target, the path for an image.
  std::string key;
  VmIdentity id;
  std::string target;  // as the user wrote it; "qemu:PID" for discovered VMs
  Target resolved;     // what to open (a qemu:NAME with its pid)
  std::string ram;     // RAM size and backend, for messages ("memory image" for files)
  bool live = true;
  bool discovered = false;
  uint64_t start_time = 0;  // /proc/PID/stat starttime of a live VM (0: unknown)
  std::string error;        // the target could not be resolved: there is nothing to attach
};

struct VmSetChanges {
  std::vector<WatchedVm> found;   // new VMs (the explicit targets at the first scan)
  std::vector<std::string> lost;  // keys of live VMs whose QEMU exited (or whose pid was reused)
};

// Why the first explicit target among `vms` names nothing (unresolved, or a memory
// image that is not there), or "": commands say so at once, not once per read.
std::string first_unresolved_target(const std::vector<WatchedVm>& vms);

// Attach back-off for live VMs: 1 s, 2 s, 4 s ... 30 s.
std::chrono::milliseconds next_attach_backoff(std::chrono::milliseconds previous);

class VmSet {
 public:
  explicit VmSet(VmSetOptions options);

  bool discovering() const { return options_.targets.empty(); }
  // Discovery: the VMs that appeared and went away since the last scan. Explicit
  // targets: all of them at the first scan, then the live ones whose QEMU exited.
  VmSetChanges scan();
  // Stops watching `key` (e.g. a VM that is done): later scans do not report it.
  void forget(const std::string& key);
  size_t size() const { return members_.size(); }

  // The VM's guest-physical memory.
  Result<PhysicalMemoryPtr> open(const WatchedVm& vm) const;
  // Attaches to the kernel in `memory`, skipping the kernels whose page tables are
  // at `skip` (images of earlier boots left in RAM).
  Result<std::unique_ptr<Kernel>> attach(PhysicalMemoryPtr memory,
                                         const std::vector<uint64_t>& skip = {}) const;
  // open() then attach().
  Result<std::unique_ptr<Kernel>> attach(const WatchedVm& vm,
                                         const std::vector<uint64_t>& skip = {}) const;

 private:
  std::vector<WatchedVm> resolve_targets();

  VmSetOptions options_;
  std::string host_;
  bool scanned_ = false;
  std::map<std::string, WatchedVm> members_;  // by key: the live VMs still watched
};

}  // namespace nfm
