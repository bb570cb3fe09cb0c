#include "features/processes/processes.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "features/uptime/uptime.h"
#include "kernel/layout.h"

namespace nfm {

namespace {

// Task state bits as /proc reports them (include/linux/sched.h; stable across
// 5.10-6.12, and visible to user space through tracepoint formats).
constexpr uint32_t kTaskReport = 0x7f;  // INTERRUPTIBLE..PARKED, incl. EXIT_DEAD/ZOMBIE
constexpr uint32_t kTaskIdle = 0x402;   // TASK_UNINTERRUPTIBLE | TASK_NOLOAD
constexpr char kStateLetters[] = "RSDTtXZPI";
constexpr uint64_t kPageKb = 4;
constexpr uint32_t kPfKthread = 0x00200000;   // PF_KTHREAD (include/linux/sched.h)
constexpr uint32_t kPfWqWorker = 0x00000020;  // PF_WQ_WORKER
constexpr size_t kProcNameMax = 63;           // proc_task_name()'s tcomm[64]
constexpr int32_t kNiceZeroPrio = 120;        // NICE_TO_PRIO(0) (include/linux/sched/prio.h)
constexpr int32_t kMaxRtPrio = 100;           // MAX_RT_PRIO
constexpr uint64_t kUserPage = 4096;
constexpr int32_t kPidMaxLimit =
    4 * 1024 * 1024;  // PID_MAX_LIMIT, 64-bit (include/linux/threads.h)

char state_letter(uint32_t state, uint32_t exit_state) {
  uint32_t report = (state | exit_state) & kTaskReport;
  if (state == kTaskIdle) report = kTaskReport + 1;           // TASK_REPORT_MAX -> 'I'
  const int index = report ? 32 - __builtin_clz(report) : 0;  // fls()
  return index < 9 ? kStateLetters[index] : '?';
}

using Slot = FieldSlot;

// Gathers the slots of one struct that a feature reads together and turns them
// into offsets within one buffer covering them all (a single read per object).
struct Span {
  uint64_t lo = UINT64_MAX, hi = 0;
  void cover(std::initializer_list<Slot*> slots) {
    for (Slot* s : slots)
      if (s->present) lo = std::min(lo, s->offset), hi = std::max(hi, s->offset + s->size);
    for (Slot* s : slots)
      if (s->present) s->offset -= lo;
  }
  uint64_t size() const { return hi > lo ? hi - lo : 0; }
};

// Highest user-space address + 1 (TASK_SIZE_MAX, arch/x86/include/asm/page_64_types.h).
uint64_t user_top(int levels) {
  return levels == 5 ? (1ull << 56) - kUserPage : (1ull << 47) - kUserPage;
}

}  // namespace

CpuTimes adjust_cputime(uint64_t utime, uint64_t stime, uint64_t runtime, CpuTimes prev) {
  // Monotonic filter: the kernel answers with the previous split until the
  // runtime passes it.
  if (prev.stime + prev.utime >= runtime) return prev;
  uint64_t s = stime, u = utime;
  if (s == 0) {
    u = runtime;  // no system ticks yet: all user
  } else if (u == 0) {
    s = runtime;
  } else {
    // mul_u64_u64_div_u64() is exact on x86-64 (128-bit mulq/divq).
    s = static_cast<uint64_t>(static_cast<unsigned __int128>(s) * runtime / (s + u));
    s = std::min(s, runtime);
  }
  // Neither part goes backwards.
  s = std::max(s, prev.stime);
  u = runtime - s;
  if (u < prev.utime) {
    u = prev.utime;
    s = runtime - u;
  }
  return {u, s};
}

std::vector<std::string> split_cmdline(std::string_view raw) {
  std::vector<std::string> args;
  for (size_t pos = 0; pos < raw.size();) {
    size_t end = raw.find('\0', pos);
    if (end == std::string_view::npos) end = raw.size();
    args.emplace_back(raw.substr(pos, end - pos));
    pos = end + 1;
  }
  return args;
}

void measure_cpu_over_interval(ProcessList& later, const ProcessList& earlier) {
  struct Before {
    uint64_t start_time, runtime;
  };
  std::unordered_map<uint64_t, Before> before;  // by task_struct address
  for (const ProcessRow& r : earlier.rows) before[r.task] = {r.start_time_ns, r.runtime_ns};
  for (ProcessRow& r : later.rows) {
    r.cpu_pct = 0;
    if (!later.clock_ns || !earlier.clock_ns || later.clock_ns <= earlier.clock_ns) continue;
    uint64_t gained = r.runtime_ns, since = std::max(earlier.clock_ns, r.start_time_ns);
    auto it = before.find(r.task);
    // The same task (a freed task_struct may be reused by a newer task).
    if (it != before.end() && it->second.start_time == r.start_time_ns) {
      gained = r.runtime_ns > it->second.runtime ? r.runtime_ns - it->second.runtime : 0;
      since = earlier.clock_ns;
    }
    if (later.clock_ns > since)
      r.cpu_pct = 100.0 * static_cast<double>(gained) / static_cast<double>(later.clock_ns - since);
  }
}

// What one list() call shares between tasks: threads of a process share their
// mm, so its counters and argument area are read once.
struct ProcessReader::Crawl {
  const ProcessOptions& options;
  ProcessList& out;
  struct Memory {
    uint64_t vsz_kb, rss_file_kb, rss_anon_kb, rss_shmem_kb;
    std::vector<std::string> cmdline;
  };
  std::unordered_map<uint64_t, Memory> memory;  // by mm
  std::vector<uint8_t> mm_buffer;
  std::string bytes;
  uint64_t ram_pages = 0;  // the guest's RAM: no resident set is larger (0: unknown)
};

struct ProcessReader::Layout {
  // task_struct
  Slot tasks, flags, pid, tgid, comm, state, exit_state, real_parent, real_cred, mm, signal,
      start_time;
  Slot thread_group, thread_node;  // threads: thread_group (<6.7) or signal->thread_head (6.6+)
  Slot static_prio, prio, utime, stime, runtime, prev_utime, prev_stime;
  uint64_t span_lo = 0, span_hi = 0;  // the part of task_struct we read in one go
  // signal_struct
  uint64_t signal_thread_head = 0;
  bool has_thread_head = false;
  Slot sig_nr_threads, sig_utime, sig_stime, sig_runtime, sig_prev_utime, sig_prev_stime;
  Span signal_span;
  // cred
  uint64_t cred_uid = 0, cred_gid = 0, cred_euid = 0, cred_egid = 0;
  // mm_struct
  Slot mm_pgd, mm_total_vm, mm_arg_start, mm_arg_end, mm_env_start, mm_env_end;
  Slot mm_rss[3];                  // MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES counters
  uint64_t mm_rss_percpu[3] = {};  // their per-cpu parts (percpu_counter.counters), 6.2+
  bool rss_is_percpu = false;
  Span mm_span;
  // Kernel thread names as /proc shows them (fs/proc/array.c proc_task_name()).
  Slot kthread_ptr;  // task->worker_private (5.17+) or set_child_tid
  std::optional<uint64_t> kthread_full_name, kthread_data;
  std::optional<uint64_t> worker_desc, worker_pool, worker_current_work, worker_rescue_wq, wq_name;
  uint64_t worker_desc_size = 0;
};

Result<ProcessReader> ProcessReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto slot = [&](const char* type, const char* path) { return optional_slot(t, type, path); };
  auto require = [&](const char* type, const char* path) { return required_slot(t, type, path); };
  NFM_ASSIGN(l.tasks, require("task_struct", "tasks"));
  NFM_ASSIGN(l.flags, require("task_struct", "flags"));
  NFM_ASSIGN(l.pid, require("task_struct", "pid"));
  NFM_ASSIGN(l.tgid, require("task_struct", "tgid"));
  NFM_ASSIGN(l.comm, require("task_struct", "comm"));
  // 5.14 (2f064a59a11f "sched: Change task_struct::state") renamed state to __state.
  l.state = slot("task_struct", "__state");
  if (!l.state.present) {
    NFM_ASSIGN(l.state, require("task_struct", "state"));
  }
  NFM_ASSIGN(l.exit_state, require("task_struct", "exit_state"));
  NFM_ASSIGN(l.real_parent, require("task_struct", "real_parent"));
  NFM_ASSIGN(l.real_cred, require("task_struct", "real_cred"));
  NFM_ASSIGN(l.mm, require("task_struct", "mm"));
  NFM_ASSIGN(l.signal, require("task_struct", "signal"));
  // 5.5 (cf25e24db61c) added start_boottime, which /proc reports; older: real_start_time.
  l.start_time = slot("task_struct", "start_boottime");
  if (!l.start_time.present) l.start_time = slot("task_struct", "real_start_time");
  // 6.6 (8e1f385104ac "kill task_struct->thread_group") moved threads to
  // signal->thread_head / task->thread_node; prefer it where it exists.
  l.thread_node = slot("task_struct", "thread_node");
  auto head = t.member("signal_struct", "thread_head");
  l.has_thread_head = l.thread_node.present && head.ok();
  if (l.has_thread_head) {
    l.signal_thread_head = head->offset;
  } else {
    NFM_ASSIGN(l.thread_group, require("task_struct", "thread_group"));
  }

