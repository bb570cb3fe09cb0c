#include "kernel/locate.h"

#include <fmt/format.h>

namespace nfm {

Result<KernelLocation> locate_kernel(PhysicalMemory& memory) {
  auto info = find_vmcoreinfo(memory);
  if (!info)
    return make_error(Errc::not_found,
                      "no Linux kernel found in guest memory (no VMCOREINFO note): " +
                          info.error().message);
  KernelLocation loc;
  loc.release = info->osrelease();
  loc.kaslr_offset = info->kernel_offset().value_or(0);
  // arch/x86/kernel/machine_kexec_64.c: NUMBER(phys_base), SYMBOL(init_top_pgt),
  // NUMBER(pgtable_l5_enabled) (4.14+).
  auto phys_base = info->number("phys_base");
  auto top = info->symbol("init_top_pgt");
  if (!top) top = info->symbol("swapper_pg_dir");
  if (!phys_base || !top)
    return make_error(Errc::bad_format, "VMCOREINFO lacks NUMBER(phys_base) or SYMBOL(init_top_pgt)");
  loc.phys_base = *phys_base;
  loc.dtb = loc.image_pa(*top);
  loc.levels = info->number("pgtable_l5_enabled").value_or(0) ? 5 : 4;
  if (!memory.contains(loc.dtb, 4096))
    return make_error(Errc::mismatch,
                      fmt::format("VMCOREINFO puts the kernel page table at 0x{:x}, outside guest RAM", loc.dtb));
  loc.vmcoreinfo = std::move(info).value();
  loc.method = "vmcoreinfo";
  return loc;
}

}  // namespace nfm
