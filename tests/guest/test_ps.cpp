// `nfm ps` and `nfm uname` with zero configuration, against the guest's own /proc:
// 5.10, 6.1 (amd64 and cloud) and 6.12 kernels, KASLR on, through every memory
// source (live anonymous RAM, file-backed and memfd RAM, raw and ELF dumps), a
// guest with RAM above 4 GiB and one with 5-level paging.
#include <gtest/gtest.h>
#include <string.h>  // memmem
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "features/processes/processes.h"
#include "fixture.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "kernel/object.h"
#include "kernel/profile/kallsyms.h"
#include "kernel/profile/system_map.h"
#include "kernel/profile/vmlinuz.h"
#include "nfm_cli.h"
#include "workload.h"

namespace {

using nfm::lab::Backing;
using nfm::lab::GroundTruth;
using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;
namespace workload = nfm::lab::workload;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384, .backing = Backing::file, .name = "6.1-cloud-file"},
    {.kernel = "6.12",
     .ram_mib = 384,
     .backing = Backing::memfd,
     .cpu_model = "max",
     .name = "6.12-memfd-la57"},
    {.kernel = "6.12-cloud", .ram_mib = 5120, .name = "6.12-cloud-5g"},
});

// The reporter is running while it writes the truth and asleep once we look; the
// burner spins part of every 100 ms and sleeps the rest, so either letter is right.
bool state_is_stable(const std::string& comm) {
  return comm != "nfm-report" && comm != "nfm-burn";
}

// Compares `nfm ps --threads --json` rows with the guest's own per-thread view.
// Returns a description of every difference (empty when they agree).
std::vector<std::string> compare_with_truth(const json& rows, const GroundTruth& truth) {
  std::vector<std::string> diffs;
  std::map<int, const json*> by_pid;
  for (const json& r : rows) by_pid[r.at("pid").get<int>()] = &r;
  for (const auto& [tid, t] : truth.threads) {
    auto it = by_pid.find(tid);
    if (it == by_pid.end()) {
      diffs.push_back("missing task " + std::to_string(tid) + " (" + t.comm + ")");
      continue;
    }
    const json& r = *it->second;
    const auto& proc = truth.processes.at(t.tgid);
    // Named copies: clang < 16 cannot capture structured bindings.
    const int task_id = tid;
    const std::string& comm = t.comm;
    auto check = [&](const char* what, auto got, auto want) {
      if (got != want) {
        std::ostringstream s;
        s << "task " << task_id << " (" << comm << ") " << what << ": nfm " << got << ", guest "
          << want;
        diffs.push_back(s.str());
      }
    };
    check("tgid", r.at("tgid").get<int>(), t.tgid);
    check("comm", nfm::lab::stable_comm(r.at("comm").get<std::string>()),
          nfm::lab::stable_comm(t.comm));
    check("ppid", r.at("ppid").get<int>(), proc.ppid);
    check("uid", r.at("uid").get<uint32_t>(), proc.uid);
    check("gid", r.at("gid").get<uint32_t>(), proc.gid);
    const std::string state = r.at("state").get<std::string>();
    if (state_is_stable(t.comm))
      check("state", state, std::string(1, t.state));
    else if (state != "R" && state != "S")
      check("state (running or sleeping)", state, std::string("R|S"));
    if (tid == t.tgid && proc.comm.rfind("nfm-", 0) == 0 && state_is_stable(proc.comm)) {
      // The workload is idle: its memory counters hold still.
      check("rss_kb", r.at("rss_kb").get<uint64_t>(), proc.rss_kb);
      check("vsz_kb", r.at("vsz_kb").get<uint64_t>(), proc.vsz_kb);
      // /proc shows start time in clock ticks (USER_HZ = 100).
      check("start_time ticks", r.at("start_time").get<uint64_t>() / 10'000'000, proc.start_time);
    }
    by_pid.erase(it);
  }
  for (const auto& [pid, r] : by_pid)
    diffs.push_back("extra task " + std::to_string(pid) + " (" + r->at("comm").get<std::string>() +
                    ")");
  return diffs;
}

json parse_rows(const CliResult& r) {
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return json::array();
  return json::parse(r.out);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "  " + x + "\n";
  return s;
}

class Ps : public testing::TestWithParam<std::string> {};

