#include "host/qemu/ram_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

namespace nfm {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kFourGiB = 4 * kGiB;

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

std::string_view strip_deleted(std::string_view path) {
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.size() > kDeleted.size() && path.substr(path.size() - kDeleted.size()) == kDeleted) {
    path.remove_suffix(kDeleted.size());
  }
  return path;
}

std::string human_size(uint64_t n) {
  if (n % kGiB == 0) return fmt::format("{} GiB", n / kGiB);
  if (n % kMiB == 0) return fmt::format("{} MiB", n / kMiB);
  return fmt::format("{} bytes", n);
}

}  // namespace

std::optional<MapsEntry> parse_maps_line(std::string_view line) {
  // "7f27bbe00000-7f27bfe00000 rw-p 00000000 00:00 0            /path with spaces"
  MapsEntry e;
  const char* p = line.data();
  const char* end = line.data() + line.size();
  auto hex = [&](uint64_t& out) {
    auto r = std::from_chars(p, end, out, 16);
    if (r.ec != std::errc()) return false;
    p = r.ptr;
    return true;
  };
  auto expect = [&](char ch) {
    if (p >= end || *p != ch) return false;
    ++p;
    return true;
  };
  auto skip_spaces = [&] {
    while (p < end && *p == ' ') ++p;
  };
  uint64_t major = 0, minor = 0;
  if (!hex(e.start) || !expect('-') || !hex(e.end) || !expect(' ')) return std::nullopt;
  if (end - p < 5) return std::nullopt;
  std::memcpy(e.perms, p, 4);
  p += 4;
  if (!expect(' ') || !hex(e.offset) || !expect(' ') || !hex(major) || !expect(':') ||
      !hex(minor) || !expect(' ')) {
    return std::nullopt;
  }
  auto r = std::from_chars(p, end, e.inode, 10);
  if (r.ec != std::errc()) return std::nullopt;
  p = r.ptr;
  skip_spaces();
  e.dev_major = static_cast<uint32_t>(major);
  e.dev_minor = static_cast<uint32_t>(minor);
  std::string_view path(p, static_cast<size_t>(end - p));
  while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.remove_suffix(1);
  e.path = std::string(path);
  if (e.end < e.start) return std::nullopt;
  return e;
}

RamSplit qemu_ram_split(uint64_t ram_size, const QemuCmdline& c) {
  return qemu_ram_split(ram_size, c.machine, c.max_ram_below_4g);
}

std::optional<size_t> pick_ram_mapping(std::span<const MapsEntry> maps, uint64_t size,
                                       std::string_view want, std::span<const size_t> taken) {
  auto kind_ok = [&](const MapsEntry& m) {
    if (!m.readable() || !m.writable()) return false;
    // Guest RAM is never executable in QEMU; TCG's translation buffer (an anonymous
    // rwx GiB, mapped before RAM) is, and must not pass for RAM while QEMU starts.
    if (m.executable()) return false;
    if (want.empty()) return m.anonymous();
    if (want == "/memfd:") return m.memfd();
    const std::string_view path = strip_deleted(m.path);
    // mem-path may be a file or a directory (hugetlbfs: QEMU creates and unlinks a file in it).
    return path == want || (starts_with(path, want) && path.size() > want.size() &&
                            (want.back() == '/' || path[want.size()] == '/'));
  };
  std::optional<size_t> exact, larger;
  for (size_t i = 0; i < maps.size(); ++i) {
    const MapsEntry& m = maps[i];
    if (std::find(taken.begin(), taken.end(), i) != taken.end() || !kind_ok(m)) continue;
    if (m.size() == size) {
      // Several same-sized candidates (e.g. -m 16 and a 16 MiB VGA VRAM): QEMU
      // allocates guest RAM first and mmap hands out addresses top-down, so
      // prefer the highest.
      if (!exact || m.start > maps[*exact].start) exact = i;
    } else if (m.size() > size) {
      // QEMU may over-align RAM, or the kernel may merge neighbouring VMAs:
      // accept a bigger mapping whose start is suitably aligned (2 MiB for
      // anonymous RAM, QEMU_VMALLOC_ALIGN; page for files).
      const uint64_t align = m.anonymous() ? 2 * kMiB : 4096;
      if (m.start % align != 0) continue;
      if (!larger || m.size() < maps[*larger].size()) larger = i;
    }
  }
  return exact ? exact : larger;
}

