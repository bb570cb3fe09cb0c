#include "memory/page_store.h"

#include <algorithm>
#include <cstring>

namespace nfm {

std::vector<PhysRange> ranges_from_page_bits(const std::vector<uint8_t>& bits, uint64_t max_pfn) {
  std::vector<PhysRange> out;
  max_pfn = std::min<uint64_t>(max_pfn, bits.size() * 8);
  uint64_t pfn = 0;
  while (pfn < max_pfn) {
    if (bits[pfn / 8] == 0 && pfn % 8 == 0) {  // skip empty bytes quickly
      pfn += 8;
      continue;
    }
    if (!(bits[pfn / 8] >> (pfn % 8) & 1)) {
      ++pfn;
      continue;
    }
    const uint64_t start = pfn;
    while (pfn < max_pfn && (bits[pfn / 8] >> (pfn % 8) & 1)) ++pfn;
    out.push_back({start * kImagePageSize, (pfn - start) * kImagePageSize});
  }
  return out;
}

std::optional<std::span<const uint8_t>> find_elf_note(std::span<const uint8_t> notes,
                                                      std::string_view name,
                                                      std::optional<uint32_t> type) {
  auto align4 = [](uint64_t v) { return (v + 3) & ~uint64_t{3}; };
  const uint64_t size = notes.size();
  uint64_t off = 0;
  // off may step up to 3 bytes past the end (the last desc's padding): test it first.
  while (off <= size && size - off >= 12) {
    uint32_t namesz, descsz, note_type;
    std::memcpy(&namesz, notes.data() + off, 4);
    std::memcpy(&descsz, notes.data() + off + 4, 4);
    std::memcpy(&note_type, notes.data() + off + 8, 4);
    const uint64_t name_off = off + 12, desc_off = name_off + align4(namesz);
    if (desc_off > size || descsz > size - desc_off) break;
    // namesz counts the terminating NUL.
    if (namesz == name.size() + 1 &&
        std::memcmp(notes.data() + name_off, name.data(), name.size()) == 0 &&
        (!type || note_type == *type))
      return notes.subspan(desc_off, descsz);
    off = desc_off + align4(descsz);
  }
  return std::nullopt;
}

std::string elf_note_desc(const uint8_t* notes, uint64_t size, const std::string& name) {
  auto desc = find_elf_note({notes, size}, name);
  if (!desc) return {};
  const auto* text = reinterpret_cast<const char*>(desc->data());
  return std::string(text, strnlen(text, desc->size()));
}

}  // namespace nfm
