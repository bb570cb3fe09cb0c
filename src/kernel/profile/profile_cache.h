// Compiled kernel profiles (symbols + BTF), kept so that the next attach to a
// kernel of the same build skips kallsyms decoding and BTF extraction or
// conversion: on disk (one compact file per build, written atomically) and in
// the process (many guests on one kernel share one loaded profile).
//
// Files live in $NFM_PROFILE_CACHE_DIR, else $NFM_CACHE_DIR/profiles, else
// $XDG_CACHE_HOME/nfm/profiles, else ~/.cache/nfm/profiles. A file is named by its key: the kernel
// release, its VMCOREINFO build id when the guest has one, and where the profile came from (the
// guest itself, or which files). The banner it stores is checked against the guest's own
// linux_banner before anything in it is used; a file that is corrupt, truncated, from another nfm
// version or for another build is reported and rebuilt, never trusted.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernel/btf_types.h"
#include "kernel/symbols.h"
#include "memory/mapped_file.h"
#include "util/result.h"

namespace nfm {

// The guest bytes a profile was made of, for a profile made from the guest
// itself: its kallsyms tables (where, relative to _stext) and its BTF
// (__start_BTF..__stop_BTF), hashed. A warm start hashes the same bytes of the
// guest at hand and uses the profile only if they match: a guest that doctored
// its own tables never lends its profile to another guest of the same build.
struct GuestContent {
  uint64_t hash = 0;
  int64_t kallsyms_from_stext = 0;
  uint64_t kallsyms_size = 0;          // 0: the symbols did not come from the guest
  uint64_t kallsyms_relocated_at = 0;  // relative_base in the span: not hashed (KASLR)
  bool btf = false;                    // the types came from the guest's BTF
  bool any() const { return kallsyms_size != 0 || btf; }
};

struct CompiledProfile {
  std::string key;
  std::string release;
  std::string banner;    // linux_banner of the kernel it was built from
  std::string build_id;  // VMCOREINFO BUILD-ID, or ""
  std::string symbols_source, types_source;
  GuestContent content;
  SymbolTable symbols;         // runtime addresses of the attach that built it
  std::optional<Types> types;  // the BTF, with its name index
};

// "6.1.0-56-cloud-amd64-3f2a...": a file-name-safe key.
std::string profile_key(const std::string& release, const std::string& build_id,
                        const std::string& source);

// The directory the cache uses ("" if no home directory can be found).
std::string profile_cache_dir();

// Serialization (exposed for tests): magic, version, payload size and checksum
// are checked before a byte of the payload is believed. The file holds the symbol
// table, the BTF and the type name index as the arrays the process uses, 8-byte
// aligned, so a mapped file is used in place: a warm start checks, maps and points,
// and builds nothing (types are read from the mapped BTF, Types::from_checked_btf).
// `owner` keeps `bytes` alive for the profile's lifetime; without one the bytes
// are copied.
Result<std::vector<uint8_t>> serialize_profile(const CompiledProfile& p);
Result<std::shared_ptr<const CompiledProfile>> deserialize_profile(
    std::span<const uint8_t> bytes, std::shared_ptr<const void> owner = nullptr);

class ProfileCache {
 public:
  explicit ProfileCache(std::string dir) : dir_(std::move(dir)) {}
  std::string path_of(const std::string& key) const;
  // In-process registry first, then the file. not_found when neither has it.
  Result<std::shared_ptr<const CompiledProfile>> load(const std::string& key) const;
  // Registers in the process and writes the file (temp + rename).
  Result<void> store(const std::shared_ptr<const CompiledProfile>& p) const;
  // Forgets a profile that failed validation (registry and file).
  void evict(const std::string& key) const;

  // Where an earlier attach found the VMCOREINFO page of an unchanging image (named
  // by MemoryImage::identity()), so that a later one reads that page before it scans
  // RAM for it. Only a hint: the page is checked like any candidate, and a wrong one
  // costs one read. The newest kMaxVmcoreinfoHints images are remembered.
  // With it, the hash of the guest bytes its profile was checked against
  // (LoadedProfile::content_hash), which the same file's bytes still have.
  static constexpr size_t kMaxVmcoreinfoHints = 256;
  struct ImageHint {
    uint64_t vmcoreinfo_pa = 0;
    uint64_t content_hash = 0;
    friend bool operator==(const ImageHint&, const ImageHint&) = default;
  };
  std::optional<ImageHint> image_hint(const std::string& image) const;
  void remember_image(const std::string& image, const ImageHint& hint) const;

 private:
  std::string dir_;
};

// Drops every profile registered in this process (tests, benchmarks).
void clear_profile_registry();

}  // namespace nfm