  NFM_ASSIGN(Field uid, t.member("cred", "uid"));
  NFM_ASSIGN(Field gid, t.member("cred", "gid"));
  NFM_ASSIGN(Field euid, t.member("cred", "euid"));
  NFM_ASSIGN(Field egid, t.member("cred", "egid"));
  l.cred_uid = uid.offset, l.cred_gid = gid.offset, l.cred_euid = euid.offset,
  l.cred_egid = egid.offset;

  // Scheduling and CPU time (include/linux/sched.h, kernel/sched/cputime.c).
  NFM_ASSIGN(l.static_prio, require("task_struct", "static_prio"));
  NFM_ASSIGN(l.prio, require("task_struct", "prio"));
  NFM_ASSIGN(l.utime, require("task_struct", "utime"));
  NFM_ASSIGN(l.stime, require("task_struct", "stime"));
  NFM_ASSIGN(l.runtime, require("task_struct", "se.sum_exec_runtime"));
  // prev_cputime is absent with CONFIG_VIRT_CPU_ACCOUNTING_NATIVE: no adjustment there.
  l.prev_utime = slot("task_struct", "prev_cputime.utime");
  l.prev_stime = slot("task_struct", "prev_cputime.stime");
  NFM_ASSIGN(l.sig_nr_threads, require("signal_struct", "nr_threads"));
  NFM_ASSIGN(l.sig_utime, require("signal_struct", "utime"));
  NFM_ASSIGN(l.sig_stime, require("signal_struct", "stime"));
  NFM_ASSIGN(l.sig_runtime, require("signal_struct", "sum_sched_runtime"));
  l.sig_prev_utime = slot("signal_struct", "prev_cputime.utime");
  l.sig_prev_stime = slot("signal_struct", "prev_cputime.stime");
  l.signal_span.cover({&l.sig_nr_threads, &l.sig_utime, &l.sig_stime, &l.sig_runtime,
                       &l.sig_prev_utime, &l.sig_prev_stime});

