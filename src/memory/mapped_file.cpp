#include "memory/mapped_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace nfm {

Error errno_error(int err, const std::string& what) {
  Errc code = Errc::io;
  if (err == ENOENT || err == ESRCH) code = Errc::not_found;
  if (err == EACCES || err == EPERM) code = Errc::permission;
  return make_error(code, fmt::format("{}: {}", what, std::strerror(err)));
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    file_size_ = std::exchange(o.file_size_, 0);
    map_base_ = std::exchange(o.map_base_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
    map_end_ = std::exchange(o.map_end_, 0);
    fd_ = std::exchange(o.fd_, -1);
    what_ = std::move(o.what_);
    guard_ = std::move(o.guard_);
  }
  return *this;
}

void MappedFile::reset() {
  guard_.release();
  if (map_base_) munmap(map_base_, map_len_);
  if (fd_ >= 0) ::close(fd_);
  map_base_ = nullptr;
  fd_ = -1;
}

MappedFile::~MappedFile() {
  reset();
}

std::string MappedFile::identity() const {
  struct stat st;
  if (fd_ < 0 || fstat(fd_, &st) != 0) return {};
  return fmt::format("{}:{}:{}:{}.{:09}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

void MappedFile::advise_random() const {
  if (map_base_) madvise(map_base_, map_len_, MADV_RANDOM);
}

Result<void> MappedFile::check() const {
  if (guard_.shrunk())
    return make_error(Errc::io, fmt::format("{}: the file shrank while mapped (a read hit its "
                                            "end)",
                                            what_));
  struct stat st;
  if (fd_ >= 0 && fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < map_end_ &&
      S_ISREG(st.st_mode))
    return make_error(Errc::io, fmt::format("{}: the file shrank while mapped: {} bytes, {} mapped",
                                            what_, st.st_size, map_end_));
  return {};
}

Result<MappedFile> MappedFile::map_fd(int fd, const std::string& what, uint64_t offset,
                                      uint64_t length) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno_error(errno, what);
  const uint64_t fsize = static_cast<uint64_t>(st.st_size);
  if (length == 0) {
    if (offset >= fsize) return make_error(Errc::bad_format, what + ": empty file");
    length = fsize - offset;
  }
  // Regular files must hold the whole range; memfd/shm files too (QEMU sizes them
  // with ftruncate). Reading past the end of a mapped file would raise SIGBUS.
  if (S_ISREG(st.st_mode) && (offset > fsize || length > fsize - offset)) {
    return make_error(Errc::bad_format, fmt::format("{}: file is {} bytes, need {} at offset {}",
                                                    what, fsize, length, offset));
  }
  const long page = sysconf(_SC_PAGESIZE);
  const uint64_t delta = offset % static_cast<uint64_t>(page);
  const size_t map_len = static_cast<size_t>(length + delta);
  void* p = mmap(nullptr, map_len, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd,
                 static_cast<off_t>(offset - delta));
  if (p == MAP_FAILED) return errno_error(errno, "mmap " + what);
  MappedFile m;
  if (!MappingGuard::guard(p, map_len, &m.guard_)) {
    munmap(p, map_len);
    return make_error(Errc::limit, "mmap " + what + ": too many mapped files to guard");
  }
  m.fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  m.what_ = what;
  m.map_end_ = offset + length;
  m.map_base_ = p;
  m.map_len_ = map_len;
  m.data_ = static_cast<const uint8_t*>(p) + delta;
  m.size_ = length;
  m.file_size_ = fsize;
  return m;
}

Result<MappedFile> MappedFile::open(const std::string& path, uint64_t offset, uint64_t length) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "open " + path);
  auto m = map_fd(fd, path, offset, length);
  ::close(fd);
  return m;
}

}  // namespace nfm
