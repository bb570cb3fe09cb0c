// TARGET parsing and resolution, and the live reader fed a RAM layout: pure, or
// reading this test's own memory (no QEMU needed).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "host/qemu/ram_layout.h"
#include "host/target.h"

namespace nfm {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

TEST(Target, ParsesPidsNamesAndFiles) {
  auto pid = Target::parse("qemu:1234");
  ASSERT_TRUE(pid) << pid.error().to_string();
  EXPECT_EQ(pid->kind(), Target::Kind::qemu_pid);
  EXPECT_TRUE(pid->live());
  EXPECT_EQ(pid->pid(), 1234);
  EXPECT_EQ(pid->text(), "qemu:1234");
  EXPECT_EQ(*pid, Target::qemu(1234));

  auto name = Target::parse("qemu:web-1");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->kind(), Target::Kind::qemu_name);
  EXPECT_EQ(name->vm_name(), "web-1");
  EXPECT_EQ(name->pid(), 0);
  // Digits and letters: a name (QEMU allows -name 1a).
  EXPECT_EQ(Target::parse("qemu:12ab")->kind(), Target::Kind::qemu_name);

  auto file = Target::parse("/tmp/guest.dump");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->kind(), Target::Kind::image);
  EXPECT_FALSE(file->live());
  EXPECT_EQ(file->path(), "/tmp/guest.dump");
  // "qemu" without the colon is a file name like any other.
  EXPECT_EQ(Target::parse("qemu")->kind(), Target::Kind::image);
}

TEST(Target, BadInputIsAClearError) {
  auto empty = Target::parse("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Errc::invalid_argument);
  EXPECT_EQ(empty.error().message, "empty target");

  auto bare = Target::parse("qemu:");
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().message, "target \"qemu:\" needs a PID or a VM name");

  for (const char* bad : {"qemu:0", "qemu:-5", "qemu:99999999999999999999"}) {
    auto r = Target::parse(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_NE(r.error().message.find("positive number"), std::string::npos) << r.error().message;
  }

  auto missing = open_target("/nonexistent/nfm-guest.dump");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("neither qemu:PID, qemu:NAME nor an existing file"),
            std::string::npos);
}

TEST(Target, NamesResolveAgainstOneScan) {
  std::vector<QemuProcessInfo> processes(3);
  processes[0].pid = 10;
  processes[0].name = "web";
  processes[1].pid = 11;
  processes[1].name = "db";
  processes[2].pid = 12;
  processes[2].name = "db";

  auto web = Target::parse("qemu:web")->resolve(processes);
  ASSERT_TRUE(web) << web.error().to_string();
  EXPECT_EQ(web->pid(), 10);
  EXPECT_EQ(web->kind(), Target::Kind::qemu_name);
  EXPECT_EQ(web->text(), "qemu:web");  // what the user wrote stays for messages

  auto twice = Target::parse("qemu:db")->resolve(processes);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, Errc::mismatch);
  EXPECT_EQ(twice.error().message, "2 QEMU processes are named db (pids 11, 12)");

  auto none = Target::parse("qemu:mail")->resolve(processes);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message, "no QEMU process with -name mail");

  // Pids and files need no scan and come back unchanged.
  EXPECT_EQ(*Target::qemu(77).resolve(processes), Target::qemu(77));
  EXPECT_EQ(*Target::parse("x.dump")->resolve({}), *Target::parse("x.dump"));
}