  NFM_ASSIGN(l.mm_total_vm, require("mm_struct", "total_vm"));
  NFM_ASSIGN(l.mm_pgd, require("mm_struct", "pgd"));
  NFM_ASSIGN(l.mm_arg_start, require("mm_struct", "arg_start"));
  NFM_ASSIGN(l.mm_arg_end, require("mm_struct", "arg_end"));
  NFM_ASSIGN(l.mm_env_start, require("mm_struct", "env_start"));
  NFM_ASSIGN(l.mm_env_end, require("mm_struct", "env_end"));
  // RSS counters: 6.2 (f1a7941243c1 "mm: convert mm's rss stats into
  // percpu_counter") made rss_stat an array of percpu_counter; /proc reads only
  // their global `count`. Before: struct mm_rss_stat { atomic_long_t count[]; }.
  const char* names[3] = {"MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"};
  for (int i = 0; i < 3; ++i) {
    NFM_ASSIGN(int64_t index, t.enum_value(names[i]));
    const std::string element = "rss_stat[" + std::to_string(index) + "]";
    auto f = t.member("mm_struct", element + ".count");
    if (f) {
      NFM_ASSIGN(Field percpu, t.member("mm_struct", element + ".counters"));
      l.mm_rss_percpu[i] = percpu.offset;
      l.rss_is_percpu = true;
    } else {
      f = t.member("mm_struct", "rss_stat.count[" + std::to_string(index) + "]");
    }
    if (!f) return f.error();
    l.mm_rss[i] = slot_of(*f);
  }
  l.mm_span.cover({&l.mm_pgd, &l.mm_total_vm, &l.mm_arg_start, &l.mm_arg_end, &l.mm_env_start,
                   &l.mm_env_end, &l.mm_rss[0], &l.mm_rss[1], &l.mm_rss[2]});

