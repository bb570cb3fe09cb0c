// The scan feature: its columns, `nfm scan --json`, and a budgeted scan per crawl
// that rotates through the processes (and kernel memory) so that a whole VM is
// covered over several crawls.
#include "features/feature.h"

#include <fmt/format.h>

#include <map>

#include "features/scan/memory_scan.h"

namespace nfm {

namespace {

using R = ScanMatchRow;
using C = ScanCounts;
using schema::json;

// What a crawl keeps between crawls: where the rotation stands, the matches of each
// object (a pid, 0 for kernel memory) from its last complete scan, and those of the
// scan under way (an object larger than one crawl's budget takes several).
struct ScanState {
  ScanCursor cursor;
  std::map<int32_t, std::vector<ScanMatchRow>> kept, pending;
  std::optional<Result<MemoryScanner>> scanner;
};

}  // namespace

const schema::Fields<ScanMatchRow>& scan_match_fields() {
  using schema::field;
  using schema::nullable_address_field;
  using schema::nullable_field;
  static const schema::Fields<ScanMatchRow> fields{{
      field("rule", &R::rule, "the YARA rule that matched"),
      field("string", &R::string_id, "the rule's string that matched (\"$a\"), \"\" for none"),
      field("tags", &R::tags, "the rule's tags"),
      field("meta", &R::meta, "the rule's metadata, \"key=value\""),
      field("memory", &R::memory, "\"process\" or \"kernel\""),
      nullable_field("pid", &R::pid, "the process's id (null in kernel memory)"),
      nullable_field("tgid", &R::tgid, "its thread group id"),
      field("comm", &R::comm, "the process's command name (\"\" in kernel memory)"),
      nullable_address_field("va", &R::va, "virtual address of the matched bytes"),
      nullable_address_field("pa", &R::pa, "their guest-physical address"),
      nullable_address_field("vma_start", &R::vma_start, "start of the VMA that holds them"),
      nullable_address_field("vma_end", &R::vma_end, "end of that VMA"),
      nullable_field("perms", &R::perms, "the VMA's permissions as /proc/PID/maps shows them"),
      nullable_field("path", &R::path, "the VMA's path as /proc/PID/maps shows it"),
      nullable_field("file_offset", &R::file_offset,
                     "offset of the bytes in the mapped file (file-backed VMAs)", "bytes"),
      nullable_field("module", &R::module, "kernel memory: \"vmlinux\" or the module's name"),
      nullable_field("symbol", &R::symbol, "kernel memory: the symbol that holds the bytes"),
  }};
  return fields;
}

const schema::Fields<ScanCounts>& scan_count_fields() {
  using schema::field;
  static const schema::Fields<ScanCounts> fields{{
      field("bytes_scanned", &C::bytes_scanned, "bytes handed to YARA", "bytes"),
      field("pages_scanned", &C::pages_scanned, "4 KiB pages handed to YARA"),
      field("not_present_pages", &C::not_present_pages,
            "pages of mapped areas the guest does not hold (never touched, dropped)"),
      field("swapped_pages", &C::swapped_pages, "pages the guest swapped out"),
      field("host_nonresident_pages", &C::host_nonresident_pages,
            "pages skipped: not in host RAM (evicted from the page cache, never touched)"),
      field("host_swapped_pages", &C::host_swapped_pages, "pages skipped: in the host's swap"),
      field("unreadable_pages", &C::unreadable_pages, "pages whose read failed"),
      field("budget_pages", &C::budget_pages, "pages left for a later scan (byte budget)"),
      field("matches", &C::matches, "matches reported"),
      field("matches_dropped", &C::matches_dropped, "matches beyond the per-object bound"),
  }};
  return fields;
}

json scan_result_json(const ScanResult& result, std::string_view rules) {
  json summary = scan_count_fields().write(result.total);
  const double seconds = static_cast<double>(result.duration_ns) / 1e9;
  summary["rules"] = rules;
  summary["duration_ms"] = result.duration_ns / 1000000;
  summary["throughput_mb_s"] =
      seconds > 0 ? static_cast<double>(result.total.bytes_scanned) / 1e6 / seconds : 0.0;
  summary["processes_scanned"] = result.processes.size() - result.processes_unreadable;
  summary["processes_unreadable"] = result.processes_unreadable;
  json processes = json::array();
  for (const ProcessScan& p : result.processes) {
    json o = {{"pid", p.pid}, {"comm", p.comm}};
    o.update(scan_count_fields().write(p.counts));
    if (!p.error.empty()) o["error"] = p.error;
    processes.push_back(std::move(o));
  }
  summary["processes"] = std::move(processes);
  summary["kernel"] = result.kernel ? scan_count_fields().write(*result.kernel) : json();
  return {{"matches", schema::rows_json(scan_match_fields(), result.rows)},
          {"summary", std::move(summary)}};
}

NFM_FEATURE(scan) {
  FeatureInfo f{.name = "scan",
                .doc = "YARA matches in process and kernel memory, with nfm crawl --scan-rules",
                .order = 900,
                .on_request = true};
  set_rows_codec(f, &ScanResult::rows, scan_match_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    const auto options = ctx.options<ScanOptions>("scan");
    if (!options.rules) {
      status.error = "no rules: give nfm crawl --scan-rules FILE";
      return {};
    }
    ScanState& state = ctx.state<ScanState>("scan");
    if (!state.scanner) state.scanner.emplace(MemoryScanner::create(ctx.kernel()));
    if (!*state.scanner) {
      status.error = state.scanner->error().to_string();
      return {};
    }
    const ProcessList* tasks = shared_tasks(ctx);
    auto r = (*state.scanner)->scan_from(state.cursor, options, tasks, [&](int32_t pid) {
      state.pending[pid].clear();
    });
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    for (ScanMatchRow& row : r->rows) state.pending[row.pid.value_or(0)].push_back(std::move(row));
    // An object's matches change when its scan has read it all again.
    for (int32_t done : r->completed) {
      state.kept[done] = std::move(state.pending[done]);
      state.pending.erase(done);
    }
    // A match stays reported until the memory that held it is gone: its process
    // exited (or rescanned, above).
    if (tasks) {
      auto gone = [&](const auto& entry) {
        if (entry.first == 0) return false;
        for (const ProcessRow& p : tasks->rows)
          if (p.pid == entry.first) return false;
        return true;
      };
      std::erase_if(state.kept, gone);
      std::erase_if(state.pending, gone);
    }
    ScanResult section;
    for (const auto& [pid, rows] : state.kept)
      section.rows.insert(section.rows.end(), rows.begin(), rows.end());
    status.count_error("unreadable_pages", r->total.unreadable_pages);
    status.count_error("processes_unreadable", r->processes_unreadable);
    status.count_skipped("not_present_pages", r->total.not_present_pages);
    status.count_skipped("swapped_pages", r->total.swapped_pages);
    status.count_skipped("host_nonresident_pages", r->total.host_nonresident_pages);
    status.count_skipped("host_swapped_pages", r->total.host_swapped_pages);
    status.count_skipped("budget_pages", r->total.budget_pages);
    status.rows = section.rows.size();
    return section;
  };
  return f;
}

}  // namespace nfm
