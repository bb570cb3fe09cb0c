#include "memory/qemu_ram.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace nfm {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kFourGiB = 4 * kGiB;
constexpr size_t kIovMax = 1024;  // UIO_MAXIOV: process_vm_readv's per-call limit

std::string human_size(uint64_t n) {
  if (n % kGiB == 0) return fmt::format("{} GiB", n / kGiB);
  if (n % kMiB == 0) return fmt::format("{} MiB", n / kMiB);
  return fmt::format("{} bytes", n);
}

// mincore() over `pages` 4 KiB pages of our own mapping starting at `data`.
Result<void> mapping_residency(const uint8_t* data, std::span<HostPage> pages) {
  // mincore() wants a page-aligned start; a view may begin inside a page.
  const auto addr = reinterpret_cast<uintptr_t>(data);
  const uintptr_t base = addr & ~uintptr_t{kHostPageSize - 1};
  const size_t lead = addr - base;
  std::vector<unsigned char> vec((lead + pages.size() * kHostPageSize + kHostPageSize - 1) /
                                 kHostPageSize);
  // NOLINTNEXTLINE(performance-no-int-to-ptr): our own mapping, rounded down to its page.
  if (mincore(reinterpret_cast<void*>(base), pages.size() * kHostPageSize + lead, vec.data()) != 0)
    return errno_error(errno, "mincore on a guest RAM mapping");
  for (size_t i = 0; i < pages.size(); ++i) {
    // A page that starts inside a host page pair: resident only if both halves are.
    const size_t first = (lead + i * kHostPageSize) / kHostPageSize;
    const size_t last = (lead + (i + 1) * kHostPageSize - 1) / kHostPageSize;
    bool in = true;
    for (size_t j = first; j <= last; ++j) in = in && (vec[j] & 1);
    pages[i] = in ? HostPage::resident : HostPage::not_resident;
  }
  return {};
}

bool is_deleted(std::string_view path) {
  constexpr std::string_view kDeleted = " (deleted)";
  return path.size() > kDeleted.size() && path.substr(path.size() - kDeleted.size()) == kDeleted;
}

}  // namespace

RamSplit qemu_ram_split(uint64_t ram_size, std::string_view machine,
                        std::optional<uint64_t> max_ram_below_4g) {
  uint64_t lowmem;
  if (machine.find("q35") != std::string_view::npos) {
    // hw/i386/pc_q35.c (7.2): RAM fits below 4G up to 2.75 GiB (0xb0000000);
    // beyond that split at 2 GiB. max-ram-below-4g (default 4G) can only lower it.
    lowmem = ram_size >= 0xb0000000ull ? 0x80000000ull : 0xb0000000ull;
    const uint64_t max = max_ram_below_4g.value_or(kFourGiB);
    if (lowmem > max) lowmem = max;
  } else if (machine.find("microvm") != std::string_view::npos) {
    // hw/i386/microvm.c: split at 2 GiB unconditionally (QEMU >= 5.1).
    lowmem = 0x80000000ull;
    if (max_ram_below_4g && *max_ram_below_4g < lowmem) lowmem = *max_ram_below_4g;
  } else {
    // hw/i386/pc_piix.c (7.2): max-ram-below-4g defaults to 3.5 GiB; if RAM
    // does not fit below it, the split moves to 3 GiB (gigabyte_align, all
    // machine types since pc-i440fx-1.7).
    const uint64_t max = max_ram_below_4g.value_or(0xe0000000ull);
    lowmem = max;
    if (ram_size >= max) lowmem = std::min<uint64_t>(lowmem, 0xc0000000ull);
  }
  if (ram_size >= lowmem) return {lowmem, ram_size - lowmem};
  return {ram_size, 0};
}

Error qemu_permission_error(pid_t pid) {
  return make_error(
      Errc::permission,
      fmt::format("no permission to read process {}'s memory: run as root or with CAP_SYS_PTRACE",
                  pid));
}

QemuRam::~QemuRam() {
  if (mem_fd_ >= 0) close(mem_fd_);
  if (pagemap_fd_ >= 0) close(pagemap_fd_);
}

