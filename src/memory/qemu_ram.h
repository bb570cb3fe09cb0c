// A running QEMU's guest RAM, read live and read-only from the host.
//
// This is only the reader: it is handed a RamLayout (where each RAM block sits in
// the QEMU process and which guest-physical ranges map onto it; host/qemu builds it
// from QEMU's command line and /proc/PID/maps) and reads with process_vm_readv
// (fallback: pread on /proc/PID/mem). When a block is a shared file or memfd it is
// mmapped PROT_READ instead and reads and view() are served from the mapping
// (zero-copy). Nothing here ever writes to the guest.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "memory/mapped_file.h"
#include "memory/physical_memory.h"

namespace nfm {

// How QEMU's pc (i440fx), q35 and microvm machines split RAM around the PCI hole:
// guest-physical [0, below_4g) is RAM offset 0.., [4 GiB, 4 GiB + above_4g) is the rest.
// Here rather than in host/qemu because memory images (migration streams) need it too.
struct RamSplit {
  uint64_t below_4g = 0;
  uint64_t above_4g = 0;
};
// `machine` is QEMU's -machine type ("pc", "q35", "pc-q35-7.2", "microvm", ...).
RamSplit qemu_ram_split(uint64_t ram_size, std::string_view machine,
                        std::optional<uint64_t> max_ram_below_4g = std::nullopt);

// One RAM block: a mapping in the QEMU process.
struct RamBlock {
  uint64_t hva = 0;  // where the block starts in the QEMU process
  uint64_t size = 0;
  std::string what;  // "anonymous", "memfd", "file PATH": for describe()
  // The mapping that holds it, as /proc/PID/maps shows it: a shared file or memfd
  // mapping can be mmapped by us too (zero-copy).
  struct Mapping {
    uint64_t start = 0, end = 0;  // the whole mapping (its /proc/PID/map_files name)
    uint64_t file_offset = 0;     // of `hva`
    uint64_t inode = 0;
    uint32_t dev_major = 0, dev_minor = 0;
    std::string path;  // maybe with " (deleted)"
  };
  std::optional<Mapping> shared_file;  // empty: anonymous or private
};

// Guest-physical space laid over the blocks.
struct RamPiece {
  PhysRange range;
  size_t block = 0;     // index into RamLayout::blocks
  uint64_t offset = 0;  // of range.start in that block
};

struct RamLayout {
  std::vector<RamBlock> blocks;  // in guest RAM order
  std::vector<RamPiece> pieces;  // by guest-physical address
};

enum class QemuAccess {
  automatic,  // mmap shared file/memfd RAM, else process_vm_readv, else /proc/PID/mem
  vm_readv,   // force process_vm_readv
  proc_mem,   // force pread on /proc/PID/mem
};

class QemuRam : public PhysicalMemory {
 public:
  // One piece of guest-physical RAM and where it lives in QEMU.
  struct Segment {
    PhysRange range;
    uint64_t hva = 0;                 // address in the QEMU process
    const uint8_t* mapped = nullptr;  // our mmap of the same bytes, if zero-copy
  };

  // Reads the RAM of process `pid` as `layout` says; `name` (QEMU's -name, may be
  // empty) only labels it. Probes the read path once. Errors: not_found (the process
  // is gone), permission (CAP_SYS_PTRACE), io.
  static Result<std::unique_ptr<QemuRam>> open(pid_t pid, std::string name, RamLayout layout,
                                               QemuAccess access = QemuAccess::automatic);

  ~QemuRam() override;

  const std::vector<PhysRange>& ranges() const override { return ranges_; }
  Result<void> read(uint64_t pa, void* dst, size_t len) override;
  size_t read_many(std::span<ReadOp> ops) override;
  const uint8_t* view(uint64_t pa, size_t len) const override;
  std::string describe() const override;
  Result<void> check() const override;
  // Mapped RAM: mincore() on our mapping (the page cache is shared with QEMU's).
  // Anonymous RAM: QEMU's /proc/PID/pagemap (present and swapped bits, readable
  // with the ptrace access that reading needs anyway).
  Result<void> host_residency(uint64_t pa, std::span<HostPage> pages) const override;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const std::vector<Segment>& segments() const { return segments_; }
  // "mmap", "process_vm_readv" or "/proc/PID/mem" (mixed sources list all).
  std::string access_method() const;
  bool zero_copy() const;

 private:
  QemuRam() = default;

  const Segment* find(uint64_t pa) const;
  // Appends remote iovecs for [pa, pa+len) to the batch; false if not all backed.
  bool add_remote(uint64_t pa, uint8_t* dst, size_t len, size_t op);
  // Runs the pending batch; marks ops_ok_[op] false for failed ops.
  void run_batch(std::span<ReadOp> ops);
  ssize_t pread_mem(uint64_t hva, void* dst, size_t len);

  pid_t pid_ = 0;
  std::string name_;
  std::vector<Segment> segments_;
  std::vector<PhysRange> ranges_;
  std::vector<MappedFile> mappings_;
  std::string ram_kind_;  // "anonymous", "memfd", "file /dev/shm/x"
  bool use_proc_mem_ = false;
  int mem_fd_ = -1;
  mutable int pagemap_fd_ = -1;  // QEMU's /proc/PID/pagemap, opened on first use

  // Batch buffers, sized once (no allocation when reading).
  std::vector<iovec> local_, remote_;
  std::vector<uint32_t> iov_op_;  // op index of each iovec
  size_t n_iov_ = 0;
};

// The error for a process whose memory we may not read.
Error qemu_permission_error(pid_t pid);

}  // namespace nfm
