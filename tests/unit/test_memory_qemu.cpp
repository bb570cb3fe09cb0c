// Live QEMU memory source: pure parsers, and real qemu-system-x86_64 processes
// (TCG, no kernel: SeaBIOS runs and leaves its signature in RAM).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
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

namespace nfm {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

Result<QemuCmdline> parse(std::vector<std::string> argv) {
  argv.insert(argv.begin(), "/usr/bin/qemu-system-x86_64");
  return parse_qemu_cmdline(argv);
}

TEST(QemuCmdlineTest, Sizes) {
  EXPECT_EQ(*parse_qemu_size("512", 20), 512 * kMiB);
  EXPECT_EQ(*parse_qemu_size("512M", 20), 512 * kMiB);
  EXPECT_EQ(*parse_qemu_size("4G", 20), 4 * kGiB);
  EXPECT_EQ(*parse_qemu_size("1.5G", 20), 1536 * kMiB);
  EXPECT_EQ(*parse_qemu_size("4096k", 20), 4 * kMiB);
  EXPECT_EQ(*parse_qemu_size("2147483648", 0), 2 * kGiB);
  EXPECT_EQ(*parse_qemu_size("1T", 0), 1024 * kGiB);
  EXPECT_FALSE(parse_qemu_size("", 20));
  EXPECT_FALSE(parse_qemu_size("12X", 20));
  EXPECT_FALSE(parse_qemu_size("abc", 20));
  EXPECT_FALSE(parse_qemu_size("-1", 20));
}

TEST(QemuCmdlineTest, MemoryForms) {
  EXPECT_EQ(parse({"-m", "512"})->ram_size, 512 * kMiB);
  EXPECT_EQ(parse({"-m", "4G"})->ram_size, 4 * kGiB);
  EXPECT_EQ(parse({"-m", "size=1024"})->ram_size, kGiB);  // bare number in size= is MiB too
  EXPECT_EQ(parse({"-m", "size=2G,slots=4,maxmem=8G"})->ram_size, 2 * kGiB);
  EXPECT_EQ(parse({"--m", "768M"})->ram_size, 768 * kMiB);
  auto def = parse({"-nographic"});
  EXPECT_EQ(def->ram_size, 128 * kMiB);
  EXPECT_FALSE(def->ram_size_given);
  EXPECT_EQ(def->machine, "pc");
}

TEST(QemuCmdlineTest, NameAndMachine) {
  EXPECT_EQ(parse({"-name", "web1"})->name, "web1");
  EXPECT_EQ(parse({"-name", "guest=db,debug-threads=on"})->name, "db");
  EXPECT_EQ(parse({"-name", "a,,b,process=x"})->name, "a,b");
  auto c = parse({"-machine", "pc-q35-7.2,accel=kvm,max-ram-below-4g=1G"});
  EXPECT_TRUE(c->is_q35());
  EXPECT_EQ(c->max_ram_below_4g, kGiB);
  EXPECT_TRUE(parse({"-M", "q35"})->is_q35());
  EXPECT_FALSE(parse({"-M", "type=pc-i440fx-7.2"})->is_q35());
}

TEST(QemuCmdlineTest, MemoryBackends) {
  auto c = parse({"-m", "4G", "-object",
                  "memory-backend-file,id=mem0,size=4G,mem-path=/dev/shm/vm1,share=on", "-machine",
                  "q35,memory-backend=mem0"});
  ASSERT_TRUE(c);
  ASSERT_EQ(c->backends.size(), 1u);
  EXPECT_EQ(c->backends[0].mem_path, "/dev/shm/vm1");
  EXPECT_TRUE(c->backends[0].share);
  ASSERT_EQ(c->ram_backends().size(), 1u);
  EXPECT_EQ(c->ram_size, 4 * kGiB);

  // The backend's size wins over (a missing) -m.
  auto m = parse({"-object", "memory-backend-memfd,id=ram,size=768M,share=on", "-machine",
                  "memory-backend=ram"});
  EXPECT_EQ(m->ram_size, 768 * kMiB);
  EXPECT_EQ(m->ram_backends()[0]->type, "memory-backend-memfd");

  // libvirt's JSON -object and NUMA memdevs, in node order.
  auto j =
      parse({"-m", "4096", "-object",
             R"({"qom-type":"memory-backend-ram","id":"ram-node0","size":2147483648})", "-object",
             R"({"qom-type":"memory-backend-memfd","id":"ram-node1","size":"2G","share":true})",
             "-object", "iothread,id=io1", "-numa", "node,nodeid=0,cpus=0,memdev=ram-node0",
             "-numa", "node,nodeid=1,cpus=1,memdev=ram-node1"});
  ASSERT_TRUE(j) << j.error().to_string();
  ASSERT_EQ(j->backends.size(), 2u);
  auto ram = j->ram_backends();
  ASSERT_EQ(ram.size(), 2u);
  EXPECT_EQ(ram[0]->id, "ram-node0");
  EXPECT_EQ(ram[1]->size, 2 * kGiB);
  EXPECT_TRUE(ram[1]->share);
  EXPECT_EQ(j->ram_size, 4 * kGiB);
}

TEST(QemuCmdlineTest, RamSplitMatchesQemu72) {
  // Checked against `info mtree -f` of QEMU 7.2 (pc_piix.c / pc_q35.c rules).
  QemuCmdline pc, q35;
  q35.machine = "pc-q35-7.2";
  auto split = [](uint64_t ram, const QemuCmdline& c) {
    auto s = qemu_ram_split(ram, c);
    return std::make_pair(s.below_4g, s.above_4g);
  };
  EXPECT_EQ(split(64 * kMiB, pc), std::make_pair(64 * kMiB, uint64_t{0}));
  EXPECT_EQ(split(2816 * kMiB, pc), std::make_pair(2816 * kMiB, uint64_t{0}));
  EXPECT_EQ(split(3200 * kMiB, pc),
            std::make_pair(3200 * kMiB, uint64_t{0}));  // below 3.5 GiB: all low
  EXPECT_EQ(split(3584 * kMiB, pc), std::make_pair(3 * kGiB, 512 * kMiB));
  EXPECT_EQ(split(5 * kGiB, pc), std::make_pair(3 * kGiB, 2 * kGiB));
  EXPECT_EQ(split(2 * kGiB, q35), std::make_pair(2 * kGiB, uint64_t{0}));
  EXPECT_EQ(split(2815 * kMiB, q35), std::make_pair(2815 * kMiB, uint64_t{0}));
  EXPECT_EQ(split(2816 * kMiB, q35),
            std::make_pair(2 * kGiB, 768 * kMiB));  // 0xb0000000 and up: split at 2 GiB
  EXPECT_EQ(split(5 * kGiB, q35), std::make_pair(2 * kGiB, 3 * kGiB));
  // -machine max-ram-below-4g
  pc.max_ram_below_4g = 2 * kGiB;
  EXPECT_EQ(split(4 * kGiB, pc), std::make_pair(2 * kGiB, 2 * kGiB));
  pc.max_ram_below_4g = 4 * kGiB;
  EXPECT_EQ(split(3968 * kMiB, pc), std::make_pair(3968 * kMiB, uint64_t{0}));
  q35.max_ram_below_4g = kGiB;
  EXPECT_EQ(split(2 * kGiB, q35), std::make_pair(kGiB, kGiB));
}

TEST(QemuMaps, ParseLine) {
  auto a = parse_maps_line("7f27bbe00000-7f27bfe00000 rw-p 00000000 00:00 0 ");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->start, 0x7f27bbe00000u);
  EXPECT_EQ(a->size(), 64 * kMiB);
  EXPECT_TRUE(a->anonymous());
  EXPECT_FALSE(a->shared());
  auto m = parse_maps_line(
      "7f3fa7fff000-7f4127fff000 rw-s 00000000 00:01 6                          "
      "/memfd:memory-backend-memfd (deleted)\n");
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->memfd());
  EXPECT_TRUE(m->shared());
  EXPECT_EQ(m->inode, 6u);
  EXPECT_EQ(m->dev_minor, 1u);
  EXPECT_EQ(m->path, "/memfd:memory-backend-memfd (deleted)");
  auto f = parse_maps_line(
      "55ac170de000-55ac174e5000 r--p 00407000 fe:00 10977307   /usr/bin/qemu system");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->offset, 0x407000u);
  EXPECT_EQ(f->dev_major, 0xfeu);
  EXPECT_EQ(f->path, "/usr/bin/qemu system");
  EXPECT_FALSE(parse_maps_line(""));
  EXPECT_FALSE(parse_maps_line("garbage"));
  EXPECT_FALSE(parse_maps_line("1000-2000 rw-p"));
}