  // 5.17 (d6986ce24fc0 "kthread: dynamically allocate memory to store
  // kthread's full name") keeps names longer than comm in kthread->full_name;
  // the struct kthread hangs off worker_private (e32cf5dfbe22, 5.17) or,
  // before, set_child_tid.
  l.kthread_ptr = slot("task_struct", "worker_private");
  if (!l.kthread_ptr.present) l.kthread_ptr = slot("task_struct", "set_child_tid");
  auto opt = [&](const char* type, const char* path) -> std::optional<uint64_t> {
    auto f = t.member(type, path);
    return f ? std::optional<uint64_t>(f->offset) : std::nullopt;
  };
  l.kthread_full_name = opt("kthread", "full_name");
  l.kthread_data = opt("kthread", "data");
  // Workqueue workers append "+desc"/"-desc" (kernel/workqueue.c wq_worker_comm()).
  l.worker_desc = opt("worker", "desc");
  if (auto desc = t.member("worker", "desc")) l.worker_desc_size = desc->size;
  l.worker_current_work = opt("worker", "current_work");
  l.worker_pool = opt("worker", "pool");
  l.worker_rescue_wq = opt("worker", "rescue_wq");
  l.wq_name = opt("workqueue_struct", "name");

  // One read covers every task field we use.
  Span task_span;
  task_span.cover({&l.tasks,       &l.flags,     &l.kthread_ptr, &l.pid,          &l.tgid,
                   &l.comm,        &l.state,     &l.exit_state,  &l.real_parent,  &l.real_cred,
                   &l.mm,          &l.signal,    &l.start_time,  &l.thread_group, &l.thread_node,
                   &l.static_prio, &l.prio,      &l.utime,       &l.stime,        &l.runtime,
                   &l.prev_utime,  &l.prev_stime});
  l.span_lo = task_span.lo;
  l.span_hi = task_span.hi;
  return ProcessReader(kernel, std::move(layout));
}

bool ProcessReader::read_task(uint64_t task, ProcessRow& row, Crawl& crawl, TaskTimes& times) {
  const Layout& l = *layout_;
  buffer_.resize(l.span_hi - l.span_lo);
  if (!kernel_->read(task + l.span_lo, buffer_.data(), buffer_.size())) return false;
  const std::span<const uint8_t> b(buffer_);
  row.task = task;
  row.pid = static_cast<int32_t>(load_signed(b, l.pid));
  row.tgid = static_cast<int32_t>(load_signed(b, l.tgid));
  // No task has an id past PID_MAX_LIMIT: this is not a task (or not one any more).
  if (row.pid < 0 || row.pid > kPidMaxLimit || row.tgid < 0 || row.tgid > kPidMaxLimit)
    return false;
  row.comm = load_chars(b, l.comm);
  row.state = state_letter(static_cast<uint32_t>(load_unsigned(b, l.state)),
                           static_cast<uint32_t>(load_unsigned(b, l.exit_state)));
  row.start_time_ns = load_unsigned(b, l.start_time);
  row.nice = static_cast<int32_t>(load_signed(b, l.static_prio)) - kNiceZeroPrio;
  row.prio = static_cast<int32_t>(load_signed(b, l.prio)) - kMaxRtPrio;

  // This thread's CPU time, as /proc/PID/task/TID/stat shows it
  // (task_cputime_adjusted(): the thread's own prev_cputime).
  times = {load_unsigned(b, l.utime), load_unsigned(b, l.stime), load_unsigned(b, l.runtime)};
  row.runtime_ns = times.runtime;
  if (l.prev_utime.present && l.prev_stime.present) {
    const CpuTimes adjusted =
        adjust_cputime(times.utime, times.stime, times.runtime,
                       {load_unsigned(b, l.prev_utime), load_unsigned(b, l.prev_stime)});
    row.utime_ns = adjusted.utime, row.stime_ns = adjusted.stime;
  } else {
    row.utime_ns = times.utime, row.stime_ns = times.stime;
  }

  // Parent: /proc shows real_parent's tgid (0 for the children of the swapper).
  const uint64_t parent = load_unsigned(b, l.real_parent);
  row.ppid = 0;
  if (parent && parent != task) {
    auto ptgid = kernel_->read_value<int32_t>(parent + l.span_lo + l.tgid.offset);
    if (ptgid) row.ppid = *ptgid;
  }

  const uint64_t cred = load_unsigned(b, l.real_cred);
  if (cred) {
    struct {
      uint32_t v;
    } id{};
    if (kernel_->read(cred + l.cred_uid, &id, 4)) row.uid = id.v;
    if (kernel_->read(cred + l.cred_gid, &id, 4)) row.gid = id.v;
    if (kernel_->read(cred + l.cred_euid, &id, 4)) row.euid = id.v;
    if (kernel_->read(cred + l.cred_egid, &id, 4)) row.egid = id.v;
  }

  const uint64_t mm = load_unsigned(b, l.mm);
  const uint32_t flags = static_cast<uint32_t>(load_unsigned(b, l.flags));
  row.kernel_thread = flags & kPfKthread;
  if (row.kernel_thread)
    row.comm = kernel_thread_name(row.comm, flags, load_unsigned(b, l.kthread_ptr));
  // /proc goes through get_task_mm(), which gives kernel threads none (even one
  // borrowing a user mm with kthread_use_mm()).
  if (mm && !row.kernel_thread) read_memory(mm, row, crawl);
  return true;
}

