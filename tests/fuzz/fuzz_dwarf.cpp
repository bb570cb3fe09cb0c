// A DWARF vmlinux (as an operator passes one with --vmlinux): the bytes become a file,
// load_dwarf_profile() reads its symbol table and converts its DWARF through libdw to
// BTF, and a few lookups go through the result. Seeded with seeds/dwarf/ (a small ELF
// whose DWARF has kernel-like types: seeds/dwarf_seed.c). A malformed file must be an
// error, never a crash.
#include <string>

#include "fuzz_target.h"
#include "input_file.h"
#include "kernel/profile/dwarf_profile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const InputFile file(data, size);
  if (!file.ok()) return 0;
  const std::string path = file.path();
  (void)nfm::dwarf_vmlinux_banner(path);
  if (auto profile = nfm::load_dwarf_profile(path)) {
    (void)profile->symbols.lookup("init_task");
    if (auto t = profile->types.find_struct("task_struct")) {
      (void)profile->types.member(*t, "comm");
      (void)profile->types.member(*t, "in_iowait");
    }
  }
  return 0;
}
