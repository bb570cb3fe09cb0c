// Page-indexed memory images from synthetic files: kdump (flattened and
// reassembled; stored, zlib, lzo, snappy and zstd pages), QEMU migration streams
// (block list, PAGE/ZERO/CONTINUE records, later copies winning, device sections
// stepped over, the pc/q35 split), VMCOREINFO carried by the image, and corrupt,
// truncated and mislabeled files (a clear error, never a crash).
#include <elf.h>
#include <gtest/gtest.h>
#include <lzo/lzo1x.h>
#include <snappy-c.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernel/vmcoreinfo.h"
#include "memory/dump_file.h"
#include "memory/page_store.h"

namespace nfm {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
constexpr uint64_t kPage = 4096;

class PagedImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nfm-paged-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const Bytes& b) {
    std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    return p;
  }
  fs::path dir_;
};

template <typename T>
void put(Bytes& b, size_t off, const T& v) {
  if (b.size() < off + sizeof v) b.resize(off + sizeof v);
  std::memcpy(b.data() + off, &v, sizeof v);
}
void put_be(Bytes& b, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_str8(Bytes& b, const std::string& s) {
  b.push_back(static_cast<uint8_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}

// A page whose bytes say which page it is (and compress well, but not to nothing).
Bytes page_of(uint64_t pfn, uint8_t salt = 0) {
  Bytes p(kPage);
  for (size_t i = 0; i < kPage; ++i) p[i] = static_cast<uint8_t>((i / 16) * 7 + salt);
  std::snprintf(reinterpret_cast<char*>(p.data()), 32, "page %llu salt %u",
                static_cast<unsigned long long>(pfn), salt);
  return p;
}

const std::string kVmcoreinfo =
    "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff82c0a000\n"
    "NUMBER(phys_base)=0\nKERNELOFFSET=0\n";

// ---- kdump

enum Compression : uint32_t { kStored = 0, kZlib = 1, kLzo = 2, kSnappy = 4, kZstd = 0x20 };

Bytes compress(const Bytes& page, uint32_t how) {
  Bytes out(kPage * 2);
  size_t n = 0;
  switch (how) {
    case kZlib: {
      uLongf len = out.size();
      EXPECT_EQ(compress2(out.data(), &len, page.data(), page.size(), 6), Z_OK);
      n = len;
      break;
    }
    case kLzo: {
      EXPECT_EQ(lzo_init(), LZO_E_OK);
      std::vector<uint8_t> work(LZO1X_1_MEM_COMPRESS);
      lzo_uint len = out.size();
      EXPECT_EQ(lzo1x_1_compress(page.data(), page.size(), out.data(), &len, work.data()),
                LZO_E_OK);
      n = len;
      break;
    }
    case kSnappy: {
      size_t len = out.size();
      EXPECT_EQ(snappy_compress(reinterpret_cast<const char*>(page.data()), page.size(),
                                reinterpret_cast<char*>(out.data()), &len),
                SNAPPY_OK);
      n = len;
      break;
    }
    case kZstd:
      n = ZSTD_compress(out.data(), out.size(), page.data(), page.size(), 3);
      break;
    default:
      return page;
  }
  out.resize(n);
  EXPECT_LT(n, kPage);
  return out;
}

struct KdumpSpec {
  std::map<uint64_t, uint32_t> pages;  // pfn -> compression
  uint64_t max_pfn = 64;
  bool vmcoreinfo = true;
};

// The reassembled (makedumpfile -R) layout.
Bytes make_kdump(const KdumpSpec& spec) {
  Bytes b(2 * kPage, 0);
  std::memcpy(b.data(), "KDUMP   ", 8);
  put<uint32_t>(b, 8, 6);        // header_version
  put<uint32_t>(b, 428, kPage);  // block_size
  put<uint32_t>(b, 432, 1);      // sub_hdr_size
  put<uint32_t>(b, 436, 2);      // bitmap_blocks: two bitmaps, 1 block each
  put<uint32_t>(b, 440, static_cast<uint32_t>(spec.max_pfn));
  put<uint32_t>(b, 460, 1);  // nr_cpus
  const uint64_t sub = kPage;
  if (spec.vmcoreinfo) {
    put<uint64_t>(b, sub + 32, sub + 104);           // offset_vmcoreinfo
    put<uint64_t>(b, sub + 40, kVmcoreinfo.size());  // size_vmcoreinfo
    std::memcpy(b.data() + sub + 104, kVmcoreinfo.data(), kVmcoreinfo.size());
  }
  put<uint64_t>(b, sub + 96, spec.max_pfn);  // max_mapnr_64
  b.resize(4 * kPage);                       // bitmaps in blocks 2 and 3
  for (auto& [pfn, how] : spec.pages) {
    b[2 * kPage + pfn / 8] |= static_cast<uint8_t>(1 << (pfn % 8));
    b[3 * kPage + pfn / 8] |= static_cast<uint8_t>(1 << (pfn % 8));
  }
  const uint64_t desc = 4 * kPage;
  uint64_t data = desc + spec.pages.size() * 24;
  size_t i = 0;
  for (auto& [pfn, how] : spec.pages) {
    const Bytes stored = compress(page_of(pfn), how);
    put<uint64_t>(b, desc + i * 24, data);
    put<uint32_t>(b, desc + i * 24 + 8, static_cast<uint32_t>(stored.size()));
    put<uint32_t>(b, desc + i * 24 + 12, how);
    b.resize(data + stored.size());
    std::memcpy(b.data() + data, stored.data(), stored.size());
    data += stored.size();
    ++i;
  }
  return b;
}

// makedumpfile's flattened stream of the same bytes, in records of at most `chunk`
// bytes, written in a shuffled order (a reader must place them by offset).
Bytes flatten(const Bytes& logical, size_t chunk = 1000) {
  Bytes b(kPage, 0);
  std::memcpy(b.data(), "makedumpfile", 12);
  Bytes tail;
  put_be(tail, 1, 8);
  put_be(tail, 1, 8);
  std::memcpy(b.data() + 16, tail.data(), 16);
  std::vector<size_t> starts;
  for (size_t off = 0; off < logical.size(); off += chunk) starts.push_back(off);
  std::shuffle(starts.begin(), starts.end(), std::mt19937(7));
  for (size_t off : starts) {
    const size_t n = std::min(chunk, logical.size() - off);
    put_be(b, off, 8);
    put_be(b, n, 8);
    b.insert(b.end(), logical.begin() + static_cast<long>(off),
             logical.begin() + static_cast<long>(off + n));
  }
  put_be(b, ~0ull, 8);
  put_be(b, ~0ull, 8);
  return b;
}

KdumpSpec every_compression() {
  KdumpSpec s;
  s.pages = {{0, kStored}, {1, kZlib},  {2, kLzo},     {3, kSnappy}, {4, kZstd},
             {10, kZlib},  {11, kZlib}, {40, kStored}, {63, kSnappy}};
  return s;
}

// `in_place`: stored pages lie whole in the file (not split across flattened records).
void expect_pages(MemoryImage& img, const KdumpSpec& spec, bool in_place) {
  for (auto& [pfn, how] : spec.pages) {
    Bytes got(kPage);
    auto r = img.read(pfn * kPage, got.data(), got.size());
    ASSERT_TRUE(r.ok()) << pfn << ": " << r.error().to_string();
    EXPECT_EQ(got, page_of(pfn)) << "pfn " << pfn << " compression " << how;
    // Stored pages are viewable in place, compressed ones are not.
    const uint8_t* v = img.view(pfn * kPage + 8, 16);
    if (in_place) {
      EXPECT_EQ(v != nullptr, how == kStored) << pfn;
    }
    if (how != kStored) {
      EXPECT_EQ(v, nullptr) << pfn;
    }
    if (v) {
      EXPECT_EQ(std::memcmp(v, page_of(pfn).data() + 8, 16), 0);
    }
  }
}

TEST_F(PagedImageTest, KdumpEveryCompressionBothLayouts) {
  const KdumpSpec spec = every_compression();
  const Bytes logical = make_kdump(spec);
  for (const auto& [name, bytes] : {std::pair{"kdump", logical}, {"flat", flatten(logical)}}) {
    SCOPED_TRACE(name);
    auto img = load_memory_image(write(name, bytes));
    ASSERT_TRUE(img.ok()) << img.error().to_string();
    EXPECT_EQ((*img)->format(), ImageFormat::kdump);
    const bool in_place = std::string(name) == "kdump";  // flat: 1000-byte records
    expect_pages(**img, spec, in_place);
    // Twice: the second read comes from the decompression cache.
    expect_pages(**img, spec, in_place);
    // Ranges are the runs of dumped pages.
    const auto& r = (*img)->ranges();
    ASSERT_EQ(r.size(), 4u);  // [0, 5), [10, 12), 40, 63
    EXPECT_EQ(r[0].start, 0u);
    EXPECT_EQ(r[0].size, 5 * kPage);
    EXPECT_EQ(r[1].start, 10 * kPage);
    EXPECT_EQ(r[1].size, 2 * kPage);
    // A read across a stored and a compressed page, and one into a hole.
    Bytes two(2 * kPage);
    ASSERT_TRUE((*img)->read(0, two.data(), two.size()).ok());
    EXPECT_TRUE(std::equal(two.begin() + kPage, two.end(), page_of(1).begin()));
    auto hole = (*img)->read(5 * kPage, two.data(), 16);
    ASSERT_FALSE(hole.ok());
    EXPECT_EQ(hole.error().code, Errc::fault);
    EXPECT_EQ((*img)->vmcoreinfo(), kVmcoreinfo);
    EXPECT_NE((*img)->describe().find("kdump"), std::string::npos);
  }
}

TEST_F(PagedImageTest, KdumpVmcoreinfoIsUsedByLocate) {
  auto img = open_memory_image(write("k", make_kdump(every_compression())));
  ASSERT_TRUE(img.ok());
  auto info = find_vmcoreinfo(**img);
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->osrelease(), "6.1.0-test");
  EXPECT_EQ(info->found_at, 0u);
}

TEST_F(PagedImageTest, KdumpCorruptAndTruncated) {
  const KdumpSpec spec = every_compression();
  const Bytes logical = make_kdump(spec);
  const Bytes flat = flatten(logical);
  auto expect_error = [&](const std::string& name, const Bytes& b, const std::string& words) {
    auto img = open_memory_image(write(name, b));
    ASSERT_FALSE(img.ok()) << name;
    EXPECT_NE(img.error().message.find(words), std::string::npos)
        << name << ": " << img.error().message;
  };
  expect_error("flat-half", Bytes(flat.begin(), flat.begin() + flat.size() / 2), "truncated");
  expect_error("flat-no-end", Bytes(flat.begin(), flat.end() - 16), "truncated");
  expect_error("kdump-half", Bytes(logical.begin(), logical.begin() + logical.size() - 100),
               "truncated");
  expect_error("kdump-header-only", Bytes(logical.begin(), logical.begin() + 500), "kdump");
  // A bitmap marking pages that have no descriptor.
  Bytes bad_bitmap = logical;
  std::memset(bad_bitmap.data() + 3 * kPage, 0xff, kPage);
  expect_error("bad-bitmap", bad_bitmap, "bitmap");
  Bytes bad_flags = logical;
  put<uint32_t>(bad_flags, 4 * kPage + 12, 0x80);
  expect_error("bad-flags", bad_flags, "flags");
  Bytes big_mapnr = logical;
  put<uint64_t>(big_mapnr, kPage + 96, uint64_t{1} << 40);
  expect_error("big-mapnr", big_mapnr, "max_mapnr");
  Bytes bad_block = logical;
  put<uint32_t>(bad_block, 428, 65536);
  expect_error("block-size", bad_block, "block size");

  // Corrupt compressed bytes: the page read fails cleanly, the others still read.
  Bytes garbled = logical;
  const uint64_t zlib_data = *reinterpret_cast<const uint64_t*>(garbled.data() + 4 * kPage + 24);
  for (int i = 0; i < 16; ++i) garbled[zlib_data + i] ^= 0x5a;
  auto img = load_memory_image(write("garbled", garbled));
  ASSERT_TRUE(img.ok()) << img.error().to_string();
  Bytes got(kPage);
  auto r = (*img)->read(1 * kPage, got.data(), got.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("decompress"), std::string::npos) << r.error().message;
  EXPECT_TRUE((*img)->read(2 * kPage, got.data(), got.size()).ok());
}

// Random damage anywhere in the headers, bitmaps and descriptors: open fails or
// reads fail, with a message; nothing crashes (ASan runs this too).
TEST_F(PagedImageTest, KdumpSurvivesRandomDamage) {
  const KdumpSpec spec = every_compression();
  const Bytes logical = make_kdump(spec);
  std::mt19937 rng(42);
  for (int round = 0; round < 300; ++round) {
    Bytes b = round % 2 ? flatten(logical) : logical;
    const size_t region = round % 2 ? b.size() : 4 * kPage + spec.pages.size() * 24;
    for (int k = 0; k < 4; ++k) b[rng() % region] = static_cast<uint8_t>(rng());
    auto img = load_memory_image(write("damaged", b));
    if (!img) {
      EXPECT_FALSE(img.error().message.empty());
      continue;
    }
    Bytes got(2 * kPage);
    for (const auto& r : (*img)->ranges()) {
      (void)(*img)->read(r.start, got.data(), std::min<uint64_t>(got.size(), r.size));
      (void)(*img)->view(r.start, 64);
    }
  }
}

// ---- QEMU migration stream

struct Record {
  std::string block;  // "" = CONTINUE
  uint64_t offset;
  uint64_t flags;  // 0x02 ZERO, 0x08 PAGE
  Bytes data;      // PAGE: 4 KiB; ZERO: the fill byte
};

struct StreamSpec {
  std::string machine = "pc-i440fx-7.2";
  uint64_t ram = 64 * kPage;
  std::vector<std::vector<Record>> parts;  // PART sections after START
  bool device_sections = true;
  bool vmdesc = true;
};

void put_records(Bytes& b, const std::vector<Record>& records) {
  for (const auto& r : records) {
    put_be(b, r.offset | r.flags | (r.block.empty() ? 0x20 : 0), 8);
    if (!r.block.empty()) put_str8(b, r.block);
    b.insert(b.end(), r.data.begin(), r.data.end());
  }
  put_be(b, 0x10, 8);  // EOS
}

Bytes make_stream(const StreamSpec& s) {
  Bytes b;
  put_be(b, 0x5145564d, 4);
  put_be(b, 3, 4);
  b.push_back(0x07);  // configuration
  put_be(b, s.machine.size(), 4);
  b.insert(b.end(), s.machine.begin(), s.machine.end());
  b.push_back(0x01);  // START ram
  put_be(b, 2, 4);
  put_str8(b, "ram");
  put_be(b, 0, 4);
  put_be(b, 4, 4);
  put_be(b, (s.ram + 2 * kPage) | 0x04, 8);  // MEM_SIZE
  put_str8(b, "pc.ram");
  put_be(b, s.ram, 8);
  put_str8(b, "/rom@etc/acpi/tables");
  put_be(b, 2 * kPage, 8);
  put_be(b, 0x10, 8);
  b.push_back(0x7e);
  put_be(b, 2, 4);
  for (size_t i = 0; i < s.parts.size(); ++i) {
    b.push_back(i + 1 == s.parts.size() ? 0x03 : 0x02);
    put_be(b, 2, 4);
    put_records(b, s.parts[i]);
    b.push_back(0x7e);
    put_be(b, 2, 4);
  }
  if (s.device_sections) {
    // Device state is opaque; this one even holds a footer-like byte run.
    for (uint32_t id : {3u, 5u}) {
      b.push_back(0x04);
      put_be(b, id, 4);
      put_str8(b, id == 3 ? "timer" : "cpu");
      put_be(b, 0, 4);
      put_be(b, 1, 4);
      const Bytes state = {1, 2, 0x7e, 0, 0, 0, static_cast<uint8_t>(id), 0x09, 4, 5};
      b.insert(b.end(), state.begin(), state.end());
      b.push_back(0x7e);
      put_be(b, id, 4);
    }
  }
  b.push_back(0x00);  // EOF
  if (s.vmdesc) {
    const std::string json = R"({"page_size": 4096, "devices": []})";
    b.push_back(0x06);
    put_be(b, json.size(), 4);
    b.insert(b.end(), json.begin(), json.end());
  }
  return b;
}

Record page_rec(const std::string& block, uint64_t pfn, uint8_t salt = 0) {
  return {block, pfn * kPage, 0x08, page_of(pfn, salt)};
}
Record zero_rec(const std::string& block, uint64_t pfn, uint8_t fill = 0) {
  return {block, pfn * kPage, 0x02, {fill}};
}

StreamSpec iterative_stream() {
  StreamSpec s;
  s.parts = {
      {page_rec("pc.ram", 0), page_rec("", 1), zero_rec("", 2), page_rec("", 3),
       page_rec("/rom@etc/acpi/tables", 0), page_rec("pc.ram", 63)},
      {page_rec("pc.ram", 1, 9), zero_rec("", 3, 0xab)},  // dirtied: later copies win
      {page_rec("pc.ram", 5)},
  };
  return s;
}

TEST_F(PagedImageTest, MigrationStreamPagesLaterCopiesWin) {
  auto img = load_memory_image(write("mig", make_stream(iterative_stream())));
  ASSERT_TRUE(img.ok()) << img.error().to_string();
  EXPECT_EQ((*img)->format(), ImageFormat::migration);
  ASSERT_EQ((*img)->ranges().size(), 1u);
  EXPECT_EQ((*img)->ranges()[0].size, 64 * kPage);
  Bytes got(kPage);
  auto page = [&](uint64_t pfn) {
    auto r = (*img)->read(pfn * kPage, got.data(), got.size());
    EXPECT_TRUE(r.ok()) << pfn << ": " << (r.ok() ? "" : r.error().to_string());
    return got;
  };
  EXPECT_EQ(page(0), page_of(0));
  EXPECT_EQ(page(1), page_of(1, 9));
  EXPECT_EQ(page(2), Bytes(kPage, 0));
  EXPECT_EQ(page(3), Bytes(kPage, 0xab));
  EXPECT_EQ(page(5), page_of(5));
  EXPECT_EQ(page(63), page_of(63));
  // Pages never sent are not there.
  auto missing = (*img)->read(4 * kPage, got.data(), 8);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::fault);
  // PAGE records are viewable in place, zero pages from a shared fill page.
  const uint8_t* v = (*img)->view(5 * kPage, kPage);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(std::memcmp(v, page_of(5).data(), kPage), 0);
  EXPECT_NE((*img)->view(2 * kPage, 8), nullptr);
  EXPECT_EQ((*img)->view(4 * kPage, 8), nullptr);
  EXPECT_NE((*img)->describe().find("pc-i440fx-7.2"), std::string::npos) << (*img)->describe();
}

