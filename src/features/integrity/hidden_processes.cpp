// hidden_process: the kernel names its tasks in several places. The guest's ps
// reads the PID namespace (/proc iterates it); the task list links every process;
// each process is on its parent's children list; a task that runs is on a CPU's
// runqueue. A rootkit that unlinks a task to hide it (DKOM) edits one or two of
// these and leaves the others: a live task some views have and others lack is hiding.
#include <fmt/core.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"
#include "kernel/tree_walk.h"

namespace nfm {
namespace {

enum TaskView : unsigned {
  kTaskList = 1,      // init_task.tasks, and each process's threads (signal->thread_head)
  kPidNamespace = 2,  // init_pid_ns's IDR: struct pid -> tasks[PIDTYPE_PID]
  kProcessTree = 4,   // init_task's children, their children, ...
  kRunqueue = 8,      // each CPU's current task and its CFS tree
};
constexpr ViewName kTaskViews[] = {{kTaskList, "task_list"},
                                   {kPidNamespace, "pid_namespace"},
                                   {kProcessTree, "process_tree"},
                                   {kRunqueue, "runqueue"}};
constexpr uint32_t kPfExiting = 0x4;
constexpr size_t kMaxGroupDepth = 16;  // task groups nest (cgroups); real ones are shallow

class TaskViews {
 public:
  TaskViews(Kernel& kernel, const IntegrityOptions& options)
      : kernel_(kernel), ctx_(object_context(kernel)), options_(options) {}

  // The runqueues first: a task running then is in the other views when they are
  // read next, unless it exits in between (and then it is no longer live).
  Result<Sighting> read() {
    kernel_.forget_cached_pages();
    Sighting s;
    s.available = kTaskList | kPidNamespace | kProcessTree | kRunqueue;
    runqueues(s);  // optional: kernels without the symbol or types simply lack the view
    NFM_ASSIGN(Object init, var(ctx_, "init_task", "task_struct"));
    init_task_ = init.address();
    NFM_TRY(task_list(init, s));
    NFM_TRY(pid_namespace(s));
    NFM_TRY(process_tree(init, s));
    s.seen.erase(init_task_);
    return s;
  }

 private:
  Result<void> task_list(const Object& init, Sighting& s) {
    NFM_ASSIGN(Object tasks, init.member("tasks"));
    std::vector<Object> leaders;
    NFM_ASSIGN(WalkResult w, for_each_entry(tasks, "task_struct", "tasks", options_.max_tasks,
                                            [&](const Object& task) {
                                              leaders.push_back(task);
                                              return true;
                                            }));
    s.note(kTaskList, "task list", w);
    for (const Object& leader : leaders) {
      s.seen[leader.address()] |= kTaskList;
      auto signal = leader.arrow("signal");
      if (!signal) continue;  // an exiting process
      auto head = signal->member("thread_head");
      if (!head) return head.error();
      auto threads = for_each_entry(*head, "task_struct", "thread_node", options_.max_tasks,
                                    [&](const Object& t) {
                                      s.seen[t.address()] |= kTaskList;
                                      return true;
                                    });
      if (!threads) return threads.error();
      s.note(kTaskList, "thread list", *threads);
    }
    return {};
  }

  Result<void> pid_namespace(Sighting& s) {
    NFM_ASSIGN(Object ns, var(ctx_, "init_pid_ns", "pid_namespace"));
    NFM_ASSIGN(Object idr, ns.member("idr.idr_rt"));
    NFM_ASSIGN(XarrayLayout xa, XarrayLayout::of(kernel_.types()));
    NFM_ASSIGN(TypeRef pid_type, kernel_.types().find_struct("pid"));
    std::vector<uint64_t> pids;
    WalkResult w = walk_xarray(*ctx_.space, xa, idr.address(), options_.max_tasks,
                               [&](uint64_t, uint64_t entry) {
                                 pids.push_back(entry);
                                 return true;
                               });
    s.note(kPidNamespace, "PID namespace", w);
    for (uint64_t p : pids) {
      Object pid(ctx_, p, pid_type);
      auto head = pid.member("tasks[0]");  // PIDTYPE_PID
      if (!head) return head.error();
      auto tasks =
          for_each_hlist_entry(*head, "task_struct", "pid_links[0]", 4, [&](const Object& t) {
            s.seen[t.address()] |= kPidNamespace;
            return true;
          });
      if (!tasks) return tasks.error();
      s.note(kPidNamespace, "struct pid's task list", *tasks);
    }
    return {};
  }

