// Zero-copy, bounds-checked reads of a BTF blob in place.
//
// libbpf's btf__new() copies the blob and parses every type before the first
// lookup: for a kernel's ~5 MB of BTF that is most of a warm one-shot command's
// time, although the profile cache already holds the bytes mapped and their name
// index. A BtfView reads the types where they lie (a mapped cache file, or a copy
// it was given to keep): opening it checks the header and walks the type section
// once to find each record (a type's record size follows from its kind and vlen),
// and every read after that is checked against the section it lies in. A blob
// from the guest is still validated by libbpf before it is trusted (Types does so);
// the view only guarantees that no id, offset or length can take a read outside
// the blob.
#pragma once

#include <bpf/btf.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace nfm {

class BtfView {
 public:
  BtfView() = default;
  // `base`: for split BTF (a module's), the view of the vmlinux BTF it extends;
  // it must outlive this view. Type ids and string offsets continue after it.
  static Result<BtfView> open(std::span<const uint8_t> bytes, const BtfView* base = nullptr);

  // One past the highest type id (id 0 is void), like btf__type_cnt().
  uint32_t type_count() const { return start_id_ + static_cast<uint32_t>(offsets_.size()); }
  // The record of type `id`, or nullptr for void and ids out of range.
  const struct btf_type* type(uint32_t id) const;
  // The string at `offset`, or "" if it lies outside the string section.
  std::string_view str(uint32_t offset) const;
  // The type's size in bytes (typedefs, qualifiers and arrays followed), or -1
  // for types without one (void, functions, forward declarations) and loops.
  int64_t resolve_size(uint32_t id) const;
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  std::span<const uint8_t> bytes_;
  const uint8_t* types_ = nullptr;  // the type section
  std::span<const char> strings_;   // the string section
  std::vector<uint32_t> offsets_;   // record offset in types_, by id - start_id_
  const BtfView* base_ = nullptr;
  uint32_t start_id_ = 1;   // first id of this blob's own types
  uint32_t start_str_ = 0;  // first string offset of this blob's own strings
};

}  // namespace nfm
