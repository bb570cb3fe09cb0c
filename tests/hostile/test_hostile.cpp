// The guest is hostile (issue 14, docs/security.md): each attack found against nfm,
// replayed on the lab's checked-in 6.1 dump (tests/golden) with the guest's memory
// overwritten the way its kernel or a user could (PatchedMemory), or with the dump
// file itself cut short under a running crawl. Each test failed before its guard.
#include <bpf/btf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "crawler/crawler.h"
#include "features/modules/rows.h"
#include "features/open_files/rows.h"
#include "features/processes/rows.h"
#include "frame/frame_crawler.h"
#include "golden_dump.h"
#include "kernel/kernel.h"
#include "kernel/profile/profile_cache.h"
#include "memory/dump_file.h"
#include "patched_memory.h"

namespace nfm {
namespace {

namespace fs = std::filesystem;
using testing::PatchedMemory;

const std::string& dump_path() {
  return testing::golden_dump_path();
}

// A profile cache of this program's own.
std::string fresh_cache_dir() {
  static int n = 0;
  std::string d = fs::temp_directory_path() /
                  ("nfm-hostile-cache-" + std::to_string(getpid()) + "-" + std::to_string(++n));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

ProfileOptions no_cache() {
  ProfileOptions o;
  o.use_cache = false;
  return o;
}

std::unique_ptr<Kernel> attach(PhysicalMemoryPtr memory, const ProfileOptions& o = no_cache()) {
  auto k = Kernel::attach(std::move(memory), o);
  EXPECT_TRUE(k) << k.error().to_string();
  return k ? std::move(k).value() : nullptr;
}

PhysicalMemoryPtr open_dump(const std::string& path) {
  auto m = open_memory_image(path);
  EXPECT_TRUE(m) << m.error().to_string();
  return m ? std::move(m).value() : nullptr;
}

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dump_path().empty()) << "could not decompress the golden dump";
    clean_ = attach(open_dump(dump_path()));
    ASSERT_TRUE(clean_);
  }
  // Guest-physical address of a kernel virtual address (of the clean kernel).
  uint64_t pa(uint64_t va) {
    auto p = clean_->space().translate(va);
    EXPECT_TRUE(p) << p.error().to_string();
    return p.value_or(0);
  }
  uint64_t offset(std::string_view type, std::string_view member) {
    auto f = clean_->types().member(type, member);
    EXPECT_TRUE(f) << type << "." << member;
    return f ? f->offset : 0;
  }
  uint64_t pointer(uint64_t va) {
    auto p = clean_->read_pointer(va);
    EXPECT_TRUE(p);
    return p.value_or(0);
  }
  Frame crawl_clean(const FrameOptions& options = {}) {
    FrameCrawler crawler(*clean_);
    return crawler.crawl(options);
  }
  std::unique_ptr<PatchedMemory> patched() {
    return std::make_unique<PatchedMemory>(open_dump(dump_path()));
  }
  // Finding 2's attack: every task's fd table claims 2^31 slots, its open-fds bitmap
  // pointing at the fd array (all bits set). Returns the tasks doctored.
  int inflate_fd_tables(PatchedMemory& memory, const ProcessList& tasks) {
    int doctored = 0;
    for (const ProcessRow& p : tasks.rows) {
      const uint64_t files = pointer(p.task + offset("task_struct", "files"));
      if (!files) continue;
      const uint64_t fdt = pointer(files + offset("files_struct", "fdt"));
      const uint64_t fd = pointer(fdt + offset("fdtable", "fd"));
      memory.write_value<uint32_t>(pa(fdt + offset("fdtable", "max_fds")), 0x80000000u);
      memory.write_value<uint64_t>(pa(fdt + offset("fdtable", "open_fds")), fd);
      ++doctored;
    }
    return doctored;
  }

  std::unique_ptr<Kernel> clean_;
};