Result<ProcessReader::TaskTimes> ProcessReader::read_times(uint64_t task) {
  const Layout& l = *layout_;
  TaskTimes t;
  NFM_ASSIGN(t.utime, kernel_->read_value<uint64_t>(task + l.span_lo + l.utime.offset));
  NFM_ASSIGN(t.stime, kernel_->read_value<uint64_t>(task + l.span_lo + l.stime.offset));
  NFM_ASSIGN(t.runtime, kernel_->read_value<uint64_t>(task + l.span_lo + l.runtime.offset));
  return t;
}

void ProcessReader::read_memory(uint64_t mm, ProcessRow& row, Crawl& crawl) {
  const Layout& l = *layout_;
  auto cached = crawl.memory.find(mm);
  if (cached == crawl.memory.end()) {
    std::vector<uint8_t>& buf = crawl.mm_buffer;
    buf.resize(l.mm_span.size());
    if (!kernel_->read(mm + l.mm_span.lo, buf.data(), buf.size())) {
      ++crawl.out.memory_errors;
      return;
    }
    Crawl::Memory m{};
    m.vsz_kb = load_unsigned(buf, l.mm_total_vm) * kPageKb;
    uint64_t* rss_kb[3] = {&m.rss_file_kb, &m.rss_anon_kb, &m.rss_shmem_kb};
    for (int i = 0; i < 3; ++i) {
      int64_t count = load_signed(buf, l.mm_rss[i]);
      // The guest's /proc/PID/status sums the per-cpu deltas too
      // (get_mm_counter_sum(), backported to the 6.12 stable series).
      if (l.rss_is_percpu) count += percpu_sum_s32(mm + l.mm_rss_percpu[i]);
      // More pages than the guest has RAM: a counter no kernel kept, not a size.
      if (crawl.ram_pages && count > 0 && static_cast<uint64_t>(count) > crawl.ram_pages) {
        ++crawl.out.implausible_values;
        count = 0;
      }
      *rss_kb[i] = count > 0 ? static_cast<uint64_t>(count) * kPageKb : 0;  // /proc clamps at 0
    }
    if (crawl.options.cmdline) m.cmdline = split_cmdline(read_cmdline(buf, crawl));
    cached = crawl.memory.emplace(mm, std::move(m)).first;
  }
  const Crawl::Memory& m = cached->second;
  row.vsz_kb = m.vsz_kb;
  row.rss_file_kb = m.rss_file_kb, row.rss_anon_kb = m.rss_anon_kb;
  row.rss_shmem_kb = m.rss_shmem_kb;
  row.rss_kb = m.rss_file_kb + m.rss_anon_kb + m.rss_shmem_kb;
  row.cmdline = m.cmdline;
}

