// What every command that reads a guest shares: the TARGET argument, profile
// options, attaching, and how failures are reported (one line, non-zero exit).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host/target.h"
#include "kernel/kernel.h"
#include "store/frame_store.h"

namespace nfm::app {

struct TargetArgs {
  std::string target;
  ProfileOptions profile;
  std::string access = "auto";
  bool json = false;
};

// Adds TARGET and the profile options (--system-map, --btf, --vmlinux, --kernel) to `cmd`.
void add_target_options(CLI::App& cmd, TargetArgs& args);
// The same with TARGET... (one or more, into `targets`) for commands that read several.
void add_targets_options(CLI::App& cmd, TargetArgs& args, std::vector<std::string>& targets);
// Runs `run` when `cmd` is given; a non-zero result is the process's exit status.
void run_with_exit_status(CLI::App& cmd, std::function<int()> run);

// The TargetOptions that --access asks for.
TargetOptions target_options(const TargetArgs& args);

// Parses and opens the target and attaches to its kernel, or prints "nfm: error: ..." and
// returns nullptr.
std::unique_ptr<Kernel> attach_or_report(const TargetArgs& args);

// A command that reads one guest: adds TARGET and the profile options; when run,
// attaches to the guest and calls `run`. Attach failures print one "nfm: error:"
// line and exit 1. Returns the subcommand, for options of its own.
CLI::App* add_guest_command(CLI::App& app, const std::string& name, const std::string& help,
                            std::function<void(Kernel&, const TargetArgs&)> run);

// --at, --since and --until (each "" when not given; "-1h", "2026-12-05T10:00:00Z",
// ...) as the stored frames they select; errors name the option.
Result<FrameSelection> parse_frame_selection(const std::string& at, const std::string& since,
                                             const std::string& until);

// The process's command line, kept by main() for a daemon that parses it again
// (nfm crawl on SIGHUP).
void remember_command_line(int argc, char** argv);
int command_line_argc();
char** command_line_argv();

// Prints "nfm: error: MESSAGE" to stderr; returns the exit status to use.
int report_error(const std::string& message);

}  // namespace nfm::app
