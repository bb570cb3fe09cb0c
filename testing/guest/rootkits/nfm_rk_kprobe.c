// Test rootkit: a kprobe on the kill syscall's entry (__x64_sys_kill) whose
// pre_handler watches every kill(2) and acts on a magic signal, as kprobe-based
// backdoors do. The syscall's code and table stay intact: only kprobe_table
// shows the probe, and its handler in this module.
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/ptrace.h>

static atomic_t magic_calls = ATOMIC_INIT(0);

static int handler_pre(struct kprobe* p, struct pt_regs* regs) {
  // __x64_sys_kill(const struct pt_regs *): the caller's registers, sig in si.
  const struct pt_regs* user = (const struct pt_regs*)regs->di;
  if (user && user->si == 64) {
    atomic_inc(&magic_calls);
    pr_info_once("nfm_rk_kprobe: magic signal seen\n");
  }
  return 0;
}

static struct kprobe kp = {
    .symbol_name = "__x64_sys_kill",
    .pre_handler = handler_pre,
};

static int __init probe_init(void) {
  int err = register_kprobe(&kp);
  if (err) return err;
  pr_info("nfm_rk_kprobe: __x64_sys_kill probed at %px\n", kp.addr);
  return 0;
}

static void __exit probe_exit(void) {
  unregister_kprobe(&kp);
}

module_init(probe_init);
module_exit(probe_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: kprobe on a syscall entry");
