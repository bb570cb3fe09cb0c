#include "features/processes.h"

#include <algorithm>
#include <cstring>
#include <optional>

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

char state_letter(uint32_t state, uint32_t exit_state) {
  uint32_t report = (state | exit_state) & kTaskReport;
  if (state == kTaskIdle) report = kTaskReport + 1;           // TASK_REPORT_MAX -> 'I'
  const int index = report ? 32 - __builtin_clz(report) : 0;  // fls()
  return index < 9 ? kStateLetters[index] : '?';
}

using Slot = FieldSlot;

}  // namespace

struct ProcessReader::Layout {
  // task_struct
  Slot tasks, flags, pid, tgid, comm, state, exit_state, real_parent, real_cred, mm, signal,
      start_time;
  Slot thread_group, thread_node;     // threads: thread_group (<6.7) or signal->thread_head (6.6+)
  uint64_t span_lo = 0, span_hi = 0;  // the part of task_struct we read in one go
  // signal_struct
  uint64_t signal_thread_head = 0;
  bool has_thread_head = false;
  // cred
  uint64_t cred_uid = 0, cred_gid = 0, cred_euid = 0, cred_egid = 0;
  // mm_struct
  uint64_t mm_total_vm = 0;
  uint64_t mm_rss[3] = {};         // MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES counters
  uint64_t mm_rss_percpu[3] = {};  // their per-cpu parts (percpu_counter.counters), 6.2+
  bool rss_is_percpu = false;
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

  NFM_ASSIGN(Field total_vm, t.member("mm_struct", "total_vm"));
  l.mm_total_vm = total_vm.offset;
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
    l.mm_rss[i] = f->offset;
  }

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
  const Slot* all[] = {&l.tasks, &l.flags,  &l.kthread_ptr, &l.pid,          &l.tgid,
                       &l.comm,  &l.state,  &l.exit_state,  &l.real_parent,  &l.real_cred,
                       &l.mm,    &l.signal, &l.start_time,  &l.thread_group, &l.thread_node};
  l.span_lo = UINT64_MAX;
  for (const Slot* s : all) {
    if (!s->present) continue;
    l.span_lo = std::min(l.span_lo, s->offset);
    l.span_hi = std::max(l.span_hi, s->offset + s->size);
  }
  for (Slot* s : {&l.tasks, &l.flags, &l.kthread_ptr, &l.pid, &l.tgid, &l.comm, &l.state,
                  &l.exit_state, &l.real_parent, &l.real_cred, &l.mm, &l.signal, &l.start_time,
                  &l.thread_group, &l.thread_node})
    if (s->present) s->offset -= l.span_lo;
  return ProcessReader(kernel, std::move(layout));
}

bool ProcessReader::read_task(uint64_t task, ProcessRow& row) {
  const Layout& l = *layout_;
  buffer_.resize(l.span_hi - l.span_lo);
  if (!kernel_->read(task + l.span_lo, buffer_.data(), buffer_.size())) return false;
  const std::span<const uint8_t> b(buffer_);
  row.task = task;
  row.pid = static_cast<int32_t>(load_signed(b, l.pid));
  row.tgid = static_cast<int32_t>(load_signed(b, l.tgid));
  row.comm = load_chars(b, l.comm);
  row.state = state_letter(static_cast<uint32_t>(load_unsigned(b, l.state)),
                           static_cast<uint32_t>(load_unsigned(b, l.exit_state)));
  row.start_time_ns = load_unsigned(b, l.start_time);

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
  if (mm) {
    if (auto vm = kernel_->read_value<uint64_t>(mm + l.mm_total_vm)) row.vsz_kb = *vm * kPageKb;
    uint64_t pages = 0;
    for (int i = 0; i < 3; ++i) {
      auto v = kernel_->read_value<int64_t>(mm + l.mm_rss[i]);
      int64_t count = v ? *v : 0;
      // The guest's /proc/PID/status sums the per-cpu deltas too
      // (get_mm_counter_sum(), backported to the 6.12 stable series).
      if (l.rss_is_percpu) count += percpu_sum_s32(mm + l.mm_rss_percpu[i]);
      if (count > 0) pages += static_cast<uint64_t>(count);  // /proc clamps negatives to 0
    }
    row.rss_kb = pages * kPageKb;
  }
  return true;
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

Result<ProcessList> ProcessReader::list(const ProcessOptions& options) {
  const Layout& l = *layout_;
  NFM_ASSIGN(uint64_t init_task, kernel_->symbol("init_task"));
  const uint64_t tasks_off = l.tasks.offset + l.span_lo;
  ProcessList out;
  std::vector<uint64_t> leaders;
  out.walk =
      walk_list(kernel_->space(), init_task + tasks_off, options.max_tasks, [&](uint64_t node) {
        leaders.push_back(node - tasks_off);
        return true;
      });
  for (uint64_t task : leaders) {
    ProcessRow row;
    if (!read_task(task, row)) {
      ++out.row_errors;
      continue;
    }
    const uint64_t signal = load_unsigned(buffer_, l.signal);
    out.rows.push_back(std::move(row));
    if (!options.threads) continue;
    // Every other thread of this process.
    uint64_t head, node_off;
    if (l.has_thread_head) {
      head = signal + l.signal_thread_head;
      node_off = l.thread_node.offset + l.span_lo;
    } else {
      node_off = l.thread_group.offset + l.span_lo;
      head = task + node_off;  // a headless ring through the leader
    }
    auto walk = walk_list(kernel_->space(), head, options.max_threads, [&](uint64_t node) {
      const uint64_t thread = node - node_off;
      if (thread == task) return true;  // the leader is already listed
      ProcessRow t;
      if (read_task(thread, t))
        out.rows.push_back(std::move(t));
      else
        ++out.row_errors;
      return true;
    });
    if (!walk.ok()) ++out.thread_walk_errors;
  }
  std::sort(out.rows.begin(), out.rows.end(),
            [](const ProcessRow& a, const ProcessRow& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace nfm
