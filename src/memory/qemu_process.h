// Live, read-only access to a running QEMU's guest RAM from the host.
//
// Guest RAM is one (or, with NUMA memdevs, several) mapping(s) in the QEMU
// process. We find it in /proc/PID/maps by its size (from -m or the memory
// backend's size=), lay it out in guest-physical space like QEMU's pc/q35
// machines do, and read it with process_vm_readv (fallback: pread on
// /proc/PID/mem). When RAM is a shared file or memfd we mmap it PROT_READ
// instead and serve reads and view() from the mapping (zero-copy).
// Nothing here ever writes to the guest.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "memory/mapped_file.h"
#include "memory/physical_memory.h"

namespace nfm {

// ---- Pure parsers (unit-tested without a QEMU) ----

// QEMU size syntax: "512", "512M", "4G", "1.5G", "2T", "4096k", "123b".
// `default_shift` applies to a bare number: 20 for -m (MiB), 0 for size= (bytes).
Result<uint64_t> parse_qemu_size(std::string_view text, int default_shift);

struct QemuMemoryBackend {
  std::string id;
  std::string type;  // memory-backend-ram / -file / -memfd
  uint64_t size = 0;
  std::string mem_path;  // memory-backend-file
  bool share = false;
};

struct QemuCmdline {
  std::string argv0;
  std::string name;  // -name NAME / -name guest=NAME,...
  std::string uuid;  // -uuid UUID (libvirt always passes one)
  // The QMP socket, when the command line names one: -qmp unix:PATH,... or a
  // -chardev socket,path=PATH used by -mon ...,mode=control. Empty when QMP is off,
  // on TCP, or handed over as a file descriptor (libvirt's fd=N).
  std::string qmp_socket;
  uint64_t ram_size = 128ull << 20;  // -m; QEMU's default is 128 MiB
  bool ram_size_given = false;
  std::string machine = "pc";                // -machine type (pc, q35, pc-q35-7.2, ...)
  std::optional<uint64_t> max_ram_below_4g;  // -machine ...,max-ram-below-4g=
  std::string machine_memory_backend;        // -machine ...,memory-backend=ID
  std::vector<std::string> numa_memdevs;     // -numa node,memdev=ID (in order)
  std::vector<QemuMemoryBackend> backends;   // every -object memory-backend-*
  std::string mem_path;                      // legacy -mem-path

  bool is_q35() const { return machine.find("q35") != std::string::npos; }
  bool is_microvm() const { return machine.find("microvm") != std::string::npos; }
  const QemuMemoryBackend* backend(std::string_view id) const;
  // The backends that make up guest RAM, in guest-physical order (empty: plain RAM of ram_size).
  std::vector<const QemuMemoryBackend*> ram_backends() const;
};

// Parses QEMU's argv (as in /proc/PID/cmdline). Accepts -opt and --opt, the
// key=value,... syntax (",," escapes a comma) and JSON -object (libvirt).
Result<QemuCmdline> parse_qemu_cmdline(std::span<const std::string> argv);

// One line of /proc/PID/maps.
struct MapsEntry {
  uint64_t start = 0;
  uint64_t end = 0;
  char perms[5] = {};  // "rw-s"
  uint64_t offset = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // empty for anonymous mappings
  uint64_t size() const { return end - start; }
  bool readable() const { return perms[0] == 'r'; }
  bool writable() const { return perms[1] == 'w'; }
  bool executable() const { return perms[2] == 'x'; }
  bool shared() const { return perms[3] == 's'; }
  bool anonymous() const { return path.empty(); }
  bool memfd() const { return path.rfind("/memfd:", 0) == 0; }
};
std::optional<MapsEntry> parse_maps_line(std::string_view line);

// How QEMU's pc (i440fx) and q35 machines split RAM around the PCI hole:
// guest-physical [0, below_4g) is RAM offset 0.., [4 GiB, 4 GiB + above_4g) is the rest.
struct RamSplit {
  uint64_t below_4g = 0;
  uint64_t above_4g = 0;
};
RamSplit qemu_ram_split(uint64_t ram_size, const QemuCmdline& cmdline);

// Picks the mapping for a RAM block of `size` bytes among `maps`, skipping
// indexes in `taken`. `want` filters the kind: "" anonymous, "/memfd:" memfds,
// else a file path (or a directory containing the file, for hugetlbfs).
// Returns the index into `maps`.
std::optional<size_t> pick_ram_mapping(std::span<const MapsEntry> maps, uint64_t size,
                                       std::string_view want, std::span<const size_t> taken);

// ---- The live source ----

enum class QemuAccess {
  automatic,  // mmap shared file/memfd RAM, else process_vm_readv, else /proc/PID/mem
  vm_readv,   // force process_vm_readv
  proc_mem,   // force pread on /proc/PID/mem
};

struct QemuOpenOptions {
  QemuAccess access = QemuAccess::automatic;
};

class QemuProcess : public PhysicalMemory {
 public:
  // One piece of guest-physical RAM and where it lives in QEMU.
  struct Segment {
    PhysRange range;
    uint64_t hva = 0;                 // address in the QEMU process
    const uint8_t* mapped = nullptr;  // our mmap of the same bytes, if zero-copy
  };