// RAM above 4 GiB: pc splits at 3 GiB when RAM does not fit below 3.5 GiB, q35 at
// 2 GiB when it does not fit below 2.75 GiB (the rule the live source uses).
TEST_F(PagedImageTest, MigrationStreamLaysRamOutLikeTheMachine) {
  for (const auto& [machine, below] :
       {std::pair{"pc-i440fx-7.2", 3ull << 30}, {"pc-q35-7.2", 2ull << 30}}) {
    SCOPED_TRACE(machine);
    StreamSpec s;
    s.machine = machine;
    s.ram = 5ull << 30;
    const uint64_t first_high = below / kPage;  // RAM block page that lands at 4 GiB
    s.parts = {{page_rec("pc.ram", 7), page_rec("pc.ram", first_high),
                page_rec("pc.ram", first_high - 1)}};
    auto img = load_memory_image(write("big", make_stream(s)));
    ASSERT_TRUE(img.ok()) << img.error().to_string();
    const auto& r = (*img)->ranges();
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].size, below);
    EXPECT_EQ(r[1].start, 1ull << 32);
    EXPECT_EQ(r[1].size, (5ull << 30) - below);
    Bytes got(kPage);
    ASSERT_TRUE((*img)->read(1ull << 32, got.data(), kPage).ok());
    EXPECT_EQ(got, page_of(first_high));
    ASSERT_TRUE((*img)->read(below - kPage, got.data(), kPage).ok());
    EXPECT_EQ(got, page_of(first_high - 1));
  }
}