namespace {

// Opens the file behind a shared mapping of `pid`, read-only, for mmap.
int open_mapping_file(pid_t pid, const RamBlock::Mapping& m) {
  struct stat st;
  auto same_file = [&](int fd) {
    return fstat(fd, &st) == 0 && st.st_ino == m.inode && major(st.st_dev) == m.dev_major &&
           minor(st.st_dev) == m.dev_minor;
  };
  // 1. /proc/PID/map_files/START-END: exactly this mapping's file (needs CAP_SYS_ADMIN).
  const std::string mf = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
  int fd = open(mf.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (same_file(fd)) return fd;
    close(fd);
  }
  // 2. An open descriptor of QEMU's (memfds live only there).
  const std::string fd_dir = fmt::format("/proc/{}/fd", pid);
  if (DIR* d = opendir(fd_dir.c_str())) {
    while (dirent* de = readdir(d)) {
      if (de->d_name[0] == '.') continue;
      const std::string p = fd_dir + "/" + de->d_name;
      char target[4096];
      const ssize_t n = readlink(p.c_str(), target, sizeof target - 1);
      if (n <= 0 || std::string_view(target, static_cast<size_t>(n)) != m.path) continue;
      fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0 && same_file(fd)) {
        closedir(d);
        return fd;
      }
      if (fd >= 0) close(fd);
    }
    closedir(d);
  }
  // 3. The path itself, if it still exists and is the same file.
  if (!is_deleted(m.path)) {
    fd = open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (same_file(fd)) return fd;
      close(fd);
    }
  }
  return -1;
}

}  // namespace

Result<std::unique_ptr<QemuRam>> QemuRam::open(pid_t pid, std::string name, RamLayout layout,
                                               QemuAccess access) {
  const std::string proc = fmt::format("/proc/{}", pid);
  auto q = std::unique_ptr<QemuRam>(new QemuRam());
  q->pid_ = pid;
  q->name_ = std::move(name);

  // Zero-copy where RAM is a shared file or memfd; otherwise read through the kernel.
  std::vector<const uint8_t*> mapped;
  std::vector<std::string> kinds;
  for (const RamBlock& b : layout.blocks) {
    const uint8_t* view = nullptr;
    if (access == QemuAccess::automatic && b.shared_file) {
      const int fd = open_mapping_file(pid, *b.shared_file);
      if (fd >= 0) {
        auto mf = MappedFile::map_fd(fd, b.shared_file->path, b.shared_file->file_offset, b.size);
        close(fd);
        if (mf) {
          // Our faults must not read ahead: a page the host evicted stays out until
          // something asks for it by name (a scan skips such pages).
          mf->advise_random();
          view = mf->data();
          q->mappings_.push_back(std::move(*mf));
        }
      }
    }
    mapped.push_back(view);
    kinds.push_back(b.what);
  }
  q->ram_kind_ = kinds.size() == 1 ? kinds[0] : fmt::format("{} blocks", kinds.size());

  for (const RamPiece& p : layout.pieces) {
    if (p.block >= layout.blocks.size() || p.offset + p.range.size > layout.blocks[p.block].size)
      return make_error(Errc::invalid_argument, "RAM layout: a piece outside its block");
    QemuRam::Segment s;
    s.range = p.range;
    s.hva = layout.blocks[p.block].hva + p.offset;
    s.mapped = mapped[p.block] ? mapped[p.block] + p.offset : nullptr;
    q->segments_.push_back(s);
  }
  // ranges(): merge segments that are contiguous in guest-physical space.
  for (const auto& s : q->segments_) {
    if (!q->ranges_.empty() && q->ranges_.back().end() == s.range.start) {
      q->ranges_.back().size += s.range.size;
    } else {
      q->ranges_.push_back(s.range);
    }
  }

  q->local_.resize(kIovMax);
  q->remote_.resize(kIovMax);
  q->iov_op_.resize(kIovMax);

  // Probe the kernel read path if any segment needs it.
  const auto unmapped = std::find_if(q->segments_.begin(), q->segments_.end(),
                                     [](const QemuRam::Segment& s) { return s.mapped == nullptr; });
  if (unmapped != q->segments_.end()) {
    uint8_t probe[8];
    int vm_err = 0;
    if (access != QemuAccess::proc_mem) {
      // NOLINTNEXTLINE(performance-no-int-to-ptr): an address in QEMU, not in this process.
      iovec l{probe, sizeof probe}, r{reinterpret_cast<void*>(unmapped->hva), sizeof probe};
      if (process_vm_readv(pid, &l, 1, &r, 1, 0) == static_cast<ssize_t>(sizeof probe)) {
        return q;
      }
      vm_err = errno;
      if (vm_err == ESRCH)
        return make_error(Errc::not_found, fmt::format("no such process {}", pid));
      if (access == QemuAccess::vm_readv) {
        if (vm_err == EPERM || vm_err == EACCES) return qemu_permission_error(pid);
        return errno_error(vm_err, fmt::format("process_vm_readv on process {}", pid));
      }
    }
    // Fallback (e.g. process_vm_readv blocked by seccomp): pread on /proc/PID/mem.
    q->mem_fd_ = ::open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (q->mem_fd_ < 0) {
      if (vm_err == EPERM || vm_err == EACCES || errno == EPERM) return qemu_permission_error(pid);
      // The ptrace check passed; the file's mode (0600, QEMU's user) did not.
      if (errno == EACCES)
        return make_error(
            Errc::permission,
            fmt::format("no permission to open {}/mem: another user's process needs "
                        "CAP_DAC_READ_SEARCH too (--access auto reads it with process_vm_readv, "
                        "which needs only CAP_SYS_PTRACE)",
                        proc));
      return errno_error(errno, proc + "/mem");
    }
    q->use_proc_mem_ = true;
    if (q->pread_mem(unmapped->hva, probe, sizeof probe) != static_cast<ssize_t>(sizeof probe)) {
      if (errno == EACCES || errno == EPERM || errno == EIO) return qemu_permission_error(pid);
      return errno_error(errno, fmt::format("read {}/mem", proc));
    }
  }
  return q;
}