  ~QemuProcess() override;

  const std::vector<PhysRange>& ranges() const override { return ranges_; }
  Result<void> read(uint64_t pa, void* dst, size_t len) override;
  size_t read_many(std::span<ReadOp> ops) override;
  const uint8_t* view(uint64_t pa, size_t len) const override;
  std::string describe() const override;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return cmdline_.name; }
  const QemuCmdline& cmdline() const { return cmdline_; }
  const std::vector<Segment>& segments() const { return segments_; }
  RamSplit split() const { return split_; }
  // "mmap", "process_vm_readv" or "/proc/PID/mem" (mixed sources list all).
  std::string access_method() const;
  bool zero_copy() const;

 private:
  friend Result<std::unique_ptr<QemuProcess>> open_qemu_process(pid_t, const QemuOpenOptions&);
  QemuProcess() = default;

  const Segment* find(uint64_t pa) const;
  // Appends remote iovecs for [pa, pa+len) to the batch; false if not all backed.
  bool add_remote(uint64_t pa, uint8_t* dst, size_t len, size_t op);
  // Runs the pending batch; marks ops_ok_[op] false for failed ops.
  void run_batch(std::span<ReadOp> ops);
  ssize_t pread_mem(uint64_t hva, void* dst, size_t len);

  pid_t pid_ = 0;
  QemuCmdline cmdline_;
  RamSplit split_;
  std::vector<Segment> segments_;
  std::vector<PhysRange> ranges_;
  std::vector<MappedFile> mappings_;
  std::string ram_kind_;  // "anonymous", "memfd", "file /dev/shm/x"
  bool use_proc_mem_ = false;
  int mem_fd_ = -1;

  // Batch buffers, sized once (no allocation when reading).
  std::vector<iovec> local_, remote_;
  std::vector<uint32_t> iov_op_;  // op index of each iovec
  size_t n_iov_ = 0;
};

// Opens QEMU process `pid`. Errors: not_found ("no such process"),
// invalid_argument ("not a QEMU"), permission (CAP_SYS_PTRACE), not_found (RAM not found).
Result<std::unique_ptr<QemuProcess>> open_qemu_process(pid_t pid,
                                                       const QemuOpenOptions& options = {});

struct QemuProcessInfo {
  pid_t pid = 0;
  std::string name;
  // Process start time (/proc/PID/stat field 22, clock ticks since host boot): a
  // recycled pid with another start time is another VM.
  uint64_t start_time = 0;
  std::optional<QemuCmdline> cmdline;  // empty when QEMU's argv did not parse
  std::string cmdline_error;           // why, then
};
// All QEMU processes visible in /proc (those whose argv[0] or comm says qemu), by pid.
// The one /proc scan: find_qemu_by_name and the crawler's discovery use it.
std::vector<QemuProcessInfo> list_qemu_processes();
// Field 22 (starttime) of a /proc/PID/stat line; the comm field may hold spaces and ')'.
std::optional<uint64_t> parse_proc_stat_start_time(std::string_view stat);
// The QEMU started with -name NAME (or guest=NAME); Errc::not_found or
// Errc::mismatch (several match).
Result<pid_t> find_qemu_by_name(std::string_view name);

}  // namespace nfm
