// Memory images: format detection from bytes, ELF/LiME/raw layouts, bad files.
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "host/qemu/open_qemu.h"
#include "host/qemu/processes.h"
#include "host/qemu/ram_layout.h"
#include "memory/dump_file.h"

namespace nfm {
namespace {

namespace fs = std::filesystem;

class DumpFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nfm-dump-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return p;
  }

  fs::path dir_;
};

template <typename T>
void put(std::vector<uint8_t>& b, size_t off, const T& v) {
  if (b.size() < off + sizeof v) b.resize(off + sizeof v);
  std::memcpy(b.data() + off, &v, sizeof v);
}

// A QEMU-like ELF core: one note segment, RAM at [0, 0x2000) and [4 GiB, +0x1000).
std::vector<uint8_t> make_elf_core(uint16_t type = ET_CORE) {
  std::vector<uint8_t> b;
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = type;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 3;
  put(b, 0, eh);
  const uint64_t note_off = 0x200, load0 = 0x1000, load1 = 0x3000;
  Elf64_Phdr note{PT_NOTE, 0, note_off, 0, 0, 16, 0, 0};
  Elf64_Phdr l0{PT_LOAD, 0, load0, 0xffffffff80000000ull, 0, 0x2000, 0x2000, 0};
  Elf64_Phdr l1{PT_LOAD, 0, load1, 0, 1ull << 32, 0x1000, 0x1000, 0};
  put(b, sizeof eh, note);
  put(b, sizeof eh + sizeof(Elf64_Phdr), l0);
  put(b, sizeof eh + 2 * sizeof(Elf64_Phdr), l1);
  b.resize(load1 + 0x1000);
  std::memcpy(b.data() + note_off, "VMCOREINFO-note!", 16);
  for (size_t i = 0; i < 0x2000; ++i) b[load0 + i] = static_cast<uint8_t>(i * 7);
  std::memcpy(b.data() + load1 + 0x10, "high memory", 11);
  return b;
}

TEST_F(DumpFileTest, ElfCore) {
  auto img = load_memory_image(write("core.elf", make_elf_core()));
  ASSERT_TRUE(img) << img.error().to_string();
  EXPECT_EQ((*img)->format(), ImageFormat::elf);
  const auto& r = (*img)->ranges();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].start, 0u);
  EXPECT_EQ(r[0].size, 0x2000u);
  EXPECT_EQ(r[1].start, 1ull << 32);  // p_paddr, not p_vaddr
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>((*img)->notes().data()), (*img)->notes().size()),
      "VMCOREINFO-note!");
  uint8_t b[4];
  ASSERT_TRUE((*img)->read(0x1ffe, b, 2));
  EXPECT_EQ(b[0], static_cast<uint8_t>(0x1ffe * 7));
  char hi[12] = {};
  ASSERT_TRUE((*img)->read((1ull << 32) + 0x10, hi, 11));
  EXPECT_STREQ(hi, "high memory");
  const uint8_t* v = (*img)->view(0x100, 0x100);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v[1], static_cast<uint8_t>(0x101 * 7));
  EXPECT_EQ((*img)->view(0x1f00, 0x200), nullptr);  // runs past the segment
  auto gap = (*img)->read(0x1ffe, b, 4);
  ASSERT_FALSE(gap);
  EXPECT_EQ(gap.error().code, Errc::fault);
  EXPECT_EQ(gap.error().address, 0x2000u);
  EXPECT_NE((*img)->describe().find("elf image, mmap"), std::string::npos);
}

// /proc/vmcore and makedumpfile's ELF output map the kernel image a second time by
// its kernel-virtual address, inside the RAM segment that holds it: the alias is
// dropped, the bytes read are the RAM segment's. A segment overlapping RAM without
// being such an alias is still refused.
TEST_F(DumpFileTest, ElfKernelImageAliasIsNotRamTwice) {
  auto core = make_elf_core();
  Elf64_Ehdr eh;
  std::memcpy(&eh, core.data(), sizeof eh);
  const size_t phoff = core.size();
  std::vector<uint8_t> phdrs(
      core.begin() + static_cast<ptrdiff_t>(eh.e_phoff),
      core.begin() + static_cast<ptrdiff_t>(eh.e_phoff + 3 * sizeof(Elf64_Phdr)));
  core.insert(core.end(), phdrs.begin(), phdrs.end());
  // The alias: physical [0x1000, 0x1800) of the first RAM segment (file 0x1000..).
  Elf64_Phdr alias{PT_LOAD, 0, 0x2000, 0xffffffff81000000ull, 0x1000, 0x800, 0x800, 0};
  put(core, core.size(), alias);
  eh.e_phoff = phoff;
  eh.e_phnum = 4;
  put(core, 0, eh);
  auto img = load_memory_image(write("vmcore.elf", core));
  ASSERT_TRUE(img) << img.error().to_string();
  ASSERT_EQ((*img)->ranges().size(), 2u);
  EXPECT_EQ((*img)->ranges()[0].size, 0x2000u);
  uint8_t b = 0;
  ASSERT_TRUE((*img)->read(0x1001, &b, 1));
  EXPECT_EQ(b, static_cast<uint8_t>(0x1001 * 7));

  alias.p_vaddr = 0x1000;  // not kernel-virtual: RAM overlapping RAM
  put(core, phoff + 3 * sizeof(Elf64_Phdr), alias);
  auto bad = load_memory_image(write("overlap.elf", core));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("memory ranges overlap at 0x1000"), std::string::npos)
      << bad.error().message;
}

