// `nfm frame`: one crawl as a versioned JSON frame. On a paused guest every section
// equals what the matching command prints; the metadata tells the truth about the
// kernel and the crawl; a hostile or broken task list degrades the processes section
// to a partial, flagged result while the rest of the frame stays whole; and a guest
// whose kernel has panicked is still read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "features/processes/rows.h"
#include "fixture.h"
#include "frame/frame_crawler.h"
#include "frame/frame_json.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "nfm_cli.h"

namespace {

using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

// The pool's 5.10 and 6.1-cloud guests, and a 6.12 of its own booted with panic=0 (a
// panicked kernel stays down, no reboot) that the last test panics and reads. Panicked
// 5.10 and 6.1-cloud guests are read by test_crawl and test_shell.
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384, .append = "panic=0"},
});

json run_json(const std::vector<std::string>& args) {
  CliResult r = run_nfm(args);
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return json();
  return json::parse(r.out);
}

class Frame : public testing::TestWithParam<std::string> {};

TEST_P(Frame, SectionsEqualTheCommandsAndTheMetadataIsTrue) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  ASSERT_TRUE(g->request_truth().ok());
  ASSERT_TRUE(g->pause().ok());
  const json frame = run_json({"frame", target});
  ASSERT_TRUE(frame.is_object());

  const std::pair<const char*, const char*> sections[] = {
      {"uname", "uname"},      {"uptime", "uptime"},       {"cpuinfo", "cpuinfo"},
      {"meminfo", "meminfo"},  {"processes", "ps"},        {"modules", "lsmod"},
      {"kmsg", "dmesg"},       {"interfaces", "ifconfig"}, {"open_files", "lsof"},
      {"memory_maps", "maps"}, {"sockets", "netstat"}};
  for (const auto& [section, command] : sections) {
    ASSERT_TRUE(frame.contains(section)) << section;
    EXPECT_EQ(frame.at(section), run_json({command, "--json", target}))
        << "frame section " << section << " differs from nfm " << command << " --json";
  }

  EXPECT_EQ(frame.at("schema"), "nfm.frame");
  EXPECT_EQ(frame.at("version"), nfm::kFrameSchemaVersion);
  const json& meta = frame.at("meta");
  EXPECT_EQ(meta.at("kernel").at("release"), g->truth().uname.release);
  EXPECT_THAT(meta.at("kernel").at("banner").get<std::string>(),
              testing::HasSubstr(g->truth().uname.version));
  EXPECT_THAT(meta.at("target").get<std::string>(), testing::HasSubstr(std::to_string(g->pid())));
  const json& cost = meta.at("cost");
  EXPECT_GT(cost.at("reads").get<uint64_t>(), 0u);
  EXPECT_GT(cost.at("bytes").get<uint64_t>(), cost.at("reads").get<uint64_t>());
  EXPECT_EQ(cost.at("read_failures"), 0);
  for (const auto& [section, command] : sections) {
    const json& s = meta.at("features").at(section);
    EXPECT_TRUE(s.at("ok").get<bool>()) << section << ": " << s.dump();
    EXPECT_FALSE(s.at("partial").get<bool>()) << section << ": " << s.dump();
    const json& rows = frame.at(section);
    EXPECT_EQ(s.at("rows").get<size_t>(), rows.is_array() ? rows.size() : 1u) << section;
  }
  // Every process the guest lists is in the frame, with its executable.
  std::set<int> pids;
  for (const json& p : frame.at("processes")) {
    pids.insert(p.at("pid").get<int>());
    if (const auto* t = g->truth().process(p.at("pid").get<int>()); t && !t->exe.empty()) {
      EXPECT_EQ(p.at("exe"), t->exe) << t->comm;
    }
  }
  // The truth was written when the guest booted; the crawl comes later. The kernel
  // reaps idle workqueue workers (kworker/*) in between, so one of those may have
  // exited; every other process must be there.
  for (const auto& [pid, p] : g->truth().processes)
    if (!p.comm.starts_with("kworker/")) EXPECT_TRUE(pids.count(pid)) << p.comm;

  // A subset is a subset, and one-line output is the same frame.
  CliResult r = run_nfm({"frame", "--features", "ps,uname", "--compact", target});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  const json small = json::parse(r.out);
  EXPECT_EQ(small.at("processes"), frame.at("processes"));
  EXPECT_EQ(small.at("uname"), frame.at("uname"));
  EXPECT_FALSE(small.contains("kmsg"));
  EXPECT_EQ(small.at("meta").at("features").size(), 2u);
  ASSERT_TRUE(g->resume().ok());
}