  // Breadth first from init_task; every process is on exactly one children list.
  Result<void> process_tree(const Object& init, Sighting& s) {
    std::vector<Object> todo{init};
    std::set<uint64_t> visited{init.address()};
    while (!todo.empty()) {
      Object parent = todo.back();
      todo.pop_back();
      NFM_ASSIGN(Object children, parent.member("children"));
      NFM_ASSIGN(WalkResult w, for_each_entry(children, "task_struct", "sibling",
                                              options_.max_tasks, [&](const Object& child) {
                                                if (!visited.insert(child.address()).second)
                                                  return true;
                                                if (visited.size() > options_.max_tasks)
                                                  return false;
                                                s.seen[child.address()] |= kProcessTree;
                                                todo.push_back(child);
                                                return true;
                                              }));
      s.note(kProcessTree, "children list", w);
      if (visited.size() > options_.max_tasks) {
        s.note(kProcessTree, "process tree", {visited.size(), WalkEnd::limit, 0});
        break;
      }
    }
    return {};
  }

  void runqueues(Sighting& s) {
    auto rq_sym = kernel_.symbol("runqueues");
    auto rq_type = kernel_.types().find_struct("rq");
    auto rb = RbLayout::of(kernel_.types());
    if (!rq_sym || !rq_type || !rb) return;
    for (uint64_t offset : kernel_.percpu_offsets()) {
      Object rq(ctx_, *rq_sym + offset, *rq_type);
      auto curr = rq.member("curr");
      auto idle = rq.member("idle");
      if (curr && idle) {
        auto c = curr->as_pointer();
        auto i = idle->as_pointer();
        if (c && i && *c != *i && *c != 0) s.seen[*c] |= kRunqueue;
      }
      if (auto cfs = rq.member("cfs")) cfs_tree(*cfs, *rb, 0, s);
    }
  }

  // The entities queued on a CFS runqueue: tasks, or task groups with their own queue.
  void cfs_tree(const Object& cfs_rq, const RbLayout& rb, size_t depth, Sighting& s) {
    auto root = cfs_rq.member("tasks_timeline.rb_root.rb_node");
    if (!root || depth > kMaxGroupDepth) return;
    auto first = root->as_pointer();
    if (!first) return;
    std::vector<uint64_t> nodes;
    WalkResult w = walk_rbtree(*ctx_.space, rb, *first, options_.max_tasks, [&](uint64_t n) {
      nodes.push_back(n);
      return true;
    });
    s.note(kRunqueue, "CFS tree", w);
    for (uint64_t n : nodes) {
      auto se = container_of(ctx_, n, "sched_entity", "run_node");
      if (!se) continue;
      // A group entity (CONFIG_FAIR_GROUP_SCHED) carries its group's queue in my_q.
      if (auto my_q = se->arrow("my_q")) {
        cfs_tree(*my_q, rb, depth + 1, s);
        continue;
      }
      if (auto task = container_of(ctx_, se->address(), "task_struct", "se"))
        s.seen[task->address()] |= kRunqueue;
    }
  }