Result<std::vector<MapsEntry>> read_proc_maps(pid_t pid) {
  const std::string path = fmt::format("/proc/{}/maps", pid);
  std::vector<MapsEntry> maps;
  std::ifstream f(path);
  if (!f) {
    if (errno == EACCES || errno == EPERM) return qemu_permission_error(pid);
    return errno_error(errno, path);
  }
  std::string line;
  // Bounded: a process has at most vm.max_map_count (65530 by default) mappings.
  while (maps.size() < (1u << 20) && std::getline(f, line)) {
    if (auto e = parse_maps_line(line)) maps.push_back(std::move(*e));
  }
  if (maps.empty()) return qemu_permission_error(pid);  // unreadable maps read as empty
  return maps;
}

Result<RamLayout> qemu_ram_layout(const QemuCmdline& c, std::span<const MapsEntry> maps,
                                  std::string_view proc) {
  // The RAM blocks, in guest order.
  struct Block {
    uint64_t size;
    std::string want;  // pick_ram_mapping kind filter
    std::string what;  // for messages
  };
  std::vector<Block> blocks;
  const auto backends = c.ram_backends();
  if (backends.empty()) {
    blocks.push_back(
        {c.ram_size, c.mem_path, c.mem_path.empty() ? "anonymous" : "file in " + c.mem_path});
  } else {
    for (const auto* b : backends) {
      if (b->type == "memory-backend-memfd") {
        blocks.push_back({b->size, "/memfd:", "memfd"});
      } else if (b->type == "memory-backend-file") {
        blocks.push_back({b->size, b->mem_path, "file " + b->mem_path});
      } else {
        // memory-backend-ram: anonymous (share=on shows as "/dev/zero (deleted)", rw-s).
        blocks.push_back(
            {b->size, b->share ? "/dev/zero" : "", b->share ? "shared anonymous" : "anonymous"});
      }
    }
  }
  RamLayout layout;
  std::vector<size_t> taken;
  for (const Block& b : blocks) {
    auto idx = pick_ram_mapping(maps, b.size, b.want, taken);
    if (!idx) {
      return make_error(Errc::not_found, fmt::format("guest RAM ({}, {}) not found in {}/maps",
                                                     b.what, human_size(b.size), proc));
    }
    taken.push_back(*idx);
    const MapsEntry& m = maps[*idx];
    RamBlock block{.hva = m.start, .size = b.size, .what = b.what};
    // Shared file or memfd RAM can be mapped by us as well (zero-copy).
    if (m.shared() && !m.anonymous())
      block.shared_file = RamBlock::Mapping{.start = m.start,
                                            .end = m.end,
                                            .file_offset = m.offset,
                                            .inode = m.inode,
                                            .dev_major = m.dev_major,
                                            .dev_minor = m.dev_minor,
                                            .path = m.path};
    layout.blocks.push_back(std::move(block));
  }

  // Lay the blocks out in guest-physical space: [0, below_4g) then [4 GiB, ...).
  uint64_t total = 0;
  for (const Block& b : blocks) total += b.size;
  const RamSplit split = qemu_ram_split(total, c);
  auto add_range = [&](uint64_t pa, uint64_t ram_off, uint64_t len) {
    uint64_t block_start = 0;
    for (size_t i = 0; i < blocks.size() && len > 0; ++i) {
      const uint64_t block_end = block_start + blocks[i].size;
      if (ram_off < block_end) {
        const uint64_t in = ram_off - block_start;
        const uint64_t n = std::min(len, block_end - ram_off);
        layout.pieces.push_back({.range = {pa, n}, .block = i, .offset = in});
        pa += n;
        ram_off += n;
        len -= n;
      }
      block_start = block_end;
    }
  };
  add_range(0, 0, split.below_4g);
  if (split.above_4g) add_range(kFourGiB, split.below_4g, split.above_4g);
  return layout;
}

}  // namespace nfm
