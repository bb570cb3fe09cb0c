// Who owns an address: the kernel image, a module on the module list, or nobody.
// A hook is code or data that belongs to someone other than what points to it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel/object.h"
#include "util/result.h"

namespace nfm {

class Kernel;

class CodeOwners {
 public:
  // The kernel image's bounds (_text.._end) and every listed module's memory
  // (mem[] on 6.4+, core_layout and init_layout before), read now.
  static Result<CodeOwners> read(Kernel& kernel, const ObjectContext& ctx, size_t max_modules);
  static constexpr const char* kKernel = "kernel";
  struct Range {
    uint64_t start = 0, end = 0;
    std::string module;
  };
  // The kernel image (_text.._end, named kKernel) and each module's memory.
  std::vector<Range> ranges() const;
  // "kernel", the module's name, or "" when nobody listed owns it.
  std::string owner_of(uint64_t address) const;
  // The kernel's text, or its init text: vectors the kernel never sets after boot
  // keep their early handlers there.
  bool in_kernel_text(uint64_t address) const {
    return (address >= text_start_ && address < text_end_) ||
           (address >= init_text_start_ && address < init_text_end_);
  }

 private:
  uint64_t image_start_ = 0, image_end_ = 0, text_start_ = 0, text_end_ = 0;
  uint64_t init_text_start_ = 0, init_text_end_ = 0;
  std::vector<Range> modules_;
};

// What a function pointer points at, for evidence: "tcp4_seq_show" (kernel),
// "hooked_show" (a module's symbol), "func+0x10" inside the kernel, or the address.
std::string function_name(Kernel& kernel, const CodeOwners& owners, uint64_t address);

}  // namespace nfm