TEST_F(DumpFileTest, BadElf) {
  auto core = make_elf_core();
  auto truncated = core;
  truncated.resize(0x3800);  // last PT_LOAD cut in half
  auto t = open_memory_image(write("trunc.elf", truncated));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::bad_format);
  EXPECT_NE(t.error().message.find("truncated"), std::string::npos) << t.error().message;

  std::vector<uint8_t> header_only(core.begin(), core.begin() + 20);
  auto h = open_memory_image(write("hdr.elf", header_only));
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::bad_format);

  auto phdrs_cut = core;
  phdrs_cut.resize(sizeof(Elf64_Ehdr) + 10);
  auto pc = open_memory_image(write("ph.elf", phdrs_cut));
  ASSERT_FALSE(pc);
  EXPECT_EQ(pc.error().code, Errc::bad_format);

  auto exec = open_memory_image(write("exec.elf", make_elf_core(ET_EXEC)));
  ASSERT_FALSE(exec);
  EXPECT_NE(exec.error().message.find("ET_CORE"), std::string::npos);
  // One line, for the command line.
  EXPECT_EQ(exec.error().message.find('\n'), std::string::npos);
}

TEST_F(DumpFileTest, RawAndGarbage) {
  std::vector<uint8_t> raw(size_t{3} * 4096, 0);
  std::memcpy(raw.data() + 0x2100, "raw!", 4);
  // A raw image whose name says ELF: detection goes by bytes.
  auto img = load_memory_image(write("looks-like.elf", raw));
  ASSERT_TRUE(img) << img.error().to_string();
  EXPECT_EQ((*img)->format(), ImageFormat::raw);
  ASSERT_EQ((*img)->ranges().size(), 1u);
  EXPECT_EQ((*img)->ranges()[0].size, 3 * 4096u);
  char b[5] = {};
  ASSERT_TRUE((*img)->read(0x2100, b, 4));
  EXPECT_STREQ(b, "raw!");

  std::vector<uint8_t> garbage(1000);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 31 + 7);
  auto g = open_memory_image(write("garbage.bin", garbage));
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Errc::bad_format);

  auto e = open_memory_image(write("empty", {}));
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("empty"), std::string::npos);

  auto missing = open_memory_image((dir_ / "nope").string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);

  std::vector<uint8_t> kdump(4096, 0);
  std::memcpy(kdump.data(), "KDUMP   ", 8);
  auto k = open_memory_image(write("kdump", kdump));
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().message.find("kdump"), std::string::npos) << k.error().message;
}

TEST_F(DumpFileTest, RawDenseLayout) {
  std::vector<uint8_t> raw(size_t{4} * 4096, 0);
  std::memcpy(raw.data() + size_t{2} * 4096, "high", 4);
  ImageOptions o;
  o.raw_layout = RawLayout::dense;
  o.below_4g = uint64_t{2} * 4096;
  auto img = load_memory_image(write("dense.raw", raw), o);
  ASSERT_TRUE(img);
  const auto& r = (*img)->ranges();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].size, 2 * 4096u);
  EXPECT_EQ(r[1].start, 1ull << 32);
  EXPECT_EQ(r[1].size, 2 * 4096u);
  char b[5] = {};
  ASSERT_TRUE((*img)->read(1ull << 32, b, 4));
  EXPECT_STREQ(b, "high");
}