// The argument area as fs/proc/base.c get_mm_cmdline() reads it, through the
// process's own page tables. Pages the guest has not faulted in (or swapped
// out) end the read: the kernel would fault them in, we cannot.
std::string ProcessReader::read_cmdline(std::span<const uint8_t> mm, Crawl& crawl) {
  const Layout& l = *layout_;
  const uint64_t arg_start = load_unsigned(mm, l.mm_arg_start);
  const uint64_t arg_end = load_unsigned(mm, l.mm_arg_end);
  uint64_t env_start = load_unsigned(mm, l.mm_env_start);
  uint64_t env_end = load_unsigned(mm, l.mm_env_end);
  if (arg_start > arg_end) {  // reversed: not a range any kernel set
    ++crawl.out.implausible_values;
    return {};
  }
  if (!env_end || arg_start == arg_end) return {};  // not spawned far enough
  const uint64_t top = user_top(kernel_->location().levels);
  if (arg_end > top || env_end > top) {
    ++crawl.out.cmdline_errors;
    return {};
  }
  auto space = kernel_->user_space(load_unsigned(mm, l.mm_pgd));
  if (!space) {
    ++crawl.out.cmdline_errors;
    return {};
  }
  // Reads [va, va + len) a page at a time up to the first hole, like access_remote_vm().
  std::string& bytes = crawl.bytes;
  auto read_user = [&](uint64_t va, uint64_t len) {
    bytes.clear();
    while (len > 0) {
      const uint64_t chunk = std::min(len, kUserPage - va % kUserPage);
      const size_t at = bytes.size();
      bytes.resize(at + chunk);
      if (!(*space)->read(va, bytes.data() + at, chunk)) {
        bytes.resize(at);
        ++crawl.out.cmdline_errors;
        return;
      }
      va += chunk, len -= chunk;
    }
  };
  // setproctitle() may overwrite the arguments and run on into the environment
  // when that follows directly; the kernel then shows the first string only, up
  // to a page. It knows by a non-NUL last argument byte.
  if (env_start != arg_end || env_end < env_start) env_start = env_end = arg_end;
  char last = 0;
  if ((*space)->read(arg_end - 1, &last, 1) && last != 0) {
    read_user(arg_start, std::min<uint64_t>(kUserPage, top - arg_start));
    const size_t len = bytes.find('\0');
    return len == std::string::npos ? bytes : bytes.substr(0, len + 1);
  }
  uint64_t len = arg_end - arg_start;
  if (len > crawl.options.max_cmdline) {
    len = crawl.options.max_cmdline;
    ++crawl.out.cmdline_truncated;
  }
  read_user(arg_start, len);
  return bytes;
}

int64_t ProcessReader::percpu_sum_s32(uint64_t counters_field) {
  auto base = kernel_->read_pointer(counters_field);
  if (!base || *base == 0) return 0;
  int64_t sum = 0;
  for (uint64_t offset : kernel_->percpu_offsets()) {
    auto v = kernel_->read_value<int32_t>(*base + offset);
    if (v) sum += *v;
  }
  return sum;
}

std::string ProcessReader::kernel_thread_name(const std::string& comm, uint32_t flags,
                                              uint64_t kthread) {
  const Layout& l = *layout_;
  if (!kthread) return comm;
  if ((flags & kPfWqWorker) && l.kthread_data && l.worker_desc) {
    auto worker = kernel_->read_pointer(kthread + *l.kthread_data);
    if (!worker || !*worker) return comm;
    std::string name = comm;
    // 6.10+ names rescuers "kworker/R-" + the workqueue's full name.
    if (comm.rfind("kworker/R-", 0) == 0 && l.worker_rescue_wq && l.wq_name) {
      auto wq = kernel_->read_pointer(*worker + *l.worker_rescue_wq);
      if (wq && *wq) {
        if (auto n = kernel_->read_string(*wq + *l.wq_name, 32)) name = "kworker/R-" + *n;
      }
    }
    // Only workers attached to a pool show what they last ran.
    auto pool = l.worker_pool ? kernel_->read_pointer(*worker + *l.worker_pool)
                              : Result<uint64_t>(uint64_t{0});
    auto desc = kernel_->read_string(*worker + *l.worker_desc, l.worker_desc_size);
    if (pool && *pool && desc && !desc->empty()) {
      auto current = l.worker_current_work ? kernel_->read_pointer(*worker + *l.worker_current_work)
                                           : Result<uint64_t>(uint64_t{0});
      name += (current && *current ? "+" : "-") + *desc;
    }
    return name.substr(0, kProcNameMax);
  }
  if (!(flags & kPfWqWorker) && l.kthread_full_name) {
    auto full = kernel_->read_pointer(kthread + *l.kthread_full_name);
    if (full && *full) {
      if (auto n = kernel_->read_string(*full, kProcNameMax)) return *n;
    }
  }
  return comm;
}

// /proc/PID/exe for every user process (threads share their leader's), through the
// guest's dentries: a name per process, so only when asked.
void ProcessReader::read_executables(ProcessList& out) {
  if (!paths_) paths_.emplace(PathResolver::create(*kernel_));
  if (!*paths_) {
    out.exe_errors += 1;
    return;
  }
  PathResolver& paths = paths_->value();
  paths.begin_crawl();
  std::unordered_map<int32_t, std::string> by_tgid;
  for (ProcessRow& r : out.rows) {
    if (r.kernel_thread) continue;
    auto known = by_tgid.find(r.tgid);
    if (known != by_tgid.end()) {
      r.exe = known->second;
      continue;
    }
    auto exe = paths.task_exe(r.task);
    if (!exe) ++out.exe_errors;
    r.exe = exe.value_or("");
    by_tgid.emplace(r.tgid, r.exe);
  }
}

