#include "memory/migration_stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>

#include "memory/qemu_ram.h"

namespace nfm {

namespace {

constexpr uint32_t kMagic = 0x5145564d;  // QEMU_VM_FILE_MAGIC, "QEVM"
constexpr uint32_t kVersion = 3;         // QEMU_VM_FILE_VERSION

// Section types (migration/savevm.c).
enum : uint8_t {
  kEof = 0x00,
  kStart = 0x01,
  kPart = 0x02,
  kEnd = 0x03,
  kFull = 0x04,
  kSubsection = 0x05,
  kVmDescription = 0x06,
  kConfiguration = 0x07,
  kCommand = 0x08,
  kFooter = 0x7e,
};

// RAM record flags, in the low bits of each record's be64 (migration/ram.c).
enum : uint64_t {
  kFlagFull = 0x01,  // obsolete
  kFlagZero = 0x02,
  kFlagMemSize = 0x04,
  kFlagPage = 0x08,
  kFlagEos = 0x10,
  kFlagContinue = 0x20,
  kFlagXbzrle = 0x40,
  kFlagHook = 0x80,  // RDMA
  kFlagCompressPage = 0x100,
  kFlagMultifdFlush = 0x200,  // QEMU 8.1+: no payload
};
constexpr uint64_t kFlagMask = 0xfff;  // TARGET_PAGE_SIZE - 1 on x86
constexpr uint64_t kFourGiB = 1ull << 32;
constexpr uint64_t kZeroMark = 1ull << 63;  // index entry: zero-filled page, fill in low byte
constexpr uint64_t kMaxDeviceState = 64ull << 20;

Error bad(const std::string& path, const std::string& why) {
  return make_error(Errc::bad_format, fmt::format("{}: migration stream: {}", path, why));
}

// Big-endian reads with bounds checks; every failure names where the stream ended.
struct Cursor {
  const std::string& path;
  const uint8_t* d;
  uint64_t size;
  uint64_t pos = 0;

  Result<void> need(uint64_t n, const char* what) const {
    if (n > size - pos)
      return bad(path, fmt::format("ends at 0x{:x} inside {} (truncated?)", size, what));
    return {};
  }
  Result<uint8_t> u8(const char* what) {
    NFM_TRY(need(1, what));
    return d[pos++];
  }
  Result<uint16_t> be16(const char* what) {
    NFM_TRY(need(2, what));
    const uint16_t v = static_cast<uint16_t>(d[pos] << 8 | d[pos + 1]);
    pos += 2;
    return v;
  }
  Result<uint32_t> be32(const char* what) {
    NFM_TRY(need(4, what));
    uint32_t v;
    std::memcpy(&v, d + pos, 4);
    pos += 4;
    return __builtin_bswap32(v);
  }
  Result<uint64_t> be64(const char* what) {
    NFM_TRY(need(8, what));
    uint64_t v;
    std::memcpy(&v, d + pos, 8);
    pos += 8;
    return __builtin_bswap64(v);
  }
  Result<std::string> str(uint64_t len, const char* what) {
    NFM_TRY(need(len, what));
    std::string s(reinterpret_cast<const char*>(d + pos), len);
    pos += len;
    return s;
  }
  Result<std::string> str8(const char* what) {  // u8 length + bytes
    NFM_ASSIGN(uint8_t len, u8(what));
    return str(len, what);
  }
};

struct RamBlock {
  std::string idstr;
  uint64_t length = 0;
};

class MigrationPages : public PageStore {
 public:
  const uint8_t* data = nullptr;
  std::vector<uint64_t> index;  // per page of the guest RAM block: 0, file offset or kZeroMark|fill
  std::array<std::unique_ptr<uint8_t[]>, 256> fills;  // a page of each fill byte seen
  RamSplit split;
  std::string path;

  std::optional<uint64_t> slot(uint64_t pfn) const {
    const uint64_t pa = pfn * kImagePageSize;
    uint64_t off;
    if (pa < split.below_4g)
      off = pa;
    else if (pa >= kFourGiB && pa - kFourGiB < split.above_4g)
      off = split.below_4g + (pa - kFourGiB);
    else
      return std::nullopt;
    return off / kImagePageSize;
  }
  const uint8_t* view_page(uint64_t pfn) const override {
    auto s = slot(pfn);
    if (!s || *s >= index.size() || index[*s] == 0) return nullptr;
    const uint64_t e = index[*s];
    if (e & kZeroMark) return fills[e & 0xff].get();
    return data + e;
  }
  Result<void> read_page(uint64_t pfn, uint8_t* out) override {
    const uint8_t* p = view_page(pfn);
    if (!p) return fault_at(pfn * kImagePageSize, "page not in migration stream " + path);
    std::memcpy(out, p, kImagePageSize);
    return {};
  }
};

class Parser {
 public:
  Parser(const std::string& path, const uint8_t* d, uint64_t size) : c_{path, d, size} {}