const QemuRam::Segment* QemuRam::find(uint64_t pa) const {
  // Few segments (1-3 normally): a linear scan beats a binary search.
  for (const Segment& s : segments_) {
    if (pa - s.range.start < s.range.size) return &s;
  }
  return nullptr;
}

Result<void> QemuRam::check() const {
  for (const MappedFile& m : mappings_) NFM_TRY(m.check());
  return {};
}

Result<void> QemuRam::host_residency(uint64_t pa, std::span<HostPage> pages) const {
  size_t done = 0;
  while (done < pages.size()) {
    const uint64_t at = pa + done * kHostPageSize;
    const Segment* s = find(at);
    if (!s) return fault_at(at, "guest-physical address not backed");
    const uint64_t in_segment = (s->range.end() - at) / kHostPageSize;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(in_segment, pages.size() - done));
    if (n == 0) return fault_at(at, "guest page crosses a RAM block's end");
    std::span<HostPage> part = pages.subspan(done, n);
    if (s->mapped) {
      NFM_TRY(mapping_residency(s->mapped + (at - s->range.start), part));
    } else {
      if (pagemap_fd_ < 0) {
        pagemap_fd_ = ::open(fmt::format("/proc/{}/pagemap", pid_).c_str(), O_RDONLY | O_CLOEXEC);
        if (pagemap_fd_ < 0) return errno_error(errno, fmt::format("/proc/{}/pagemap", pid_));
      }
      // linux/Documentation/admin-guide/mm/pagemap.rst: 8 bytes per page; bit 63
      // present, bit 62 swapped (the frame number reads as 0 without CAP_SYS_ADMIN).
      const uint64_t hva = s->hva + (at - s->range.start);
      std::vector<uint64_t> entries(n);
      const auto want = static_cast<ssize_t>(n * sizeof(uint64_t));
      if (pread(pagemap_fd_, entries.data(), static_cast<size_t>(want),
                static_cast<off_t>(hva / kHostPageSize * sizeof(uint64_t))) != want)
        return errno_error(errno, fmt::format("read /proc/{}/pagemap", pid_));
      for (size_t i = 0; i < n; ++i)
        part[i] = entries[i] >> 63         ? HostPage::resident
                  : (entries[i] >> 62) & 1 ? HostPage::swapped
                                           : HostPage::not_resident;
    }
    done += n;
  }
  return {};
}

const uint8_t* QemuRam::view(uint64_t pa, size_t len) const {
  const Segment* s = find(pa);
  if (!s || !s->mapped || !s->range.contains(pa, len)) return nullptr;
  return s->mapped + (pa - s->range.start);
}

ssize_t QemuRam::pread_mem(uint64_t hva, void* dst, size_t len) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = pread(mem_fd_, static_cast<uint8_t*>(dst) + done, len - done,
                            static_cast<off_t>(hva + done));
    ++stats_.syscalls;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return done ? static_cast<ssize_t>(done) : n;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