TEST(RamLayout, PcMachineSplitsAroundThePciHole) {
  const std::vector<std::string> argv = {"qemu-system-x86_64", "-m", "4G"};
  auto cmdline = parse_qemu_cmdline(argv);
  ASSERT_TRUE(cmdline);
  std::vector<MapsEntry> maps = {
      *parse_maps_line("7f0000000000-7f0100000000 rw-p 00000000 00:00 0"),
      *parse_maps_line("7f2000000000-7f2000200000 rw-p 00000000 00:00 0"),
  };
  auto layout = qemu_ram_layout(*cmdline, maps, "/proc/1");
  ASSERT_TRUE(layout) << layout.error().to_string();
  ASSERT_EQ(layout->blocks.size(), 1u);
  EXPECT_EQ(layout->blocks[0].hva, 0x7f0000000000u);
  EXPECT_EQ(layout->blocks[0].what, "anonymous");
  EXPECT_FALSE(layout->blocks[0].shared_file);
  ASSERT_EQ(layout->pieces.size(), 2u);
  EXPECT_EQ(layout->pieces[0].range.start, 0u);
  EXPECT_EQ(layout->pieces[0].range.size, 3 * kGiB);
  EXPECT_EQ(layout->pieces[0].offset, 0u);
  EXPECT_EQ(layout->pieces[1].range.start, 4 * kGiB);
  EXPECT_EQ(layout->pieces[1].range.size, 1 * kGiB);
  EXPECT_EQ(layout->pieces[1].offset, 3 * kGiB);

  // A memfd backend is a shared file the reader may map.
  const std::vector<std::string> memfd = {"qemu-system-x86_64", "-object",
                                          "memory-backend-memfd,id=m,size=64M,share=on", "-machine",
                                          "q35,memory-backend=m"};
  maps.push_back(*parse_maps_line("7f3000000000-7f3004000000 rw-s 00000000 00:01 4242 /memfd:m"));
  auto shared = qemu_ram_layout(*parse_qemu_cmdline(memfd), maps, "/proc/1");
  ASSERT_TRUE(shared) << shared.error().to_string();
  ASSERT_TRUE(shared->blocks[0].shared_file);
  EXPECT_EQ(shared->blocks[0].shared_file->inode, 4242u);
  EXPECT_EQ(shared->pieces.size(), 1u);

  // No mapping of the right size: a clear error naming the maps file.
  const std::vector<std::string> big = {"qemu-system-x86_64", "-m", "8G"};
  auto missing = qemu_ram_layout(*parse_qemu_cmdline(big), maps, "/proc/1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "guest RAM (anonymous, 8 GiB) not found in /proc/1/maps");
}

TEST(QemuRam, ReadsAProcessAsItsLayoutSays) {
  // "Guest RAM" in this very process: two blocks, the second laid at 4 GiB.
  std::vector<uint8_t> low(2 * kMiB), high(kMiB);
  for (size_t i = 0; i < low.size(); ++i) low[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < high.size(); ++i) high[i] = static_cast<uint8_t>(i * 13 + 1);
  RamLayout layout;
  layout.blocks.push_back(
      {.hva = reinterpret_cast<uint64_t>(low.data()), .size = low.size(), .what = "anonymous"});
  layout.blocks.push_back(
      {.hva = reinterpret_cast<uint64_t>(high.data()), .size = high.size(), .what = "anonymous"});
  layout.pieces.push_back({.range = {0, low.size()}, .block = 0, .offset = 0});
  layout.pieces.push_back({.range = {4 * kGiB, high.size()}, .block = 1, .offset = 0});
  auto ram = QemuRam::open(getpid(), "self", layout, QemuAccess::vm_readv);
  ASSERT_TRUE(ram) << ram.error().to_string();
  EXPECT_EQ((*ram)->ranges().size(), 2u);
  EXPECT_EQ((*ram)->access_method(), "process_vm_readv");
  EXPECT_NE((*ram)->describe().find("'self' (2 blocks RAM, 3 MiB, process_vm_readv)"),
            std::string::npos)
      << (*ram)->describe();
  uint8_t buf[64];
  ASSERT_TRUE((*ram)->read(4 * kGiB + 100, buf, sizeof buf));
  EXPECT_EQ(std::memcmp(buf, high.data() + 100, sizeof buf), 0);
  ASSERT_TRUE((*ram)->read(kMiB, buf, sizeof buf));
  EXPECT_EQ(std::memcmp(buf, low.data() + kMiB, sizeof buf), 0);
  // The PCI hole between them is not RAM.
  auto hole = (*ram)->read(3 * kGiB, buf, sizeof buf);
  ASSERT_FALSE(hole);
  EXPECT_EQ(hole.error().code, Errc::fault);

  // A piece that does not fit its block is refused, not read past.
  layout.pieces[1].range.size = 2 * kMiB;
  EXPECT_FALSE(QemuRam::open(getpid(), "self", layout, QemuAccess::vm_readv));
}

}  // namespace
}  // namespace nfm
