// `scan`'s section of a frame and `nfm scan --json`: YARA matches in guest memory,
// and what the scan read and skipped. Row types and columns only: no kernel model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/fields.h"

namespace nfm {

// One string of one rule found at one address.
struct ScanMatchRow {
  std::string rule;
  std::string string_id;  // "$a"; "" when the rule's condition needed no string
  std::vector<std::string> tags;
  std::vector<std::string> meta;  // "key=value"
  std::string memory;             // "process" or "kernel"
  std::optional<int32_t> pid, tgid;
  std::string comm;            // the process's, or "" in kernel memory
  std::optional<uint64_t> va;  // where the string starts
  std::optional<uint64_t> pa;  // its guest-physical address
  std::optional<uint64_t> vma_start, vma_end;
  std::optional<std::string> perms, path;  // the VMA's, as /proc/PID/maps shows them
  std::optional<uint64_t> file_offset;     // in the mapped file, for file-backed VMAs
  std::optional<std::string> module;       // kernel memory: "vmlinux" or the module
  std::optional<std::string> symbol;       // kernel memory: "name+0x10", when known
};

// Pages and bytes of one scan, by what happened to them (4 KiB pages).
struct ScanCounts {
  uint64_t bytes_scanned = 0;
  uint64_t pages_scanned = 0;
  uint64_t not_present_pages = 0;       // mapped by no page-table entry (never touched, freed)
  uint64_t swapped_pages = 0;           // the guest swapped them out: not in its RAM
  uint64_t host_nonresident_pages = 0;  // not in host RAM: skipped, not faulted in
  uint64_t host_swapped_pages = 0;      // in the host's swap: skipped, not swapped in
  uint64_t unreadable_pages = 0;        // reads that failed
  uint64_t budget_pages = 0;            // left for a later scan: the byte budget ran out
  uint64_t matches = 0;
  uint64_t matches_dropped = 0;  // beyond the per-object bound (YaraScanner::kMaxMatches)
  void add(const ScanCounts& o);
};

// One process's part of a scan.
struct ProcessScan {
  int32_t pid = 0;
  std::string comm;
  ScanCounts counts;
  std::string error;  // why it could not be read ("" when it was)
};

struct ScanOptions;

struct ScanResult {
  static constexpr std::string_view kFeature = "scan";
  std::vector<ScanMatchRow> rows;
  ScanCounts total;
  std::vector<ProcessScan> processes;
  std::optional<ScanCounts> kernel;   // when kernel memory was scanned
  uint64_t processes_unreadable = 0;  // torn page tables, an mm that went away
  uint64_t duration_ns = 0;
  std::vector<int32_t> completed;  // objects scanned to their end here (pids; 0: kernel memory)
};

const schema::Fields<ScanMatchRow>& scan_match_fields();
const schema::Fields<ScanCounts>& scan_count_fields();
// `nfm scan --json`: {"matches": [...], "summary": {...}}.
schema::json scan_result_json(const ScanResult& result, std::string_view rules);

}  // namespace nfm
