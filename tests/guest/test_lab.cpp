// The lab itself: three kernels boot in parallel and each guest's ground truth holds the
// whole known workload; request_truth, pause/resume work.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <thread>

#include "fixture.h"
#include "workload.h"

namespace {

namespace w = nfm::lab::workload;
using nfm::lab::GroundTruth;
using nfm::lab::Process;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
    // Every non-default option at once, with RAM above 4 GiB: max-ram-below-4g puts all
    // RAM beyond 512 MiB there, so the dumps stay small.
    {.kernel = "6.1",
     .ram_mib = 768,
     .machine = "q35,max-ram-below-4g=512M",
     .nic = "e1000",
     .backing = nfm::lab::Backing::file,
     .cpu_model = "max",
     .name = "6.1-q35-file",
     .append = "nfm.snapshot=2"},
});

class Lab : public testing::TestWithParam<std::string> {};

const Process* must_find(const GroundTruth& t, std::string_view comm) {
  const Process* p = t.find_process(comm);
  EXPECT_NE(p, nullptr) << "no process " << comm;
  return p;
}

TEST_P(Lab, KernelAndIdentity) {
  NFM_LAB_GUEST(g, GetParam());
  const GroundTruth& t = g->truth();
  EXPECT_EQ(t.uname.release, g->kernel_release());
  EXPECT_EQ(t.uname.sysname, "Linux");
  EXPECT_EQ(t.uname.machine, "x86_64");
  EXPECT_EQ(t.uname.nodename, w::hostname);
  EXPECT_EQ(t.uname.domainname, w::domainname);
  EXPECT_EQ(t.hostname, w::hostname);
  EXPECT_THAT(t.section_or("/proc/version"), testing::HasSubstr(t.uname.release));
  EXPECT_GT(t.kmsg.size(), 50u);
  EXPECT_THAT(t.kmsg.front(), testing::StartsWith("Linux version"));
  EXPECT_TRUE(t.kallsyms.count("_text") && t.kallsyms.count("init_task"));
  // KASLR is on. (Not "the kernel is not at its link address": the link address is
  // one of KASLR's ~500 virtual slots, and a CI run drew it.)
  EXPECT_THAT(t.section_or("/proc/cmdline"), testing::Not(testing::HasSubstr("nokaslr")));
}

TEST_P(Lab, Processes) {
  NFM_LAB_GUEST(g, GetParam());
  const GroundTruth& t = g->truth();
  const Process* init = t.process(1);
  ASSERT_NE(init, nullptr);
  EXPECT_EQ(init->comm, w::init_comm);
  EXPECT_TRUE(t.find_process("kthreadd") && t.find_process("kthreadd")->kernel_thread);

  for (int i = 1; i <= w::sleeper_count; i++) {
    const Process* p = must_find(t, w::sleeper_comm(i));
    if (!p) continue;
    EXPECT_EQ(p->ppid, 1);
    EXPECT_EQ(p->state, 'S');
    EXPECT_EQ(p->uid, w::sleeper_uid(i));
    EXPECT_EQ(p->gid, w::sleeper_uid(i));
    ASSERT_GE(p->args.size(), 3u);
    EXPECT_EQ(p->args[0], w::sleeper_comm(i));
    EXPECT_EQ(p->args[1], "sleep");
    EXPECT_EQ(p->exe, "/bin/nfm-work");
    EXPECT_EQ(t.find_processes(w::sleeper_comm(i)).size(), 1u);
  }
  for (auto comm : w::other_comms) {
    const Process* p = must_find(t, comm);
    if (p) {
      EXPECT_EQ(p->ppid, 1) << comm;
    }
  }

  const Process* th = must_find(t, w::threads_comm);
  ASSERT_NE(th, nullptr);
  EXPECT_EQ(th->uid, w::threads_uid);
  ASSERT_EQ(th->tids.size(), 1u + w::extra_threads);
  std::vector<std::string> names;
  for (int tid : th->tids) {
    ASSERT_TRUE(t.threads.count(tid));
    EXPECT_EQ(t.threads.at(tid).tgid, th->pid);
    names.push_back(t.threads.at(tid).comm);
  }
  for (int i = 1; i <= w::extra_threads; i++)
    EXPECT_THAT(names, testing::Contains(w::thread_comm(i)));

  const Process* big = must_find(t, w::bigalloc_comm);
  ASSERT_NE(big, nullptr);
  EXPECT_GE(big->rss_kb, w::bigalloc_size / 1024);
  EXPECT_THAT(t.section_or("/proc/" + std::to_string(big->pid) + "/maps"),
              testing::HasSubstr("600000000000-600004000000 rw-p"));

  const Process* burn = must_find(t, w::burn_comm);
  ASSERT_NE(burn, nullptr);
  EXPECT_EQ(burn->nice, w::burn_nice);
}