TEST_P(Frame, RejectsUnknownFeatures) {
  NFM_LAB_GUEST(g, GetParam());
  CliResult r = run_nfm({"frame", "--features", "ps,nosuch", "qemu:" + std::to_string(g->pid())});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("unknown feature 'nosuch'"));
  EXPECT_EQ(r.out, "");
}

// Guest memory in which chosen 8-byte words read as chosen values: a guest that
// rewrote its own task list (malicious), or one we caught mid-update (torn).
class Overlay : public nfm::PhysicalMemory {
 public:
  explicit Overlay(nfm::PhysicalMemoryPtr inner) : inner_(std::move(inner)) {}
  void set(uint64_t pa, uint64_t value) { words_[pa] = value; }
  const std::vector<nfm::PhysRange>& ranges() const override { return inner_->ranges(); }
  nfm::Result<void> read(uint64_t pa, void* dst, size_t len) override {
    NFM_TRY(inner_->read(pa, dst, len));
    for (const auto& [at, value] : words_)
      for (size_t i = 0; i < 8; ++i)
        if (at + i >= pa && at + i < pa + len)
          static_cast<uint8_t*>(dst)[at + i - pa] = static_cast<uint8_t>(value >> (8 * i));
    return {};
  }
  std::string describe() const override { return inner_->describe() + " (overlaid)"; }

 private:
  nfm::PhysicalMemoryPtr inner_;
  std::map<uint64_t, uint64_t> words_;
};

TEST_P(Frame, ABrokenTaskListGivesAPartialFlaggedSectionAndTheRestOfTheFrame) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string raw = g->run_dir() + "/frame-dump.raw";
  ASSERT_TRUE(g->pmemsave(raw).ok());

  // Find a task in the middle of the list and where its tasks.next lies.
  uint64_t next_pa = 0, next_va = 0, third = 0;
  size_t healthy_rows = 0;
  {
    auto memory = nfm::open_target(raw);
    ASSERT_TRUE(memory.ok()) << memory.error().to_string();
    auto kernel = nfm::Kernel::attach(std::move(*memory));
    ASSERT_TRUE(kernel.ok()) << kernel.error().to_string();
    nfm::FrameCrawler crawler(**kernel);
    const nfm::Frame frame = crawler.crawl({.features = {nfm::Feature::named("processes")}});
    ASSERT_TRUE(frame.get<nfm::ProcessList>());
    const auto& rows = frame.get<nfm::ProcessList>()->rows;
    healthy_rows = rows.size();
    ASSERT_GT(healthy_rows, 20u);
    auto tasks = (*kernel)->types().member("task_struct", "tasks");
    ASSERT_TRUE(tasks.ok());
    next_va = rows[healthy_rows / 2].task + tasks->offset;  // &task->tasks.next
    third = rows[3].task + tasks->offset;
    auto pa = (*kernel)->space().translate(next_va);
    ASSERT_TRUE(pa.ok());
    next_pa = *pa;
  }

  struct Case {
    const char* what;
    uint64_t value;
    const char* walk;
  };
  for (const Case& c : {Case{"a wild pointer", 0x4141414141414141ULL, "bad_pointer"},
                        Case{"a loop back into the list", third, "torn"},
                        Case{"a pointer to itself", next_va, "torn"}}) {
    SCOPED_TRACE(c.what);
    auto memory = nfm::open_target(raw);
    ASSERT_TRUE(memory.ok());
    auto overlay = std::make_unique<Overlay>(std::move(*memory));
    overlay->set(next_pa, c.value);
    auto kernel = nfm::Kernel::attach(std::move(overlay));
    ASSERT_TRUE(kernel.ok()) << kernel.error().to_string();
    nfm::FrameCrawler crawler(**kernel);
    const nfm::Frame frame = crawler.crawl();
    const json j = nfm::frame_json(frame);
    const json& status = j.at("meta").at("features").at("processes");
    EXPECT_TRUE(status.at("ok").get<bool>());
    EXPECT_TRUE(status.at("partial").get<bool>()) << status.dump();
    EXPECT_EQ(status.at("walk"), c.walk) << status.dump();
    // The rows before the break are there; the walk stopped instead of looping.
    const size_t rows = j.at("processes").size();
    EXPECT_GE(rows, healthy_rows / 2);
    EXPECT_LT(rows, healthy_rows);
    for (const char* other : {"uname", "modules", "kmsg", "meminfo"}) {
      EXPECT_TRUE(j.at("meta").at("features").at(other).at("ok").get<bool>()) << other;
      EXPECT_TRUE(j.contains(other)) << other;
    }
  }
  std::filesystem::remove(raw);
}