TEST_F(PagedImageTest, MigrationStreamBadInput) {
  StreamSpec without_vmdesc = iterative_stream();
  without_vmdesc.vmdesc = false;  // (nfm does not need the JSON after QEMU_VM_EOF)
  const Bytes good = make_stream(without_vmdesc);
  // Every prefix fails with a message, never crashes; most say "truncated".
  size_t truncated = 0, checked = 0;
  for (size_t len = 0; len < good.size(); len += (len < 600 ? 1 : 97)) {
    auto img = open_memory_image(write("cut", Bytes(good.begin(), good.begin() + len)));
    ASSERT_FALSE(img.ok()) << "prefix of " << len << " bytes opened";
    truncated += img.error().message.find("truncated") != std::string::npos;
    ++checked;
  }
  EXPECT_GT(truncated, checked * 9 / 10);

  auto expect_error = [&](const std::string& name, const Bytes& b, const std::string& words,
                          Errc code) {
    auto img = open_memory_image(write(name, b));
    ASSERT_FALSE(img.ok()) << name;
    EXPECT_EQ(img.error().code, code) << name << ": " << img.error().message;
    EXPECT_NE(img.error().message.find(words), std::string::npos)
        << name << ": " << img.error().message;
  };
  StreamSpec xbzrle = iterative_stream();
  xbzrle.parts[1].push_back({"pc.ram", 9 * kPage, 0x40, {}});
  expect_error("xbzrle", make_stream(xbzrle), "XBZRLE", Errc::unsupported);
  StreamSpec unknown = iterative_stream();
  unknown.parts[0].push_back({"pc.ram", 9 * kPage, 0x800, {}});
  expect_error("unknown-flag", make_stream(unknown), "flags 0x800", Errc::unsupported);
  StreamSpec wrong_block = iterative_stream();
  wrong_block.parts[0].push_back(page_rec("pc.nope", 1));
  expect_error("block", make_stream(wrong_block), "unknown RAM block", Errc::bad_format);
  StreamSpec beyond = iterative_stream();
  beyond.parts[0].push_back(page_rec("pc.ram", 64));
  expect_error("beyond", make_stream(beyond), "beyond block", Errc::bad_format);
  Bytes bad_type = good;
  bad_type[8] = 0x33;  // where the configuration section starts
  expect_error("type", bad_type, "unknown section type", Errc::bad_format);
  Bytes version = good;
  version[7] = 2;
  expect_error("version", version, "version 2", Errc::unsupported);
  StreamSpec no_eof = iterative_stream();
  no_eof.vmdesc = false;
  Bytes cut_device = make_stream(no_eof);
  cut_device.resize(cut_device.size() - 12);  // inside the last device section
  expect_error("device", cut_device, "device section", Errc::bad_format);

  // Random damage: an error or a readable image, never a crash.
  std::mt19937 rng(5);
  for (int round = 0; round < 300; ++round) {
    Bytes b = good;
    for (int k = 0; k < 3; ++k) b[rng() % 700] = static_cast<uint8_t>(rng());
    auto img = load_memory_image(write("damaged", b));
    if (!img) continue;
    Bytes got(kPage);
    for (uint64_t pfn = 0; pfn < 64; ++pfn) (void)(*img)->read(pfn * kPage, got.data(), kPage);
  }
}

