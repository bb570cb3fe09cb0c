// hidden_process: the kernel names its tasks in several places. The guest's ps
// reads the PID namespace (/proc iterates it); the task list links every process;
// each process is on its parent's children list; a task that runs is on a CPU's
// runqueue (its CFS tree, or its RT queue for SCHED_FIFO/SCHED_RR tasks). A rootkit that unlinks a
// task to hide it (DKOM) edits one or two of these and leaves the others: a live task some views
// have and others lack is hiding.
#include <fmt/core.h>

#include <algorithm>
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
  kRunqueue = 8,      // each CPU's current task, its CFS tree and its RT queues
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
    size_t thread_budget = options_.max_tasks;
    for (const Object& leader : leaders) {
      s.seen[leader.address()] |= kTaskList;
      auto signal = leader.arrow("signal");
      if (!signal) continue;  // an exiting process
      auto head = signal->member("thread_head");
      if (!head) return head.error();
      // One budget for every thread list: a guest cannot multiply it by the leaders.
      if (thread_budget == 0) {
        s.note(kTaskList, "thread lists", {0, WalkEnd::limit, 0});
        break;
      }
      auto threads =
          for_each_entry(*head, "task_struct", "thread_node", thread_budget, [&](const Object& t) {
            --thread_budget;
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
      // The guest says how many CPUs are online (up to NR_CPUS) and each has 100 RT
      // queues: once the crawl's budget is spent every read fails, but walking
      // thousands of empty queues would still take seconds (found by the fuzzer).
      if (kernel_.budget().spent()) return;
      Object rq(ctx_, *rq_sym + offset, *rq_type);
      auto curr = rq.member("curr");
      auto idle = rq.member("idle");
      if (curr && idle) {
        auto c = curr->as_pointer();
        auto i = idle->as_pointer();
        if (c && i && *c != *i && *c != 0) s.seen[*c] |= kRunqueue;
      }
      size_t budget = options_.max_tasks;  // entities of this CPU, every group included
      if (auto cfs = rq.member("cfs")) cfs_tree(*cfs, *rb, 0, budget, s);
      if (auto rt = rq.member("rt")) rt_queues(*rt, 0, budget, s);
    }
  }

  // The entities queued on an RT runqueue: one list per priority (active.queue[],
  // its length from BTF), of tasks or, with CONFIG_RT_GROUP_SCHED, groups (my_q).
  void rt_queues(const Object& rt_rq, size_t depth, size_t& budget, Sighting& s) {
    auto queues = rt_rq.member("active.queue");
    if (!queues || depth > kMaxGroupDepth) return;
    auto array = kernel_.types().array(queues->type());
    if (!array) return;
    for (uint32_t prio = 0; prio < array->count && budget > 0 && !kernel_.budget().spent();
         ++prio) {
      auto head = queues->index(prio);
      if (!head) return;
      std::vector<Object> entities;
      auto w = for_each_entry(*head, "sched_rt_entity", "run_list", budget, [&](const Object& e) {
        entities.push_back(e);
        return true;
      });
      if (!w) return;
      budget -= std::min(budget, w->nodes);
      s.note(kRunqueue, "RT queue", *w);
      for (const Object& se : entities) {
        if (auto my_q = se.arrow("my_q")) {
          rt_queues(*my_q, depth + 1, budget, s);
          continue;
        }
        if (auto task = container_of(ctx_, se.address(), "task_struct", "rt"))
          s.seen[task->address()] |= kRunqueue;
      }
    }
  }

  // The entities queued on a CFS runqueue: tasks, or task groups with their own queue.
  void cfs_tree(const Object& cfs_rq, const RbLayout& rb, size_t depth, size_t& budget,
                Sighting& s) {
    auto root = cfs_rq.member("tasks_timeline.rb_root.rb_node");
    if (!root || depth > kMaxGroupDepth || budget == 0) return;
    auto first = root->as_pointer();
    if (!first) return;
    std::vector<uint64_t> nodes;
    WalkResult w = walk_rbtree(*ctx_.space, rb, *first, budget, [&](uint64_t n) {
      nodes.push_back(n);
      return true;
    });
    budget -= std::min(budget, nodes.size());
    s.note(kRunqueue, "CFS tree", w);
    for (uint64_t n : nodes) {
      auto se = container_of(ctx_, n, "sched_entity", "run_node");
      if (!se) continue;
      // A group entity (CONFIG_FAIR_GROUP_SCHED) carries its group's queue in my_q.
      if (auto my_q = se->arrow("my_q")) {
        cfs_tree(*my_q, rb, depth + 1, budget, s);
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

// What a task is: live (exiting tasks leave the views one at a time, and the idle
// tasks, pid 0, are in none), the views it belongs in (runqueues hold only
// runnable tasks and the process tree only processes: threads are not children),
// and pid with start time to tell it from the next task at its address.
Result<Subject> task_subject(const ObjectContext& ctx, TypeRef task_type, uint64_t address) {
  Object task(ctx, address, task_type);
  auto number = [&](const char* member) -> Result<uint64_t> {
    NFM_ASSIGN(Object m, task.member(member));
    return m.as_unsigned();
  };
  NFM_ASSIGN(uint64_t pid, number("pid"));
  NFM_ASSIGN(uint64_t tgid, number("tgid"));
  NFM_ASSIGN(uint64_t start_time, number("start_time"));
  NFM_ASSIGN(uint64_t exit_state, number("exit_state"));
  NFM_ASSIGN(uint64_t flags, number("flags"));
  NFM_ASSIGN(Object comm_field, task.member("comm"));
  NFM_ASSIGN(std::string comm, comm_field.as_string());
  const auto pid_value = static_cast<int32_t>(pid), tgid_value = static_cast<int32_t>(tgid);
  Subject s;
  s.live = pid_value > 0 && exit_state == 0 && !(flags & kPfExiting);
  s.expected = kTaskList | kPidNamespace | (pid == tgid ? kProcessTree : 0u);
  s.identity = fmt::format("{} {}", pid_value, start_time);
  s.label = fmt::format("pid {} ({})", pid_value, comm);
  s.evidence = {{"pid", pid_value},
                {"tgid", tgid_value},
                {"comm", comm},
                {"task", schema::hex_address(address)}};
  return s;
}

}  // namespace

Result<CheckOutcome> check_hidden_processes(Kernel& kernel, const IntegrityOptions& options,
                                            std::vector<IntegrityFinding>& findings) {
  TaskViews views(kernel, options);
  const ObjectContext ctx = object_context(kernel);
  NFM_ASSIGN(TypeRef task_type, kernel.types().find_struct("task_struct"));
  return compare_views({.kind = "hidden_process",
                        .objects = "tasks",
                        .views = kTaskViews,
                        .read = [&] { return views.read(); },
                        .subject = [&](uint64_t a) { return task_subject(ctx, task_type, a); },
                        .kernel = &kernel},
                       findings);
}

}  // namespace nfm
