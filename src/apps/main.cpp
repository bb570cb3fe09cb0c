// nfm: Near Field Monitoring. One binary, git-style subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "apps/commands.h"
#include "apps/common.h"

#ifdef __SANITIZE_ADDRESS__
// Sanitizer builds (the tests): graphviz and fontconfig, loaded for `nfm topology
// --format svg|png`, keep their plugin and font caches until the process exits by
// design; LeakSanitizer would fail every picture on them.
extern "C" const char* __lsan_default_suppressions() {  // NOLINT(bugprone-reserved-identifier)
  return "leak:libgvc.so\nleak:libcgraph.so\nleak:libcdt.so\nleak:libfontconfig.so\n"
         "leak:libgvplugin_\nleak:libpango\nleak:libcairo.so\nleak:libgd.so\n";
}
extern "C" const char* __lsan_default_options() {  // NOLINT(bugprone-reserved-identifier)
  return "print_suppressions=0";                   // stderr stays the command's own
}
#endif

namespace {

int run(int argc, char** argv) {
  CLI::App app{
      "nfm: agentless, out-of-band monitoring of Linux virtual machines.\n"
      "Reads a running guest's memory read-only from the host (or a memory dump) and\n"
      "reconstructs its kernel state, with no agent and no configuration: symbols and\n"
      "types come from the guest kernel's own kallsyms and BTF.\n\n"
      "TARGET is qemu:PID, qemu:NAME (QEMU's -name) or a memory image file.\n"
      "Live targets need root or CAP_SYS_PTRACE."};
  app.set_version_flag("--version", "nfm " NFM_VERSION);
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  nfm::app::register_ps(app);
  nfm::app::register_dmesg(app);
  nfm::app::register_lsmod(app);
  nfm::app::register_uname(app);
  nfm::app::register_uptime(app);
  nfm::app::register_meminfo(app);
  nfm::app::register_cpuinfo(app);
  nfm::app::register_frame(app);
  nfm::app::register_ifconfig(app);
  nfm::app::register_lsof(app);
  nfm::app::register_maps(app);
  nfm::app::register_netstat(app);
  nfm::app::register_profile(app);
  nfm::app::register_crawl(app);
  nfm::app::register_top(app);
  nfm::app::register_shell(app);
  nfm::app::register_schema(app);
  nfm::app::register_store(app);
  nfm::app::register_query(app);
  nfm::app::register_topology(app);
  nfm::app::register_check(app);
  nfm::app::register_scan(app);
  nfm::app::register_completion(app);
  nfm::app::remember_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Commands report their own errors; anything else is a bug, said in one line
  // rather than by std::terminate.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nfm: error: internal: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "nfm: error: internal: unknown exception\n");
  }
  return 1;
}