// ---- ELF vmcores with a VMCOREINFO note; ELF headers glued to other bytes.

Bytes make_elf_with_note(bool with_vmcoreinfo) {
  Bytes b;
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_CORE;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;
  put(b, 0, eh);
  // Notes: a CORE/NT_PRSTATUS-like note, then VMCOREINFO (namesz counts the NUL).
  Bytes notes;
  auto add_note = [&](const std::string& name, uint32_t type, const std::string& desc) {
    put<uint32_t>(notes, notes.size(), static_cast<uint32_t>(name.size() + 1));
    put<uint32_t>(notes, notes.size(), static_cast<uint32_t>(desc.size()));
    put<uint32_t>(notes, notes.size(), type);
    notes.insert(notes.end(), name.begin(), name.end());
    notes.resize((notes.size() + 1 + 3) & ~size_t{3});
    notes.insert(notes.end(), desc.begin(), desc.end());
    notes.resize((notes.size() + 3) & ~size_t{3});
  };
  add_note("CORE", 1, std::string(336, '\1'));
  if (with_vmcoreinfo) add_note("VMCOREINFO", 0, kVmcoreinfo);
  const uint64_t note_off = 0x200, load_off = 0x1000;
  Elf64_Phdr note{PT_NOTE, 0, note_off, 0, 0, notes.size(), 0, 0};
  Elf64_Phdr load{PT_LOAD, 0, load_off, 0, 0, 2 * kPage, 2 * kPage, 0};
  put(b, sizeof eh, note);
  put(b, sizeof eh + sizeof(Elf64_Phdr), load);
  b.resize(load_off + 2 * kPage);
  std::memcpy(b.data() + note_off, notes.data(), notes.size());
  return b;
}

