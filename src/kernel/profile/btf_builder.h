// Builds a BTF type graph from another description of the kernel's types (DWARF,
// Volatility ISF), so every profile source ends as the same libbpf `struct btf`
// and Types reads them all alike.
//
// libbpf's writer needs a struct's members right after the struct itself, while a
// converter discovers member types depth-first. So types are first collected as
// nodes (id = index + 1, references may point forward), then written in id order.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernel/btf_types.h"
#include "util/result.h"

namespace nfm {

class BtfBuilder {
 public:
  enum class Kind : uint8_t {
    int_,
    float_,
    pointer,
    array,
    struct_,
    union_,
    enum_,
    fwd_struct,
    fwd_union,
    typedef_,
    const_,
    volatile_,
    restrict_,
    func_proto,
  };
  struct Member {
    std::string name;  // "" = anonymous struct/union member
    uint32_t type = 0;
    uint32_t bit_offset = 0;
    uint32_t bitfield_bits = 0;
  };
  struct Node {
    Kind kind = Kind::int_;
    std::string name;
    uint32_t size = 0;       // int/float/struct/union/enum bytes
    uint32_t ref = 0;        // pointee, element, aliased, return type
    uint32_t count = 0;      // array elements
    uint8_t encoding = 0;    // int: BTF_INT_SIGNED / BTF_INT_CHAR / BTF_INT_BOOL
    bool is_signed = false;  // enum
    std::vector<Member> members;
    std::vector<std::pair<std::string, int64_t>> enumerators;
  };

  // Adds a node; returns its type id. Fill members/enumerators through node(id).
  uint32_t add(Node n);
  Node& node(uint32_t id) { return nodes_[id - 1]; }
  const Node& node(uint32_t id) const { return nodes_[id - 1]; }
  uint32_t size() const { return static_cast<uint32_t>(nodes_.size()); }

  // The index type of every array (BTF wants one; its layout does not matter).
  uint32_t array_index_type();

  // Writes the nodes with libbpf's writer API and returns the raw BTF blob
  // (loadable by Types::from_btf_bytes and storable in the profile cache).
  Result<std::vector<uint8_t>> raw() const;
  Result<Types> build() const;

 private:
  std::vector<Node> nodes_;
  uint32_t index_type_ = 0;
};

}  // namespace nfm
