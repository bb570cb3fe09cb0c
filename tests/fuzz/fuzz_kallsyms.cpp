// kallsyms tables as a guest's memory holds them: the bytes are a window of kernel
// virtual memory that find_kallsyms() searches and decode_kallsyms() decodes.
#include <cstring>
#include <vector>

#include "arch/address_space.h"
#include "fuzz_target.h"
#include "kernel/profile/kallsyms.h"

namespace {

// The input at a kernel-half address, as the kernel image would be.
class WindowSpace : public nfm::AddressSpace {
 public:
  static constexpr uint64_t kBase = 0xffffffff81000000ull;
  WindowSpace(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  nfm::Result<void> read(uint64_t va, void* dst, size_t len) override {
    if (va < kBase || va - kBase > size_ || len > size_ - (va - kBase))
      return nfm::make_error(nfm::Errc::fault, "outside the window");
    std::memcpy(dst, data_ + (va - kBase), len);
    return {};
  }
  nfm::Result<uint64_t> translate(uint64_t va) override { return va - kBase; }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  WindowSpace space(data, size);
  auto where = nfm::find_kallsyms(space, WindowSpace::kBase, WindowSpace::kBase + size);
  if (!where) return 0;
  auto symbols = nfm::decode_kallsyms(space, where->tables);
  if (symbols) (void)symbols->lookup("init_task");
  (void)nfm::kallsyms_span(where->tables);
  return 0;
}