// Through a system-call source each page the loop in list() meets costs a call of
// its own; asking for the pages ahead batches them: every task span in one call,
// then everything the spans point to (parent, cred, mm, signal) in another.
void ProcessReader::prefetch(const std::vector<uint64_t>& tasks) {
  if (!kernel_->prefetches()) return;
  const Layout& l = *layout_;
  std::vector<Kernel::Range> ranges;
  ranges.reserve(tasks.size() * 4);
  for (uint64_t task : tasks) ranges.push_back({task + l.span_lo, l.span_hi - l.span_lo});
  kernel_->prefetch(ranges);
  ranges.clear();
  const size_t cred_lo = std::min({l.cred_uid, l.cred_gid, l.cred_euid, l.cred_egid});
  const size_t cred_hi = std::max({l.cred_uid, l.cred_gid, l.cred_euid, l.cred_egid}) + 4;
  for (uint64_t task : tasks) {
    buffer_.resize(l.span_hi - l.span_lo);
    if (!kernel_->read(task + l.span_lo, buffer_.data(), buffer_.size())) continue;
    auto add = [&](uint64_t base, uint64_t offset, uint64_t len) {
      if (base) ranges.push_back({base + offset, len});
    };
    add(load_unsigned(buffer_, l.real_parent), l.span_lo + l.tgid.offset, l.tgid.size);
    add(load_unsigned(buffer_, l.real_cred), cred_lo, cred_hi - cred_lo);
    add(load_unsigned(buffer_, l.signal), l.signal_span.lo, l.signal_span.size());
    if (load_unsigned(buffer_, l.flags) & kPfKthread) {
      // The struct kthread behind a kernel thread's name (kernel_thread_name()).
      if (l.kthread_data) add(load_unsigned(buffer_, l.kthread_ptr), *l.kthread_data, 8);
      if (l.kthread_full_name) add(load_unsigned(buffer_, l.kthread_ptr), *l.kthread_full_name, 8);
    } else {
      add(load_unsigned(buffer_, l.mm), l.mm_span.lo, l.mm_span.size());
    }
  }
  kernel_->prefetch(ranges);
}

Result<ProcessSet> ProcessSet::of(ProcessReader& reader, const ProcessList* shared,
                                  size_t max_tasks) {
  ProcessSet set;
  if (shared) {
    set.shared_ = shared;
  } else {
    NFM_ASSIGN(set.own_, reader.list({.max_tasks = max_tasks, .cmdline = false}));
  }
  return set;
}

std::vector<const ProcessRow*> ProcessSet::in_proc(std::optional<int32_t> pid) const {
  std::vector<const ProcessRow*> rows;
  for (const ProcessRow& r : list().rows)
    if (r.pid != 0 && (!pid || r.pid == *pid)) rows.push_back(&r);
  return rows;
}

