#include "apps/many_vms.h"

#include <fmt/core.h>

namespace nfm::app {

void add_many_vm_options(CLI::App& cmd, ManyVmArgs& args) {
  cmd.add_option("--match,-m", args.match,
                 "without TARGETs: only the VMs whose name matches this glob (repeatable)")
      ->allow_extra_args(false);
  cmd.add_option("--store", args.store,
                 "stored frames instead of live guests: sqlite:PATH or clickhouse:URL");
  cmd.add_option("--at", args.at,
                 "with --store: each VM as it was at TIME (-1h, 2026-12-05T10:00:00Z, ...); "
                 "default: the newest frame");
  cmd.add_option("--since", args.since, "with --store: every frame from TIME on (history)");
  cmd.add_option("--until", args.until, "with --store: every frame up to TIME (history)");
  cmd.add_option("--system-map", args.target.profile.system_map,
                 "symbols from this System.map instead of the guest's own kallsyms");
  cmd.add_option("--btf", args.target.profile.btf, "types from this BTF file");
  cmd.add_option("--kernel", args.target.profile.kernel_dir,
                 "symbols and types from a directory holding vmlinuz-* (and System.map-*)");
  cmd.add_option("--access", args.target.access, "live QEMU reads: auto, vm_readv or proc_mem")
      ->check(CLI::IsMember({"auto", "vm_readv", "proc_mem"}));
  add_budget_options(cmd, args.budget);
}

void check_many_vm_options(const std::string& command, const ManyVmArgs& args,
                           const std::vector<std::string>& targets) {
  auto fail = [&](const std::string& why) {
    throw CLI::RuntimeError(report_error(fmt::format("{}: {}", command, why)));
  };
  if (!args.store.empty() && !targets.empty())
    fail(fmt::format("give either TARGETs or --store, not both (got '{}')", targets.front()));
  if (!args.match.empty() && !(targets.empty() && args.store.empty()))
    fail("--match picks among the host's VMs: give no TARGETs and no --store");
  if (args.store.empty() && !(args.at.empty() && args.since.empty() && args.until.empty()))
    fail("--at, --since and --until go with --store");
  if (!args.at.empty() && !(args.since.empty() && args.until.empty()))
    fail("--at is one time; --since/--until a window");
}

VmSetOptions vm_set_options(const ManyVmArgs& args, const std::vector<std::string>& targets) {
  return {.targets = targets,
          .discovery = {.match = args.match},
          .profile = args.target.profile,
          .target = target_options(args.target)};
}

}  // namespace nfm::app
