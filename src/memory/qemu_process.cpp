#include "memory/qemu_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace nfm {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kFourGiB = 4 * kGiB;
constexpr size_t kIovMax = 1024;  // UIO_MAXIOV: process_vm_readv's per-call limit

// ---- small text helpers ----

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

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

// QEMU's key=value,key=value option syntax; ",," is a literal comma. A first
// item without '=' gets `implied_key` (e.g. "-name foo" means guest=foo).
std::vector<std::pair<std::string, std::string>> parse_kv(std::string_view text,
                                                          std::string_view implied_key) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string item;
  auto finish = [&](bool first) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      out.emplace_back(first ? std::string(implied_key) : item, first ? item : "on");
    } else {
      out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
    item.clear();
  };
  bool first = true;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        item += ',';
        ++i;
        continue;
      }
      finish(first);
      first = false;
      continue;
    }
    item += text[i];
  }
  if (!item.empty() || first) finish(first);
  return out;
}

bool parse_bool(std::string_view v) {
  return v == "on" || v == "yes" || v == "true" || v == "y";
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return errno_error(errno, "open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return errno_error(errno, "read " + path);
  return ss.str();
}

std::vector<std::string> split_nul(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\0', start);
    if (end == std::string::npos) end = s.size();
    out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string basename_of(std::string_view p) {
  const size_t slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
}

bool looks_like_qemu(const std::string& comm, const std::string& argv0) {
  const std::string exe = basename_of(argv0);
  return comm.find("qemu") != std::string::npos || exe.find("qemu") != std::string::npos ||
         exe == "kvm" || comm == "kvm";
}

std::string human_size(uint64_t n) {
  if (n % kGiB == 0) return fmt::format("{} GiB", n / kGiB);
  if (n % kMiB == 0) return fmt::format("{} MiB", n / kMiB);
  return fmt::format("{} bytes", n);
}

}  // namespace

// ---------------------------------------------------------------- parsers

Result<uint64_t> parse_qemu_size(std::string_view text, int default_shift) {
  text = trim(text);
  if (text.empty()) return make_error(Errc::invalid_argument, "empty size");
  // Mirrors qemu_strtosz(): a number (fractions allowed) and an optional
  // binary suffix B/K/M/G/T/P/E.
  std::string num(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(num.c_str(), &end);
  if (end == num.c_str() || errno != 0 || v < 0 || !std::isfinite(v)) {
    return make_error(Errc::invalid_argument, fmt::format("bad size '{}'", text));
  }
  std::string_view suffix(end);
  int shift = default_shift;
  if (!suffix.empty()) {
    if (suffix.size() != 1)
      return make_error(Errc::invalid_argument, fmt::format("bad size suffix in '{}'", text));
    switch (suffix[0]) {
      case 'b':
      case 'B':
        shift = 0;
        break;
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      case 'p':
      case 'P':
        shift = 50;
        break;
      case 'e':
      case 'E':
        shift = 60;
        break;
      default:
        return make_error(Errc::invalid_argument, fmt::format("bad size suffix in '{}'", text));
    }
  }
  const double bytes = std::ldexp(v, shift);
  if (bytes >= 18446744073709551616.0)
    return make_error(Errc::invalid_argument, fmt::format("size '{}' too large", text));
  return static_cast<uint64_t>(bytes);
}

const QemuMemoryBackend* QemuCmdline::backend(std::string_view id) const {
  for (const auto& b : backends) {
    if (b.id == id) return &b;
  }
  return nullptr;
}

std::vector<const QemuMemoryBackend*> QemuCmdline::ram_backends() const {
  std::vector<const QemuMemoryBackend*> out;
  if (!machine_memory_backend.empty()) {
    if (const auto* b = backend(machine_memory_backend)) out.push_back(b);
    return out;
  }
  // With NUMA memdevs, machine RAM is the node backends back to back, in node order.
  for (const auto& id : numa_memdevs) {
    if (const auto* b = backend(id)) out.push_back(b);
  }
  return out;
}

Result<QemuCmdline> parse_qemu_cmdline(std::span<const std::string> argv) {
  QemuCmdline c;
  if (!argv.empty()) c.argv0 = argv[0];
  std::map<std::string, std::string> socket_chardevs;  // -chardev socket id -> path
  std::vector<std::string> qmp_chardevs;               // -mon chardev=ID,mode=control
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string_view opt = argv[i];
    if (opt.size() < 2 || opt[0] != '-') continue;
    opt.remove_prefix(opt[1] == '-' ? 2 : 1);  // QEMU accepts -opt and --opt
    // Options we care about all take one argument.
    const bool wanted = opt == "name" || opt == "m" || opt == "machine" || opt == "M" ||
                        opt == "object" || opt == "numa" || opt == "mem-path" || opt == "uuid" ||
                        opt == "qmp" || opt == "chardev" || opt == "mon";
    if (!wanted || i + 1 >= argv.size()) continue;
    const std::string& arg = argv[++i];

    if (opt == "name") {
      for (auto& [k, v] : parse_kv(arg, "guest")) {
        if (k == "guest") c.name = v;
      }
    } else if (opt == "m") {
      for (auto& [k, v] : parse_kv(arg, "size")) {
        if (k != "size") continue;
        // A bare number means MiB (QEMU: "Fix up legacy suffix-less format").
        NFM_ASSIGN(c.ram_size, parse_qemu_size(v, 20));
        c.ram_size_given = true;
      }
    } else if (opt == "machine" || opt == "M") {
      for (auto& [k, v] : parse_kv(arg, "type")) {
        if (k == "type") c.machine = v;
        if (k == "memory-backend") c.machine_memory_backend = v;
        if (k == "max-ram-below-4g") {
          NFM_ASSIGN(uint64_t m, parse_qemu_size(v, 0));
          c.max_ram_below_4g = m;
        }
      }
    } else if (opt == "numa") {
      auto kv = parse_kv(arg, "type");
      for (auto& [k, v] : kv) {
        if (k == "memdev") c.numa_memdevs.push_back(v);
      }
    } else if (opt == "mem-path") {
      c.mem_path = arg;
    } else if (opt == "uuid") {
      c.uuid = arg;
    } else if (opt == "qmp") {
      // -qmp unix:PATH[,server=on,wait=off] (also unix:PATH,server,nowait)
      if (c.qmp_socket.empty() && starts_with(arg, "unix:")) {
        auto kv = parse_kv(std::string_view(arg).substr(5), "path");
        if (!kv.empty() && kv[0].first == "path") c.qmp_socket = kv[0].second;
      }
    } else if (opt == "chardev") {
      auto kv = parse_kv(arg, "backend");
      std::string id, path;
      bool socket = false;
      for (auto& [k, v] : kv) {
        if (k == "backend") socket = v == "socket";
        if (k == "id") id = v;
        if (k == "path") path = v;
      }
      if (socket && !id.empty() && !path.empty()) socket_chardevs[id] = path;
    } else if (opt == "mon") {
      std::string chardev;
      bool control = false;
      for (auto& [k, v] : parse_kv(arg, "chardev")) {
        if (k == "chardev") chardev = v;
        if (k == "mode") control = v == "control";
      }
      if (control && !chardev.empty()) qmp_chardevs.push_back(chardev);
    } else if (opt == "object") {
      QemuMemoryBackend b;
      if (!arg.empty() && arg[0] == '{') {
        // libvirt's JSON form: {"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}
        auto j = nlohmann::json::parse(arg, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object()) return make_error(Errc::bad_format, "bad JSON -object: " + arg);
        b.type = j.value("qom-type", "");
        b.id = j.value("id", "");
        if (j.contains("size")) {
          if (j["size"].is_number_unsigned()) {
            b.size = j["size"].get<uint64_t>();
          } else if (j["size"].is_string()) {
            NFM_ASSIGN(b.size, parse_qemu_size(j["size"].get<std::string>(), 0));
          }
        }
        b.mem_path = j.value("mem-path", "");
        if (j.contains("share")) b.share = j["share"].is_boolean() ? j["share"].get<bool>() : false;
      } else {
        for (auto& [k, v] : parse_kv(arg, "qom-type")) {
          if (k == "qom-type") b.type = v;
          if (k == "id") b.id = v;
          if (k == "size") {
            NFM_ASSIGN(b.size, parse_qemu_size(v, 0));
          }
          if (k == "mem-path") b.mem_path = v;
          if (k == "share") b.share = parse_bool(v);
        }
      }
      if (starts_with(b.type, "memory-backend-")) c.backends.push_back(std::move(b));
    }
  }
  if (c.qmp_socket.empty()) {
    for (const auto& id : qmp_chardevs) {
      if (auto it = socket_chardevs.find(id); it != socket_chardevs.end()) {
        c.qmp_socket = it->second;
        break;
      }
    }
  }
  // With -machine memory-backend=, the backend's size is the RAM size.
  auto ram = c.ram_backends();
  if (!ram.empty()) {
    uint64_t total = 0;
    for (const auto* b : ram) total += b->size;
    c.ram_size = total;
  }
  return c;
}

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
  uint64_t lowmem;
  if (c.is_q35()) {
    // hw/i386/pc_q35.c (7.2): RAM fits below 4G up to 2.75 GiB (0xb0000000);
    // beyond that split at 2 GiB. max-ram-below-4g (default 4G) can only lower it.
    lowmem = ram_size >= 0xb0000000ull ? 0x80000000ull : 0xb0000000ull;
    const uint64_t max = c.max_ram_below_4g.value_or(kFourGiB);
    if (lowmem > max) lowmem = max;
  } else if (c.is_microvm()) {
    // hw/i386/microvm.c: split at 2 GiB unconditionally (QEMU >= 5.1).
    lowmem = 0x80000000ull;
    if (c.max_ram_below_4g && *c.max_ram_below_4g < lowmem) lowmem = *c.max_ram_below_4g;
  } else {
    // hw/i386/pc_piix.c (7.2): max-ram-below-4g defaults to 3.5 GiB; if RAM
    // does not fit below it, the split moves to 3 GiB (gigabyte_align, all
    // machine types since pc-i440fx-1.7).
    const uint64_t max = c.max_ram_below_4g.value_or(0xe0000000ull);
    lowmem = max;
    if (ram_size >= max) lowmem = std::min<uint64_t>(lowmem, 0xc0000000ull);
  }
  if (ram_size >= lowmem) return {lowmem, ram_size - lowmem};
  return {ram_size, 0};
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

// ---------------------------------------------------------------- the source

QemuProcess::~QemuProcess() {
  if (mem_fd_ >= 0) close(mem_fd_);
}

namespace {

Error permission_error(pid_t pid) {
  return make_error(
      Errc::permission,
      fmt::format("no permission to read process {}'s memory: run as root or with CAP_SYS_PTRACE",
                  pid));
}

// Opens the file behind a shared mapping of `pid`, read-only, for mmap.
int open_mapping_file(pid_t pid, const MapsEntry& m) {
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
  if (strip_deleted(m.path).size() == m.path.size()) {
    fd = open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (same_file(fd)) return fd;
      close(fd);
    }
  }
  return -1;
}

}  // namespace

