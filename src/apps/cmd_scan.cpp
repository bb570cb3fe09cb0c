// nfm scan: YARA rules over every process's memory and the kernel's, from outside
// the guest (src/features/scan/). Exit status: 0 no match, 1 matches, 2 an error.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/scan/memory_scan.h"
#include "frame/frame_json.h"
#include "util/cache_dir.h"

namespace nfm::app {
namespace {

constexpr int kNoMatch = 0, kMatches = 1, kScanError = 2;

struct ScanArgs {
  TargetArgs target;
  std::vector<std::string> targets;
  std::string rules;
  std::vector<int32_t> pids;
  bool kernel = false;
  bool all = false;
  bool fault_in = false;
  bool no_progress = false;
  uint64_t max_bytes = 0;
};

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

std::string hex_or_dash(const std::optional<uint64_t>& v) {
  return v ? fmt::format("0x{:x}", *v) : "-";
}

void print_text(const ScanResult& r, const std::string& rules) {
  if (!r.rows.empty())
    fmt::print("{:<24} {:<10} {:>7} {:<15} {:>18} {:>12}  {}\n", "RULE", "STRING", "PID", "COMM",
               "VA", "PA", "WHERE");
  for (const ScanMatchRow& m : r.rows) {
    std::string where;
    if (m.memory == "kernel") {
      where = m.module.value_or("?");
      if (m.symbol) where += " " + *m.symbol;
    } else {
      where = m.path && !m.path->empty() ? *m.path : "[anon]";
      if (m.file_offset) where += fmt::format(" +0x{:x}", *m.file_offset);
    }
    fmt::print("{:<24} {:<10} {:>7} {:<15} {:>18} {:>12}  {}\n", m.rule, m.string_id,
               m.pid ? std::to_string(*m.pid) : "-", m.memory == "kernel" ? "[kernel]" : m.comm,
               hex_or_dash(m.va), hex_or_dash(m.pa), where);
  }
  const ScanCounts& t = r.total;
  const double seconds = static_cast<double>(r.duration_ns) / 1e9;
  fmt::print(
      "{} match{} ({}); scanned {} in {} process{}{} in {:.2f} s ({:.0f} MB/s)\n"
      "skipped pages: {} not present, {} swapped out by the guest, {} not in host RAM, {} in "
      "host swap, {} unreadable{}\n",
      t.matches, t.matches == 1 ? "" : "es", rules, mib(t.bytes_scanned),
      r.processes.size() - r.processes_unreadable, r.processes.size() == 1 ? "" : "es",
      r.kernel ? " and kernel memory" : "", seconds,
      seconds > 0 ? static_cast<double>(t.bytes_scanned) / 1e6 / seconds : 0.0, t.not_present_pages,
      t.swapped_pages, t.host_nonresident_pages, t.host_swapped_pages, t.unreadable_pages,
      r.processes_unreadable ? fmt::format("; {} process{} unreadable", r.processes_unreadable,
                                           r.processes_unreadable == 1 ? "" : "es")
                             : "");
}

int run_scan(const ScanArgs& args) {
  auto rules = YaraRules::load(args.rules, cache_dir("yara"));
  if (!rules) {
    report_error(fmt::format("--rules {}: {}", args.rules, rules.error().message));
    return kScanError;
  }
  ScanOptions options;
  options.rules = *rules;
  options.pids = args.pids;
  options.kernel = args.kernel || args.all;
  options.processes = !args.kernel || args.all || !args.pids.empty();
  options.fault_in = args.fault_in;
  options.max_bytes = args.max_bytes;
  const bool progress = !args.no_progress && isatty(STDERR_FILENO);
  int status = kNoMatch;
  schema::json all = schema::json::array();
  for (const std::string& target : args.targets) {
    TargetArgs t = args.target;
    t.target = target;
    auto kernel = attach_or_report(t);
    if (!kernel) {
      status = kScanError;
      continue;
    }
    auto scanner = MemoryScanner::create(*kernel);
    if (!scanner) {
      report_error(fmt::format("{}: {}", target, scanner.error().to_string()));
      status = kScanError;
      continue;
    }
    if (progress) {
      options.progress = [](const ScanProgress& p) {
        fmt::print(stderr, "\rscanning: {}/{} processes, {}  ", p.processes_done, p.processes_total,
                   mib(p.bytes_scanned));
        std::fflush(stderr);
      };
    }
    auto result = scanner->scan(options);
    if (progress) fmt::print(stderr, "\r\033[K");
    if (!result) {
      report_error(fmt::format("{}: {}", target, result.error().to_string()));
      status = kScanError;
      continue;
    }
    if (!result->rows.empty()) status = std::max(status, kMatches);
    if (args.target.json) {
      schema::json j = scan_result_json(*result, (*rules)->description());
      if (args.targets.size() > 1) j["target"] = target;
      all.push_back(std::move(j));
    } else {
      if (args.targets.size() > 1) fmt::print("{}:\n", target);
      print_text(*result, (*rules)->description());
    }
  }
  if (args.target.json)
    fmt::print("{}\n", dump_json(args.targets.size() == 1 && !all.empty() ? all[0] : all, 1));
  return status;
}

}  // namespace

void register_scan(CLI::App& app) {
  auto args = std::make_shared<ScanArgs>();
  CLI::App* cmd =
      app.add_subcommand("scan",
                         "YARA rules over guest memory: every process, the kernel and its modules "
                         "(exit 0 no match, 1 matches, 2 error)");
  add_targets_options(*cmd, args->target, args->targets);
  cmd->add_option("--rules,-r", args->rules,
                  "a .yar file, a directory of .yar/.yara files (compiled once, cached in "
                  "~/.cache/nfm/yara) or a file compiled by yarac")
      ->required();
  cmd->add_option("--pid,-p", args->pids, "only this process (repeatable)");
  // Not --kernel: every guest command has that for the kernel package directory.
  cmd->add_flag("--kernel-memory", args->kernel,
                "kernel memory: the image, every module and the kernel log (alone: no processes)");
  cmd->add_flag("--all", args->all, "every process and kernel memory");
  cmd->add_flag("--fault-in", args->fault_in,
                "also read guest pages the host has evicted or swapped (makes the host bring "
                "them back)");
  cmd->add_option("--max-bytes", args->max_bytes, "stop after reading this many bytes (0: all)");
  cmd->add_flag("--no-progress", args->no_progress, "no progress line on a terminal");
  cmd->footer(
      "Each process is scanned as one object (its rules' conditions see all of it): its\n"
      "VMAs' runs of present pages, so a string across a page boundary still matches.\n"
      "Pages the guest swapped out or never touched are counted, not read. Pages the host\n"
      "does not hold in RAM (a RAM file evicted from the page cache, anonymous RAM in the\n"
      "host's swap) are counted and skipped unless --fault-in: a scan must not page a\n"
      "guest back in. docs/scan.md has the JSON (--json) and every counter.");
  run_with_exit_status(*cmd, [args] { return run_scan(*args); });
}

}  // namespace nfm::app