Result<ProcessList> ProcessReader::list(const ProcessOptions& options) {
  const Layout& l = *layout_;
  NFM_ASSIGN(uint64_t init_task, kernel_->symbol("init_task"));
  const uint64_t tasks_off = l.tasks.offset + l.span_lo;
  ProcessList out;
  Crawl crawl{options, out, {}, {}, {}};
  for (const PhysRange& r : kernel_->memory().ranges()) crawl.ram_pages += r.size / 4096;
  // The guest's own clock, for the CPU shares.
  if (auto clock = read_uptime(*kernel_)) out.clock_ns = clock->uptime_ns;
  std::vector<uint64_t> leaders;
  // A process that exits while the list is walked can unlink itself under us (the walk
  // ends torn). The list walk is cheap next to reading the tasks, and a guest forking
  // hard tears it often: walk it again a few times before settling for a torn list.
  constexpr int kTornRetries = 3;
  for (int attempt = 0;; ++attempt) {
    leaders.clear();
    out.walk =
        walk_list(kernel_->space(), init_task + tasks_off, options.max_tasks, [&](uint64_t node) {
          leaders.push_back(node - tasks_off);
          return true;
        });
    if (out.walk.end != WalkEnd::torn || attempt == kTornRetries) break;
    ++out.torn_retries;
    // The crawl cache still holds the pages the torn walk read: read them anew.
    kernel_->forget_cached_pages();
  }
  prefetch(leaders);
  std::vector<uint8_t> signal_buf(l.signal_span.size());
  for (uint64_t task : leaders) {
    ProcessRow row;
    TaskTimes leader_times;
    if (!read_task(task, row, crawl, leader_times)) {
      ++out.row_errors;
      continue;
    }
    const uint64_t signal = load_unsigned(buffer_, l.signal);
    // The whole process's CPU time, as /proc/PID/stat shows it
    // (thread_group_cputime_adjusted()): what exited threads left in the
    // signal_struct plus every live thread, scaled with the process's own
    // prev_cputime.
    TaskTimes group{};
    CpuTimes prev{};
    if (signal && kernel_->read(signal + l.signal_span.lo, signal_buf.data(), signal_buf.size())) {
      row.threads = static_cast<int32_t>(load_signed(signal_buf, l.sig_nr_threads));
      group = {load_unsigned(signal_buf, l.sig_utime), load_unsigned(signal_buf, l.sig_stime),
               load_unsigned(signal_buf, l.sig_runtime)};
      prev = {load_unsigned(signal_buf, l.sig_prev_utime),
              load_unsigned(signal_buf, l.sig_prev_stime)};
    } else {
      ++out.row_errors;
    }
    auto add = [&group](const TaskTimes& t) {
      group.utime += t.utime, group.stime += t.stime, group.runtime += t.runtime;
    };
    add(leader_times);

    // Every other thread of this process.
    std::vector<ProcessRow> others;
    uint64_t head, node_off;
    if (l.has_thread_head) {
      head = signal + l.signal_thread_head;
      node_off = l.thread_node.offset + l.span_lo;
    } else {
      node_off = l.thread_group.offset + l.span_lo;
      head = task + node_off;  // a headless ring through the leader
    }
    uint64_t threads_seen = 1;
    auto walk = walk_list(kernel_->space(), head, options.max_threads, [&](uint64_t node) {
      const uint64_t thread = node - node_off;
      if (thread == task) return true;  // the leader is already counted
      ++threads_seen;
      if (options.threads) {
        ProcessRow t;
        TaskTimes times;
        if (read_task(thread, t, crawl, times)) {
          add(times);
          others.push_back(std::move(t));
        } else {
          ++out.row_errors;
        }
      } else if (auto times = read_times(thread)) {
        add(*times);
      } else {
        ++out.thread_walk_errors;
      }
      return true;
    });
    if (!walk.ok()) ++out.thread_walk_errors;
    // signal->nr_threads is the kernel's count; one it could never hold is not shown.
    if (row.threads < 1 || row.threads > kPidMaxLimit) {
      ++out.implausible_values;
      row.threads = static_cast<int32_t>(threads_seen);
    }

    if (!options.threads) {
      const bool adjust = l.sig_prev_utime.present && l.sig_prev_stime.present;
      const CpuTimes process = adjust
                                   ? adjust_cputime(group.utime, group.stime, group.runtime, prev)
                                   : CpuTimes{group.utime, group.stime};
      row.utime_ns = process.utime, row.stime_ns = process.stime;
      row.runtime_ns = group.runtime;
    }
    for (ProcessRow& t : others) t.threads = row.threads;
    out.rows.push_back(std::move(row));
    for (ProcessRow& t : others) out.rows.push_back(std::move(t));
  }
  std::sort(out.rows.begin(), out.rows.end(),
            [](const ProcessRow& a, const ProcessRow& b) { return a.pid < b.pid; });
  if (options.exe) read_executables(out);
  // Lifetime CPU share, as ps computes %CPU: CPU time over time since start. A start
  // after the guest's clock (beyond the tasks born while this walk ran) is no time.
  constexpr uint64_t kStartSlackNs = 60'000'000'000;
  for (ProcessRow& r : out.rows) {
    if (out.clock_ns && r.start_time_ns > out.clock_ns + kStartSlackNs) {
      ++out.implausible_values;
      r.start_time_ns = 0;
      continue;
    }
    if (out.clock_ns > r.start_time_ns)
      r.cpu_pct = 100.0 * static_cast<double>(r.utime_ns + r.stime_ns) /
                  static_cast<double>(out.clock_ns - r.start_time_ns);
  }
  return out;
}

}  // namespace nfm