TEST(QemuMaps, PickRamMapping) {
  std::vector<MapsEntry> maps;
  for (const char* l : {
           "7fc4a6c00000-7fc4a7c00000 rw-p 00000000 00:00 0",  // 16 MiB VGA VRAM
           "7fc4ecc00000-7fc4edc00000 rw-p 00000000 00:00 0",  // 16 MiB RAM (allocated first:
                                                               // higher)
           "7fc500000000-7fc504400000 rw-p 00000000 00:00 0",  // 68 MiB, 2 MiB aligned
           "7fc600001000-7fc604401000 rw-p 00000000 00:00 0",  // 68 MiB, unaligned
           "7fc700000000-7fc704000000 r--p 00000000 00:00 0",  // 64 MiB but read-only
           "7f3fa7fff000-7f4127fff000 rw-s 00000000 00:01 6 /memfd:memory-backend-memfd (deleted)",
           "7f5000000000-7f5004000000 rw-s 00000000 00:1a 77 /dev/shm/vm1",
           "7f6000000000-7f6040000000 rw-p 00000000 00:2b 88 "
           "/dev/hugepages/qemu_back_mem.pc.ram.Xa1 (deleted)",
       }) {
    maps.push_back(*parse_maps_line(l));
  }
  std::vector<size_t> none;
  EXPECT_EQ(pick_ram_mapping(maps, 16 * kMiB, "", none), 1u);
  std::vector<size_t> first_taken{1};
  EXPECT_EQ(pick_ram_mapping(maps, 16 * kMiB, "", first_taken), 0u);
  EXPECT_EQ(pick_ram_mapping(maps, 64 * kMiB, "", none), 2u);  // larger, aligned; not the r--p one
  EXPECT_EQ(pick_ram_mapping(maps, 6 * kGiB, "/memfd:", none), 5u);
  EXPECT_EQ(pick_ram_mapping(maps, 64 * kMiB, "/dev/shm/vm1", none), 6u);
  EXPECT_EQ(pick_ram_mapping(maps, kGiB, "/dev/hugepages", none), 7u);
  EXPECT_FALSE(pick_ram_mapping(maps, 64 * kMiB, "/dev/shm/other", none));
  EXPECT_FALSE(pick_ram_mapping(maps, 8 * kGiB, "", none));

  // QEMU starting: TCG's translation buffer (rwx, 1 GiB, aligned) exists before RAM.
  // It is no RAM, however well it fits: wait for the real mapping.
  std::vector<MapsEntry> starting = {
      *parse_maps_line("7ff0cc000000-7ff10bfff000 rwxp 00000000 00:00 0")};
  EXPECT_FALSE(pick_ram_mapping(starting, 64 * kMiB, "", none));
  starting.push_back(*parse_maps_line("7ff0c7e00000-7ff0cbe00000 rw-p 00000000 00:00 0"));
  EXPECT_EQ(pick_ram_mapping(starting, 64 * kMiB, "", none), 1u);
}

