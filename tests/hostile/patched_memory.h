// A hostile guest, played on a real dump: guest-physical memory with bytes
// overwritten, as a guest kernel or a guest user could overwrite them. Reads go to
// the dump, then the patches are laid over them. No view(): every byte passes here.
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "memory/physical_memory.h"

namespace nfm::testing {

class PatchedMemory : public PhysicalMemory {
 public:
  explicit PatchedMemory(PhysicalMemoryPtr inner) : inner_(std::move(inner)) {}

  // Overwrites guest-physical bytes at `pa` (later patches win).
  void write(uint64_t pa, const void* bytes, size_t len) {
    const auto* b = static_cast<const uint8_t*>(bytes);
    for (size_t i = 0; i < len; ++i) bytes_[pa + i] = b[i];
  }
  template <typename T>
  void write_value(uint64_t pa, T value) {
    write(pa, &value, sizeof value);
  }
  void write_string(uint64_t pa, const std::string& text) { write(pa, text.data(), text.size()); }
  // Back to the dump's own bytes.
  void clear() { bytes_.clear(); }
  // Every read from now on is appended to `log` (nullptr: stop): what the walkers touch.
  void log_reads(std::vector<PhysRange>* log) { log_ = log; }

  const std::vector<PhysRange>& ranges() const override { return inner_->ranges(); }
  Result<void> read(uint64_t pa, void* dst, size_t len) override {
    ++stats_.reads;
    stats_.bytes += len;
    if (log_) log_->push_back({pa, len});
    NFM_TRY(inner_->read(pa, dst, len));
    auto* out = static_cast<uint8_t*>(dst);
    for (auto it = bytes_.lower_bound(pa); it != bytes_.end() && it->first - pa < len; ++it)
      out[it->first - pa] = it->second;
    return {};
  }
  Result<void> check() const override { return inner_->check(); }
  std::string describe() const override { return "patched " + inner_->describe(); }

 private:
  PhysicalMemoryPtr inner_;
  std::map<uint64_t, uint8_t> bytes_;
  std::vector<PhysRange>* log_ = nullptr;
};

}  // namespace nfm::testing