TEST_P(Lab, Files) {
  NFM_LAB_GUEST(g, GetParam());
  const Process* p = must_find(g->truth(), w::files_comm);
  ASSERT_NE(p, nullptr);
  const auto& fds = p->fds;
  ASSERT_TRUE(fds.count(w::fd_known) && fds.count(w::fd_dir) && fds.count(w::fd_pipe_read) &&
              fds.count(w::fd_pipe_write) && fds.count(w::fd_devnull) && fds.count(w::fd_data));
  EXPECT_EQ(fds.at(w::fd_known).target, w::known_file);
  EXPECT_EQ(fds.at(w::fd_known).pos, w::fd_known_pos);
  EXPECT_EQ(fds.at(w::fd_dir).target, "/etc");
  EXPECT_THAT(fds.at(w::fd_pipe_read).target, testing::StartsWith("pipe:["));
  EXPECT_EQ(fds.at(w::fd_pipe_read).target, fds.at(w::fd_pipe_write).target);
  EXPECT_EQ(fds.at(w::fd_devnull).target, "/dev/null");
  EXPECT_EQ(fds.at(w::fd_data).target, w::data_file);
  EXPECT_EQ(fds.at(w::fd_data).pos, w::fd_data_pos);
  ASSERT_TRUE(fds.at(w::fd_data).flags.has_value());
  EXPECT_TRUE(*fds.at(w::fd_data).flags & 02000) << "O_APPEND";
}

TEST_P(Lab, Network) {
  NFM_LAB_GUEST(g, GetParam());
  const GroundTruth& t = g->truth();
  auto has = [&](std::string proto, std::string local, uint16_t port, int state,
                 std::string remote = "", uint16_t rport = 0) {
    return std::any_of(t.inet_sockets.begin(), t.inet_sockets.end(), [&](auto& s) {
      return s.proto == proto && s.local_addr == local && s.local_port == port &&
             s.state == state &&
             (remote.empty() || (s.remote_addr == remote && s.remote_port == rport));
    });
  };
  EXPECT_TRUE(has("tcp", "0.0.0.0", w::tcp4_listen_port, 10));
  EXPECT_TRUE(has("tcp6", "::", w::tcp6_listen_port, 10));
  EXPECT_TRUE(has("tcp", "127.0.0.1", w::client_port, 1, "127.0.0.1", w::tcp4_listen_port));
  EXPECT_TRUE(has("tcp", "127.0.0.1", w::tcp4_listen_port, 1, "127.0.0.1", w::client_port));
  EXPECT_TRUE(has("udp", "0.0.0.0", w::udp4_port, 7));
  EXPECT_TRUE(has("udp6", "::", w::udp6_port, 7));
  std::vector<std::string> unix_paths;
  for (auto& s : t.unix_sockets) unix_paths.push_back(s.path);
  EXPECT_THAT(unix_paths, testing::Contains(std::string(w::unix_path)));
  EXPECT_THAT(unix_paths, testing::Contains(std::string(w::unix_abstract)));

  const auto* eth0 = t.find_interface("eth0");
  ASSERT_NE(eth0, nullptr);
  EXPECT_EQ(eth0->mac, "52:54:00:12:34:56");  // QEMU's default
  EXPECT_THAT(eth0->inet, testing::Contains(std::string(w::eth0_inet)));
  EXPECT_THAT(eth0->inet6, testing::Contains(std::string(w::eth0_inet6)));
  const auto* dummy0 = t.find_interface("dummy0");
  ASSERT_NE(dummy0, nullptr);
  EXPECT_THAT(dummy0->inet, testing::Contains(std::string(w::dummy0_inet)));
  EXPECT_THAT(t.section_or("/proc/net/dev"), testing::HasSubstr("dummy0:"));
  EXPECT_THAT(t.modules, testing::Contains("dummy"));
  EXPECT_THAT(t.modules, testing::Contains(g->options().nic == "e1000" ? "e1000" : "virtio_net"));
}

TEST_P(Lab, RequestTruthAndPause) {
  NFM_LAB_GUEST(g, GetParam());
  unsigned before = g->truth().seq;
  auto pids_before = g->truth().processes;
  ASSERT_TRUE(g->request_truth().ok());
  // A shared (pooled) guest also dumps for other programs in between.
  if (g->shared())
    EXPECT_GT(g->truth().seq, before);
  else
    EXPECT_EQ(g->truth().seq, before + 1);
  before = g->truth().seq;
  // The user-space task set is stable after ready (the reporter never forks).
  for (auto& [pid, p] : pids_before)
    if (!p.kernel_thread) {
      EXPECT_TRUE(g->truth().process(pid)) << p.comm;
    }

  ASSERT_TRUE(g->pause().ok());
  auto paused = g->is_paused();
  ASSERT_TRUE(paused.ok());
  EXPECT_TRUE(*paused);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(g->resume().ok());
  EXPECT_FALSE(*g->is_paused());
  auto r = g->request_truth();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  if (g->shared())
    EXPECT_GT(g->truth().seq, before);
  else
    EXPECT_EQ(g->truth().seq, before + 1);
  // Periodic snapshots arrive between dumps, on a guest that asked for them (the
  // others are quiet: nfm.snapshot=0).
  if (g->options().append.find("nfm.snapshot=2") != std::string::npos)
    EXPECT_THAT(g->latest_snapshot(), testing::HasSubstr("\nuptime "));
  else
    EXPECT_EQ(g->latest_snapshot(), "");
}