TEST_F(DumpFileTest, LargeSparseRawIsMappedNotLoaded) {
  const std::string p = (dir_ / "sparse.raw").string();
  const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  const uint64_t size = 6ull << 30;
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  ASSERT_EQ(pwrite(fd, "above4g", 7, static_cast<off_t>(5ull << 30)), 7);
  close(fd);
  auto img = load_memory_image(p);
  ASSERT_TRUE(img) << img.error().to_string();
  char b[8] = {};
  ASSERT_TRUE((*img)->read(5ull << 30, b, 7));
  EXPECT_STREQ(b, "above4g");
  EXPECT_EQ((*img)->end(), size);
}

TEST_F(DumpFileTest, Lime) {
  std::vector<uint8_t> b;
  auto header = [&](uint64_t start, uint64_t len) {
    const size_t off = b.size();
    put<uint32_t>(b, off, 0x4C694D45);
    put<uint32_t>(b, off + 4, 1);
    put<uint64_t>(b, off + 8, start);
    put<uint64_t>(b, off + 16, start + len - 1);
    put<uint64_t>(b, off + 24, 0);
    b.resize(off + 32 + len, 0xab);
  };
  header(0x1000, 0x1000);
  header(0x100000, 0x2000);
  b[b.size() - 1] = 0xcd;
  auto img = load_memory_image(write("mem.lime", b));
  ASSERT_TRUE(img) << img.error().to_string();
  EXPECT_EQ((*img)->format(), ImageFormat::lime);
  ASSERT_EQ((*img)->ranges().size(), 2u);
  EXPECT_EQ((*img)->ranges()[1].start, 0x100000u);
  uint8_t last = 0;
  ASSERT_TRUE((*img)->read(0x101fff, &last, 1));
  EXPECT_EQ(last, 0xcd);
  b.resize(b.size() - 10);
  auto t = open_memory_image(write("trunc.lime", b));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::bad_format);
}

// ---- against real QEMU output: dump-guest-memory (ELF) and pmemsave (raw) ----

std::string hmp(const std::string& sock, const std::string& cmd) {
  const int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(s);
    return "";
  }
  const std::string line = cmd + "\n";
  (void)!::write(s, line.data(), line.size());
  // HMP echoes and answers; read until the next prompt after our command.
  std::string out;
  char buf[4096];
  timeval tv{10, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t prompts = 0;
  while (prompts < 2) {
    const ssize_t n = ::read(s, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    prompts = 0;
    for (size_t p = out.find("(qemu)"); p != std::string::npos; p = out.find("(qemu)", p + 1))
      ++prompts;
  }
  close(s);
  return out;
}

TEST_F(DumpFileTest, RealQemuDumps) {
  if (std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no qemu-system-x86_64";
  const std::string sock = (dir_ / "mon.sock").string();
  const std::string elf = (dir_ / "guest.elf").string(), raw = (dir_ / "guest.raw").string();
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    const std::string mon = "unix:" + sock + ",server=on,wait=off";
    execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-nographic",
           "-display", "none", "-serial", "none", "-parallel", "none", "-net", "none", "-monitor",
           mon.c_str(), nullptr);
    _exit(127);
  }
  for (int i = 0; i < 100 && !fs::exists(sock); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // let SeaBIOS run
  hmp(sock, "stop");
  hmp(sock, "dump-guest-memory \"" + elf + "\"");
  hmp(sock, "pmemsave 0 0x4000000 \"" + raw + "\"");  // quoted: '/' is division in HMP expressions
  auto live = open_qemu_process(pid);
  ASSERT_TRUE(live) << live.error().to_string();

  auto e = load_memory_image(elf);
  auto r = load_memory_image(raw);
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ((*e)->format(), ImageFormat::elf);
  EXPECT_EQ((*r)->format(), ImageFormat::raw);
  EXPECT_FALSE((*e)->notes().empty());
  // Compare guest RAM pages present in the ELF (it leaves out the VGA/BIOS
  // window, and adds device RAM such as VRAM above RAM) across all three sources.
  std::vector<uint8_t> a(4096), b(4096), c(4096);
  size_t pages = 0;
  for (const auto& range : (*e)->ranges()) {
    for (uint64_t pa = range.start; pa + 4096 <= std::min<uint64_t>(range.end(), 64 << 20);
         pa += uint64_t{4096} * 17) {
      ASSERT_TRUE((*e)->read(pa, a.data(), 4096));
      ASSERT_TRUE((*r)->read(pa, b.data(), 4096));
      ASSERT_TRUE((*live)->read(pa, c.data(), 4096));
      EXPECT_EQ(a, b) << std::hex << pa;
      EXPECT_EQ(a, c) << std::hex << pa;
      ++pages;
    }
  }
  EXPECT_GT(pages, 900u);
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
}

}  // namespace
}  // namespace nfm
