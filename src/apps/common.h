// What every command that reads a guest shares: the TARGET argument, profile
// options, attaching, and how failures are reported (one line, non-zero exit).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "kernel/kernel.h"

namespace nfm::app {

struct TargetArgs {
  std::string target;
  ProfileOptions profile;
  std::string access = "auto";
  bool json = false;
};

// Adds TARGET and the profile options (--system-map, --btf, --vmlinux, --kernel) to `cmd`.
void add_target_options(CLI::App& cmd, TargetArgs& args);

// Opens the target and attaches to its kernel, or prints "nfm: error: ..." and
// returns nullptr.
std::unique_ptr<Kernel> attach_or_report(const TargetArgs& args);

// Prints "nfm: error: MESSAGE" to stderr; returns the exit status to use.
int report_error(const std::string& message);

}  // namespace nfm::app