// Finding 1: a dump that shrinks while mapped raised SIGBUS in the page-table walk
// and killed the process. Now the crawl fails, says why, and the process lives.
TEST_F(Hostile, ADumpCutShortUnderACrawlIsAnErrorNotASignal) {
  const std::string copy = dump_path() + ".shrinking";
  fs::copy_file(dump_path(), copy, fs::copy_options::overwrite_existing);
  auto kernel = attach(open_dump(copy));
  ASSERT_TRUE(kernel);
  ASSERT_TRUE(kernel->memory().check());
  // Cut the file to its first 64 MiB: past that every page of the mapping is gone.
  fs::resize_file(copy, 64 << 20);
  FrameCrawler crawler(*kernel);
  const Frame frame = crawler.crawl();
  fs::remove(copy);
  auto intact = kernel->memory().check();
  ASSERT_FALSE(intact);
  EXPECT_NE(intact.error().message.find("the file shrank while mapped"), std::string::npos)
      << intact.error().message;
  EXPECT_TRUE(frame.sections.empty()) << "rows read from zeros must not be reported";
  for (const auto& [feature, status] : frame.meta.features) {
    EXPECT_FALSE(status.ok) << feature.name();
    EXPECT_NE(status.error.find("shrank"), std::string::npos) << status.error;
  }
}

// Finding 2: every task's fd table claiming 2^31 slots, its open-fds bitmap pointed
// at the fd array, made one crawl read for tens of seconds. The crawl's budget ends it.
TEST_F(Hostile, AnInflatedFdTableSpendsTheBudgetNotTheHost) {
  const Frame before = crawl_clean();
  const auto* tasks = before.get<ProcessList>();
  ASSERT_TRUE(tasks);
  EXPECT_TRUE(before.meta.budget_spent.empty()) << "a clean guest is far inside the budget";
  auto memory = patched();
  ASSERT_GT(inflate_fd_tables(*memory, *tasks), 20);
  auto kernel = attach(std::move(memory));
  ASSERT_TRUE(kernel);
  FrameOptions options;
  options.budget.max_bytes = 64 << 20;
  options.budget.max_time = std::chrono::minutes(10);  // the bytes, not the clock (ASan, load)
  FrameCrawler crawler(*kernel);
  const Frame frame = crawler.crawl(options);
  // Stopped by the budget, in open_files, having read little more than it allows.
  EXPECT_NE(frame.meta.budget_spent.find("open_files: read more than 64 MiB"), std::string::npos)
      << frame.meta.budget_spent;
  EXPECT_LE(frame.meta.cost.bytes, options.budget.max_bytes + (1 << 20));
  const FeatureStatus& files = frame.meta.features.at(Feature::named("open_files"));
  EXPECT_TRUE(files.partial());
  EXPECT_EQ(files.errors.count("crawl_budget"), 1u);
  // The features crawled before it are whole; the ones after say why they are not.
  ASSERT_TRUE(frame.get<ProcessList>());
  EXPECT_EQ(frame.get<ProcessList>()->rows.size(), tasks->rows.size());
  const FeatureStatus& maps = frame.meta.features.at(Feature::named("memory_maps"));
  EXPECT_FALSE(maps.ok);
  EXPECT_NE(maps.error.find("not crawled: an earlier feature"), std::string::npos) << maps.error;

  // The clock is the other half of the budget: no full frame takes under a millisecond.
  FrameOptions hurried;
  hurried.budget.max_time = std::chrono::milliseconds(1);
  const Frame cut = crawl_clean(hurried);
  EXPECT_NE(cut.meta.budget_spent.find("ran longer than 1 ms"), std::string::npos)
      << cut.meta.budget_spent;
}

