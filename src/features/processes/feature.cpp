// The processes feature: its columns, its place in the frame, and the task list
// it shares with the per-process features.
#include "features/feature.h"

#include <cmath>
#include <optional>

#include "features/processes/processes.h"

namespace nfm {

const schema::Fields<ProcessRow>& process_fields() {
  using schema::Column;
  using schema::field;
  using schema::json;
  using schema::Type;
  using R = ProcessRow;
  static const schema::Fields<ProcessRow> fields{
      {
          field("pid", &R::pid, "task id (the thread id for thread rows)"),
          field("tgid", &R::tgid, "process id (thread group id)"),
          field("ppid", &R::ppid, "parent's process id, as /proc/PID/stat shows it"),
          field("comm", &R::comm, "command name as /proc/PID/stat shows it"),
          field("cmdline", &R::cmdline, "arguments as /proc/PID/cmdline, split at NULs"),
          field("exe", &R::exe, "/proc/PID/exe (\"\" for kernel threads)"),
          field("uid", &R::uid, "real user id"),
          field("gid", &R::gid, "real group id"),
          field("euid", &R::euid, "effective user id (cred->euid)"),
          field("egid", &R::egid, "effective group id (cred->egid)"),
          schema::custom_field<R>(
              Column{.name = "state",
                     .type = Type::text,
                     .doc = "/proc state letter (R S D T t X Z P I)"},
              [](const R& r) { return json(std::string(1, r.state)); },
              [](R& r, const json& v, const std::string& path) {
                const std::string state = schema::read_string(v, path);
                if (state.size() != 1)
                  schema::fail(path, fmt::format("'{}' is not one letter", state));
                r.state = state[0];
              }),
          field("threads", &R::threads, "threads in the process (signal->nr_threads)"),
          field("nice", &R::nice, "nice value (static_prio - 120)"),
          field("prio", &R::prio, "priority as /proc/PID/stat field 18"),
          field("utime_ns", &R::utime_ns, "user CPU time, as /proc/PID/stat (adjusted)", "ns"),
          field("stime_ns", &R::stime_ns, "system CPU time, as /proc/PID/stat (adjusted)", "ns"),
          schema::custom_field<R>(
              Column{.name = "cpu_pct",
                     .type = Type::real,
                     .unit = "%",
                     .doc = "share of one CPU: over the lifetime, or over an interval"},
              [](const R& r) { return json(std::round(r.cpu_pct * 100.0) / 100.0); },
              [](R& r, const json& v, const std::string& path) {
                r.cpu_pct = schema::read_number(v, path);
              }),
          field("rss_kb", &R::rss_kb, "VmRSS: file + anon + shmem pages", "kB"),
          field("rss_anon_kb", &R::rss_anon_kb, "RssAnon", "kB"),
          field("rss_file_kb", &R::rss_file_kb, "RssFile", "kB"),
          field("rss_shmem_kb", &R::rss_shmem_kb, "RssShmem", "kB"),
          field("vsz_kb", &R::vsz_kb, "VmSize (mm->total_vm)", "kB"),
          field("start_time", &R::start_time_ns, "start time since boot (start_boottime)", "ns"),
      },
      // Kernel threads have neither arguments nor an executable.
      [](R& r) { r.kernel_thread = r.cmdline.empty() && r.exe.empty(); }};
  return fields;
}

const ProcessList* shared_tasks(CrawlContext& ctx) {
  const ProcessOptions& options = ctx.process_options();
  if (const ProcessList* own = ctx.section<ProcessList>(); own && !options.threads) return own;
  auto& tasks = ctx.scratch<std::optional<ProcessList>>("processes.shared_tasks");
  if (!tasks) {
    FeatureStatus ignored;
    ProcessReader* reader = feature_reader<ProcessReader>(ctx, "processes", ignored);
    if (!reader) return nullptr;
    auto list = reader->list({.max_tasks = options.max_tasks, .cmdline = false});
    if (!list) return nullptr;
    tasks = std::move(*list);
  }
  return &*tasks;
}

NFM_FEATURE(processes) {
  FeatureInfo f{.name = "processes",
                .aliases = {"ps"},
                .doc = "processes (or threads) as the guest's /proc shows them",
                .order = 50};
  set_rows_codec(f, &ProcessList::rows, process_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    ProcessReader* reader = feature_reader<ProcessReader>(ctx, "processes", status);
    if (!reader) return {};
    auto r = reader->list(ctx.process_options());
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.walk = walk_end_name(r->walk.end);
    status.count_error("row_errors", r->row_errors);
    status.count_error("thread_walk_errors", r->thread_walk_errors);
    status.count_error("memory_errors", r->memory_errors);
    status.count_error("cmdline_errors", r->cmdline_errors);
    status.count_error("implausible_values", r->implausible_values);
    status.count_skipped("cmdline_truncated", r->cmdline_truncated);
    status.count_error("exe_errors", r->exe_errors);
    status.count_skipped("torn_retries", r->torn_retries);
    status.rows = r->rows.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