Result<std::unique_ptr<QemuProcess>> open_qemu_process(pid_t pid, const QemuOpenOptions& options) {
  const std::string proc = fmt::format("/proc/{}", pid);
  struct stat st;
  if (pid <= 0 || stat(proc.c_str(), &st) != 0) {
    return make_error(Errc::not_found, fmt::format("no such process {}", pid));
  }
  auto comm_r = read_text_file(proc + "/comm");
  auto cmdline_r = read_text_file(proc + "/cmdline");
  if (!comm_r || !cmdline_r)
    return make_error(Errc::not_found, fmt::format("no such process {}", pid));
  // A QEMU that exited but is not reaped yet (a zombie) has no memory left: its maps
  // read as empty, which would otherwise look like missing ptrace permission.
  if (auto stat_r = read_text_file(proc + "/stat")) {
    const size_t paren = stat_r->rfind(')');
    if (paren != std::string::npos && paren + 2 < stat_r->size() &&
        ((*stat_r)[paren + 2] == 'Z' || (*stat_r)[paren + 2] == 'X'))
      return make_error(Errc::not_found, fmt::format("process {} has exited", pid));
  }
  const std::string comm(trim(*comm_r));
  const auto argv = split_nul(*cmdline_r);
  if (!looks_like_qemu(comm, argv.empty() ? "" : argv[0])) {
    return make_error(Errc::invalid_argument,
                      fmt::format("process {} is not a QEMU (comm={})", pid, comm));
  }

  auto q = std::unique_ptr<QemuProcess>(new QemuProcess());
  q->pid_ = pid;
  NFM_ASSIGN(q->cmdline_, parse_qemu_cmdline(argv));
  const QemuCmdline& c = q->cmdline_;

  // /proc/PID/maps needs the same ptrace access as reading memory.
  std::vector<MapsEntry> maps;
  {
    std::ifstream f(proc + "/maps");
    if (!f) {
      if (errno == EACCES || errno == EPERM) return permission_error(pid);
      return errno_error(errno, proc + "/maps");
    }
    std::string line;
    while (std::getline(f, line)) {
      if (auto e = parse_maps_line(line)) maps.push_back(std::move(*e));
    }
    if (maps.empty()) return permission_error(pid);  // unreadable maps read as empty
  }

  // The RAM blocks, in guest order.
  struct Block {
    uint64_t size;
    std::string want;  // pick_ram_mapping kind filter
    std::string what;  // for messages
    size_t map_index = 0;
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
  std::vector<size_t> taken;
  for (Block& b : blocks) {
    auto idx = pick_ram_mapping(maps, b.size, b.want, taken);
    if (!idx) {
      return make_error(Errc::not_found, fmt::format("guest RAM ({}, {}) not found in {}/maps",
                                                     b.what, human_size(b.size), proc));
    }
    b.map_index = *idx;
    taken.push_back(*idx);
  }

  // Zero-copy where RAM is a shared file or memfd; otherwise read through the kernel.
  struct BlockAccess {
    uint64_t hva;
    const uint8_t* mapped;
  };
  std::vector<BlockAccess> access;
  std::vector<std::string> kinds;
  for (const Block& b : blocks) {
    const MapsEntry& m = maps[b.map_index];
    BlockAccess a{m.start, nullptr};
    if (options.access == QemuAccess::automatic && m.shared() && !m.anonymous()) {
      const int fd = open_mapping_file(pid, m);
      if (fd >= 0) {
        auto mf = MappedFile::map_fd(fd, m.path, m.offset, b.size);
        close(fd);
        if (mf) {
          a.mapped = mf->data();
          q->mappings_.push_back(std::move(*mf));
        }
      }
    }
    access.push_back(a);
    kinds.push_back(b.what);
  }
  q->ram_kind_ = kinds.size() == 1 ? kinds[0] : fmt::format("{} blocks", kinds.size());

  // Lay the blocks out in guest-physical space: [0, below_4g) then [4 GiB, ...).
  uint64_t total = 0;
  for (const Block& b : blocks) total += b.size;
  q->split_ = qemu_ram_split(total, c);
  auto add_range = [&](uint64_t pa, uint64_t ram_off, uint64_t len) {
    uint64_t block_start = 0;
    for (size_t i = 0; i < blocks.size() && len > 0; ++i) {
      const uint64_t block_end = block_start + blocks[i].size;
      if (ram_off < block_end) {
        const uint64_t in = ram_off - block_start;
        const uint64_t n = std::min(len, block_end - ram_off);
        QemuProcess::Segment s;
        s.range = {pa, n};
        s.hva = access[i].hva + in;
        s.mapped = access[i].mapped ? access[i].mapped + in : nullptr;
        q->segments_.push_back(s);
        pa += n;
        ram_off += n;
        len -= n;
      }
      block_start = block_end;
    }
  };
  add_range(0, 0, q->split_.below_4g);
  if (q->split_.above_4g) add_range(kFourGiB, q->split_.below_4g, q->split_.above_4g);
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
  const auto unmapped =
      std::find_if(q->segments_.begin(), q->segments_.end(),
                   [](const QemuProcess::Segment& s) { return s.mapped == nullptr; });
  if (unmapped != q->segments_.end()) {
    uint8_t probe[8];
    int vm_err = 0;
    if (options.access != QemuAccess::proc_mem) {
      iovec l{probe, sizeof probe}, r{reinterpret_cast<void*>(unmapped->hva), sizeof probe};
      if (process_vm_readv(pid, &l, 1, &r, 1, 0) == static_cast<ssize_t>(sizeof probe)) {
        return q;
      }
      vm_err = errno;
      if (vm_err == ESRCH)
        return make_error(Errc::not_found, fmt::format("no such process {}", pid));
      if (options.access == QemuAccess::vm_readv) {
        if (vm_err == EPERM || vm_err == EACCES) return permission_error(pid);
        return errno_error(vm_err, fmt::format("process_vm_readv on process {}", pid));
      }
    }
    // Fallback (e.g. process_vm_readv blocked by seccomp): pread on /proc/PID/mem.
    q->mem_fd_ = open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (q->mem_fd_ < 0) {
      if (errno == EACCES || errno == EPERM || vm_err == EPERM) return permission_error(pid);
      return errno_error(errno, proc + "/mem");
    }
    q->use_proc_mem_ = true;
    if (q->pread_mem(unmapped->hva, probe, sizeof probe) != static_cast<ssize_t>(sizeof probe)) {
      if (errno == EACCES || errno == EPERM || errno == EIO) return permission_error(pid);
      return errno_error(errno, fmt::format("read {}/mem", proc));
    }
  }
  return q;
}

const QemuProcess::Segment* QemuProcess::find(uint64_t pa) const {
  // Few segments (1-3 normally): a linear scan beats a binary search.
  for (const Segment& s : segments_) {
    if (pa - s.range.start < s.range.size) return &s;
  }
  return nullptr;
}

const uint8_t* QemuProcess::view(uint64_t pa, size_t len) const {
  const Segment* s = find(pa);
  if (!s || !s->mapped || !s->range.contains(pa, len)) return nullptr;
  return s->mapped + (pa - s->range.start);
}

ssize_t QemuProcess::pread_mem(uint64_t hva, void* dst, size_t len) {
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

bool QemuProcess::add_remote(uint64_t pa, uint8_t* dst, size_t len, size_t op) {
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

void QemuProcess::run_batch(std::span<ReadOp> ops) {
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

size_t QemuProcess::read_many(std::span<ReadOp> ops) {
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

Result<void> QemuProcess::read(uint64_t pa, void* dst, size_t len) {
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

std::string QemuProcess::access_method() const {
  bool any_mapped = false, any_kernel = false;
  for (const auto& s : segments_) (s.mapped ? any_mapped : any_kernel) = true;
  const char* kernel = use_proc_mem_ ? "/proc/PID/mem" : "process_vm_readv";
  if (any_mapped && any_kernel) return fmt::format("mmap+{}", kernel);
  return any_mapped ? "mmap" : kernel;
}

bool QemuProcess::zero_copy() const {
  return std::all_of(segments_.begin(), segments_.end(),
                     [](const Segment& s) { return s.mapped != nullptr; });
}

std::string QemuProcess::describe() const {
  uint64_t total = 0;
  for (const auto& r : ranges_) total += r.size;
  return fmt::format("qemu:{}{} ({} RAM, {}, {})", pid_,
                     cmdline_.name.empty() ? "" : " '" + cmdline_.name + "'", ram_kind_,
                     human_size(total), access_method());
}

// ---------------------------------------------------------------- discovery

std::vector<QemuProcessInfo> list_qemu_processes() {
  std::vector<QemuProcessInfo> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* de = readdir(d)) {
    pid_t pid = 0;
    const char* n = de->d_name;
    auto r = std::from_chars(n, n + std::strlen(n), pid);
    if (r.ec != std::errc() || *r.ptr != '\0' || pid == getpid()) continue;
    auto comm = read_text_file(fmt::format("/proc/{}/comm", pid));
    auto cmd = read_text_file(fmt::format("/proc/{}/cmdline", pid));
    if (!comm || !cmd || cmd->empty()) continue;
    const auto argv = split_nul(*cmd);
    if (!looks_like_qemu(std::string(trim(*comm)), argv[0])) continue;
    QemuProcessInfo info;
    info.pid = pid;
    if (auto stat = read_text_file(fmt::format("/proc/{}/stat", pid)))
      info.start_time = parse_proc_stat_start_time(*stat).value_or(0);
    auto parsed = parse_qemu_cmdline(argv);
    if (parsed) {
      info.name = parsed->name;
      info.cmdline = std::move(parsed).value();
    } else {
      info.cmdline_error = parsed.error().to_string();
    }
    out.push_back(std::move(info));
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
  return out;
}

std::optional<uint64_t> parse_proc_stat_start_time(std::string_view stat) {
  // "PID (comm) S ppid ..." : comm may contain anything, so count from the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = stat.substr(close + 1);
  // Fields after comm start at 3 (state); starttime is field 22.
  int field = 2;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    if (i >= rest.size()) break;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (++field == 22) {
      uint64_t v = 0;
      auto r = std::from_chars(rest.data() + i, rest.data() + j, v);
      if (r.ec != std::errc() || r.ptr != rest.data() + j) return std::nullopt;
      return v;
    }
    i = j;
    if (i < rest.size() && rest[i] == '\n') break;
  }
  return std::nullopt;
}

Result<pid_t> find_qemu_by_name(std::string_view name) {
  std::vector<pid_t> hits;
  for (const auto& p : list_qemu_processes()) {
    if (p.name == name) hits.push_back(p.pid);
  }
  if (hits.empty())
    return make_error(Errc::not_found, fmt::format("no QEMU process with -name {}", name));
  if (hits.size() > 1) {
    return make_error(Errc::mismatch, fmt::format("{} QEMU processes are named {} (pids {})",
                                                  hits.size(), name, fmt::join(hits, ", ")));
  }
  return hits[0];
}

}  // namespace nfm