  Kernel& kernel_;
  ObjectContext ctx_;
  const IntegrityOptions& options_;
  uint64_t init_task_ = 0;
};

// What a task is, read for the report and to know which views it belongs in.
struct TaskFacts {
  int64_t pid = 0, tgid = 0;
  uint64_t start_time = 0;  // with pid, what tells a task from the next one at its address
  std::string comm;
  bool live = false;
};

Result<TaskFacts> task_facts(Kernel& kernel, const ObjectContext& ctx, uint64_t address) {
  NFM_ASSIGN(TypeRef type, kernel.types().find_struct("task_struct"));
  Object task(ctx, address, type);
  TaskFacts f;
  NFM_ASSIGN(Object pid, task.member("pid"));
  NFM_ASSIGN(f.pid, pid.as_signed());
  NFM_ASSIGN(Object tgid, task.member("tgid"));
  NFM_ASSIGN(f.tgid, tgid.as_signed());
  NFM_ASSIGN(Object start, task.member("start_time"));
  NFM_ASSIGN(f.start_time, start.as_unsigned());
  NFM_ASSIGN(Object comm, task.member("comm"));
  NFM_ASSIGN(f.comm, comm.as_string());
  NFM_ASSIGN(Object exit_state, task.member("exit_state"));
  NFM_ASSIGN(uint64_t exiting, exit_state.as_unsigned());
  NFM_ASSIGN(Object flags, task.member("flags"));
  NFM_ASSIGN(uint64_t flag_bits, flags.as_unsigned());
  // Exiting tasks leave the views one at a time, and the idle tasks (pid 0) are in
  // none of them: neither is a disagreement.
  f.live = f.pid > 0 && exiting == 0 && !(flag_bits & kPfExiting);
  return f;
}

// The views a live task belongs in and is missing from. Runqueues hold only
// runnable tasks and the process tree only processes (threads are not children).
unsigned missing_views(const TaskFacts& f, unsigned seen, unsigned incomplete) {
  unsigned expected = kTaskList | kPidNamespace;
  if (f.pid == f.tgid) expected |= kProcessTree;
  return expected & ~seen & ~incomplete;
}

}  // namespace

Result<CheckOutcome> check_hidden_processes(Kernel& kernel, const IntegrityOptions& options,
                                            std::vector<IntegrityFinding>& findings) {
  TaskViews views(kernel, options);
  const ObjectContext ctx = object_context(kernel);
  NFM_ASSIGN(Sighting first, views.read());
  if (first.incomplete) {  // a walk torn by a fork or exit: read once more
    NFM_ASSIGN(first, views.read());
  }
  // Candidates from the first reading, with who they were: a freed task_struct is
  // soon another task's, so the second reading must find the same task (pid and
  // start time) missing again, not just the same address.
  struct Candidate {
    TaskFacts facts;
    unsigned missing;
  };
  std::map<uint64_t, Candidate> candidates;
  for (auto [task, seen] : first.seen)
    if (auto f = task_facts(kernel, ctx, task); f && f->live)
      if (unsigned m = missing_views(*f, seen, first.incomplete)) candidates[task] = {*f, m};
  CheckOutcome outcome;
  outcome.detail = fmt::format("{} tasks in 4 views", first.seen.size());
  Sighting second;
  if (!candidates.empty()) {
    NFM_ASSIGN(second, views.read());
  }
  for (const auto& [task, before] : candidates) {
    auto it = second.seen.find(task);
    if (it == second.seen.end()) continue;  // gone: it exited between the readings
    auto f = task_facts(kernel, ctx, task);
    if (!f) {
      outcome.inconclusive = true;
      continue;
    }
    if (!f->live || f->pid != before.facts.pid || f->start_time != before.facts.start_time)
      continue;
    const unsigned missing = missing_views(*f, it->second, second.incomplete) & before.missing;
    if (!missing) continue;
    const auto missing_names = view_names(missing, kTaskViews);
    const auto seen_names = view_names(it->second, kTaskViews);
    findings.push_back(IntegrityFinding{
        .kind = "hidden_process",
        .severity = "critical",
        .summary = fmt::format("pid {} ({}) is missing from the {}, seen in the {}", f->pid,
                               f->comm, join_views(missing_names), join_views(seen_names)),
        .evidence = {{"pid", f->pid},
                     {"tgid", f->tgid},
                     {"comm", f->comm},
                     {"task", schema::hex_address(task)},
                     {"seen_in", seen_names},
                     {"missing_from", missing_names}},
    });
  }
  const unsigned incomplete = first.incomplete | (candidates.empty() ? 0 : second.incomplete);
  if (incomplete) {
    std::vector<std::string> problems = first.problems;
    problems.insert(problems.end(), second.problems.begin(), second.problems.end());
    outcome.inconclusive = true;
    outcome.detail = fmt::format("could not read every view: {}", problems.front());
  }
  return outcome;
}

}  // namespace nfm
