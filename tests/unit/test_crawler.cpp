// The crawler's pure parts: what discovery reads from a QEMU command line and
// /proc/PID/stat, libvirt renaming, name globs, durations; and the JSON Lines sinks
// (one frame per line, size-based rotation) and open_sink's dispatch.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crawler/crawler.h"
#include "features/uname/rows.h"
#include "frame/frame_json.h"
#include "host/qemu/cmdline.h"
#include "host/qemu/discovery.h"
#include "host/qemu/proc_stat.h"
#include "store/frame_sink.h"

namespace nfm {
namespace {

Result<QemuCmdline> parse(std::vector<std::string> argv) {
  argv.insert(argv.begin(), "/usr/bin/qemu-system-x86_64");
  return parse_qemu_cmdline(argv);
}

TEST(Discovery, UuidAndQmpSocketFromTheCommandLine) {
  auto c = parse({"-name", "web1", "-uuid", "0e4c2f5a-6b7e-4c1d-9a8b-2f3e4d5c6b7a", "-qmp",
                  "unix:/run/web1.qmp,server=on,wait=off", "-m", "512"});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->uuid, "0e4c2f5a-6b7e-4c1d-9a8b-2f3e4d5c6b7a");
  EXPECT_EQ(c->qmp_socket, "/run/web1.qmp");