TEST_F(PagedImageTest, ElfVmcoreinfoNote) {
  auto img = load_memory_image(write("vmcore", make_elf_with_note(true)));
  ASSERT_TRUE(img.ok()) << img.error().to_string();
  EXPECT_EQ((*img)->vmcoreinfo(), kVmcoreinfo);
  auto info = find_vmcoreinfo(**img);
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->osrelease(), "6.1.0-test");

  // QEMU's paging=false dump of a guest without the vmcoreinfo device: no note,
  // so locate scans memory (which here holds no kernel).
  auto plain = load_memory_image(write("plain", make_elf_with_note(false)));
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE((*plain)->vmcoreinfo().empty());
  EXPECT_FALSE(find_vmcoreinfo(**plain).ok());
}

TEST_F(PagedImageTest, MislabeledFiles) {
  std::mt19937 rng(3);
  Bytes noise(64 * kPage);
  for (auto& x : noise) x = static_cast<uint8_t>(rng());
  // An ELF header glued to random data.
  Bytes elf = make_elf_with_note(true);
  Bytes glued(elf.begin(), elf.begin() + sizeof(Elf64_Ehdr));
  glued.insert(glued.end(), noise.begin(), noise.end());
  auto e = open_memory_image(write("glued.elf", glued));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("ELF"), std::string::npos) << e.error().message;
  // Magic numbers glued to random data.
  for (const std::string& magic :
       {std::string("QEVM"), std::string("KDUMP   "), std::string("makedumpfile\0\0\0\0", 16)}) {
    Bytes b(magic.begin(), magic.end());
    b.insert(b.end(), noise.begin(), noise.end());
    auto img = open_memory_image(write("glued", b));
    EXPECT_FALSE(img.ok()) << magic;
  }
}

}  // namespace
}  // namespace nfm

