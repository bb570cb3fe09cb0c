// BTF as the guest's memory holds it (__start_BTF..__stop_BTF): parsed by libbpf,
// then looked up the way the features look it up. And the same bytes read in place
// by BtfView (as a warm start reads a cached profile's), with no libbpf check first:
// every record, name and size must stay inside the blob whatever it says.
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_target.h"
#include "kernel/btf_types.h"
#include "kernel/btf_view.h"

namespace {

void read_every_type(std::span<const uint8_t> bytes) {
  auto view = nfm::BtfView::open(bytes);
  if (!view) return;
  for (uint32_t id = 0; id < view->type_count(); ++id) {
    const struct btf_type* t = view->type(id);
    if (!t) continue;
    (void)view->str(t->name_off);
    (void)view->resolve_size(id);
    if (btf_is_composite(t)) {
      const struct btf_member* m = btf_members(t);
      for (unsigned i = 0; i < btf_vlen(t); ++i) {
        (void)view->str(m[i].name_off);
        (void)view->type(m[i].type);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Aligned, as a mapped cache file holds the blob.
  std::vector<uint64_t> aligned((size + 7) / 8);
  if (size) std::memcpy(aligned.data(), data, size);
  read_every_type(std::span(reinterpret_cast<const uint8_t*>(aligned.data()), size));
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