  // Old syntax.
  c = parse({"-qmp", "unix:/tmp/q.sock,server,nowait"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->qmp_socket, "/tmp/q.sock");

  // libvirt: a control monitor on a socket chardev (a path; newer libvirt passes an fd).
  const std::string monitor =
      "socket,id=charmonitor,path=/var/lib/libvirt/qemu/domain-3-db/monitor.sock,server=on,"
      "wait=off";
  c = parse({"-name", "guest=db,debug-threads=on", "-chardev",
             "socket,id=charserial0,path=/run/serial.sock,server=on,wait=off", "-chardev", monitor,
             "-mon", "chardev=charmonitor,id=monitor,mode=control"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->name, "db");
  EXPECT_EQ(c->qmp_socket, "/var/lib/libvirt/qemu/domain-3-db/monitor.sock");

  c = parse({"-chardev", "socket,id=charmonitor,fd=23,server=on,wait=off", "-mon",
             "chardev=charmonitor,id=monitor,mode=control", "-qmp", "tcp:127.0.0.1:4444"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->qmp_socket, "");

  // A human monitor is not QMP.
  c = parse({"-chardev", "socket,id=hmp,path=/tmp/hmp.sock", "-mon", "chardev=hmp,mode=readline"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->qmp_socket, "");
}

TEST(Discovery, ProcessStartTime) {
  // Field 22 counts from the pid; comm may hold spaces and parentheses.
  const std::string stat =
      "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194624 123 0 0 0 55 66 0 0 20 0 3 0 987654 "
      "1234567 890 18446744073709551615\n";
  auto st = parse_proc_stat(stat);
  ASSERT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(st->start_time, 987654u);
  EXPECT_EQ(st->comm, "qemu-system-x86");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->utime_ticks, 55u);
  EXPECT_EQ(st->stime_ticks, 66u);
  EXPECT_EQ(st->num_threads, 3);
  EXPECT_EQ(st->vsize, 1234567u);
  EXPECT_EQ(st->rss_pages, 890);
  EXPECT_EQ(st->processor, -1);  // the line stops before field 39
  EXPECT_FALSE(st->exited());
  const std::string odd = "77 (a) b (c) Z 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 31337 0 0\n";
  auto o = parse_proc_stat(odd);
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->start_time, 31337u);
  EXPECT_EQ(o->comm, "a) b (c");
  EXPECT_TRUE(o->exited());
  EXPECT_FALSE(parse_proc_stat("12 (x) S 1 2 3").ok());
  EXPECT_FALSE(parse_proc_stat("garbage").ok());
  // A start time that is not a number.
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0 0\n").ok());

  // Our own stat is readable, and what list_qemu_processes would use.
  auto self = read_proc_stat(getpid());
  ASSERT_TRUE(self) << self.error().to_string();
  EXPECT_GT(self->start_time, 0u);
  EXPECT_EQ(self->state, 'R');
  EXPECT_EQ(read_proc_stat(0x3ffffff0).error().code, Errc::not_found);
}

TEST(Discovery, DescribesAQemuProcess) {
  QemuProcessInfo p;
  p.pid = 1234;
  p.start_time = 99;
  p.cmdline = *parse({"-name", "web1", "-m", "1G", "-uuid", "u-1", "-object",
                      "memory-backend-memfd,id=ram0,size=1G,share=on", "-machine",
                      "q35,memory-backend=ram0", "-qmp", "unix:/run/q,server=on"});
  const DiscoveredVm vm = describe_qemu(p);
  EXPECT_EQ(vm.pid, 1234);
  EXPECT_EQ(vm.key(), "1234@99");
  EXPECT_EQ(vm.name, "web1");
  EXPECT_EQ(vm.uuid, "u-1");
  EXPECT_EQ(vm.ram_size, 1ull << 30);
  EXPECT_EQ(vm.ram_backend, "memory-backend-memfd (shared)");
  EXPECT_EQ(vm.machine, "q35");
  EXPECT_EQ(vm.qmp_socket, "/run/q");

  // No -name, no parsable command line: still a VM, named by its pid.
  QemuProcessInfo bare;
  bare.pid = 7;
  bare.cmdline_error = "bad";
  const DiscoveredVm b = describe_qemu(bare);
  EXPECT_EQ(b.name, "pid-7");
  EXPECT_EQ(b.cmdline_error, "bad");

  QemuProcessInfo anon;
  anon.pid = 8;
  anon.cmdline = *parse({"-m", "256"});
  EXPECT_EQ(describe_qemu(anon).ram_backend, "anonymous");
  EXPECT_EQ(describe_qemu(anon).ram_size, 256ull << 20);
}

TEST(Discovery, LibvirtNamesWinByUuid) {
  std::vector<DiscoveredVm> vms(3);
  vms[0].name = "guest-a";
  vms[0].uuid = "aaaa";
  vms[1].name = "pid-5";
  vms[2].name = "plain";
  vms[2].uuid = "cccc";
  apply_libvirt(vms, {{"renamed-a", "aaaa"}, {"other", "bbbb"}});
  EXPECT_EQ(vms[0].name, "renamed-a");
  EXPECT_TRUE(vms[0].libvirt);
  EXPECT_EQ(vms[1].name, "pid-5");
  EXPECT_FALSE(vms[1].libvirt);
  EXPECT_EQ(vms[2].name, "plain");
  EXPECT_FALSE(vms[2].libvirt);
}

// libvirt's checks, in a child process that leaves with _exit(): status 0 when all hold.
// (libvirt, once loaded, keeps glib threads alive to the end of the process, and
// LeakSanitizer's exit-time scan of their thread-local storage crashed under ctest:
// "Tracer caught signal 11".)
[[noreturn]] void check_libvirt_then_exit() {
  if (!libvirt_available()) {
    std::fprintf(stderr, "built without libvirt: nothing to check\n");
    _exit(0);
  }
  bool ok = true;
  auto check = [&ok](bool condition, const char* what) {
    if (!condition) {
      std::fprintf(stderr, "failed: %s\n", what);
      ok = false;
    }
  };
  // No libvirtd here (or no such URI): quietly nothing.
  check(libvirt_domains("qemu+unix:///system?socket=/nonexistent/libvirt-sock").empty(),
        "no domains from a socket that does not exist");
  // libvirt's built-in test driver runs one domain, "test", in-process.
  const auto domains = libvirt_domains("test:///default");
  check(domains.size() == 1, "one domain from test:///default");
  if (domains.size() == 1) {
    check(domains[0].name == "test", "its name is 'test'");
    check(domains[0].uuid.size() == 36, "its uuid has 36 characters");
    std::vector<DiscoveredVm> vms(1);
    vms[0].name = "qemu-name";
    vms[0].uuid = domains[0].uuid;
    apply_libvirt(vms, domains);
    check(vms[0].name == "test", "apply_libvirt names the VM by its domain");
  }
  std::fflush(stderr);
  _exit(ok ? 0 : 1);
}

TEST(Discovery, LibvirtApi) {
  // Even asking whether libvirt is there loads it: the child asks.
  EXPECT_EXIT(check_libvirt_then_exit(), ::testing::ExitedWithCode(0), "");
}

TEST(Discovery, NameGlobs) {
  EXPECT_TRUE(name_matches("anything", {}));
  EXPECT_TRUE(name_matches("nfm-5.10-4242", {"nfm-*-4242"}));
  EXPECT_FALSE(name_matches("nfm-5.10-4243", {"nfm-*-4242"}));
  EXPECT_TRUE(name_matches("db2", {"web*", "db?"}));
  EXPECT_FALSE(name_matches("db12", {"web*", "db?"}));
}

TEST(Discovery, ScanningThisHostDoesNotFail) {
  // Whatever runs here: every listed VM has a key and a name, and a glob that matches
  // nothing gives nothing.
  for (const auto& vm : discover_vms({.libvirt = false})) {
    EXPECT_GT(vm.pid, 0);
    EXPECT_FALSE(vm.name.empty());
  }
  EXPECT_TRUE(discover_vms({.match = {"no-vm-is-named-like-this-*"}, .libvirt = false}).empty());
}

TEST(Crawler, Durations) {
  using std::chrono::nanoseconds;
  EXPECT_EQ(*parse_duration("1s"), nanoseconds(1'000'000'000));
  EXPECT_EQ(*parse_duration("100ms"), nanoseconds(100'000'000));
  EXPECT_EQ(*parse_duration("1ms"), nanoseconds(1'000'000));
  EXPECT_EQ(*parse_duration("2.5s"), nanoseconds(2'500'000'000));
  EXPECT_EQ(*parse_duration("250us"), nanoseconds(250'000));
  EXPECT_EQ(*parse_duration("1h"), std::chrono::hours(1));
  EXPECT_EQ(*parse_duration("5m"), std::chrono::minutes(5));
  EXPECT_EQ(*parse_duration("30"), std::chrono::seconds(30));
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("fast"));
  EXPECT_FALSE(parse_duration("10parsecs"));
  EXPECT_FALSE(parse_duration("-1s"));
}

TEST(Crawler, RssIsReported) {
  EXPECT_GT(process_rss_bytes(), 0u);
}

Frame test_frame(const std::string& name, uint64_t t) {
  Frame f;
  f.meta.vm = {.name = name, .uuid = "", .pid = 42, .host = "h"};
  f.meta.host_time_ns = t;
  f.meta.features[Feature::named("uname")] = {.ok = true, .rows = 1};
  f.set(UnameInfo{});
  f.get<UnameInfo>()->release = "6.1.0-test";
  return f;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(JsonlSink, OneFramePerLineAndRotation) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("nfm-jsonl-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "frames.jsonl").string();
  const std::string one = dump_json(frame_json(test_frame("vm", 1)), -1) + "\n";
  // Room for three lines per file, two rotated files kept.
  SinkOptions options{.rotate_bytes = 3 * one.size() + 10, .rotate_keep = 2};
  auto sink = open_sink("file:" + path, options);
  ASSERT_TRUE(sink.ok()) << sink.error().to_string();
  EXPECT_EQ((*sink)->describe(), "file:" + path);
  for (uint64_t i = 1; i <= 10; ++i) (*sink)->write(test_frame("vm", i));
  (*sink)->flush();
  EXPECT_EQ((*sink)->stats().frames_written, 10u);
  EXPECT_EQ((*sink)->stats().write_errors, 0u);

  // 10 frames, 3 per file: PATH holds 10, PATH.1 7-9, PATH.2 4-6; 1-3 rotated away.
  auto times = [&](const std::string& p) {
    std::vector<uint64_t> t;
    for (const auto& l : lines_of(p)) {
      const auto j = nlohmann::json::parse(l);
      t.push_back(j.at("meta").at("host_time_ns").get<uint64_t>());
      EXPECT_EQ(j.at("meta").at("vm").at("name"), "vm");
      EXPECT_EQ(j.at("uname").at("release"), "6.1.0-test");
    }
    return t;
  };
  EXPECT_EQ(times(path), (std::vector<uint64_t>{10}));
  EXPECT_EQ(times(path + ".1"), (std::vector<uint64_t>{7, 8, 9}));
  EXPECT_EQ(times(path + ".2"), (std::vector<uint64_t>{4, 5, 6}));
  EXPECT_FALSE(std::filesystem::exists(path + ".3"));

  // Re-opening appends (and counts what is there toward the next rotation).
  sink = open_sink("file:" + path, options);
  ASSERT_TRUE(sink.ok());
  (*sink)->write(test_frame("vm", 11));
  EXPECT_EQ(times(path), (std::vector<uint64_t>{10, 11}));
  std::filesystem::remove_all(dir);
}

TEST(JsonlSink, BadSpecsAreClearErrors) {
  auto unknown = open_sink("kafka:localhost:9092");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("unknown sink"), std::string::npos);
  EXPECT_NE(unknown.error().message.find("kafka:localhost:9092"), std::string::npos);
  EXPECT_FALSE(open_sink("file:").ok());
  auto unwritable = open_sink("file:/nonexistent-dir/x/frames.jsonl");
  ASSERT_FALSE(unwritable.ok());
  EXPECT_NE(unwritable.error().message.find("/nonexistent-dir/x/frames.jsonl"), std::string::npos);
  auto out = open_sink("stdout");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)->describe(), "stdout");
}

}  // namespace
}  // namespace nfm
