// The rootkit checks (nfm check, the `integrity` frame section). Each check
// compares views the kernel keeps of the same objects, from outside the guest:
// a rootkit that edits one view to fool the guest's own tools is seen in another.
// A live guest changes while we read, so a disagreement is read again before it is
// reported; one that does not settle makes the check inconclusive, never clean.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "features/integrity/rows.h"
#include "kernel/object.h"
#include "kernel/walk_result.h"
#include "util/result.h"

namespace nfm {

class Kernel;

// What a check says of itself, besides its findings.
struct CheckOutcome {
  bool inconclusive = false;
  bool skipped = false;  // not run: it needs what was not given (the detail says what)
  std::string detail;
};

// A check appends its findings and says how it went; an Error means it could not
// run on this kernel at all (reported as inconclusive).
using CheckFunction = Result<CheckOutcome> (*)(Kernel&, const IntegrityOptions&,
                                               std::vector<IntegrityFinding>&);

struct CheckInfo {
  std::string_view name;  // also the kind of its findings
  std::string_view doc;
  CheckFunction run;
};

// Every check, in the order they run.
const std::vector<CheckInfo>& integrity_checks();

// Whether every name is a check's: "unknown check 'x' (checks: ...)" otherwise.
Result<void> known_checks(const std::vector<std::string>& names);

// Runs the checks `options.only` names (all when empty). Unknown names are an error.
Result<IntegrityReport> run_integrity_checks(Kernel& kernel, const IntegrityOptions& options);

// The start of a reading of views: the crawl's cached pages are dropped
// (Kernel::forget_cached_pages), so the views are read as they are now, not
// replayed from pages another feature, or the first reading, cached earlier.
ObjectContext fresh_reading(Kernel& kernel);

// Views are bits; a check names them in its evidence ("seen_in", "missing_from").
struct ViewName {
  unsigned bit;
  const char* name;
};
std::vector<std::string> view_names(unsigned views, std::span<const ViewName> names);
// "a", "a and b", "a, b and c".
std::string join_views(const std::vector<std::string>& views);

// One reading of a set of views: which views hold each object (by address), which
// views this kernel has, and the views whose walk did not end cleanly (what they
// lack proves nothing).
struct Sighting {
  std::map<uint64_t, unsigned> seen;
  unsigned available = 0;
  unsigned incomplete = 0;
  std::vector<std::string> problems;  // "task list walk ended torn"
  // Records how the walk of `view` ended.
  void note(unsigned view, const char* what, const WalkResult& walk);
};

// What a cross-view check knows of one object it saw: whether it is compared at
// all (live), the views it belongs in, who it is (an object freed between the
// readings is soon another's at the same address), and how a finding names it.
struct Subject {
  bool live = false;
  unsigned expected = 0;
  std::string identity;   // "pid 12 started 4711"
  std::string label;      // "pid 12 (sshd)"
  schema::json evidence;  // pid, comm, addresses...
};

// A check that compares views: how to read them all once, and what an object is.
struct CrossView {
  std::string_view kind;     // the findings' kind: "hidden_process"
  std::string_view objects;  // what the views hold, for the detail: "tasks"
  std::span<const ViewName> views;
  std::function<Result<Sighting>()> read;
  std::function<Result<Subject>(uint64_t address)> subject;
  // The guest whose clock must move between the two readings (see compare_views).
  Kernel* kernel = nullptr;
};

// Reads every view (again, up to 7 more times, while a walk ends torn), and reads
// them a second time when some live object is missing from a view it belongs in: a finding is a
// disagreement both readings show for the same object. The second reading waits until
// the guest's own clock has moved (up to a second of host time): a guest that QEMU's
// host did not run in between would show a fork or an exit caught half-way twice.
// Unreadable subjects and incomplete views make the outcome inconclusive.
Result<CheckOutcome> compare_views(const CrossView& check, std::vector<IntegrityFinding>& findings);

class CodeOwners;

// What the guest's /proc/net/{tcp,tcp6,udp,udp6} (of its first network namespace)
// read through: whether the entry exists, and proc_hook's findings for its
// seq_operations (none: the table and its functions are the kernel's or ipv6's).
struct ProcNetReader {
  bool present = false;
  uint64_t ops = 0;  // its seq_operations
  std::vector<IntegrityFinding> hooks;
};
// By reader: "/proc/net/tcp".
Result<std::map<std::string, ProcNetReader>> proc_net_readers(Kernel& kernel,
                                                              const ObjectContext& ctx,
                                                              const CodeOwners& owners);

// Visits every ftrace_ops on ftrace_ops_list (bounded; a loop is an error) and
// returns how many there are.
Result<size_t> for_each_ftrace_ops(Kernel& kernel, const ObjectContext& ctx,
                                   const std::function<Result<void>(const Object&)>& visit);

// ftrace_hook's findings: every ftrace_ops whose handler is not the kernel's, with
// the functions its filter names (evidence "functions"; none: every function).
// Returns how many ftrace_ops are registered.
Result<size_t> ftrace_hooks(Kernel& kernel, const ObjectContext& ctx, const CodeOwners& owners,
                            std::vector<IntegrityFinding>& findings);

// The checks (one file each in this directory).
Result<CheckOutcome> check_hidden_processes(Kernel&, const IntegrityOptions&,
                                            std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_hidden_modules(Kernel&, const IntegrityOptions&,
                                          std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_proc_hooks(Kernel&, const IntegrityOptions&,
                                      std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_ftrace_hooks(Kernel&, const IntegrityOptions&,
                                        std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_kprobes(Kernel&, const IntegrityOptions&,
                                   std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_hidden_sockets(Kernel&, const IntegrityOptions&,
                                          std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_idt_hooks(Kernel&, const IntegrityOptions&,
                                     std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_forged_vmcoreinfo(Kernel&, const IntegrityOptions&,
                                             std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_text_modified(Kernel&, const IntegrityOptions&,
                                         std::vector<IntegrityFinding>&);
Result<CheckOutcome> check_syscall_hooks(Kernel&, const IntegrityOptions&,
                                         std::vector<IntegrityFinding>&);

}  // namespace nfm
