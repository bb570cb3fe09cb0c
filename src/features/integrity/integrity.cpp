// Runs the rootkit checks and times each.
#include "features/integrity/integrity.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "features/uptime/uptime.h"
#include "kernel/kernel.h"

namespace nfm {

const std::vector<CheckInfo>& integrity_checks() {
  static const std::vector<CheckInfo> checks{
      {"hidden_process",
       "the task list, the PID namespace, the process tree and the runqueues name the same tasks",
       check_hidden_processes},
      {"hidden_module", "the module list, /sys/module and the module address tree agree",
       check_hidden_modules},
      {"hidden_socket",
       "every listener in the socket hash tables is held by a process or listed by /proc/net",
       check_hidden_sockets},
      {"syscall_hook", "every syscall table slot points at the kernel's own entry for that syscall",
       check_syscall_hooks},
      {"idt_hook", "every interrupt gate in use enters kernel text", check_idt_hooks},
      {"proc_hook",
       "the operations behind /proc/net/{tcp,udp}[6], /proc/modules and the root directory call "
       "their owner's code",
       check_proc_hooks},
      {"ftrace_hook", "every ftrace_ops handler is the kernel's own", check_ftrace_hooks},
      {"kprobe", "every registered kprobe's handlers are the kernel's own", check_kprobes},
      {"text_modified",
       "the kernel's text and read-only data match its image (--kernel/--vmlinux) but where the "
       "kernel patches itself",
       check_text_modified},
      {"forged_vmcoreinfo",
       "the kernel's own VMCOREINFO (what crash tools believe) matches its symbols and types",
       check_forged_vmcoreinfo},
  };
  return checks;
}

ObjectContext fresh_reading(Kernel& kernel) {
  kernel.forget_cached_pages();
  return object_context(kernel);
}

void Sighting::note(unsigned view, const char* what, const WalkResult& walk) {
  if (walk.ok()) return;
  incomplete |= view;
  problems.push_back(fmt::format("{} walk ended {}", what, walk_end_name(walk.end)));
}

std::vector<std::string> view_names(unsigned views, std::span<const ViewName> names) {
  std::vector<std::string> out;
  for (const ViewName& v : names)
    if (views & v.bit) out.emplace_back(v.name);
  return out;
}

std::string join_views(const std::vector<std::string>& views) {
  std::string out;
  for (size_t i = 0; i < views.size(); ++i)
    out += (i == 0 ? "" : i + 1 == views.size() ? " and " : ", ") + views[i];
  return out;
}

constexpr int kRereadsWhenTorn = 7;

// Until the guest's clock is `guest` past where it was, or `host_limit` has passed here
// (a paused or hung guest: its state will not change anyway).
void wait_for_guest_time(Kernel& kernel, std::chrono::nanoseconds guest,
                         std::chrono::milliseconds host_limit) {
  auto clock = [&]() -> uint64_t {
    kernel.forget_cached_pages();
    auto up = read_uptime(kernel);
    return up ? up->uptime_ns : 0;
  };
  const uint64_t start = clock();
  if (start == 0) return;
  const auto deadline = std::chrono::steady_clock::now() + host_limit;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (clock() >= start + static_cast<uint64_t>(guest.count())) return;
  }
}

Result<CheckOutcome> compare_views(const CrossView& check,
                                   std::vector<IntegrityFinding>& findings) {
  // A walk torn by a fork or an exit is read again, a few times: on a guest that forks
  // without pause some readings tear, but not every one.
  auto settled_reading = [&]() -> Result<Sighting> {
    NFM_ASSIGN(Sighting s, check.read());
    for (int again = 0; s.incomplete && again < kRereadsWhenTorn; ++again) {
      NFM_ASSIGN(s, check.read());
    }
    return s;
  };
  NFM_ASSIGN(Sighting first, settled_reading());
  struct Candidate {
    std::string identity;
    unsigned missing;
  };
  std::map<uint64_t, Candidate> candidates;
  for (auto [address, seen] : first.seen) {
    auto s = check.subject(address);
    if (!s || !s->live) continue;
    if (unsigned missing = s->expected & first.available & ~seen & ~first.incomplete)
      candidates[address] = {s->identity, missing};
  }
  CheckOutcome outcome;
  outcome.detail = fmt::format("{} {} in {} views", first.seen.size(), check.objects,
                               view_names(first.available, check.views).size());
  Sighting second;
  if (!candidates.empty()) {
    if (check.kernel)
      wait_for_guest_time(*check.kernel, std::chrono::milliseconds(20), std::chrono::seconds(1));
    NFM_ASSIGN(second, settled_reading());
  }
  for (const auto& [address, before] : candidates) {
    auto it = second.seen.find(address);
    if (it == second.seen.end()) continue;  // gone between the readings
    auto s = check.subject(address);
    if (!s) {
      outcome.inconclusive = true;
      continue;
    }
    if (!s->live || s->identity != before.identity) continue;
    const unsigned missing =
        s->expected & second.available & ~it->second & ~second.incomplete & before.missing;
    if (!missing) continue;
    const auto missing_names = view_names(missing, check.views);
    const auto seen_names = view_names(it->second, check.views);
    schema::json evidence = s->evidence;
    evidence["seen_in"] = seen_names;
    evidence["missing_from"] = missing_names;
    findings.push_back(IntegrityFinding{
        .kind = std::string(check.kind),
        .severity = "critical",
        .summary = fmt::format("{} is missing from the {}, seen in the {}", s->label,
                               join_views(missing_names), join_views(seen_names)),
        .evidence = std::move(evidence),
    });
  }
  if (first.incomplete || (!candidates.empty() && second.incomplete)) {
    outcome.inconclusive = true;
    outcome.detail =
        fmt::format("could not read every view: {}",
                    (first.problems.empty() ? second.problems : first.problems).front());
  }
  return outcome;
}

Result<void> known_checks(const std::vector<std::string>& names) {
  const auto& checks = integrity_checks();
  for (const std::string& name : names) {
    if (std::any_of(checks.begin(), checks.end(),
                    [&](const CheckInfo& c) { return c.name == name; }))
      continue;
    std::string known;
    for (const CheckInfo& c : checks) known += (known.empty() ? "" : ", ") + std::string(c.name);
    return make_error(Errc::invalid_argument,
                      fmt::format("unknown check '{}' (checks: {})", name, known));
  }
  return {};
}

Result<IntegrityReport> run_integrity_checks(Kernel& kernel, const IntegrityOptions& options) {
  NFM_TRY(known_checks(options.only));
  const auto& checks = integrity_checks();
  IntegrityReport report;
  for (const CheckInfo& c : checks) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), c.name) == options.only.end())
      continue;
    const auto start = std::chrono::steady_clock::now();
    std::vector<IntegrityFinding> found;
    auto outcome = c.run(kernel, options, found);
    IntegrityCheck check{.name = std::string(c.name)};
    check.duration_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  std::chrono::steady_clock::now() - start)
                                                  .count());
    check.findings = found.size();
    if (!outcome) {
      check.status = "inconclusive";
      check.detail = outcome.error().to_string();
    } else {
      check.detail = outcome->detail;
      check.status = !found.empty()          ? "findings"
                     : outcome->inconclusive ? "inconclusive"
                     : outcome->skipped      ? "skipped"
                                             : "clean";
    }
    for (IntegrityFinding& f : found) report.findings.push_back(std::move(f));
    report.checks.push_back(std::move(check));
  }
  return report;
}

}  // namespace nfm