// What the crawler handed its sink: each VM's frames (host time, spent budget, partial).
class RecordingSink : public FrameSink {
 public:
  struct Seen {
    uint64_t host_time_ns;
    std::string budget_spent;
    bool partial;
  };
  std::string describe() const override { return "recording"; }
  void write(const Frame& frame) override {
    bool partial = false;
    for (const auto& [feature, status] : frame.meta.features) partial |= status.partial();
    std::lock_guard lock(mu_);
    frames_[frame.meta.vm.name].push_back(
        {frame.meta.host_time_ns, frame.meta.budget_spent, partial});
  }
  SinkStats stats() const override { return {}; }
  std::map<std::string, std::vector<Seen>> frames() const {
    std::lock_guard lock(mu_);
    return frames_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Seen>> frames_;
};

// Finding 2, under the real scheduler: a hostile VM (finding 2's fd tables) and a
// normal one, crawled every 100 ms on two threads. Each hostile crawl runs until its
// time budget ends it; the normal VM's crawls go on meanwhile, every one whole.
TEST_F(Hostile, AHostileVmSlowsOnlyItsOwnCrawls) {
  const Frame before = crawl_clean();
  ASSERT_TRUE(before.get<ProcessList>());
  const fs::path dir = fresh_cache_dir();
  const std::string normal = dir / "normal.elf", hostile = dir / "hostile.elf";
  fs::create_symlink(dump_path(), normal);
  fs::create_symlink(dump_path(), hostile);

  CrawlerOptions options;
  options.targets = {normal, hostile};
  options.repeat_images = true;
  options.interval = std::chrono::milliseconds(100);
  options.threads = 2;
  options.frame.features = {Feature::named("processes"), Feature::named("open_files")};
  options.frame.budget.max_bytes = uint64_t{1} << 40;  // the clock ends hostile crawls
  options.frame.budget.max_time = std::chrono::seconds(2);
  options.profile = no_cache();
  options.open_memory = [&](const WatchedVm& vm) -> Result<PhysicalMemoryPtr> {
    auto memory = patched();
    if (vm.target == hostile) inflate_fd_tables(*memory, *before.get<ProcessList>());
    return PhysicalMemoryPtr(std::move(memory));
  };
  RecordingSink sink;
  Crawler crawler(options, {&sink});
  std::thread run([&] { crawler.run(); });
  std::this_thread::sleep_for(std::chrono::seconds(9));
  crawler.stop();
  run.join();

  const auto frames = sink.frames();
  const auto& mine = frames.at(fs::path(normal).filename().string());
  const auto& theirs = frames.at(fs::path(hostile).filename().string());
  ASSERT_GE(theirs.size(), 1u);
  for (const auto& f : theirs)
    EXPECT_NE(f.budget_spent.find("ran longer than 2000 ms"), std::string::npos) << f.budget_spent;
  ASSERT_GE(mine.size(), 2u);
  for (const auto& f : mine) {
    EXPECT_TRUE(f.budget_spent.empty()) << f.budget_spent;
    EXPECT_FALSE(f.partial);
  }
  // Never held up behind a hostile crawl: no gap as long as one of them.
  uint64_t longest_gap = 0;
  for (size_t i = 1; i < mine.size(); ++i)
    longest_gap = std::max(longest_gap, mine[i].host_time_ns - mine[i - 1].host_time_ns);
  EXPECT_LT(longest_gap, uint64_t{2'000'000'000}) << mine.size() << " frames";
  EXPECT_GE(mine.size(), 4 * theirs.size());
}

std::vector<std::string> module_names(Kernel& kernel) {
  FrameCrawler crawler(kernel);
  const Frame frame = crawler.crawl({.features = {Feature::named("modules")}});
  std::vector<std::string> names;
  if (const auto* modules = frame.get<ModuleList>())
    for (const ModuleRow& m : modules->rows) names.push_back(m.name);
  return names;
}

// Finding 3: a guest that shifted one member offset in its own BTF (module.name by
// a byte) had its profile cached under the kernel's build id; a clean guest of the
// same build then printed every module name a byte short ("ummy"). A cached
// profile now carries the hash of the guest bytes it was made of.
TEST_F(Hostile, ADoctoredGuestsProfileNeverServesACleanGuest) {
  const std::vector<std::string> clean_names = module_names(*clean_);
  ASSERT_FALSE(clean_names.empty());

  // Where struct module's `name` member record lies in the guest's BTF.
  const uint64_t start = clean_->symbol("__start_BTF").value_or(0);
  const uint64_t stop = clean_->symbol("__stop_BTF").value_or(0);
  ASSERT_GT(stop, start);
  std::vector<uint8_t> blob(stop - start);
  ASSERT_TRUE(clean_->read(start, blob.data(), blob.size()));
  std::unique_ptr<struct btf, decltype(&btf__free)> btf(
      btf__new(blob.data(), static_cast<uint32_t>(blob.size())), &btf__free);
  ASSERT_TRUE(btf);
  const int id = btf__find_by_name_kind(btf.get(), "module", BTF_KIND_STRUCT);
  ASSERT_GT(id, 0);
  const struct btf_type* t = btf__type_by_id(btf.get(), id);
  uint32_t raw_size = 0;
  const auto* raw = static_cast<const uint8_t*>(btf__raw_data(btf.get(), &raw_size));
  ASSERT_EQ(raw_size, blob.size());
  const struct btf_member* name = nullptr;
  for (int i = 0; i < btf_vlen(t); ++i)
    if (std::string_view(btf__name_by_offset(btf.get(), btf_members(t)[i].name_off)) == "name")
      name = &btf_members(t)[i];
  ASSERT_TRUE(name);
  const uint64_t field = start + (reinterpret_cast<const uint8_t*>(&name->offset) - raw);

  ProfileOptions options;
  options.cache_dir = fresh_cache_dir();
  clear_profile_registry();
  auto memory = patched();
  memory->write_value<uint32_t>(pa(field), name->offset + 8);  // one byte further
  auto doctored = attach(std::move(memory), options);
  ASSERT_TRUE(doctored);
  const std::vector<std::string> doctored_names = module_names(*doctored);
  ASSERT_EQ(doctored_names.size(), clean_names.size());
  EXPECT_EQ(doctored_names.front(), clean_names.front().substr(1)) << "the doctoring took";

  // Same process (the in-process registry) and a new one (the file) alike.
  for (bool same_process : {true, false}) {
    if (!same_process) clear_profile_registry();
    auto clean = attach(open_dump(dump_path()), options);
    ASSERT_TRUE(clean);
    EXPECT_EQ(module_names(*clean), clean_names) << "same process: " << same_process;
    // The first clean attach rebuilt the profile; the next one finds that.
    if (same_process)
      EXPECT_NE(clean->identity().profile_cache.find("this guest's kallsyms or BTF bytes differ"),
                std::string::npos)
          << clean->identity().profile_cache;
    else
      EXPECT_EQ(clean->identity().profile_cache.rfind("warm ", 0), 0u)
          << clean->identity().profile_cache;
  }
  fs::remove_all(options.cache_dir);
}

// The kernel's own VMCOREINFO text with one line's value replaced.
std::string forged_vmcoreinfo(Kernel& kernel, const std::string& key, const std::string& value) {
  const uint64_t data =
      kernel.read_pointer(kernel.symbol("vmcoreinfo_data").value_or(0)).value_or(0);
  std::string text = kernel.read_string(data, 4096).value_or("");
  const size_t at = text.find("\n" + key + "=");
  if (at == std::string::npos) return {};
  const size_t from = at + key.size() + 2;
  text.replace(from, text.find('\n', from) - from, value);
  return text;
}

// Finding 4: nfm took the first VMCOREINFO text found scanning up from address 0.
// A copy that a guest process plants in a lower page is now one candidate among
// others: with a wrong phys_base it fails the page-table check, with another
// BUILD-ID it is not what the kernel's vmcoreinfo_data holds. The real note wins,
// and the frame says what was passed over.
TEST_F(Hostile, APlantedVmcoreinfoIsPassedOverAndReported) {
  constexpr uint64_t kPlanted = 0x10000;  // a low page: scanned before the kernel's own
  struct Forgery {
    std::string key, value, why;
  };
  // phys_base 2 MiB off: page tables still inside RAM, but not the kernel's.
  const std::string shifted = std::to_string(clean_->location().phys_base + (2 << 20));
  for (const Forgery& f : {Forgery{"NUMBER(phys_base)", shifted, "does not map _stext"},
                           Forgery{"BUILD-ID", std::string(40, 'f'), "is not the kernel's own"}}) {
    const std::string text = forged_vmcoreinfo(*clean_, f.key, f.value);
    ASSERT_FALSE(text.empty()) << f.key;
    auto memory = patched();
    memory->write(kPlanted, text.c_str(), text.size() + 1);
    ProfileOptions options;
    options.cache_dir = fresh_cache_dir();
    clear_profile_registry();
    auto kernel = attach(std::move(memory), options);
    ASSERT_TRUE(kernel) << f.key;
    EXPECT_EQ(kernel->identity().build_id, clean_->identity().build_id);
    EXPECT_EQ(kernel->location().dtb, clean_->location().dtb);
    ASSERT_EQ(kernel->identity().warnings.size(), 1u) << f.key;
    const std::string& warning = kernel->identity().warnings.front();
    EXPECT_EQ(warning.rfind("rejected VMCOREINFO at 0x10000", 0), 0u) << warning;
    EXPECT_NE(warning.find(f.why), std::string::npos) << warning;
    // No profile was kept under the forged key.
    int files = 0;
    for (const auto& e : fs::directory_iterator(options.cache_dir)) files += e.is_regular_file();
    EXPECT_EQ(files, 1) << "only the real kernel's profile";
    fs::remove_all(options.cache_dir);
  }
  // A clean guest: nothing passed over, nothing to report.
  auto clean = attach(std::make_unique<PatchedMemory>(open_dump(dump_path())));
  ASSERT_TRUE(clean);
  EXPECT_TRUE(clean->identity().warnings.empty());
}

// Finding 5: values past their physical limits were printed as read, with no error
// counted: nr_threads 2147483647, a module name with no NUL, an empty command line
// for a reversed argument area; and (named by the issue) a resident set larger than
// the guest's RAM, a start time after the guest's clock. Now each is counted as an
// error of its feature.
TEST_F(Hostile, ImplausibleValuesAreCountedNotPrinted) {
  const Frame before = crawl_clean();
  const auto* tasks = before.get<ProcessList>();
  const auto* modules = before.get<ModuleList>();
  ASSERT_TRUE(tasks && modules && !modules->rows.empty());
  EXPECT_EQ(before.meta.features.at(Feature::named("processes")).errors.count("implausible_values"),
            0u);
  EXPECT_EQ(before.meta.features.at(Feature::named("modules")).errors.count("name_errors"), 0u);
  // Four single-threaded user processes: one claims 2^31-1 threads, one has its
  // argument area reversed, one a resident set of 2^40 pages (more than the guest's
  // RAM), one started a day after the guest's clock.
  std::vector<const ProcessRow*> victims;
  for (const ProcessRow& p : tasks->rows)
    if (!p.cmdline.empty() && p.threads == 1 && p.rss_anon_kb > 0 && victims.size() < 4)
      victims.push_back(&p);
  ASSERT_EQ(victims.size(), 4u);
  const ProcessRow* threads_victim = victims[0];
  const ProcessRow* args_victim = victims[1];
  const ProcessRow* rss_victim = victims[2];
  const ProcessRow* time_victim = victims[3];
  auto memory = patched();
  const uint64_t signal = pointer(threads_victim->task + offset("task_struct", "signal"));
  memory->write_value<int32_t>(pa(signal + offset("signal_struct", "nr_threads")), 0x7fffffff);
  const uint64_t mm = pointer(args_victim->task + offset("task_struct", "mm"));
  const uint64_t arg_start = pointer(mm + offset("mm_struct", "arg_start"));
  memory->write_value<uint64_t>(pa(mm + offset("mm_struct", "arg_end")), arg_start - 4096);
  const uint64_t rss_mm = pointer(rss_victim->task + offset("task_struct", "mm"));
  memory->write_value<int64_t>(pa(rss_mm + offset("mm_struct", "rss_stat.count[1]")),
                               int64_t{1} << 40);  // MM_ANONPAGES
  memory->write_value<uint64_t>(pa(time_victim->task + offset("task_struct", "start_boottime")),
                                tasks->clock_ns + 86'400'000'000'000);
  const ModuleRow& module = modules->rows.front();
  memory->write_string(pa(module.module + offset("module", "name")), std::string(56, 'A'));

  auto kernel = attach(std::move(memory));
  ASSERT_TRUE(kernel);
  FrameCrawler crawler(*kernel);
  const Frame frame = crawler.crawl();
  const FeatureStatus& processes = frame.meta.features.at(Feature::named("processes"));
  EXPECT_EQ(
      processes.errors.count("implausible_values") ? processes.errors.at("implausible_values") : 0,
      4u);
  for (const ProcessRow& p : frame.get<ProcessList>()->rows) {
    if (p.pid == threads_victim->pid) {
      EXPECT_EQ(p.threads, 1) << "the threads seen, not the claim";
    }
    if (p.pid == args_victim->pid) {
      EXPECT_TRUE(p.cmdline.empty());
    }
    if (p.pid == rss_victim->pid) {
      EXPECT_EQ(p.rss_anon_kb, 0u) << "not 2^40 pages";
      EXPECT_EQ(p.rss_kb, p.rss_file_kb + p.rss_shmem_kb);
    }
    if (p.pid == time_victim->pid) {
      EXPECT_EQ(p.start_time_ns, 0u) << "not a start after the guest's clock";
    }
  }
  const FeatureStatus& mods = frame.meta.features.at(Feature::named("modules"));
  EXPECT_EQ(mods.errors.count("name_errors") ? mods.errors.at("name_errors") : 0, 1u);
  EXPECT_EQ(frame.get<ModuleList>()->rows.front().name, std::string(55, 'A'));
}

}  // namespace
}  // namespace nfm
