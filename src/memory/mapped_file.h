// A read-only mmap of a file (or of part of one), unmapped on destruction.
// Used by dump files and by live QEMU RAM backed by a shared file or memfd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "memory/mapping_guard.h"
#include "util/result.h"

namespace nfm {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }
  MappedFile& operator=(MappedFile&& o) noexcept;
  ~MappedFile();

  // Maps [offset, offset + length) of `path` PROT_READ, MAP_SHARED (so that a
  // live guest's writes stay visible). length 0 = to the end of the file.
  static Result<MappedFile> open(const std::string& path, uint64_t offset = 0, uint64_t length = 0);
  // Same, from an open descriptor (not closed; the mapping outlives it).
  static Result<MappedFile> map_fd(int fd, const std::string& what, uint64_t offset,
                                   uint64_t length);

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  // Size of the whole file when it was opened (>= size() for partial maps).
  uint64_t file_size() const { return file_size_; }
  // Faults on this mapping read only the page asked for, never ahead (MADV_RANDOM).
  void advise_random() const;
  // Whether the file still holds every mapped byte. A file that shrank while
  // mapped is an error (its tail already reads as zeros: see mapping_guard.h),
  // never a signal: the caller drops what it read and says so.
  Result<void> check() const;
  // The mapped file as it is now: device, inode, size and modification time
  // ("" if unknown). Equal strings: the same, unchanged file.
  std::string identity() const;

 private:
  void reset();

  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t file_size_ = 0;
  void* map_base_ = nullptr;  // page-aligned start actually mapped
  size_t map_len_ = 0;
  uint64_t map_end_ = 0;  // file offset just past the mapping
  int fd_ = -1;           // kept to see the file's size later (check())
  std::string what_;
  MappingGuard guard_;
};

// Errc for a failed host call on a path (ENOENT -> not_found, EACCES/EPERM -> permission).
Error errno_error(int err, const std::string& what);

}  // namespace nfm
