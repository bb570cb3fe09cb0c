#include "apps/common.h"

#include <fmt/core.h>

#include <chrono>
#include <optional>

#include "host/target.h"
#include "util/time_text.h"

namespace nfm::app {

void add_targets_options(CLI::App& cmd, TargetArgs& args, std::vector<std::string>& targets) {
  add_target_options(cmd, args);
  cmd.remove_option(cmd.get_option("TARGET"));
  cmd.add_option("TARGET", targets, "qemu:PID, qemu:NAME or a memory image; several allowed")
      ->required();
}

void run_with_exit_status(CLI::App& cmd, std::function<int()> run) {
  cmd.callback([run = std::move(run)] {
    if (const int status = run(); status != 0) throw CLI::RuntimeError(status);
  });
}

void add_target_options(CLI::App& cmd, TargetArgs& args) {
  cmd.add_option("TARGET", args.target,
                 "qemu:PID, qemu:NAME (QEMU's -name) or a memory image (raw or ELF dump)")
      ->required();
  cmd.add_flag("--json", args.json, "print JSON instead of a table");
  cmd.add_option("--system-map", args.profile.system_map,
                 "symbols from this System.map instead of the guest's own kallsyms");
  cmd.add_option(
      "--btf", args.profile.btf,
      "types from this BTF file (raw, or an ELF with .BTF) instead of the guest's own BTF");
  cmd.add_option("--vmlinux", args.profile.vmlinux,
                 "symbols and types from this vmlinux or vmlinuz");
  cmd.add_option("--kernel", args.profile.kernel_dir,
                 "symbols and types from a directory holding vmlinuz-* (and System.map-*)");
  cmd.add_option("--dwarf", args.profile.dwarf,
                 "symbols and types from a DWARF vmlinux (linux-image-*-dbg)");
  cmd.add_option("--isf", args.profile.isf,
                 "symbols and types from a Volatility 3 symbol table (.json or .json.xz)");
  cmd.add_flag(
      "--no-profile-cache", [&args](int64_t) { args.profile.use_cache = false; },
      "neither use nor write the compiled-profile cache (~/.cache/nfm/profiles)");
  cmd.add_option("--access", args.access, "live QEMU reads: auto, vm_readv or proc_mem")
      ->check(CLI::IsMember({"auto", "vm_readv", "proc_mem"}));
}

CLI::App* add_guest_command(CLI::App& app, const std::string& name, const std::string& help,
                            std::function<void(Kernel&, const TargetArgs&)> run) {
  auto args = std::make_shared<TargetArgs>();
  CLI::App* cmd = app.add_subcommand(name, help);
  add_target_options(*cmd, *args);
  cmd->callback([args, run = std::move(run)] {
    auto kernel = attach_or_report(*args);
    if (!kernel) throw CLI::RuntimeError(1);
    run(*kernel, *args);
  });
  return cmd;
}

namespace {
int g_argc = 0;
char** g_argv = nullptr;
}  // namespace

void remember_command_line(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
}
int command_line_argc() {
  return g_argc;
}
char** command_line_argv() {
  return g_argv;
}

int report_error(const std::string& message) {
  fmt::print(stderr, "nfm: error: {}\n", message);
  return 1;
}

TargetOptions target_options(const TargetArgs& args) {
  TargetOptions options;
  if (args.access == "vm_readv") options.access = QemuAccess::vm_readv;
  if (args.access == "proc_mem") options.access = QemuAccess::proc_mem;
  return options;
}

std::unique_ptr<Kernel> attach_or_report(const TargetArgs& args) {
  auto target = Target::parse(args.target);
  if (!target) {
    report_error(target.error().to_string());
    return nullptr;
  }
  auto memory = open_target(*target, target_options(args));
  if (!memory) {
    report_error(memory.error().to_string());
    return nullptr;
  }
  auto kernel = Kernel::attach(std::move(memory).value(), args.profile);
  if (!kernel) {
    report_error(args.target + ": " + kernel.error().to_string());
    return nullptr;
  }
  return std::move(kernel).value();
}

Result<FrameSelection> parse_frame_selection(const std::string& at, const std::string& since,
                                             const std::string& until) {
  const auto now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  auto time = [now](const std::string& text,
                    const char* option) -> Result<std::optional<uint64_t>> {
    if (text.empty()) return std::optional<uint64_t>();
    auto t = parse_time(text, now);
    if (!t)
      return make_error(Errc::invalid_argument, fmt::format("{}: {}", option, t.error().message));
    return std::optional<uint64_t>(*t);
  };
  FrameSelection selection;
  NFM_ASSIGN(selection.at_ns, time(at, "--at"));
  NFM_ASSIGN(selection.since_ns, time(since, "--since"));
  NFM_ASSIGN(selection.until_ns, time(until, "--until"));
  return selection;
}

}  // namespace nfm::app