  Result<PagedImage> run() {
    NFM_ASSIGN(uint32_t magic, c_.be32("the file header"));
    NFM_ASSIGN(uint32_t version, c_.be32("the file header"));
    if (magic != kMagic) return bad(c_.path, "no QEVM magic");
    if (version != kVersion)
      return make_error(Errc::unsupported,
                        fmt::format("{}: migration stream version {} (only {} is supported)",
                                    c_.path, version, kVersion));
    pages_ = std::make_unique<MigrationPages>();
    pages_->data = c_.d;
    pages_->path = c_.path;
    bool eof = false;
    while (!eof) {
      if (c_.pos >= c_.size)
        return bad(c_.path, fmt::format("ends at 0x{:x} before QEMU_VM_EOF (truncated?)", c_.size));
      const uint64_t at = c_.pos;
      NFM_ASSIGN(uint8_t type, c_.u8("a section header"));
      switch (type) {
        case kEof:
          eof = true;
          break;
        case kConfiguration:
          NFM_TRY(configuration());
          break;
        case kStart:
        case kFull:
          NFM_TRY(section_with_header(type, at));
          break;
        case kPart:
        case kEnd: {
          NFM_ASSIGN(uint32_t id, c_.be32("a section header"));
          if (!ram_id_ || id != *ram_id_)
            return bad(c_.path,
                       fmt::format("section part at 0x{:x} for unknown section {}", at, id));
          NFM_TRY(ram_records());
          NFM_TRY(footer(id));
          if (type == kEnd) ram_ended_ = true;
          break;
        }
        case kCommand: {
          NFM_TRY(c_.be16("a command"));
          NFM_ASSIGN(uint16_t len, c_.be16("a command"));
          NFM_TRY(c_.need(len, "a command"));
          c_.pos += len;
          break;
        }
        default:
          return bad(c_.path, fmt::format("unknown section type 0x{:02x} at 0x{:x}", type, at));
      }
    }
    if (!ram_id_) return bad(c_.path, "no \"ram\" section");
    if (!ram_ended_) return bad(c_.path, "the \"ram\" section never ends");
    if (blocks_.empty()) return bad(c_.path, "the \"ram\" section has no RAM block list");
    PagedImage out;
    uint64_t present = 0;
    for (uint64_t e : pages_->index) present += e != 0;
    out.detail =
        fmt::format("machine {}, RAM block {}, {} of {} pages", machine_.empty() ? "?" : machine_,
                    blocks_[main_].idstr, present, pages_->index.size());
    const RamSplit& s = pages_->split;
    out.ranges.push_back({0, s.below_4g});
    if (s.above_4g) out.ranges.push_back({kFourGiB, s.above_4g});
    out.store = std::move(pages_);
    return out;
  }

 private:
  // vmstate_configuration: be32 len + machine type name, then optional subsections.
  Result<void> configuration() {
    NFM_ASSIGN(uint32_t len, c_.be32("the configuration section"));
    if (len > 256) return bad(c_.path, fmt::format("machine type name of {} bytes", len));
    NFM_ASSIGN(machine_, c_.str(len, "the configuration section"));
    while (c_.pos < c_.size && c_.d[c_.pos] == kSubsection) {
      ++c_.pos;
      NFM_ASSIGN(std::string name, c_.str8("a configuration subsection"));
      NFM_TRY(c_.be32("a configuration subsection"));
      if (name == "configuration/target-page-bits") {
        NFM_ASSIGN(uint32_t bits, c_.be32("target-page-bits"));
        if (bits != 12)
          return make_error(Errc::unsupported,
                            fmt::format("{}: target page size 2^{}", c_.path, bits));
      } else if (name == "configuration/capabilities") {
        NFM_ASSIGN(uint32_t n, c_.be32("capabilities"));
        if (n > 256) return bad(c_.path, fmt::format("{} capabilities", n));
        for (uint32_t i = 0; i < n; ++i) {
          NFM_ASSIGN(std::string cap, c_.str8("capabilities"));
          if (cap == "x-ignore-shared") ignore_shared_ = true;
        }
      } else if (name == "configuration/uuid") {
        NFM_TRY(c_.need(16, "uuid"));
        c_.pos += 16;
      } else {
        return bad(c_.path, "unknown configuration subsection \"" + name + "\"");
      }
    }
    return {};
  }

