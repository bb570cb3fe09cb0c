#include "kernel/layout.h"

#include <algorithm>
#include <cstring>

namespace nfm {

FieldSlot slot_of(const Field& f) {
  return FieldSlot{f.offset, f.size, static_cast<uint32_t>(f.bit_offset - f.offset * 8),
                   f.bitfield_bits, true};
}

FieldSlot optional_slot(const Types& types, std::string_view type, std::string_view path) {
  auto f = types.member(type, path);
  return f ? slot_of(*f) : FieldSlot{};
}

Result<FieldSlot> required_slot(const Types& types, std::string_view type, std::string_view path) {
  auto f = types.member(type, path);
  if (!f) return f.error();
  return slot_of(*f);
}

uint64_t load_unsigned(std::span<const uint8_t> object, const FieldSlot& s) {
  if (!s.present || s.offset >= object.size()) return 0;
  const uint64_t available = object.size() - s.offset;
  if (s.bits == 0) {
    uint64_t v = 0;  // little-endian: the low `size` bytes
    std::memcpy(&v, object.data() + s.offset, std::min<uint64_t>({sizeof v, s.size, available}));
    return v;
  }
  // A bitfield may straddle bytes (even its storage unit, in packed structs): take
  // exactly the bytes it touches, at most 9 for a 64-bit field.
  unsigned __int128 wide = 0;
  std::memcpy(&wide, object.data() + s.offset,
              std::min<uint64_t>({sizeof wide, (s.shift + s.bits + 7) / 8, available}));
  wide >>= s.shift;
  const uint64_t mask = s.bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << s.bits) - 1;
  return static_cast<uint64_t>(wide) & mask;
}

int64_t load_signed(std::span<const uint8_t> object, const FieldSlot& s) {
  const uint64_t v = load_unsigned(object, s);
  const uint32_t width = s.bits ? s.bits : static_cast<uint32_t>(std::min<uint64_t>(s.size, 8) * 8);
  if (width == 0 || width >= 64) return static_cast<int64_t>(v);
  const uint64_t sign = uint64_t{1} << (width - 1);
  return static_cast<int64_t>((v ^ sign) - sign);
}

std::string load_chars(std::span<const uint8_t> object, const FieldSlot& s) {
  if (!s.present || s.offset + s.size > object.size()) return {};
  const char* p = reinterpret_cast<const char*>(object.data() + s.offset);
  return std::string(p, strnlen(p, s.size));
}

}  // namespace nfm