bool QemuRam::add_remote(uint64_t pa, uint8_t* dst, size_t len, size_t op) {
  while (len > 0) {
    const Segment* s = find(pa);
    if (!s) return false;
    const uint64_t off = pa - s->range.start;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, s->range.size - off));
    if (s->mapped) {
      std::memcpy(dst, s->mapped + off, n);
    } else {
      if (n_iov_ == kIovMax) return false;  // cannot happen: read_many() keeps room
      local_[n_iov_] = iovec{dst, n};
      // NOLINTNEXTLINE(performance-no-int-to-ptr): an address in QEMU, not in this process.
      remote_[n_iov_] = iovec{reinterpret_cast<void*>(s->hva + off), n};
      iov_op_[n_iov_] = static_cast<uint32_t>(op);
      ++n_iov_;
    }
    pa += n;
    dst += n;
    len -= n;
  }
  return true;
}

void QemuRam::run_batch(std::span<ReadOp> ops) {
  size_t k = 0;
  while (k < n_iov_) {
    if (use_proc_mem_) {
      const auto want = static_cast<ssize_t>(local_[k].iov_len);
      if (pread_mem(reinterpret_cast<uint64_t>(remote_[k].iov_base), local_[k].iov_base,
                    local_[k].iov_len) != want) {
        ops[iov_op_[k]].ok = false;
      } else {
        stats_.bytes += local_[k].iov_len;
      }
      ++k;
      continue;
    }
    const ssize_t got = process_vm_readv(pid_, &local_[k], n_iov_ - k, &remote_[k], n_iov_ - k, 0);
    ++stats_.syscalls;
    if (got < 0) {
      if (errno == EINTR) continue;
      ops[iov_op_[k++]].ok = false;  // this iovec failed; carry on with the next
      continue;
    }
    // The kernel stops at the first iovec it cannot read completely.
    size_t left = static_cast<size_t>(got);
    stats_.bytes += left;
    while (k < n_iov_ && left >= local_[k].iov_len) left -= local_[k++].iov_len;
    if (k < n_iov_) ops[iov_op_[k++]].ok = false;
  }
  n_iov_ = 0;
}

size_t QemuRam::read_many(std::span<ReadOp> ops) {
  n_iov_ = 0;
  // An op needs at most one iovec per segment; flush early so it always fits.
  const size_t room = segments_.size();
  for (size_t i = 0; i < ops.size(); ++i) {
    ReadOp& op = ops[i];
    op.ok = true;
    if (op.len == 0) continue;
    if (n_iov_ + room > kIovMax) run_batch(ops.first(i));
    const size_t mark = n_iov_;
    if (!add_remote(op.pa, static_cast<uint8_t*>(op.dst), op.len, i)) {
      n_iov_ = mark;  // drop the pieces already queued for this op
      op.ok = false;
    }
  }
  run_batch(ops);
  size_t done = 0;
  for (const ReadOp& op : ops) {
    done += op.ok;
    stats_.failures += !op.ok;
  }
  stats_.reads += ops.size();
  return done;
}

Result<void> QemuRam::read(uint64_t pa, void* dst, size_t len) {
  // Hot path: one segment, zero-copy.
  const Segment* s = find(pa);
  if (s && s->mapped && s->range.contains(pa, len)) {
    std::memcpy(dst, s->mapped + (pa - s->range.start), len);
    ++stats_.reads;
    stats_.bytes += len;
    return {};
  }
  ReadOp op{pa, dst, len, false};
  if (read_many(std::span<ReadOp>(&op, 1)) == 1) return {};
  return fault_at(pa, fmt::format("guest physical range [0x{:x}, +0x{:x}) not readable in QEMU {}",
                                  pa, len, pid_));
}

std::string QemuRam::access_method() const {
  bool any_mapped = false, any_kernel = false;
  for (const auto& s : segments_) (s.mapped ? any_mapped : any_kernel) = true;
  const char* kernel = use_proc_mem_ ? "/proc/PID/mem" : "process_vm_readv";
  if (any_mapped && any_kernel) return fmt::format("mmap+{}", kernel);
  return any_mapped ? "mmap" : kernel;
}

bool QemuRam::zero_copy() const {
  return std::all_of(segments_.begin(), segments_.end(),
                     [](const Segment& s) { return s.mapped != nullptr; });
}

std::string QemuRam::describe() const {
  uint64_t total = 0;
  for (const auto& r : ranges_) total += r.size;
  return fmt::format("qemu:{}{} ({} RAM, {}, {})", pid_, name_.empty() ? "" : " '" + name_ + "'",
                     ram_kind_, human_size(total), access_method());
}

}  // namespace nfm