// Live (paused after a fresh truth), then an ELF dump and a raw dump of the same
// paused state: all three must agree with the guest, and with each other exactly.
TEST_P(Ps, EveryMemorySourceListsExactlyTheGuestsTasks) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  std::vector<std::string> diffs;
  json live;
  // Kernel threads may come and go between the guest's view and our look: retry
  // with a fresh view a few times before calling a difference real.
  for (int attempt = 0; attempt < 4; ++attempt) {
    ASSERT_TRUE(g->request_truth().ok());
    ASSERT_TRUE(g->pause().ok());
    live = parse_rows(run_nfm({"ps", "--threads", "--json", target}));
    diffs = compare_with_truth(live, g->truth());
    if (diffs.empty()) break;
    ASSERT_TRUE(g->resume().ok());
  }
  ASSERT_TRUE(diffs.empty()) << "nfm ps disagrees with the guest:\n" << join(diffs);
  EXPECT_GT(live.size(), 30u);

  // Dumps of the 5 GiB guest are test_dump_formats' (raw, kdump, migration).
  const bool big = g->options().ram_mib > 4096;
  const std::string elf = g->run_dir() + "/dump.elf", raw = g->run_dir() + "/dump.raw";
  if (!big) {
    ASSERT_TRUE(g->dump_elf(elf).ok());
    ASSERT_TRUE(g->pmemsave(raw).ok());
  }
  for (const std::string& image : big ? std::vector<std::string>{} : std::vector{elf, raw}) {
    json rows = parse_rows(run_nfm({"ps", "--threads", "--json", image}));
    EXPECT_EQ(rows, live) << image << " differs from the live read of the same paused guest";
    std::filesystem::remove(image);
  }
  // The zero-copy and the syscall paths read the same bytes.
  for (const char* access : {"vm_readv", "proc_mem"}) {
    json rows = parse_rows(run_nfm({"ps", "--threads", "--json", "--access", access, target}));
    EXPECT_EQ(rows, live) << "--access " << access;
  }
  ASSERT_TRUE(g->resume().ok());
}

TEST_P(Ps, FindsTheGuestByName) {
  NFM_LAB_GUEST(g, GetParam());
  CliResult r = run_nfm({"ps", "--json", "qemu:" + g->name()});
  ASSERT_EQ(r.status, 0) << r.err;
  json rows = json::parse(r.out);
  std::set<std::string> names;
  for (const json& row : rows) names.insert(row.at("comm").get<std::string>());
  EXPECT_TRUE(names.count("nfm-threads")) << r.out;
  EXPECT_TRUE(names.count("nfm-sleep-01")) << r.out;
}

TEST_P(Ps, UnameMatchesTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  CliResult r = run_nfm({"uname", "--json", "qemu:" + std::to_string(g->pid())});
  ASSERT_EQ(r.status, 0) << r.err;
  json u = json::parse(r.out);
  const auto& t = g->truth().uname;
  EXPECT_EQ(u.at("sysname"), t.sysname);
  EXPECT_EQ(u.at("nodename"), t.nodename);
  EXPECT_EQ(u.at("release"), t.release);
  EXPECT_EQ(u.at("version"), t.version);
  EXPECT_EQ(u.at("machine"), t.machine);
  EXPECT_EQ(u.at("domainname"), t.domainname);
  EXPECT_EQ(t.release, g->kernel_release());
}

// Guest memory with the VMCOREINFO text hidden, as on a kernel built without
// CRASH_CORE or one that scrubbed it.
class WithoutVmcoreinfo : public nfm::PhysicalMemory {
 public:
  explicit WithoutVmcoreinfo(nfm::PhysicalMemoryPtr inner) : inner_(std::move(inner)) {}
  const std::vector<nfm::PhysRange>& ranges() const override { return inner_->ranges(); }
  nfm::Result<void> read(uint64_t pa, void* dst, size_t len) override {
    NFM_TRY(inner_->read(pa, dst, len));
    // memmem: this file builds at -O0, and every byte of RAM passes here a few times.
    auto* p = static_cast<char*>(dst);
    static constexpr std::string_view kKey = "OSRELEASE=";
    for (char* at = p;
         (at = static_cast<char*>(memmem(at, p + len - at, kKey.data(), kKey.size())));)
      *at = 'X';
    return {};
  }
  std::string describe() const override { return inner_->describe() + " (VMCOREINFO hidden)"; }

 private:
  nfm::PhysicalMemoryPtr inner_;
};

std::vector<std::tuple<int, int, int, std::string>> task_ids(nfm::Kernel& k) {
  auto reader = nfm::ProcessReader::create(k);
  EXPECT_TRUE(reader.ok());
  if (!reader) return {};
  nfm::ProcessOptions options;
  options.threads = true;
  auto list = reader->list(options);
  EXPECT_TRUE(list.ok()) << list.error().to_string();
  if (!list) return {};
  std::vector<std::tuple<int, int, int, std::string>> ids;
  for (const auto& r : list->rows) ids.emplace_back(r.pid, r.tgid, r.ppid, r.comm);
  return ids;
}