TEST(QemuProcessErrors, NotQemuAndNoProcess) {
  auto self = open_qemu_process(getpid());
  ASSERT_FALSE(self);
  EXPECT_EQ(self.error().code, Errc::invalid_argument);
  EXPECT_NE(self.error().message.find("is not a QEMU (comm="), std::string::npos)
      << self.error().message;
  auto none = open_qemu_process(0x3ffffff0);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::not_found);
  EXPECT_NE(none.error().message.find("no such process"), std::string::npos);
  EXPECT_FALSE(find_qemu_by_name("nfm-no-such-vm-name"));
}

// A process that exited but is not reaped yet (how a killed QEMU looks to the crawler
// until its parent waits): gone, not a permission problem.
TEST(QemuProcessErrors, ZombieHasExited) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Not reaped: wait until it is a zombie (WNOWAIT leaves it one).
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  auto zombie = open_qemu_process(child);
  waitpid(child, nullptr, 0);
  ASSERT_FALSE(zombie);
  EXPECT_EQ(zombie.error().code, Errc::not_found);
  EXPECT_NE(zombie.error().message.find("has exited"), std::string::npos) << zombie.error().message;
}

// ---- live QEMU ----

bool have_qemu() {
  return std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0;
}

// A qemu-system-x86_64 we start and stop (by its pid) ourselves.
class LiveQemu {
 public:
  explicit LiveQemu(std::vector<std::string> extra) {
    name_ = "nfm-unit-" + std::to_string(getpid()) + "-" + std::to_string(counter_++);
    std::vector<std::string> args = {"qemu-system-x86_64",
                                     "-accel",
                                     "tcg",
                                     "-nographic",
                                     "-display",
                                     "none",
                                     "-monitor",
                                     "none",
                                     "-serial",
                                     "none",
                                     "-parallel",
                                     "none",
                                     "-net",
                                     "none",
                                     "-name",
                                     "guest=" + name_ + ",debug-threads=on"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const int devnull = ::open("/dev/null", O_RDWR);
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execvp(argv[0], argv.data());
      _exit(127);
    }
  }
  ~LiveQemu() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st;
      waitpid(pid_, &st, 0);
    }
  }
  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }

  // Opens once QEMU has mapped its RAM (and, if `settle`, SeaBIOS has run).
  Result<std::unique_ptr<QemuRam>> open(QemuOpenOptions o = {}, bool settle = true) {
    Result<std::unique_ptr<QemuRam>> r = make_error(Errc::not_found, "qemu did not start");
    // Readiness waits: QEMU maps its RAM and SeaBIOS shadows itself within a second
    // or so; the bounds only keep a broken QEMU from hanging the test.
    for (int i = 0; i < 600; ++i) {
      r = open_qemu_process(pid_, o);
      if (r) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (r && settle) {
      // Wait for SeaBIOS to shadow itself into RAM at 0xf0000.
      for (int i = 0; i < 600 && !has_pnp(**r); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return r;
  }

  static bool has_pnp(PhysicalMemory& m) {
    std::vector<char> f(0x10000);
    if (!m.read(0xf0000, f.data(), f.size())) return false;
    return std::string_view(f.data(), f.size()).find("$PnP") != std::string_view::npos;
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  std::string name_;
};

// SIGSTOP is asynchronous: wait until every thread of `pid` is stopped, so
// nothing writes guest RAM while bytes are compared.
void freeze(pid_t pid) {
  kill(pid, SIGSTOP);
  for (int attempt = 0; attempt < 500; ++attempt) {
    bool all_stopped = true;
    for (const auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
      std::ifstream stat(t.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const auto paren = line.rfind(')');
      if (paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'T')
        all_stopped = false;
    }
    if (all_stopped) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

#define REQUIRE_QEMU() \
  if (!have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed"

TEST(QemuLive, AnonymousRamViaProcessVmReadv) {
  REQUIRE_QEMU();
  LiveQemu vm({"-m", "64"});
  auto q = vm.open();
  ASSERT_TRUE(q) << q.error().to_string();
  QemuRam& mem = **q;
  ASSERT_EQ(mem.ranges().size(), 1u);
  EXPECT_EQ(mem.ranges()[0].start, 0u);
  EXPECT_EQ(mem.ranges()[0].size, 64 * kMiB);
  EXPECT_EQ(mem.access_method(), "process_vm_readv");
  EXPECT_FALSE(mem.zero_copy());
  EXPECT_EQ(mem.view(0xf0000, 16), nullptr);
  EXPECT_EQ(mem.name(), vm.name());
  EXPECT_NE(mem.describe().find("anonymous RAM, 64 MiB, process_vm_readv"), std::string::npos)
      << mem.describe();
  EXPECT_TRUE(LiveQemu::has_pnp(mem)) << "SeaBIOS signature not found at 0xf0000";

  // The same bytes through /proc/PID/mem. SeaBIOS keeps variables in the
  // f-segment, so freeze QEMU (SIGSTOP) while comparing.
  freeze(vm.pid());
  auto pm = open_qemu_process(vm.pid(), {QemuAccess::proc_mem});
  ASSERT_TRUE(pm) << pm.error().to_string();
  EXPECT_EQ((*pm)->access_method(), "/proc/PID/mem");
  std::vector<uint8_t> a(0x10000), b(0x10000);
  ASSERT_TRUE(mem.read(0xf0000, a.data(), a.size()));
  ASSERT_TRUE((*pm)->read(0xf0000, b.data(), b.size()));
  EXPECT_EQ(a, b);

  // Batched reads: 3000 ops (more than one process_vm_readv's IOV_MAX), some failing.
  std::vector<uint8_t> many(3000 * 16);
  std::vector<ReadOp> ops;
  for (size_t i = 0; i < 3000; ++i)
    ops.push_back({0xf0000 + i * 16, many.data() + i * 16, 16, false});
  ops[1500].pa = 64 * kMiB - 8;  // crosses the end of RAM
  ops[2999].pa = 1ull << 40;
  const uint64_t syscalls_before = mem.stats().syscalls;
  EXPECT_EQ(mem.read_many(ops), 2998u);
  EXPECT_FALSE(ops[1500].ok);
  EXPECT_FALSE(ops[2999].ok);
  EXPECT_TRUE(ops[1499].ok && ops[1501].ok);
  EXPECT_LE(mem.stats().syscalls - syscalls_before, 4u);
  EXPECT_EQ(std::memcmp(many.data(), a.data(), 1500 * 16), 0);
  EXPECT_EQ(std::memcmp(many.data() + 1501 * 16, a.data() + 1501 * 16, 1400 * 16), 0);
  kill(vm.pid(), SIGCONT);

  // Outside RAM: a fault with the address.
  uint64_t v;
  auto r = mem.read(64 * kMiB, &v, 8);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::fault);
  EXPECT_EQ(r.error().address, 64 * kMiB);

  auto found = find_qemu_by_name(vm.name());
  ASSERT_TRUE(found) << found.error().to_string();
  EXPECT_EQ(*found, vm.pid());
}

TEST(QemuLive, MemfdBackendIsZeroCopy) {
  REQUIRE_QEMU();
  LiveQemu vm({"-m", "64", "-object", "memory-backend-memfd,id=mem0,size=64M,share=on", "-machine",
               "pc,memory-backend=mem0"});
  auto q = vm.open();
  ASSERT_TRUE(q) << q.error().to_string();
  QemuRam& mem = **q;
  EXPECT_EQ(mem.access_method(), "mmap");
  EXPECT_TRUE(mem.zero_copy());
  EXPECT_NE(mem.describe().find("mmap"), std::string::npos);
  const uint8_t* v = mem.view(0xf0000, 0x10000);
  ASSERT_NE(v, nullptr);
  EXPECT_NE(std::string_view(reinterpret_cast<const char*>(v), 0x10000).find("$PnP"),
            std::string_view::npos);

  // The mapping shows the same bytes as process_vm_readv.
  auto k = open_qemu_process(vm.pid(), {QemuAccess::vm_readv});
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ((*k)->access_method(), "process_vm_readv");
  std::vector<uint8_t> b(0x10000);
  ASSERT_TRUE((*k)->read(0xf0000, b.data(), b.size()));
  EXPECT_EQ(std::memcmp(v, b.data(), b.size()), 0);
}

TEST(QemuLive, ShmFileBackendIsZeroCopy) {
  REQUIRE_QEMU();
  const std::string path = "/dev/shm/nfm-unit-ram-" + std::to_string(getpid());
  {
    LiveQemu vm({"-m", "64", "-object",
                 "memory-backend-file,id=mem0,size=64M,share=on,mem-path=" + path, "-machine",
                 "pc,memory-backend=mem0"});
    auto q = vm.open();
    ASSERT_TRUE(q) << q.error().to_string();
    EXPECT_EQ((*q)->access_method(), "mmap");
    EXPECT_NE((*q)->describe().find("file " + path), std::string::npos) << (*q)->describe();
    EXPECT_TRUE(LiveQemu::has_pnp(**q));
  }
  unlink(path.c_str());
}

TEST(QemuLive, SharedAnonymousBackend) {
  REQUIRE_QEMU();
  // memory-backend-ram,share=on is MAP_SHARED|MAP_ANONYMOUS: "/dev/zero (deleted)", rw-s.
  LiveQemu vm({"-m", "64", "-object", "memory-backend-ram,id=mem0,size=64M,share=on", "-machine",
               "pc,memory-backend=mem0"});
  auto q = vm.open();
  ASSERT_TRUE(q) << q.error().to_string();
  EXPECT_NE((*q)->describe().find("shared anonymous RAM"), std::string::npos) << (*q)->describe();
  EXPECT_TRUE(LiveQemu::has_pnp(**q));
}

TEST(QemuLive, HighMemoryLayout) {
  REQUIRE_QEMU();
  // -S: nothing runs, nothing is touched; the 5 GiB are only reserved.
  for (const char* machine : {"pc", "q35"}) {
    LiveQemu vm({"-S", "-M", machine, "-m", "5G"});
    auto q = vm.open({}, /*settle=*/false);
    ASSERT_TRUE(q) << q.error().to_string();
    const auto& r = (*q)->ranges();
    ASSERT_EQ(r.size(), 2u) << machine;
    const uint64_t low = std::string(machine) == "q35" ? 2 * kGiB : 3 * kGiB;
    EXPECT_EQ(r[0].size, low) << machine;
    EXPECT_EQ(r[1].start, 4 * kGiB);
    EXPECT_EQ(r[1].size, 5 * kGiB - low);
    uint64_t v = 1;
    EXPECT_TRUE((*q)->read(4 * kGiB + 4096, &v, 8));
    EXPECT_EQ(v, 0u);
    EXPECT_FALSE((*q)->read(low + 4096, &v, 8));  // the PCI hole
  }
}

}  // namespace
}  // namespace nfm