// Last: it panics the guest. The kernel is dead, its memory is not: the frame must
// still come, with the panic in the log and the task list intact.
TEST_P(Frame, ReadsAPanickedGuest) {
  NFM_LAB_GUEST(g, GetParam());
  if (g->options().append.find("panic=0") == std::string::npos)
    GTEST_SKIP() << "panics only its own guest (6.12); test_crawl and test_shell panic the others";
  ASSERT_TRUE(g->request_truth().ok());
  const std::set<int> before = [&] {
    std::set<int> pids;
    for (const auto& [pid, p] : g->truth().processes)
      if (!p.kernel_thread) pids.insert(pid);
    return pids;
  }();
  ASSERT_TRUE(g->crash().ok());
  const json frame = run_json({"frame", "qemu:" + std::to_string(g->pid())});
  ASSERT_TRUE(frame.is_object());
  for (const auto& [name, status] : frame.at("meta").at("features").items())
    EXPECT_TRUE(status.at("ok").get<bool>()) << name << ": " << status.dump();

  bool sysrq = false, panic = false;
  for (const json& r : frame.at("kmsg")) {
    const std::string text = r.at("text");
    sysrq |= text.find("sysrq: Trigger a crash") != std::string::npos;
    panic |= text.find("Kernel panic - not syncing") != std::string::npos;
  }
  EXPECT_TRUE(sysrq) << "the SysRq crash record is missing from the log";
  EXPECT_TRUE(panic) << "the panic record is missing from the log";

  std::set<int> after;
  for (const json& p : frame.at("processes")) after.insert(p.at("pid").get<int>());
  for (int pid : before) EXPECT_TRUE(after.count(pid)) << "pid " << pid;

  // The commands an operator would type say the same.
  const std::string target = "qemu:" + std::to_string(g->pid());
  CliResult dmesg = run_nfm({"dmesg", target});
  ASSERT_EQ(dmesg.status, 0) << dmesg.err;
  EXPECT_THAT(dmesg.out, testing::HasSubstr("Kernel panic - not syncing"));
  const json ps = run_json({"ps", "--json", target});
  std::set<int> listed;
  for (const json& p : ps) listed.insert(p.at("pid").get<int>());
  for (int pid : before) EXPECT_TRUE(listed.count(pid)) << "nfm ps: pid " << pid;
}

INSTANTIATE_TEST_SUITE_P(Guests, Frame, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