  Result<void> section_with_header(uint8_t type, uint64_t at) {
    NFM_ASSIGN(uint32_t id, c_.be32("a section header"));
    NFM_ASSIGN(std::string idstr, c_.str8("a section header"));
    NFM_TRY(c_.be32("a section header"));  // instance_id
    NFM_TRY(c_.be32("a section header"));  // version_id
    if (idstr == "ram") {
      if (type != kStart || ram_id_)
        return bad(c_.path, fmt::format("unexpected \"ram\" section at 0x{:x}", at));
      ram_id_ = id;
      NFM_TRY(ram_records());
      return footer(id);
    }
    if (type == kStart)
      return make_error(
          Errc::unsupported,
          fmt::format("{}: iterative section \"{}\" (only \"ram\" is understood)", c_.path, idstr));
    return skip_device_state(id, idstr);
  }

  // A device's state is not self-describing: find its footer (0x7e + section id)
  // followed by what can only be the next section's header or QEMU_VM_EOF.
  Result<void> skip_device_state(uint32_t id, const std::string& idstr) {
    const uint8_t needle[5] = {kFooter, static_cast<uint8_t>(id >> 24),
                               static_cast<uint8_t>(id >> 16), static_cast<uint8_t>(id >> 8),
                               static_cast<uint8_t>(id)};
    const uint8_t* begin = c_.d + c_.pos;
    const uint8_t* limit = c_.d + std::min(c_.size, c_.pos + kMaxDeviceState);
    for (const uint8_t* p = begin;; ++p) {
      p = std::search(p, limit, needle, needle + 5);
      if (p == limit) break;
      const uint64_t next = static_cast<uint64_t>(p - c_.d) + 5;
      if (plausible_next_section(next, id)) {
        c_.pos = next;
        return {};
      }
    }
    return bad(c_.path, fmt::format("cannot find the end of device section \"{}\" (id {}) "
                                    "after 0x{:x} (truncated or corrupt?)",
                                    idstr, id, c_.pos));
  }

  bool plausible_next_section(uint64_t pos, uint32_t id) const {
    if (pos >= c_.size) return false;
    const uint8_t type = c_.d[pos];
    if (type == kEof) return pos + 1 == c_.size || c_.d[pos + 1] == kVmDescription;
    if (type != kFull) return false;
    if (c_.size - pos < 1 + 4 + 1 + 8) return false;
    uint32_t next_id;
    std::memcpy(&next_id, c_.d + pos + 1, 4);
    next_id = __builtin_bswap32(next_id);
    const uint8_t len = c_.d[pos + 5];
    // Section ids follow registration, the order priorities: any other id will do.
    if (next_id == id || len == 0 || c_.size - pos - 6 < len + 8u) return false;
    for (uint8_t i = 0; i < len; ++i) {
      const uint8_t ch = c_.d[pos + 6 + i];
      if (ch < 0x20 || ch > 0x7e) return false;
    }
    // instance_id and version_id are small numbers.
    uint32_t instance, version;
    std::memcpy(&instance, c_.d + pos + 6 + len, 4);
    std::memcpy(&version, c_.d + pos + 10 + len, 4);
    return __builtin_bswap32(instance) < 0x10000 && __builtin_bswap32(version) < 0x10000;
  }

  Result<void> footer(uint32_t id) {
    const uint64_t at = c_.pos;
    NFM_ASSIGN(uint8_t mark, c_.u8("a section footer"));
    NFM_ASSIGN(uint32_t got, c_.be32("a section footer"));
    if (mark != kFooter || got != id)
      return bad(c_.path, fmt::format("section {} lacks its footer at 0x{:x}", id, at));
    return {};
  }

  Result<size_t> block_by_name(const std::string& idstr, uint64_t at) {
    for (size_t i = 0; i < blocks_.size(); ++i)
      if (blocks_[i].idstr == idstr) return i;
    return bad(c_.path,
               fmt::format("page record at 0x{:x} names unknown RAM block \"{}\"", at, idstr));
  }

