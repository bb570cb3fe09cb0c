// A virtual address space: what the kernel model reads through. Implemented by
// the x86-64 page-table translator over guest-physical memory, and by test
// doubles (e.g. a vmlinux ELF image mapped at its link addresses).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/result.h"

namespace nfm {

class AddressSpace {
 public:
  virtual ~AddressSpace() = default;

  // Reads exactly `len` bytes at virtual address `va`; Errc::fault (with the
  // first unreadable address) if any page is unmapped or not backed.
  virtual Result<void> read(uint64_t va, void* dst, size_t len) = 0;

  // Virtual -> guest-physical, when the space has a physical backing.
  virtual Result<uint64_t> translate(uint64_t va) = 0;

  template <typename T>
  Result<T> read_value(uint64_t va) {
    T v{};
    NFM_TRY(read(va, &v, sizeof v));
    return v;
  }
};

}  // namespace nfm