namespace nfm {
namespace {

// A note blob whose last descriptor ends 1 byte short of a 4-byte boundary at the end
// of the blob: the walk's next offset lies past the end and must stop there, not wrap
// (size - offset) around and read beyond the blob.
TEST(ElfNotes, ALastDescriptorEndingUnalignedEndsTheWalk) {
  std::vector<uint8_t> blob(13, 0);
  const uint32_t namesz = 0, descsz = 1, type = 7;
  std::memcpy(blob.data(), &namesz, 4);
  std::memcpy(blob.data() + 4, &descsz, 4);
  std::memcpy(blob.data() + 8, &type, 4);
  blob[12] = 0x42;
  EXPECT_FALSE(find_elf_note(blob, "GNU").has_value());
  EXPECT_EQ(elf_note_desc(blob.data(), blob.size(), "VMCOREINFO"), "");
  // A well-formed note in the same blob shape is found, descriptor and all.
  const std::string name = "GNU";
  std::vector<uint8_t> good(12 + 4 + 4, 0);
  const uint32_t gnamesz = 4, gdescsz = 4, gtype = 3;
  std::memcpy(good.data(), &gnamesz, 4);
  std::memcpy(good.data() + 4, &gdescsz, 4);
  std::memcpy(good.data() + 8, &gtype, 4);
  std::memcpy(good.data() + 12, name.c_str(), 4);
  std::memcpy(good.data() + 16, "\x01\x02\x03\x04", 4);
  auto desc = find_elf_note(good, "GNU", 3);
  ASSERT_TRUE(desc.has_value());
  EXPECT_EQ(std::vector<uint8_t>(desc->begin(), desc->end()), (std::vector<uint8_t>{1, 2, 3, 4}));
  EXPECT_FALSE(find_elf_note(good, "GNU", 4).has_value()) << "the type must match when asked";
}

}  // namespace
}  // namespace nfm
