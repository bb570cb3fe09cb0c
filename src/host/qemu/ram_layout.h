// Where a QEMU process keeps guest RAM: its /proc/PID/maps, the mapping of each RAM
// block (found by size and kind from the command line) and how guest-physical space
// is laid over them (pc/q35/microvm split around the PCI hole). The result feeds
// the reader in memory/qemu_ram.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "host/qemu/cmdline.h"
#include "memory/qemu_ram.h"

namespace nfm {

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

// The split for this command line's machine (see memory/qemu_ram.h).
RamSplit qemu_ram_split(uint64_t ram_size, const QemuCmdline& cmdline);

// Picks the mapping for a RAM block of `size` bytes among `maps`, skipping
// indexes in `taken`. `want` filters the kind: "" anonymous, "/memfd:" memfds,
// else a file path (or a directory containing the file, for hugetlbfs).
// Returns the index into `maps`.
std::optional<size_t> pick_ram_mapping(std::span<const MapsEntry> maps, uint64_t size,
                                       std::string_view want, std::span<const size_t> taken);

// Guest RAM of the QEMU described by `cmdline` among `maps`: one block per RAM
// backend (or the plain -m RAM), pieces laid out by the machine's split. Errors:
// not_found (a block's mapping is missing; `proc` names the maps file in the message).
Result<RamLayout> qemu_ram_layout(const QemuCmdline& cmdline, std::span<const MapsEntry> maps,
                                  std::string_view proc);

// Reads /proc/PID/maps. Errors: permission (it needs ptrace access, and reads as
// empty without it), io.
Result<std::vector<MapsEntry>> read_proc_maps(pid_t pid);

}  // namespace nfm
