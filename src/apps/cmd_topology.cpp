// nfm topology: who talks to whom across VMs, from live guests or a store (topology/).
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/many_vms.h"
#include "frame/frame_json.h"
#include "topology/render.h"
#include "topology/sources.h"

namespace nfm::app {

namespace {

struct TopologyArgs {
  std::vector<std::string> targets;
  ManyVmArgs vms;
  std::vector<std::string> diff;  // T1 T2
  std::string format = "text";
  std::string output;
  bool local = false;
  size_t max_frames = 10000;
};

[[noreturn]] void fail(const std::string& message) {
  throw CLI::RuntimeError(report_error(message));
}

std::vector<topology::VmView> stored(const TopologyArgs& args, const FrameSelection& selection) {
  const bool show_progress = isatty(STDERR_FILENO);
  auto progress = [show_progress](size_t done, size_t total) {
    if (show_progress && (done == total || done % 50 == 0))
      std::fprintf(stderr, "\rnfm topology: %zu/%zu frames loaded%s", done, total,
                   done == total ? "\n" : "");
  };
  auto views = topology::stored_views(args.vms.store, selection, args.max_frames, progress);
  if (!views) fail(views.error().to_string());
  return std::move(views).value();
}

std::vector<topology::VmView> views(const TopologyArgs& args) {
  const ManyVmArgs& vms = args.vms;
  if (!vms.store.empty()) {
    auto selection = parse_frame_selection(vms.at, vms.since, vms.until);
    if (!selection) fail(selection.error().to_string());
    return stored(args, *selection);
  }
  auto views = topology::crawl_views(vm_set_options(vms, args.targets), crawl_budget(vms.budget));
  if (!views) fail(views.error().to_string());
  return std::move(views).value();
}

void write_output(const TopologyArgs& args, const std::string& data) {
  if (args.output.empty() || args.output == "-") {
    if (std::fwrite(data.data(), 1, data.size(), stdout) != data.size() || std::fflush(stdout) != 0)
      fail("writing the output: " + std::string(std::strerror(errno)));
    return;
  }
  std::ofstream out(args.output, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) fail(fmt::format("cannot write {}: {}", args.output, std::strerror(errno)));
}

void run(const TopologyArgs& args) {
  check_many_vm_options("topology", args.vms, args.targets);
  if (args.vms.store.empty() && !args.diff.empty()) fail("topology: --diff goes with --store");
  const bool picture = args.format == "svg" || args.format == "png";
  if (args.format == "png" && (args.output.empty() || args.output == "-") && isatty(STDOUT_FILENO))
    fail("topology: a PNG is binary: give -o FILE");
  const topology::GraphOptions options{.local = args.local};

  if (!args.diff.empty()) {
    if (!args.vms.at.empty() || !args.vms.since.empty() || !args.vms.until.empty())
      fail("topology: --diff T1 T2 gives its own times: no --at, --since or --until");
    if (args.format != "text" && args.format != "json")
      fail("topology: --diff prints text or json");
    auto t1 = parse_frame_selection(args.diff[0], "", ""),
         t2 = parse_frame_selection(args.diff[1], "", "");
    if (!t1 || !t2) fail(fmt::format("--diff: {}", (!t1 ? t1 : t2).error().message));
    const topology::GraphDiff d =
        topology::diff_graphs(topology::build_graph(stored(args, *t1), options),
                              topology::build_graph(stored(args, *t2), options));
    write_output(args, args.format == "json" ? dump_json(topology::diff_json(d), 2) + "\n"
                                             : topology::diff_text(d));
    return;
  }

  const std::vector<topology::VmView> input = views(args);
  const topology::Graph graph = topology::build_graph(input, options);
  const bool history = !args.vms.since.empty() || !args.vms.until.empty();
  std::string data;
  if (args.format == "json") {
    data = dump_json(topology::graph_json(graph), 2) + "\n";
  } else if (args.format == "dot") {
    data = topology::graph_dot(graph);
  } else if (picture) {
    // dot's layout grows much faster than the graph: a guest with 10^5 forged
    // listeners must not hang the picture of every VM.
    constexpr size_t kMaxDrawnNodes = 5000;
    const size_t nodes =
        graph.vms.size() + graph.services.size() + graph.processes.size() + graph.externals.size();
    if (nodes > kMaxDrawnNodes)
      fail(
          fmt::format("topology: {} nodes are too many to draw ({} at most): use --format "
                      "json or dot, or fewer VMs (--match)",
                      nodes, kMaxDrawnNodes));
    auto rendered = topology::render_graphviz(topology::graph_dot(graph), args.format);
    if (!rendered) fail(rendered.error().to_string());
    data = std::move(rendered).value();
  } else {
    data = topology::graph_text(graph, history);
  }
  write_output(args, data);
  // Like nfm query: a VM that could not be read is named, and the status says so.
  bool any_failed = false;
  for (const topology::VmNode& vm : graph.vms) {
    if (vm.error.empty()) continue;
    std::fprintf(stderr, "nfm: warning: %s: %s\n", vm.vm.name.c_str(), vm.error.c_str());
    any_failed = true;
  }
  if (any_failed) throw CLI::RuntimeError(1);
}

}  // namespace

void register_topology(CLI::App& app) {
  auto args = std::make_shared<TopologyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "topology", "who talks to whom across VMs: services, connections, outside peers");
  cmd->footer(
      "Joins every VM's sockets and addresses: a TCP connection seen from both ends is an\n"
      "edge from the client's process to the server's service; one whose peer no watched VM\n"
      "owns is an edge to an external endpoint, marked one-sided. Loopback stays hidden\n"
      "unless --local. TARGETs: qemu:PID, qemu:NAME, memory images; none: every QEMU VM on\n"
      "this host. From a store: the newest frame of each VM, --at T, a window\n"
      "(--since/--until: when each edge was first and last seen), or --diff T1 T2.\n"
      "Examples:\n"
      "  nfm topology\n"
      "  nfm topology --format svg -o net.svg\n"
      "  nfm topology --store sqlite:/var/lib/nfm/frames.db --since -1h\n"
      "  nfm topology --store sqlite:/var/lib/nfm/frames.db --diff -1h -1m\n"
      "Exit status: 0 done; 1 an error, or a VM that could not be read (a warning names it).");
  cmd->add_option("TARGET", args->targets, "the VMs (default: every QEMU VM on this host)");
  cmd->add_option("--format,-f", args->format, "text, json, dot, svg or png")
      ->check(CLI::IsMember({"text", "json", "dot", "svg", "png"}))
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "write to FILE instead of standard output");
  cmd->add_flag("--local", args->local,
                "also loopback connections and services that listen on loopback only");
  add_many_vm_options(*cmd, args->vms);
  cmd->add_option("--diff", args->diff,
                  "with --store: what appeared and went away between T1 and T2")
      ->expected(2);
  cmd->add_option("--max-frames", args->max_frames,
                  "with --store: refuse windows holding more frames than this")
      ->capture_default_str();
  cmd->callback([args] { run(*args); });
}

}  // namespace nfm::app
