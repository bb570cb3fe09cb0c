// nfm shell: a read-only console on one guest, with time travel over snapshots.
// Interactive with line editing and history (libedit) on a terminal; one command per
// line without prompts when stdin is not a terminal; `-c "CMD; CMD"` for scripts.
#include <editline/readline.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/shell_console.h"
#include "crawler/vm_set.h"
#include "frame/frame_crawler.h"
#include "store/frame_store.h"

namespace nfm::app {

namespace {

struct ShellArgs {
  TargetArgs target;
  std::string command;
  size_t keep = 100;
  std::string store;
  std::string vm;
};

// Frames of one VM from a store: the newest `keep` at start, then whatever is newer.
class StoredVmFrames {
 public:
  static Result<StoredVmFrames> open(const std::string& spec, const std::string& vm_name,
                                     size_t keep) {
    NFM_ASSIGN(auto store, nfm::open_store(spec));
    std::string vm = vm_name;
    if (vm.empty()) {
      NFM_ASSIGN(auto vms, store->vms());
      if (vms.size() != 1) {
        std::string names;
        for (const StoredVm& v : vms) names += (names.empty() ? "" : ", ") + v.vm.name;
        return make_error(Errc::invalid_argument,
                          vms.empty()
                              ? spec + " holds no frames"
                              : spec + " holds several VMs (" + names + "): pick one with --vm");
      }
      vm = vms[0].vm.name;
    }
    StoredVmFrames s;
    s.store_ = std::shared_ptr<FrameStore>(std::move(store));
    s.vm_ = vm;
    s.keep_ = keep;
    return s;
  }

  Result<std::vector<Frame>> next() {
    NFM_ASSIGN(auto refs, store_->frames(vm_, since_, std::numeric_limits<uint64_t>::max(),
                                         std::numeric_limits<size_t>::max()));
    if (refs.empty() && since_ == 0)
      return make_error(Errc::not_found, store_->describe() + ": no frames of VM '" + vm_ + "'");
    const size_t first = refs.size() > keep_ ? refs.size() - keep_ : 0;
    std::vector<Frame> out;
    for (size_t i = first; i < refs.size(); ++i) {
      NFM_ASSIGN(Frame f, store_->load(refs[i].id));
      out.push_back(std::move(f));
    }
    if (!refs.empty()) since_ = refs.back().host_time_ns + 1;
    return out;
  }

  const std::string& vm() const { return vm_; }

 private:
  std::shared_ptr<FrameStore> store_;
  std::string vm_;
  size_t keep_ = 100;
  uint64_t since_ = 0;
};

int run_console(Console& console, const ShellArgs& args, bool interactive_banner,
                const std::string& banner) {
  if (!args.command.empty()) {
    Output o;
    const bool ok = console.run(args.command, o);
    print(o);
    return ok ? 0 : 1;
  }
  if (!isatty(STDIN_FILENO)) {
    // Scripted: one command line per input line, no prompts; the status tells of failures.
    bool ok = true;
    std::string line;
    while (!console.quit() && std::getline(std::cin, line)) {
      Output o;
      ok = console.run(line, o) && ok;
      print(o);
    }
    return ok ? 0 : 1;
  }
  if (interactive_banner) std::printf("%s", banner.c_str());
  rl_readline_name = const_cast<char*>("nfm");
  while (!console.quit()) {
    const std::string prompt = console.prompt();
    char* line = readline(prompt.c_str());
    if (!line) {  // Ctrl-D
      std::printf("\n");
      break;
    }
    std::string text = line;
    std::free(line);
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    add_history(text.c_str());
    Output o;
    console.run(text, o);
    print(o);
  }
  return 0;
}

}  // namespace

void register_shell(CLI::App& app) {
  auto args = std::make_shared<ShellArgs>();
  CLI::App* cmd = app.add_subcommand(
      "shell",
      "A read-only console on a guest, with time travel: ps, lsmod, netstat, ifconfig, lsof,\n"
      "maps, dmesg, uname, cpuinfo, meminfo, uptime, topology answer from a snapshot (a frame);\n"
      "ls, cat and stat read the guest's own dentry and page caches. `sync` takes a snapshot,\n"
      "`history` lists them, `seed N` / `at TIME` go back, `diff N M` shows what changed.\n"
      "Type `help` in the console. Snapshots come from the live guest (TARGET) or from a\n"
      "frame store (--store).");
  add_target_options(*cmd, args->target);
  cmd->get_option("TARGET")->required(false);
  cmd->remove_option(cmd->get_option("--json"));
  cmd->add_option("-c,--command", args->command,
                  "run these commands (separated by ';') and exit; the status is 1 if one "
                  "failed");
  cmd->add_option("--keep", args->keep, "snapshots kept (the oldest are dropped)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  cmd->add_option("--store", args->store,
                  "snapshots from a frame store instead of a live guest (sqlite:PATH, "
                  "clickhouse:URL); file commands need a live guest");
  cmd->add_option("--vm", args->vm, "with --store: the VM (needed when the store holds several)");
  cmd->callback([args] {
    if (args->store.empty() == args->target.target.empty())
      throw CLI::RuntimeError(report_error(args->store.empty()
                                               ? "shell: give a TARGET or --store"
                                               : "shell: give a TARGET or --store, not both"));
    if (!args->vm.empty() && args->store.empty())
      throw CLI::RuntimeError(report_error("shell: --vm goes with --store"));
    const bool banner = args->command.empty() && isatty(STDIN_FILENO);
    if (!args->store.empty()) {
      auto source = StoredVmFrames::open(args->store, args->vm, args->keep);
      if (!source) throw CLI::RuntimeError(report_error(source.error().to_string()));
      auto shared = std::make_shared<StoredVmFrames>(std::move(*source));
      Console console(nullptr, [shared] { return shared->next(); },
                      {.keep = args->keep, .label = shared->vm()});
      Output o;
      auto first = console.sync(o);
      print(o);
      if (!first) throw CLI::RuntimeError(report_error(first.error().to_string()));
      const std::string text = fmt::format("nfm shell: {} frames of {} from {}. Type help.\n",
                                           console.snapshots().size(), shared->vm(), args->store);
      const int status = run_console(console, *args, banner, text);
      if (status) throw CLI::RuntimeError(status);
      return;
    }
    // A live guest (or a memory image) through the VM set, as nfm crawl and nfm top attach.
    VmSet vms({.targets = {args->target.target},
               .profile = args->target.profile,
               .target = target_options(args->target)});
    const WatchedVm vm = vms.scan().found.front();
    auto memory = vms.open(vm);
    if (!memory) throw CLI::RuntimeError(report_error(memory.error().to_string()));
    auto attached = vms.attach(std::move(memory).value());
    if (!attached)
      throw CLI::RuntimeError(
          report_error(args->target.target + ": " + attached.error().to_string()));
    std::unique_ptr<Kernel> kernel = std::move(attached).value();
    auto crawler = std::make_shared<FrameCrawler>(*kernel);
    Console console(kernel.get(),
                    [crawler]() -> Result<std::vector<Frame>> {
                      std::vector<Frame> frames;
                      frames.push_back(crawler->crawl());
                      return frames;
                    },
                    {.keep = args->keep, .label = args->target.target});
    Output o;
    auto first = console.sync(o);
    print(o);
    if (!first) throw CLI::RuntimeError(report_error(first.error().to_string()));
    const std::string text = fmt::format("nfm shell: {} ({}), read-only. Type help.\n",
                                         args->target.target, kernel->identity().release);
    const int status = run_console(console, *args, banner, text);
    if (status) throw CLI::RuntimeError(status);
  });
}

}  // namespace nfm::app
