// Where a member lies inside a struct, resolved once from type data (BTF) and
// then read out of a buffer that holds a copy of the object: features read a
// whole object (or the span they need) in one go and decode it locally.
// kernel/object.h's Object resolves and decodes its members with the same
// FieldSlot and loaders, reading only the member's own bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "kernel/btf_types.h"
#include "util/result.h"

namespace nfm {

struct FieldSlot {
  uint64_t offset = 0;   // bytes from the start of the object (or of the buffer)
  uint64_t size = 0;     // bytes of the member (the storage unit, for bitfields)
  uint32_t shift = 0;    // bitfields: bit position within the storage unit
  uint32_t bits = 0;     // bitfields: width; 0 for ordinary members
  bool present = false;  // false: the member does not exist in this kernel
};

FieldSlot slot_of(const Field& field);
// The member, or an absent slot when this kernel has no such member.
FieldSlot optional_slot(const Types& types, std::string_view type, std::string_view path);
Result<FieldSlot> required_slot(const Types& types, std::string_view type, std::string_view path);

// An unsigned member (or bitfield) of `object`; 0 when absent or outside the buffer.
uint64_t load_unsigned(std::span<const uint8_t> object, const FieldSlot& slot);
// The same, sign-extended from the member's size (pid_t, long counters).
int64_t load_signed(std::span<const uint8_t> object, const FieldSlot& slot);
// A char array member, up to its first NUL.
std::string load_chars(std::span<const uint8_t> object, const FieldSlot& slot);

}  // namespace nfm