  // Records until RAM_SAVE_FLAG_EOS.
  Result<void> ram_records() {
    std::optional<size_t>& block = block_;
    for (;;) {
      const uint64_t at = c_.pos;
      NFM_ASSIGN(uint64_t word, c_.be64("the ram section"));
      const uint64_t flags = word & kFlagMask, addr = word & ~kFlagMask;
      if (flags & kFlagMemSize) {
        NFM_TRY(block_list(addr));
        continue;
      }
      const uint64_t kind = flags & ~kFlagContinue;
      if (kind == kFlagEos) return {};
      if (kind == kFlagMultifdFlush) continue;
      if (kind != kFlagZero && kind != kFlagPage) {
        const char* what = kind == kFlagXbzrle         ? " (XBZRLE: disable the xbzrle capability)"
                           : kind == kFlagCompressPage ? " (disable the compress capability)"
                           : kind == kFlagHook         ? " (RDMA)"
                                                       : "";
        return make_error(Errc::unsupported,
                          fmt::format("{}: migration stream: page record at 0x{:x} has flags "
                                      "0x{:x}{}",
                                      c_.path, at, flags, what));
      }
      if (!(flags & kFlagContinue)) {
        NFM_ASSIGN(std::string idstr, c_.str8("a page record"));
        NFM_ASSIGN(block, block_by_name(idstr, at));
      } else if (!block) {
        return bad(c_.path, fmt::format("page record at 0x{:x} continues no block", at));
      }
      if (addr >= blocks_[*block].length)
        return bad(c_.path, fmt::format("page record at 0x{:x}: offset 0x{:x} beyond block \"{}\"",
                                        at, addr, blocks_[*block].idstr));
      uint64_t entry;
      if (kind == kFlagZero) {
        NFM_ASSIGN(uint8_t fill, c_.u8("a zero page record"));
        if (!pages_->fills[fill]) {
          pages_->fills[fill] = std::make_unique<uint8_t[]>(kImagePageSize);
          std::memset(pages_->fills[fill].get(), fill, kImagePageSize);
        }
        entry = kZeroMark | fill;
      } else {
        NFM_TRY(c_.need(kImagePageSize, "a page"));
        entry = c_.pos;
        c_.pos += kImagePageSize;
      }
      if (*block == main_) pages_->index[addr / kImagePageSize] = entry;  // later copies win
    }
  }

  // RAM_SAVE_FLAG_MEM_SIZE: the blocks, whose lengths add up to `total`.
  Result<void> block_list(uint64_t total) {
    if (!blocks_.empty()) return bad(c_.path, "a second RAM block list");
    uint64_t sum = 0;
    while (sum < total) {
      RamBlock b;
      NFM_ASSIGN(b.idstr, c_.str8("the RAM block list"));
      NFM_ASSIGN(b.length, c_.be64("the RAM block list"));
      if (ignore_shared_) NFM_TRY(c_.be64("the RAM block list"));
      if (b.length == 0 || b.length % kImagePageSize || b.length > total - sum)
        return bad(c_.path, fmt::format("RAM block \"{}\" of 0x{:x} bytes does not fit the total "
                                        "0x{:x}",
                                        b.idstr, b.length, total));
      sum += b.length;
      blocks_.push_back(std::move(b));
      if (blocks_.size() > 4096) return bad(c_.path, "too many RAM blocks");
    }
    // Guest RAM is "pc.ram", or a memory backend's id; device blocks (ROMs,
    // video RAM) carry a '/' or are the firmware.
    std::vector<size_t> candidates;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const std::string& n = blocks_[i].idstr;
      if (n == "pc.ram") candidates = {i};
      if (n == "pc.ram") break;
      if (n.find('/') == n.npos && n != "pc.bios" && n != "pc.rom") candidates.push_back(i);
    }
    if (candidates.size() != 1) {
      std::string names;
      for (const auto& b : blocks_) names += (names.empty() ? "" : ", ") + b.idstr;
      return make_error(Errc::unsupported,
                        fmt::format("{}: migration stream: cannot tell which RAM block is guest "
                                    "RAM among: {}",
                                    c_.path, names));
    }
    main_ = candidates[0];
    pages_->split = qemu_ram_split(blocks_[main_].length, machine_.empty() ? "pc" : machine_);
    pages_->index.assign(blocks_[main_].length / kImagePageSize, 0);
    return {};
  }

  Cursor c_;
  std::unique_ptr<MigrationPages> pages_;
  std::string machine_;
  bool ignore_shared_ = false;
  std::optional<uint32_t> ram_id_;
  bool ram_ended_ = false;
  std::vector<RamBlock> blocks_;
  size_t main_ = 0;
  // The block a CONTINUE record means: the sender's last one, across sections.
  std::optional<size_t> block_;
};

}  // namespace

bool looks_like_migration_stream(const uint8_t* d, uint64_t size) {
  return size >= 4 && d[0] == 'Q' && d[1] == 'E' && d[2] == 'V' && d[3] == 'M';
}

Result<PagedImage> open_migration_stream(const std::string& path, const uint8_t* data,
                                         uint64_t size) {
  return Parser(path, data, size).run();
}

}  // namespace nfm
