// nfm top's pieces that need no guest: the host's /proc parsers and the model that
// turns two crawls (and two host samples) into %CPU, %HOST and %MEM.
#include <gtest/gtest.h>
#include <unistd.h>

#include "frame/top_model.h"
#include "host/vm_host.h"

namespace nfm {
namespace {

TEST(HostView, ParsesStatWithAwkwardComm) {
  // A comm with spaces and a ')' of its own: the fields start after the last ')'.
  const char* text =
      "4242 (CPU 0/TCG) x) R 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 7 0 "
      "1000 4294967296 70000 18446744073709551615 0 0 0 0 0 4096 0 0 0 0 0 0 17 1 0 0 0\n";
  auto st = parse_proc_stat(text);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  EXPECT_EQ(st->comm, "CPU 0/TCG) x");
  EXPECT_EQ(st->state, 'R');
  EXPECT_EQ(st->utime_ticks, 250u);
  EXPECT_EQ(st->stime_ticks, 75u);
  EXPECT_EQ(st->num_threads, 7);
  EXPECT_EQ(st->vsize, 4294967296u);
  EXPECT_EQ(st->rss_pages, 70000);
  EXPECT_EQ(st->processor, 1);
  EXPECT_FALSE(parse_proc_stat("12 (x) R 1 2").ok());
  EXPECT_FALSE(parse_proc_stat("no parentheses").ok());
}

TEST(HostView, ParsesSchedstatAndVcpuNames) {
  auto s = parse_schedstat("123456789 987654 42\n");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->runtime_ns, 123456789u);
  EXPECT_EQ(s->run_delay_ns, 987654u);
  EXPECT_EQ(s->timeslices, 42u);
  EXPECT_FALSE(parse_schedstat("1 2").ok());

  auto v = parse_vcpu_thread_name("CPU 3/KVM\n");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->index, 3);
  EXPECT_EQ(v->accel, "KVM");
  EXPECT_EQ(parse_vcpu_thread_name("CPU 12/TCG")->index, 12);
  EXPECT_FALSE(parse_vcpu_thread_name("qemu-system-x86"));
  EXPECT_FALSE(parse_vcpu_thread_name("CPU x/KVM"));
  EXPECT_FALSE(parse_vcpu_thread_name("CPU 1/"));
}

TEST(HostView, SamplesThisProcess) {
  auto s = sample_host(getpid());
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_GT(s->rss_kb, 0u);
  EXPECT_TRUE(s->vcpus.empty());  // not a QEMU
  EXPECT_FALSE(sample_host(0x7ffffff0).ok());
}

