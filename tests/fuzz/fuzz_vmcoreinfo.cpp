// VMCOREINFO text, as a guest kernel (or a planted copy) writes it.
#include <string_view>

#include "fuzz_target.h"
#include "kernel/vmcoreinfo.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto info = nfm::VmcoreInfo::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!info) return 0;
  (void)info->osrelease();
  (void)info->symbol("init_top_pgt");
  (void)info->symbol("_stext");
  (void)info->number("phys_base");
  (void)info->number("pgtable_l5_enabled");
  (void)info->offset("list_head.next");
  (void)info->size("page");
  (void)info->kernel_offset();
  (void)info->build_id();
  return 0;
}