// Route (b): with no VMCOREINFO, the kernel is found from its kallsyms tables in
// physical memory, and reads the same tasks and build id.
TEST_P(Ps, FindsTheKernelWithoutVmcoreinfo) {
  NFM_LAB_GUEST(g, GetParam());
  if (g->options().ram_mib > 4096) GTEST_SKIP() << "the 5 GiB guest is covered by the others";
  const std::string elf = g->run_dir() + "/novmcoreinfo.elf";
  ASSERT_TRUE(g->dump_elf(elf).ok());
  auto plain = nfm::open_target(elf);
  ASSERT_TRUE(plain.ok());
  auto normal = nfm::Kernel::attach(std::move(plain).value());
  ASSERT_TRUE(normal.ok()) << normal.error().to_string();
  EXPECT_EQ((*normal)->location().method, "vmcoreinfo");

  auto inner = nfm::open_target(elf);
  ASSERT_TRUE(inner.ok());
  auto hidden = std::make_unique<WithoutVmcoreinfo>(std::move(inner).value());
  EXPECT_FALSE(nfm::locate_by_vmcoreinfo(*hidden).ok());
  auto fallback = nfm::Kernel::attach(std::move(hidden));
  ASSERT_TRUE(fallback.ok()) << fallback.error().to_string();
  const auto& a = (*normal)->location();
  const auto& b = (*fallback)->location();
  EXPECT_EQ(b.method, "kallsyms in physical memory");
  EXPECT_EQ(b.release, a.release);
  // The image's own build-id note says what VMCOREINFO says: one profile cache key
  // for the kernel, whichever route found it (a rebooting guest is met by route b).
  EXPECT_EQ(a.build_id.size(), 40u) << a.build_id;
  EXPECT_EQ(b.build_id, a.build_id);
  EXPECT_EQ(b.phys_base, a.phys_base);
  EXPECT_EQ(b.dtb, a.dtb);
  EXPECT_EQ(b.levels, a.levels);
  EXPECT_EQ((*fallback)->page_offset_base(), (*normal)->page_offset_base());
  EXPECT_EQ(task_ids(**fallback), task_ids(**normal));
  EXPECT_GT(task_ids(**normal).size(), 30u);
  std::filesystem::remove(elf);
}

