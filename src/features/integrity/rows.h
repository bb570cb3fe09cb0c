// `integrity`'s section of a frame: what the rootkit checks found. Where the
// kernel keeps two views of one thing (the task list and the PID namespace, the
// module list and /sys/module, the syscall table and the symbols it was built
// from) and they disagree, something is hiding. Row types and columns only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "schema/fields.h"

namespace nfm {

// One thing a check found.
struct IntegrityFinding {
  std::string kind;       // "hidden_process", "hidden_module", "syscall_hook", ...
  std::string severity;   // "warning" or "critical"
  std::string summary;    // one line
  schema::json evidence;  // an object: pid/comm or module or slot, hex addresses, views
};

// How one check went. "inconclusive" when it could not decide (unreadable memory,
// a view that stayed torn): never reported as clean.
struct IntegrityCheck {
  std::string name;    // the kind of finding it looks for
  std::string status;  // "clean", "findings", "inconclusive" or "skipped" (needs an input)
  std::string detail;  // why inconclusive; what was compared otherwise
  uint64_t findings = 0;
  uint64_t duration_ns = 0;
};

struct IntegrityOptions {
  std::vector<std::string> only;  // check names to run; empty: all
  size_t max_tasks = 1 << 17;     // per view
  size_t max_modules = 1 << 14;   // per view
};

struct IntegrityReport {
  static constexpr std::string_view kFeature = "integrity";
  std::vector<IntegrityFinding> findings;  // the section's rows
  std::vector<IntegrityCheck> checks;      // every check run, in order
};

const schema::Fields<IntegrityFinding>& integrity_fields();

}  // namespace nfm
