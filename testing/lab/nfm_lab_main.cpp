// nfm-lab: boot a test guest by hand (for humans and the demo), or print a captured
// ground-truth log.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "guest.h"
#include "pool.h"
#include "workload.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

void print_truth(const nfm::lab::GroundTruth& t, bool all_processes) {
  fmt::print("uname:     {} {} {} {} {}\n", t.uname.sysname, t.uname.nodename, t.uname.release,
             t.uname.version, t.uname.machine);
  fmt::print("hostname:  {} (domain {})\n", t.hostname, t.uname.domainname);
  size_t kthreads = 0;
  for (auto& [pid, p] : t.processes) kthreads += p.kernel_thread;
  fmt::print("processes: {} ({} kernel threads), threads: {}\n", t.processes.size(), kthreads,
             t.threads.size());
  fmt::print("modules:   {}\n", fmt::join(t.modules, " "));
  for (auto& i : t.interfaces)
    fmt::print("iface:     {} #{} {} {} {}\n", i.name, i.index, i.mac, fmt::join(i.inet, " "),
               fmt::join(i.inet6, " "));
  for (auto& s : t.inet_sockets)
    fmt::print("socket:    {:4} {}:{} -> {}:{} state {}\n", s.proto, s.local_addr, s.local_port,
               s.remote_addr, s.remote_port, s.state);
  if (auto it = t.kallsyms.find("_text"); it != t.kallsyms.end())
    fmt::print("_text:     {:#x}\n", it->second);
  fmt::print("kmsg:      {} records\n", t.kmsg.size());
  fmt::print("\n{:>5} {:>5} {:>5} {:>5} {} {:>8} {:>8} {:16} {}\n", "PID", "PPID", "UID", "NLWP",
             "S", "VSZ", "RSS", "COMM", "ARGS");
  for (auto& [pid, p] : t.processes) {
    if (p.kernel_thread && !all_processes) continue;
    std::string args;
    for (auto& a : p.args) args += (args.empty() ? "" : " ") + a;
    fmt::print("{:>5} {:>5} {:>5} {:>5} {} {:>8} {:>8} {:16} {}\n", p.pid, p.ppid, p.uid,
               p.tids.size(), p.state, p.vsz_kb, p.rss_kb, p.comm, args);
  }
  if (!all_processes) fmt::print("({} kernel threads not shown; --all shows them)\n", kthreads);
}

int run(int argc, char** argv) {
  CLI::App app{
      "nfm-lab: the nfm test-guest lab.\n"
      "  run    boots a Debian kernel under QEMU TCG with the known nfm workload, prints the\n"
      "         QEMU pid, QMP socket and truth log, waits for the guest's own view (ground\n"
      "         truth) and keeps the guest running until Ctrl-C / SIGTERM.\n"
      "  truth  parses a captured ground-truth log (serial1.log) and prints it.\n"
      "  pool   the guest pool shared by the guest test programs (testing/lab/pool.h).\n"
      "Kernels are cached under $NFM_CACHE_DIR (default ~/.cache/nfm)."};
  app.require_subcommand(1);

  nfm::lab::GuestOptions opts;
  std::string backing = "anonymous";
  bool all = false;
  auto* run = app.add_subcommand("run", "boot a guest and keep it running");
  run->add_option("--kernel", opts.kernel,
                  "kernel alias: 5.10, 5.10-cloud, 6.1, 6.1-cloud, 6.12, 6.12-cloud")
      ->capture_default_str();
  run->add_option("--ram", opts.ram_mib, "guest RAM in MiB")->capture_default_str();
  run->add_option("--cpus", opts.cpus, "vCPUs")->capture_default_str();
  run->add_option("--machine", opts.machine, "pc or q35")->capture_default_str();
  run->add_option("--nic", opts.nic, "virtio-net-pci or e1000")->capture_default_str();
  run->add_option(
         "--backing", backing,
         "guest RAM: anonymous, file (/dev/shm), disk_file (/var/tmp), memfd or memfd_unsealed")
      ->capture_default_str();
  run->add_option("--cpu", opts.cpu_model, "QEMU -cpu model (max: 5-level paging)");
  run->add_option("--name", opts.name, "QEMU -name (default nfm-KERNEL)");
  run->add_option("--append", opts.append, "extra kernel arguments");
  std::string run_as;
  run->add_option("--run-as", run_as,
                  "QEMU drops to this user once set up (-runas): a VM of another user");
  run->add_flag("--all", all, "list kernel threads too");

  std::string log;
  auto* truth = app.add_subcommand("truth", "parse a captured ground-truth log and print it");
  truth->add_option("log", log, "serial1.log of a guest")->required();
  truth->add_flag("--all", all, "list kernel threads too");
  std::string pool_action, pool_dir;
  pid_t watch = 0;
  auto* pool = app.add_subcommand("pool", "the guest pool of a test run (ctest fixture)");
  pool->add_option("action", pool_action, "start, stop or serve (the pool process itself)")
      ->required()
      ->check(CLI::IsMember({"start", "stop", "serve"}));
  pool->add_option("dir", pool_dir, "the pool's directory ($NFM_LAB_POOL of the tests)")
      ->required();
  pool->add_option("--watch", watch, "serve: stop when this process exits");
  CLI11_PARSE(app, argc, argv);

  if (*pool) {
    if (pool_action == "start") return nfm::lab::pool::start(pool_dir, "/proc/self/exe");
    if (pool_action == "stop") return nfm::lab::pool::stop(pool_dir);
    return nfm::lab::pool::serve(pool_dir, watch);
  }

  if (*truth) {
    std::ifstream in(log, std::ios::binary);
    if (!in) {
      fmt::print(stderr, "nfm-lab: cannot open {}\n", log);
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto t = nfm::lab::parse_ground_truth(ss.str());
    if (!t) {
      fmt::print(stderr, "nfm-lab: {}\n", t.error().to_string());
      return 1;
    }
    fmt::print("dump {}\n", t->seq);
    print_truth(*t, all);
    return 0;
  }

  auto b = nfm::lab::parse_backing(backing);
  if (!b) {
    fmt::print(stderr, "nfm-lab: {}\n", b.error().to_string());
    return 2;
  }
  opts.backing = *b;
  if (!run_as.empty()) {
    opts.qemu_args.emplace_back("-runas");
    opts.qemu_args.push_back(run_as);
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto g = nfm::lab::Guest::start(opts);
  if (!g) {
    fmt::print(stderr, "nfm-lab: {}\n", g.error().to_string());
    return 1;
  }
  auto& guest = **g;
  fmt::print(
      "name:        {}\nkernel:      {}\nqemu pid:    {}\nqmp socket:  {}\ntruth log:   "
      "{}\nconsole log: {}\n",
      guest.name(), guest.kernel_dir(), guest.pid(), guest.qmp_socket(), guest.truth_log(),
      guest.console_log());
  if (!guest.memory_file().empty()) fmt::print("memory file: {}\n", guest.memory_file());
  std::fflush(stdout);
  if (auto r = guest.wait_ready(opts.timeout); !r) {
    fmt::print(stderr, "nfm-lab: {}\n", r.error().to_string());
    return 1;
  }
  fmt::print("ready in {:.1f} s\n\n", guest.boot_time().count() / 1000.0);
  print_truth(guest.truth(), all);
  fmt::print("\nguest running; Ctrl-C stops it\n");
  std::fflush(stdout);
  while (!g_stop && guest.running()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nfm-lab: error: internal: %s\n", e.what());
  }
  return 1;
}
