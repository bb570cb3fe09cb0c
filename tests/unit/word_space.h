// A sparse virtual address space of 8-byte words, for walks over synthetic kernel
// structures (lists, trees).
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "arch/address_space.h"

namespace nfm {

class WordSpace : public AddressSpace {
 public:
  std::map<uint64_t, uint64_t> words;
  Result<void> read(uint64_t va, void* dst, size_t len) override {
    auto* out = static_cast<uint8_t*>(dst);
    for (size_t i = 0; i < len; i += 8) {
      auto it = words.find(va + i);
      if (it == words.end()) return fault_at(va + i, "unmapped");
      std::memcpy(out + i, &it->second, std::min<size_t>(8, len - i));
    }
    return {};
  }
  Result<uint64_t> translate(uint64_t va) override { return va; }

  void link(uint64_t node, uint64_t next, uint64_t prev) {
    words[node] = next;
    words[node + 8] = prev;
  }
  // A well-formed circular list head -> n[0] -> ... -> head.
  void make_list(uint64_t head, const std::vector<uint64_t>& n) {
    std::vector<uint64_t> all{head};
    all.insert(all.end(), n.begin(), n.end());
    for (size_t i = 0; i < all.size(); ++i)
      link(all[i], all[(i + 1) % all.size()], all[(i + all.size() - 1) % all.size()]);
  }
};

}  // namespace nfm