// Per-process address spaces: a process's own page tables (mm->pgd) give its
// command line, and every page of the workload's 64 MiB patterned allocation.
TEST_P(Ps, ReadsUserMemoryThroughTheProcessPageTables) {
  NFM_LAB_GUEST(g, GetParam());
  const nfm::lab::Process* sleeper = g->truth().find_process("nfm-sleep-01");
  const nfm::lab::Process* big = g->truth().find_process("nfm-bigalloc");
  ASSERT_NE(sleeper, nullptr);
  ASSERT_NE(big, nullptr);
  auto memory = nfm::open_target("qemu:" + std::to_string(g->pid()));
  ASSERT_TRUE(memory.ok()) << memory.error().to_string();
  auto k = nfm::Kernel::attach(std::move(memory).value());
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  auto reader = nfm::ProcessReader::create(**k);
  ASSERT_TRUE(reader.ok());
  auto list = reader->list();
  ASSERT_TRUE(list.ok());
  auto task_of = [&](int pid) -> uint64_t {
    for (const auto& r : list->rows)
      if (r.pid == pid) return r.task;
    return 0;
  };
  const nfm::ObjectContext ctx = nfm::object_context(**k);
  auto task_type = (*k)->types().find_struct("task_struct");
  ASSERT_TRUE(task_type.ok());

  // The command line, as /proc/PID/cmdline reads it: [arg_start, arg_end).
  nfm::Object task(ctx, task_of(sleeper->pid), *task_type);
  auto mm = task.arrow("mm");
  ASSERT_TRUE(mm.ok()) << mm.error().to_string();
  const uint64_t pgd = *mm->member("pgd")->as_pointer();
  const uint64_t arg_start = *mm->member("arg_start")->as_unsigned();
  const uint64_t arg_end = *mm->member("arg_end")->as_unsigned();
  ASSERT_GT(arg_end, arg_start);
  ASSERT_LT(arg_end - arg_start, 4096u);
  auto user = (*k)->user_space(pgd);
  ASSERT_TRUE(user.ok()) << user.error().to_string();
  std::string raw(arg_end - arg_start, '\0');
  ASSERT_TRUE((*user)->read(arg_start, raw.data(), raw.size()).ok());
  std::vector<std::string> args;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t end = raw.find('\0', pos);
    args.push_back(raw.substr(pos, end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  EXPECT_EQ(args, sleeper->args);

  // Every 4 KiB page of the allocation starts with its own index.
  nfm::Object big_task(ctx, task_of(big->pid), *task_type);
  auto big_mm = big_task.arrow("mm");
  ASSERT_TRUE(big_mm.ok());
  auto big_space = (*k)->user_space(*big_mm->member("pgd")->as_pointer());
  ASSERT_TRUE(big_space.ok());
  std::set<unsigned> indices;
  size_t pages = 0;
  // A bigalloc page is one whose first and last lines both name it: a page that merely
  // starts with a copy of one line (a stack buffer that fell on a page boundary: seen
  // once in CI as 16385 pages) is not one. Paused, so compaction cannot move a page
  // while the walk goes.
  ASSERT_TRUE(g->pause().ok());
  auto walked =
      (*big_space)->for_each_mapping(0, 0x800000000000ULL, [&](const nfm::PageMapping& m) {
        for (uint64_t off = 0; off < m.size; off += 4096) {
          char head[17] = {}, tail[16];
          if (!(*k)->memory().read(m.pa + off, head, 16)) continue;
          if (!(*k)->memory().read(m.pa + off + 4080, tail, sizeof tail)) continue;
          unsigned index = 0;
          if (std::sscanf(head, "NFMPAGE:%7u", &index) != 1) continue;
          if (std::string_view(tail, 16) != workload::bigalloc_line(index)) continue;
          indices.insert(index), ++pages;
        }
        return true;
      });
  ASSERT_TRUE(g->resume().ok());
  ASSERT_TRUE(walked.ok()) << walked.error().to_string();
  EXPECT_EQ(pages, 16384u);
  EXPECT_EQ(indices.size(), 16384u);
  EXPECT_EQ(*indices.rbegin(), 16383u);
}

// 5-level paging is really in use where the CPU offers LA57 (-cpu max).
TEST_P(Ps, PagingModeFollowsTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  auto memory = nfm::open_target("qemu:" + std::to_string(g->pid()));
  ASSERT_TRUE(memory.ok()) << memory.error().to_string();
  auto k = nfm::Kernel::attach(std::move(memory).value());
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  const std::string cpuinfo = g->truth().section_or("/proc/cpuinfo");
  const bool la57 = cpuinfo.find(" la57") != std::string::npos;
  EXPECT_EQ((*k)->location().levels, la57 ? 5 : 4) << "guest cpu flags say la57=" << la57;
  if (g->options().cpu_model == "max") {
    EXPECT_TRUE(la57) << "-cpu max should expose LA57";
  }
}

INSTANTIATE_TEST_SUITE_P(Guests, Ps, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

// ---- Profiles from files: same answer as zero-config, refused when from another build.

std::string vmlinuz_of(const Guest& g) {
  for (const auto& e : std::filesystem::directory_iterator(g.kernel_dir()))
    if (e.path().filename().string().rfind("vmlinuz", 0) == 0) return e.path();
  return {};
}

// A real System.map made from the kernel's own kallsyms (Debian ships a stub).
std::string write_system_map(const Guest& g, const std::string& path) {
  auto vmlinux = nfm::extract_vmlinux_file(vmlinuz_of(g));
  EXPECT_TRUE(vmlinux.ok());
  auto elf = nfm::ElfImage::parse(*vmlinux);
  EXPECT_TRUE(elf.ok());
  auto symbols = nfm::read_vmlinux_kallsyms(*elf);
  EXPECT_TRUE(symbols.ok());
  std::ofstream out(path);
  out << nfm::format_system_map(*symbols);
  return path;
}

class Profiles : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto g = nfm::lab::guest("6.1");
    ASSERT_TRUE(g.ok());
    guest_ = *g;
    dump_ = guest_->run_dir() + "/profile-test.elf";
    ASSERT_TRUE(guest_->dump_elf(dump_).ok());
    CliResult r = run_nfm({"ps", "--threads", "--json", dump_});
    ASSERT_EQ(r.status, 0) << r.err;
    zero_config_ = r.out;
  }
  static void TearDownTestSuite() { std::filesystem::remove(dump_); }
  static inline Guest* guest_ = nullptr;
  static inline std::string dump_, zero_config_;
};

TEST_F(Profiles, FileProfilesGiveTheSameAnswer) {
  const std::string map = write_system_map(*guest_, guest_->run_dir() + "/System.map");
  const std::vector<std::vector<std::string>> variants = {
      {"--kernel", guest_->kernel_dir()},
      {"--vmlinux", vmlinuz_of(*guest_)},
      {"--btf", vmlinuz_of(*guest_)},
      {"--system-map", map},
      {"--system-map", map, "--btf", vmlinuz_of(*guest_)},
  };
  for (const auto& v : variants) {
    std::vector<std::string> args{"ps", "--threads", "--json"};
    args.insert(args.end(), v.begin(), v.end());
    args.push_back(dump_);
    CliResult r = run_nfm(args);
    ASSERT_EQ(r.status, 0) << v[0] << ": " << r.err;
    EXPECT_EQ(json::parse(r.out), json::parse(zero_config_)) << v[0];
  }
}

TEST_F(Profiles, ProfilesFromAnotherBuildAreRefused) {
  auto other = nfm::lab::guest("5.10");
  ASSERT_TRUE(other.ok());
  const std::string map = write_system_map(**other, guest_->run_dir() + "/System.map-other");
  for (const auto& v :
       std::vector<std::vector<std::string>>{{"--system-map", map},
                                             {"--btf", vmlinuz_of(**other)},
                                             {"--kernel", (*other)->kernel_dir()}}) {
    CliResult r = run_nfm({"ps", v[0], v[1], dump_});
    EXPECT_EQ(r.status, 1) << v[0];
    EXPECT_NE(r.err.find("do not match the guest kernel " + guest_->kernel_release()),
              std::string::npos)
        << v[0] << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// ---- Bad input: one clear line, non-zero exit, never a crash or a hang.

void expect_clean_failure(const CliResult& r, const std::string& needle) {
  EXPECT_EQ(r.status, 1) << "stderr: " << r.err;
  EXPECT_EQ(r.err.rfind("nfm: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected \"" << needle << "\" in: " << r.err;
}

std::string make_file(const std::string& path, size_t size, bool random) {
  std::ofstream out(path, std::ios::binary);
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  std::vector<char> buf(1 << 20);
  for (size_t done = 0; done < size; done += buf.size()) {
    if (random) urandom.read(buf.data(), buf.size());
    out.write(buf.data(), std::min(buf.size(), size - done));
  }
  return path;
}

TEST(BadInput, NotAQemuProcess) {
  expect_clean_failure(run_nfm({"ps", "qemu:" + std::to_string(getpid())}), "not a QEMU");
  expect_clean_failure(run_nfm({"ps", "qemu:999999999"}), "no such process");
  expect_clean_failure(run_nfm({"ps", "qemu:no-such-vm-name"}), "no-such-vm-name");
}

TEST(BadInput, NoPermission) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to an unprivileged user";
  NFM_LAB_GUEST(g, "6.1");
  // A copy of nfm that the unprivileged user can execute (the build tree may be private).
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("nfm-noperm-" + std::to_string(getpid()));
  fs::create_directories(dir);
  fs::copy_file(nfm::testing::nfm_binary(), dir / "nfm", fs::copy_options::overwrite_existing);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(dir / "nfm", fs::perms::owner_all | fs::perms::group_read |
                                   fs::perms::group_exec | fs::perms::others_read |
                                   fs::perms::others_exec);
  expect_clean_failure(
      run_nfm({"ps", "qemu:" + std::to_string(g->pid())}, 60, 65534, (dir / "nfm").string()),
      "CAP_SYS_PTRACE");
  fs::remove_all(dir);
}

TEST(BadInput, FilesWithNoKernel) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("nfm-badinput-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  expect_clean_failure(run_nfm({"ps", make_file(dir / "random.bin", 4 << 20, true)}),
                       "no Linux kernel");
  expect_clean_failure(run_nfm({"ps", make_file(dir / "zeros.raw", 64 << 20, false)}),
                       "no Linux kernel");
  expect_clean_failure(run_nfm({"ps", make_file(dir / "odd.bin", 12345, true)}), "");
  expect_clean_failure(run_nfm({"ps", make_file(dir / "empty", 0, false)}), "");
  expect_clean_failure(run_nfm({"ps", (dir / "missing").string()}), "missing");

  // A real dump, cut short: its header promises more than the file holds.
  NFM_LAB_GUEST(g, "6.1");
  const std::string elf = (dir / "cut.elf").string();
  ASSERT_TRUE(g->dump_elf(elf).ok());
  std::filesystem::resize_file(elf, 64 << 20);
  expect_clean_failure(run_nfm({"ps", elf}), "");
  // A raw image cut before the kernel's page tables.
  const std::string raw = (dir / "cut.raw").string();
  ASSERT_TRUE(g->pmemsave(raw).ok());
  std::filesystem::resize_file(raw, 16 << 20);
  expect_clean_failure(run_nfm({"ps", raw}), "");
  std::filesystem::remove_all(dir);
}

}  // namespace