TEST(HostView, UsageFromTwoSamples) {
  HostSample a{.pid = 7, .wall_ns = 1'000'000'000, .process_cpu_ns = 0, .rss_kb = 100};
  a.vcpus = {{.tid = 8,
              .index = 0,
              .accel = "TCG",
              .cpu_ns = 0,
              .sched = SchedStat{.runtime_ns = 0, .run_delay_ns = 0}},
             {.tid = 9,
              .index = 1,
              .accel = "TCG",
              .cpu_ns = 0,
              .sched = SchedStat{.runtime_ns = 0, .run_delay_ns = 0}}};
  HostSample b = a;
  b.wall_ns += 2'000'000'000;  // 2 s
  b.process_cpu_ns = 1'000'000'000;
  b.rss_kb = 200;
  b.vcpus[0].sched = SchedStat{.runtime_ns = 600'000'000, .run_delay_ns = 1'400'000'000};
  b.vcpus[1].sched = SchedStat{.runtime_ns = 200'000'000, .run_delay_ns = 0};
  auto u = host_usage(a, b);
  ASSERT_TRUE(u);
  EXPECT_DOUBLE_EQ(u->interval_s, 2.0);
  EXPECT_DOUBLE_EQ(u->qemu_cpu_pct, 50.0);
  EXPECT_DOUBLE_EQ(u->vcpu_pct, 40.0);
  ASSERT_EQ(u->per_vcpu_pct.size(), 2u);
  EXPECT_DOUBLE_EQ(u->per_vcpu_pct[0], 30.0);
  EXPECT_DOUBLE_EQ(u->per_vcpu_pct[1], 10.0);
  ASSERT_TRUE(u->steal_pct);
  EXPECT_DOUBLE_EQ(*u->steal_pct, 70.0);
  EXPECT_EQ(u->rss_kb, 200u);
  // Without named vCPU threads the QEMU process stands in.
  a.vcpus.clear();
  b.vcpus.clear();
  u = host_usage(a, b);
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->vcpus_named);
  EXPECT_DOUBLE_EQ(u->vcpu_pct, 50.0);
  EXPECT_FALSE(u->steal_pct);
  EXPECT_FALSE(host_usage(b, a));  // time going backwards
}

ProcessRow task(int pid, uint64_t address, uint64_t runtime_ms, uint64_t rss_kb = 0) {
  ProcessRow r;
  r.pid = r.tgid = pid;
  r.task = address;
  r.comm = "p" + std::to_string(pid);
  r.state = 'S';
  r.runtime_ns = runtime_ms * 1'000'000;
  r.utime_ns = r.runtime_ns;
  r.rss_kb = rss_kb;
  r.start_time_ns = 1'000'000'000;
  return r;
}

TopSample sample(uint64_t clock_s, std::vector<ProcessRow> rows, uint64_t vcpu_ms,
                 uint64_t wall_s) {
  TopSample s;
  s.frame.meta.vm.name = "vm1";
  s.frame.meta.vm.pid = 7;
  s.frame.set(MemInfo{.total_kb = 1000});
  s.frame.set(ProcessList{});
  s.frame.get<ProcessList>()->rows = std::move(rows);
  s.frame.get<ProcessList>()->clock_ns = clock_s * 1'000'000'000;
  s.host = HostSample{.pid = 7, .wall_ns = wall_s * 1'000'000'000};
  s.host->vcpus = {{.tid = 8,
                    .index = 0,
                    .accel = "TCG",
                    .sched = SchedStat{.runtime_ns = vcpu_ms * 1'000'000}}};
  return s;
}

// A 1-vCPU guest whose burner used 4 of 5 guest seconds while the host gave its
// vCPU 1.5 of 5 wall seconds: %CPU 80 (the guest's view), and the burner's share
// of the guest's busy time (4 of 5 busy seconds) times 30% = %HOST 24.
TEST(TopModel, CpuInGuestTimeAndHostShare) {
  const TopSample a = sample(100, {task(1, 0x10, 1000, 100), task(2, 0x20, 0, 50)}, 10'000, 50);
  const TopSample b = sample(105, {task(1, 0x10, 5000, 100), task(2, 0x20, 1000, 50)}, 11'500, 55);
  TopView view;
  add_to_view(view, &a, b);
  ASSERT_EQ(view.vms.size(), 1u);
  const TopVm& vm = view.vms[0];
  EXPECT_EQ(vm.name, "vm1");
  EXPECT_DOUBLE_EQ(vm.interval_s, 5.0);
  EXPECT_EQ(vm.cpus, 1);  // no cpuinfo: one vCPU thread
  EXPECT_DOUBLE_EQ(vm.cpu_busy_pct, 100.0);
  ASSERT_TRUE(vm.host_usage);
  EXPECT_DOUBLE_EQ(vm.host_usage->vcpu_pct, 30.0);
  EXPECT_EQ(vm.tasks.total, 2);
  EXPECT_EQ(vm.tasks.sleeping, 2);
  ASSERT_EQ(view.rows.size(), 2u);
  const TopRow& burner = view.rows[0];
  EXPECT_EQ(burner.pid, 1);
  EXPECT_DOUBLE_EQ(burner.cpu_pct, 80.0);
  ASSERT_TRUE(burner.host_pct);
  EXPECT_DOUBLE_EQ(*burner.host_pct, 24.0);
  EXPECT_DOUBLE_EQ(burner.mem_pct, 10.0);
  EXPECT_EQ(burner.time_ns, 5'000'000'000u);
  EXPECT_DOUBLE_EQ(*view.rows[1].host_pct, 6.0);

  // A task_struct reused by a newer task is a new task: counted since its start.
  std::vector<ProcessRow> rows = {task(1, 0x10, 5000), task(3, 0x20, 500)};
  rows[1].start_time_ns = 104'000'000'000;
  const TopSample c = sample(105, rows, 11'500, 55);
  TopView v2;
  add_to_view(v2, &a, c);
  EXPECT_DOUBLE_EQ(v2.rows[1].cpu_pct, 50.0);

  // The first crawl: no interval, no %HOST.
  TopView first;
  add_to_view(first, nullptr, a);
  EXPECT_FALSE(first.rows[0].host_pct);
  EXPECT_EQ(first.vms[0].interval_s, 0.0);
}

// Frames read back from a store carry /proc's numbers only: utime + stime, no task
// address, no exact runtime, and the clock from the uptime feature.
TEST(TopModel, StoredFramesUseProcTimesAndUptime) {
  TopSample a = sample(100, {task(1, 0, 1000), task(2, 0, 0)}, 0, 0);
  TopSample b = sample(104, {task(1, 0, 3000), task(2, 0, 400)}, 0, 0);
  for (TopSample* s : {&a, &b}) {
    s->host.reset();
    s->frame.set(UptimeInfo{.uptime_ns = s->frame.get<ProcessList>()->clock_ns});
    s->frame.get<ProcessList>()->clock_ns = 0;
    for (ProcessRow& r : s->frame.get<ProcessList>()->rows) r.runtime_ns = 0;
  }
  TopView view;
  add_to_view(view, &a, b);
  ASSERT_EQ(view.rows.size(), 2u);
  EXPECT_DOUBLE_EQ(view.rows[0].cpu_pct, 50.0);
  EXPECT_DOUBLE_EQ(view.rows[1].cpu_pct, 10.0);
  EXPECT_FALSE(view.rows[0].host_pct);  // no host samples in a store
  EXPECT_DOUBLE_EQ(view.vms[0].interval_s, 4.0);
}

TEST(TopModel, SortsAndFilters) {
  std::vector<TopRow> rows = {
      {.vm = "b",
       .pid = 3,
       .cpu_pct = 5,
       .mem_pct = 1,
       .time_ns = 9,
       .comm = "x",
       .command = "x -a"},
      {.vm = "a",
       .pid = 2,
       .cpu_pct = 50,
       .mem_pct = 0.5,
       .time_ns = 1,
       .comm = "burn",
       .command = "burn"},
      {.vm = "a",
       .pid = 1,
       .cpu_pct = 5,
       .mem_pct = 7,
       .time_ns = 3,
       .comm = "y",
       .command = "[y]"},
  };
  sort_rows(rows, TopColumn::cpu);
  EXPECT_EQ(rows[0].pid, 2);
  EXPECT_EQ(rows[1].pid, 1);  // ties: by VM, then pid
  sort_rows(rows, TopColumn::mem);
  EXPECT_EQ(rows[0].pid, 1);
  sort_rows(rows, TopColumn::time);
  EXPECT_EQ(rows[0].pid, 3);
  sort_rows(rows, TopColumn::pid);
  EXPECT_EQ(rows[0].pid, 1);
  sort_rows(rows, TopColumn::pid, true);
  EXPECT_EQ(rows[0].pid, 3);

  auto only = rows;
  filter_rows(only, {.vm = "a"});
  EXPECT_EQ(only.size(), 2u);
  filter_rows(only, {.name = "burn"});
  ASSERT_EQ(only.size(), 1u);
  EXPECT_EQ(only[0].pid, 2);

  TopView view{.vms = {TopVm{.name = "a"}, TopVm{.name = "b"}}, .rows = rows};
  filter_view(view, {.vm = "b"});
  ASSERT_EQ(view.vms.size(), 1u);
  EXPECT_EQ(view.vms[0].name, "b");
  EXPECT_EQ(view.rows.size(), 1u);

  EXPECT_EQ(parse_top_column("%CPU"), TopColumn::cpu);
  EXPECT_EQ(parse_top_column("mem"), TopColumn::mem);
  EXPECT_EQ(parse_top_column("TIME+"), TopColumn::time);
  EXPECT_EQ(parse_top_column("%host"), TopColumn::host);
  EXPECT_FALSE(parse_top_column("nope"));
}

}  // namespace
}  // namespace nfm
