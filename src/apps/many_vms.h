// What commands over many VMs share (nfm query, nfm topology): which live VMs
// (TARGETs, or the host's with --match) or which stored frames (--store with --at,
// --since, --until), and how live ones are read (profile options, --access, the
// crawl budget).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "apps/common.h"
#include "apps/guest_crawl.h"
#include "crawler/vm_set.h"

namespace nfm::app {

struct ManyVmArgs {
  std::vector<std::string> match;
  std::string store, at, since, until;
  TargetArgs target;
  BudgetArgs budget;
};

void add_many_vm_options(CLI::App& cmd, ManyVmArgs& args);
// Refuses choices that contradict each other: "nfm: error: COMMAND: ...", exit 1.
void check_many_vm_options(const std::string& command, const ManyVmArgs& args,
                           const std::vector<std::string>& targets);
// The live VMs asked for.
VmSetOptions vm_set_options(const ManyVmArgs& args, const std::vector<std::string>& targets);

}  // namespace nfm::app