// The page indices of every bigalloc page found at a 4 KiB boundary of [data, data+size).
std::set<uint32_t> bigalloc_pages(const uint8_t* data, size_t size) {
  std::set<uint32_t> pages;
  for (size_t off = 0; off + 4096 <= size; off += 4096) {
    if (std::memcmp(data + off, "NFMPAGE:", 8) != 0) continue;
    uint32_t index = static_cast<uint32_t>(std::strtoul(
        std::string(reinterpret_cast<const char*>(data) + off + 8, 7).c_str(), nullptr, 10));
    if (std::memcmp(data + off + 4080, w::bigalloc_line(index).data(), 16) == 0)
      pages.insert(index);
  }
  return pages;
}

struct Mapped {
  const uint8_t* data = nullptr;
  size_t size = 0;
  explicit Mapped(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) < 0) return;
    size = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) data = static_cast<const uint8_t*>(p);
  }
  ~Mapped() {
    if (data) ::munmap(const_cast<uint8_t*>(data), size);
  }
};

TEST(LabMemory, OptionsAndDumps) {
  NFM_LAB_GUEST(g, "6.1-q35-file");
  auto t0 = std::chrono::steady_clock::now();
  auto lap = [&](const char* what) {
    auto now = std::chrono::steady_clock::now();
    std::fprintf(stderr, "  %s: %.1f s\n", what, std::chrono::duration<double>(now - t0).count());
    t0 = now;
  };
  const GroundTruth& t = g->truth();
  EXPECT_THAT(t.section_or("/proc/cpuinfo"), testing::HasSubstr(" la57"));
  EXPECT_THAT(t.section_or("/proc/iomem"), testing::HasSubstr("100000000-"));  // RAM above 4 GiB
  const uint32_t all_pages = w::bigalloc_size / 4096;

  // The file backing guest RAM is the RAM block: every bigalloc page is in it.
  ASSERT_FALSE(g->memory_file().empty());
  {
    Mapped ram(g->memory_file());
    ASSERT_NE(ram.data, nullptr);
    EXPECT_EQ(ram.size, 768ull << 20);
    EXPECT_EQ(bigalloc_pages(ram.data, ram.size).size(), all_pages);
  }

  lap("memory file");
  auto ranges = g->ram_ranges();
  ASSERT_TRUE(ranges.ok()) << ranges.error().to_string();
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].gpa, 0u);
  EXPECT_EQ((*ranges)[0].size, 512ull << 20);
  EXPECT_EQ((*ranges)[1].gpa, 4ull << 30);
  EXPECT_EQ((*ranges)[1].size, 256ull << 20);
  EXPECT_EQ((*ranges)[1].ram_offset, 512ull << 20);

  // pmemsave: offsets are guest-physical addresses.
  const std::string raw = g->run_dir() + "/ram.raw";
  auto r = g->pmemsave(raw);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(*g->is_paused());  // it was running: pmemsave resumes it
  {
    Mapped dump(raw);
    ASSERT_NE(dump.data, nullptr);
    ASSERT_EQ(dump.size, (4ull << 30) + (256ull << 20));
    std::set<uint32_t> pages;  // only the RAM ranges: reading the sparse hole is slow
    for (const auto& range : *ranges)
      pages.merge(bigalloc_pages(dump.data + range.gpa, range.size));
    EXPECT_EQ(pages.size(), all_pages);
  }
  lap("pmemsave");
  ::unlink(raw.c_str());

  ASSERT_TRUE(g->pause().ok());
  const std::string elf = g->run_dir() + "/ram.elf";
  r = g->dump_elf(elf);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  {
    Mapped dump(elf);
    ASSERT_NE(dump.data, nullptr);
    EXPECT_EQ(std::memcmp(dump.data,
                          "\x7f"
                          "ELF",
                          4),
              0);
    // All of RAM but the legacy window 0xc0000-0x100000, which qboot (the lab's
    // firmware) leaves mapped as ROM: QEMU's dump skips ROM.
    EXPECT_GT(dump.size, (768ull << 20) - (256ull << 10));
  }
  lap("elf");
  ::unlink(elf.c_str());

  const std::string mig = g->run_dir() + "/migration.bin";
  r = g->migrate_to_file(mig);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(mig.c_str(), &st), 0);
  EXPECT_GT(st.st_size, 64 << 20);  // at least the bigalloc pages
  lap("migrate");
  ::unlink(mig.c_str());
  ASSERT_TRUE(g->resume().ok());
  r = g->request_truth();
  EXPECT_TRUE(r.ok()) << r.error().to_string();
}

INSTANTIATE_TEST_SUITE_P(Kernels, Lab, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
