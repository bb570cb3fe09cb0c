// BTF as the guest's memory holds it (__start_BTF..__stop_BTF): parsed by libbpf,
// then looked up the way the features look it up.
#include <span>

#include "fuzz_target.h"
#include "kernel/btf_types.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto types = nfm::Types::from_btf_bytes(std::span(data, size));
  if (!types) return 0;
  for (const char* name : {"task_struct", "list_head", "module", "mm_struct", "file"}) {
    auto t = types->find_struct(name);
    if (!t) continue;
    (void)types->has_member(*t, "next");
    (void)types->member(*t, "tasks.next");
    (void)types->member(*t, "comm");
    (void)types->member(*t, "name");
  }
  (void)types->index();
  return 0;
}
