// `nfm check` against real rootkit techniques and real clean guests. The rootkits
// (testing/guest/rootkits/) are built here against Debian's linux-headers for the
// guest's kernel and loaded into a guest of its own; the guest's own ps, lsmod and
// /proc are shown to be fooled (the truth port), and nfm check to see through each.
// Clean guests (the pool's, every lab kernel) must give no finding at all, also
// while a guest forks and reaps processes as fast as it can.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "nfm_cli.h"

namespace {

using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;
using testing::Contains;
using testing::HasSubstr;
using testing::Not;

// The .ko files built for `kernel` (an alias), or none when the build failed (the
// test that needs them says so).
std::vector<std::string> rootkits(const std::string& kernel) {
  std::string dir;
  FILE* p =
      popen(("bash " NFM_SOURCE_DIR "/testing/guest/build-rootkits.sh " + kernel).c_str(), "r");
  if (!p) return {};
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) dir.append(buf, n);
  if (pclose(p) != 0) return {};
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  std::vector<std::string> modules;
  for (const char* name : {"hide_task", "hide_module", "hook_syscall", "hook_proc", "ftrace",
                           "kprobe", "backdoor", "inline_hook", "vmcoreinfo", "hide_deep"})
    modules.push_back(dir + "/nfm_rk_" + name + ".ko");
  return modules;
}

// Guests of their own, with the rootkits for their kernel: 6.1 and 5.10 (6.12 needs
// gcc-14, which Debian 12 does not ship; its headers refuse gcc-12's options).
nfm::lab::GuestOptions rootkit_guest(const char* kernel) {
  return {.kernel = kernel,
          .ram_mib = 256,
          .name = std::string(kernel) + "-rootkits",
          .extra_files = rootkits(kernel),
          .exclusive = true};
}

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
    rootkit_guest("6.1"),
    rootkit_guest("5.10"),
});

std::string target_of(const nfm::lab::Guest* g) {
  return "qemu:" + std::to_string(g->pid());
}

// `nfm check --json` of a guest: the exit status and the report. With the guest's
// kernel image (--kernel), so that text_modified runs too, unless `with_image` is false.
struct Checked {
  int status = -1;
  json report;
  std::string err;
};
Checked check(const nfm::lab::Guest* g, std::vector<std::string> extra = {},
              bool with_image = true) {
  std::vector<std::string> args{"check", "--json"};
  if (with_image) args.insert(args.end(), {"--kernel", g->kernel_dir()});
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(target_of(g));
  CliResult r = run_nfm(args);
  Checked c{r.status, json(), r.err};
  if (!r.out.empty()) c.report = json::parse(r.out, nullptr, false);
  return c;
}

std::vector<json> findings_of(const json& report, const std::string& kind) {
  std::vector<json> out;
  for (const json& f : report.value("findings", json::array()))
    if (f.value("kind", "") == kind) out.push_back(f);
  return out;
}

const std::vector<std::string> kChecks{
    "hidden_process", "hidden_module", "hidden_socket", "syscall_hook",  "idt_hook",
    "proc_hook",      "ftrace_hook",   "kprobe",        "text_modified", "forged_vmcoreinfo"};

// Every check ran and is clean; without the image text_modified is skipped.
void expect_clean(const Checked& c, bool with_image = true) {
  EXPECT_EQ(c.status, 0) << c.err << c.report.dump(1);
  EXPECT_EQ(c.report.value("findings", json::array()), json::array()) << c.report.dump(1);
  ASSERT_TRUE(c.report.contains("checks")) << c.err;
  std::vector<std::string> names;
  for (const json& check : c.report["checks"]) {
    names.push_back(check.value("name", ""));
    EXPECT_EQ(check.value("status", ""),
              !with_image && check["name"] == "text_modified" ? "skipped" : "clean")
        << check.dump();
  }
  EXPECT_EQ(names, kChecks);
}

// Whether /proc/net/tcp{,6} text lists a socket whose local port is `hex_port`
// ("1B59"): the second column ends in it.
bool lists_local_port(const std::string& proc_net, const std::string& hex_port) {
  std::istringstream in(proc_net);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string slot, local;
    fields >> slot >> local;
    if (local.size() > hex_port.size() &&
        local.compare(local.size() - hex_port.size() - 1, std::string::npos, ":" + hex_port) == 0)
      return true;
  }
  return false;
}

class CleanGuest : public testing::TestWithParam<std::string> {};

// Every check runs and finds nothing on the lab's kernels as Debian ships them.
TEST_P(CleanGuest, HasNoFinding) {
  NFM_LAB_GUEST(g, GetParam());
  const Checked c = check(g);
  expect_clean(c);
  // The views were really read: the detail counts what was compared.
  // (A clean kernel usually has no ftrace_ops at all.)
  for (const json& check : c.report["checks"]) {
    if (check["name"] != "ftrace_hook") {
      EXPECT_THAT(check.value("detail", ""), testing::MatchesRegex(".*[1-9][0-9]* .*")) << check;
    }
  }
}

// Without the kernel image the text is not compared, and nfm check says so (the
// other checks still decide the exit status).
TEST_P(CleanGuest, SaysWhatItSkipsWithoutTheImage) {
  NFM_LAB_GUEST(g, GetParam());
  const Checked c = check(g, {}, false);
  expect_clean(c, false);
  for (const json& check : c.report["checks"]) {
    if (check["name"] == "text_modified") {
      EXPECT_EQ(check.value("detail", ""),
                "no kernel image to compare with (pass --kernel DIR or --vmlinux FILE)");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Lab, CleanGuest, testing::Values("5.10", "6.1", "6.1-cloud", "6.12"),
                         nfm::lab::param_name);

// A rootkit guest, step by step: clean while processes churn, then each rootkit.
class Rootkits : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto g = nfm::lab::guest(GetParam());
    ASSERT_TRUE(g.ok()) << g.error().to_string();
    guest_ = *g;
  }
  nfm::lab::Guest* guest_ = nullptr;
  static std::map<std::string, int> hidden_pid_;  // by guest, once hidden
};
std::map<std::string, int> Rootkits::hidden_pid_;

// Processes are created and reaped without pause while the views are read: a task
// caught between the task list and the PID namespace is read again, not reported.
TEST_P(Rootkits, ACleanGuestStaysCleanWhileItForks) {
  ASSERT_TRUE(guest_->send_command("churn nfm-churn").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  ASSERT_NE(guest_->truth().find_process("nfm-churn"), nullptr);
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    // Text does not churn: compared once, not five times.
    expect_clean(check(guest_, {}, i == 0), i == 0);
  }
  ASSERT_TRUE(guest_->send_command("kill nfm-churn").ok());
}

// DKOM: the task is unlinked from the task list and from its struct pid. The guest's
// /proc (ps) no longer lists it; the process tree still holds it.
TEST_P(Rootkits, AHiddenProcessIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty())
      << "testing/guest/build-rootkits.sh " << guest_->options().kernel
      << " failed: run it to see why";
  ASSERT_TRUE(guest_->send_command("spawn nfm-hidden").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  const auto* hidden = guest_->truth().find_process("nfm-hidden");
  ASSERT_NE(hidden, nullptr);
  const int pid = hidden->pid;
  hidden_pid_[GetParam()] = pid;
  ASSERT_TRUE(guest_->send_command(fmt::format("insmod nfm_rk_hide_task.ko pid={}", pid)).ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  // The guest is fooled: /proc has no such pid.
  EXPECT_EQ(guest_->truth().process(pid), nullptr);
  EXPECT_THAT(guest_->truth().section_or("pids"),
              Not(HasSubstr("\n" + std::to_string(pid) + "\n")));
  EXPECT_THAT(guest_->truth().kmsg, Contains(HasSubstr("nfm_rk_hide_task: hid pid")));

  const Checked c = check(guest_, {"--only", "hidden_process"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "hidden_process");
  ASSERT_EQ(found.size(), 1u) << c.report.dump(1);
  const json& e = found[0]["evidence"];
  EXPECT_EQ(found[0]["severity"], "critical");
  EXPECT_EQ(e.value("pid", 0), pid);
  EXPECT_EQ(e.value("comm", ""), "nfm-hidden");
  EXPECT_THAT(e["missing_from"].get<std::vector<std::string>>(),
              testing::IsSupersetOf({"task_list", "pid_namespace"}));
  EXPECT_THAT(e["seen_in"].get<std::vector<std::string>>(), Contains("process_tree"));
  EXPECT_THAT(found[0].value("summary", ""),
              HasSubstr(fmt::format("pid {} (nfm-hidden) is missing from", pid)));
}

// The module unlinks itself from the module list and /sys/module: lsmod does not show
// it; the module address tree still does.
TEST_P(Rootkits, AHiddenModuleIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_hide_module.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg, Contains(HasSubstr("nfm_rk_hide_module: hidden")));
  EXPECT_THAT(guest_->truth().modules, Not(Contains("nfm_rk_hide_module")));
  EXPECT_THAT(guest_->truth().modules, Contains("dummy"));  // the guest's lsmod still works

  const Checked c = check(guest_, {"--only", "hidden_module"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "hidden_module");
  ASSERT_EQ(found.size(), 1u) << c.report.dump(1);
  const json& e = found[0]["evidence"];
  EXPECT_EQ(e.value("module", ""), "nfm_rk_hide_module");
  EXPECT_THAT(e["missing_from"].get<std::vector<std::string>>(),
              testing::UnorderedElementsAre("module_list", "sysfs"));
  EXPECT_THAT(e["seen_in"].get<std::vector<std::string>>(), Contains("address_tree"));
  // nfm lsmod reads the list, as the guest does; nfm check is what sees through it.
  CliResult lsmod = run_nfm({"lsmod", target_of(guest_)});
  EXPECT_THAT(lsmod.out, Not(HasSubstr("nfm_rk_hide_module")));
}

// sys_call_table[__NR_kill] overwritten with the module's handler, CR0.WP lifted.
TEST_P(Rootkits, ASyscallHookIsFoundAndAttributed) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_hook_syscall.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg,
              Contains(HasSubstr("nfm_rk_hook_syscall: sys_call_table[62] hooked")));

  const Checked c = check(guest_, {"--only", "syscall_hook"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "syscall_hook");
  ASSERT_EQ(found.size(), 1u) << c.report.dump(1);
  const json& e = found[0]["evidence"];
  EXPECT_EQ(e.value("table", ""), "sys_call_table");
  EXPECT_EQ(e.value("slot", -1), 62);
  EXPECT_EQ(e.value("expected", ""), "__x64_sys_kill");
  EXPECT_EQ(e.value("module", ""), "nfm_rk_hook_syscall");
  EXPECT_EQ(e.value("points_to", ""), "hooked_kill");
}

// tcp4_seq_ops.show (read-only data) pointed at the module's filter: the guest's
// /proc/net/tcp loses port 7001; nfm's netstat (the socket tables) still has it.
TEST_P(Rootkits, AProcReaderHookIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  const std::string port = "1B59";  // 7001, as /proc/net/tcp writes it
  ASSERT_TRUE(guest_->request_truth().ok());
  ASSERT_TRUE(lists_local_port(guest_->truth().section_or("/proc/net/tcp"), port));
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_hook_proc.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg,
              Contains(HasSubstr("nfm_rk_hook_proc: tcp4_seq_ops.show hooked")));
  EXPECT_FALSE(lists_local_port(guest_->truth().section_or("/proc/net/tcp"), port));

  const Checked c = check(guest_, {"--only", "proc_hook"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "proc_hook");
  ASSERT_EQ(found.size(), 1u) << c.report.dump(1);
  const json& e = found[0]["evidence"];
  EXPECT_EQ(e.value("reader", ""), "/proc/net/tcp");
  EXPECT_EQ(e.value("table", ""), "seq_operations");
  EXPECT_EQ(e.value("member", ""), "show");
  EXPECT_EQ(e.value("table_owner", ""), "kernel");
  EXPECT_EQ(e.value("points_to", ""), "hooked_show");
  EXPECT_EQ(e.value("module", ""), "nfm_rk_hook_proc");
  CliResult netstat = run_nfm({"netstat", "-t", target_of(guest_)});
  EXPECT_THAT(netstat.out, HasSubstr(":7001 "));
}

// tcp6_seq_show hooked through ftrace: the guest's /proc/net/tcp6 loses port 7002;
// the code of tcp6_seq_show is unchanged, the ftrace_ops names it.
TEST_P(Rootkits, AnFtraceHookIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  const std::string port = "1B5A";  // 7002
  ASSERT_TRUE(guest_->request_truth().ok());
  ASSERT_TRUE(lists_local_port(guest_->truth().section_or("/proc/net/tcp6"), port));
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_ftrace.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg, Contains(HasSubstr("nfm_rk_ftrace: tcp6_seq_show hooked")));
  EXPECT_FALSE(lists_local_port(guest_->truth().section_or("/proc/net/tcp6"), port));

  const Checked c = check(guest_, {"--only", "ftrace_hook"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "ftrace_hook");
  ASSERT_EQ(found.size(), 1u) << c.report.dump(1);
  const json& e = found[0]["evidence"];
  EXPECT_EQ(e["functions"], json::array({"tcp6_seq_show"}));
  EXPECT_EQ(e.value("handler", ""), "handler");
  EXPECT_EQ(e.value("module", ""), "nfm_rk_ftrace");
}

// A kprobe on the kill syscall's entry with the module's pre_handler: the syscall's
// code and table are intact, kprobe_table holds the probe.
TEST_P(Rootkits, AKprobeIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_kprobe.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg, Contains(HasSubstr("nfm_rk_kprobe: __x64_sys_kill probed")));

  const Checked c = check(guest_, {"--only", "kprobe"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "kprobe");
  ASSERT_EQ(found.size(), 1u) << c.report.dump(1);
  EXPECT_EQ(found[0]["severity"], "critical");
  const json& e = found[0]["evidence"];
  EXPECT_EQ(e.value("function", ""), "__x64_sys_kill");
  EXPECT_EQ(e.value("module", ""), "nfm_rk_kprobe");
  ASSERT_EQ(e["handlers"].size(), 1u) << e.dump(1);
  EXPECT_EQ(e["handlers"][0].value("member", ""), "pre_handler");
  EXPECT_EQ(e["handlers"][0].value("points_to", ""), "handler_pre");
  EXPECT_THAT(
      found[0].value("summary", ""),
      HasSubstr("kprobe on __x64_sys_kill: pre_handler handler_pre in module nfm_rk_kprobe"));
}

// A listener opened in the kernel (no process, no file) on port 7003, hidden from
// /proc/net/tcp by a second tcp4_seq_ops.show hook: the guest's netstat cannot see
// it; the hash tables hold it, and no file table or /proc reader explains it.
TEST_P(Rootkits, AHiddenListenerIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  const std::string port = "1B5B";  // 7003
  ASSERT_TRUE(guest_->request_truth().ok());
  ASSERT_FALSE(lists_local_port(guest_->truth().section_or("/proc/net/tcp"), port));
  EXPECT_THAT(run_nfm({"netstat", "-t", target_of(guest_)}).out, Not(HasSubstr(":7003 ")));
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_backdoor.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg, Contains(HasSubstr("nfm_rk_backdoor: listening on 7003")));
  EXPECT_FALSE(lists_local_port(guest_->truth().section_or("/proc/net/tcp"), port));
  EXPECT_THAT(run_nfm({"netstat", "-t", target_of(guest_)}).out, HasSubstr(":7003 "));

  const Checked c = check(guest_, {"--only", "hidden_socket,proc_hook"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto hidden = findings_of(c.report, "hidden_socket");
  ASSERT_EQ(hidden.size(), 1u) << c.report.dump(1);
  EXPECT_EQ(hidden[0]["severity"], "critical");
  const json& e = hidden[0]["evidence"];
  EXPECT_EQ(e.value("proto", ""), "tcp");
  EXPECT_EQ(e.value("local_port", 0), 7003);
  EXPECT_EQ(e.value("state", ""), "LISTEN");
  EXPECT_EQ(e.value("pid", -1), 0);
  EXPECT_EQ(e.value("reason", ""), "/proc/net/tcp is hooked");
  EXPECT_THAT(e["missing_from"].get<std::vector<std::string>>(),
              testing::UnorderedElementsAre("file_tables", "proc_net"));
  EXPECT_THAT(e["seen_in"].get<std::vector<std::string>>(), Contains("hash_tables"));
  // The reader's hook is proc_hook's finding: show now leads to the backdoor's filter.
  const auto hooks = findings_of(c.report, "proc_hook");
  ASSERT_EQ(hooks.size(), 1u) << c.report.dump(1);
  EXPECT_EQ(hooks[0]["evidence"].value("points_to", ""), "backdoor_show");
  EXPECT_EQ(hooks[0]["evidence"].value("module", ""), "nfm_rk_backdoor");
}

// udp4_seq_show's first instruction (its ftrace nop) overwritten with a jump to the
// module's filter: the guest's /proc/net/udp loses port 7003; the kernel's text no
// longer matches its image there, and nowhere the kernel patches itself explains it.
// The earlier rootkits' writes to read-only data show too; the ftrace hook's call at
// tcp6_seq_show's entry is ftrace's own and does not.
TEST_P(Rootkits, AnInlineHookIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  const std::string port = "1B5B";  // 7003
  ASSERT_TRUE(guest_->request_truth().ok());
  ASSERT_TRUE(lists_local_port(guest_->truth().section_or("/proc/net/udp"), port));
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_inline_hook.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg,
              Contains(HasSubstr("nfm_rk_inline_hook: udp4_seq_show patched")));
  EXPECT_FALSE(lists_local_port(guest_->truth().section_or("/proc/net/udp"), port));

  const Checked c = check(guest_, {"--only", "text_modified"});
  EXPECT_EQ(c.status, 1) << c.err;
  std::map<std::string, json> by_function;
  for (const json& f : findings_of(c.report, "text_modified"))
    by_function[f["evidence"].value("function", "")] = f;
  ASSERT_TRUE(by_function.contains("udp4_seq_show")) << c.report.dump(1);
  const json& hook = by_function["udp4_seq_show"];
  EXPECT_EQ(hook.value("severity", ""), "critical");
  EXPECT_EQ(hook["evidence"].value("offset", -1), 0);
  EXPECT_EQ(hook["evidence"].value("section", ""), "text");
  EXPECT_EQ(hook["evidence"].value("target_name", ""), "hooked_udp_show");
  EXPECT_EQ(hook["evidence"].value("module", ""), "nfm_rk_inline_hook");
  EXPECT_EQ(hook["evidence"].value("found", "").substr(0, 2), "e9");  // jmp rel32
  EXPECT_THAT(hook.value("summary", ""),
              HasSubstr("kernel text of udp4_seq_show modified at +0x0: 5 bytes, a jump to "
                        "hooked_udp_show (module nfm_rk_inline_hook)"));
  // The syscall table slot and tcp4_seq_ops.show are read-only data.
  ASSERT_TRUE(by_function.contains("sys_call_table")) << c.report.dump(1);
  EXPECT_EQ(by_function["sys_call_table"]["evidence"].value("section", ""), "rodata");
  EXPECT_EQ(by_function["sys_call_table"]["evidence"].value("offset", -1), 62 * 8);  // kill
  ASSERT_TRUE(by_function.contains("tcp4_seq_ops")) << c.report.dump(1);
  EXPECT_EQ(by_function.size(), 3u) << c.report.dump(1);
  CliResult netstat = run_nfm({"netstat", "-u", target_of(guest_)});
  EXPECT_THAT(netstat.out, HasSubstr(":7003 "));
}

// The kernel's own VMCOREINFO (and the note kdump is handed) forged: crash tools
// would look for init_uts_ns a few bytes off. nfm is not misled (it checks every copy
// against the kernel and finds the kernel by its kallsyms instead), names the forged
// key and the copies it passed over, and still reads the right release.
TEST_P(Rootkits, AForgedVmcoreinfoIsFound) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_vmcoreinfo.ko").ok());
  ASSERT_TRUE(guest_->request_truth().ok());
  EXPECT_THAT(guest_->truth().kmsg,
              Contains(HasSubstr("nfm_rk_vmcoreinfo: forged SYMBOL(init_uts_ns)=")));

  const Checked c = check(guest_, {"--only", "forged_vmcoreinfo"});
  EXPECT_EQ(c.status, 1) << c.err;
  const auto found = findings_of(c.report, "forged_vmcoreinfo");
  std::vector<json> critical, warnings;
  for (const json& f : found)
    (f.value("severity", "") == "critical" ? critical : warnings).push_back(f);
  ASSERT_EQ(critical.size(), 1u) << c.report.dump(1);
  const json& keys = critical[0]["evidence"]["keys"];
  ASSERT_EQ(keys.size(), 1u) << keys.dump(1);
  EXPECT_EQ(keys[0].value("key", ""), "SYMBOL(init_uts_ns)");
  EXPECT_NE(keys[0].value("says", ""), keys[0].value("truth", ""));
  // The forged copies (vmcoreinfo_data and the note) were passed over.
  EXPECT_GE(warnings.size(), 1u) << c.report.dump(1);
  for (const json& w : warnings)
    EXPECT_THAT(
        w.value("summary", ""),
        testing::MatchesRegex("a VMCOREINFO at 0x[0-9a-f]+ does not describe the running kernel"));
  CliResult uname = run_nfm({"uname", target_of(guest_)});
  EXPECT_EQ(uname.status, 0) << uname.err;
  EXPECT_THAT(uname.out, HasSubstr(guest_->kernel_release()));
}

// A module that also leaves the module address tree (a second after its init): no
// list, kset or tree names it, yet its struct module lies in module memory, where the
// scan of the module area's pages finds it by its self-reference.
TEST_P(Rootkits, AModuleHiddenFromEveryListIsFoundInItsMemory) {
  ASSERT_FALSE(guest_->options().extra_files.empty());
  ASSERT_TRUE(guest_->send_command("insmod nfm_rk_hide_deep.ko").ok());
  auto kmsg_has = [&](const std::string& text) {
    for (const std::string& line : guest_->truth().kmsg)
      if (line.find(text) != std::string::npos) return true;
    return false;
  };
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(guest_->request_truth().ok());
    if (kmsg_has("nfm_rk_hide_deep: left the module address tree") ||
        kmsg_has("nfm_rk_hide_deep: no mod_tree"))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (kmsg_has("nfm_rk_hide_deep: no mod_tree"))
    GTEST_SKIP() << "this kernel has no module address tree in kallsyms";
  ASSERT_TRUE(kmsg_has("nfm_rk_hide_deep: left the module address tree"));
  EXPECT_THAT(guest_->truth().modules, Not(Contains("nfm_rk_hide_deep")));

  const Checked c = check(guest_, {"--only", "hidden_module"});
  EXPECT_EQ(c.status, 1) << c.err;
  std::vector<json> deep;
  for (const json& f : findings_of(c.report, "hidden_module"))
    if (f["evidence"].value("module", "") == "nfm_rk_hide_deep") deep.push_back(f);
  ASSERT_EQ(deep.size(), 1u) << c.report.dump(1);
  EXPECT_EQ(deep[0]["evidence"]["missing_from"],
            json::array({"module_list", "sysfs", "address_tree"}));
  EXPECT_EQ(deep[0]["evidence"]["seen_in"], json::array({"module_memory"}));
  EXPECT_EQ(deep[0].value("summary", ""),
            "module nfm_rk_hide_deep is missing from the module_list, sysfs and address_tree, "
            "seen in the module_memory");
}

// All at once, as `nfm check` prints them and as frames carry them.
TEST_P(Rootkits, EveryFindingInTextJsonAndFrames) {
  ASSERT_TRUE(hidden_pid_.contains(GetParam())) << "needs AHiddenProcessIsFound first";
  const int pid = hidden_pid_[GetParam()];
  const Checked c = check(guest_);
  EXPECT_EQ(c.status, 1) << c.err;
  std::set<std::string> kinds;
  for (const json& f : c.report["findings"]) kinds.insert(f.value("kind", ""));
  EXPECT_EQ(kinds, (std::set<std::string>{"hidden_process", "hidden_module", "hidden_socket",
                                          "syscall_hook", "proc_hook", "ftrace_hook", "kprobe",
                                          "text_modified", "forged_vmcoreinfo"}));
  for (const json& check : c.report["checks"])
    EXPECT_EQ(check.value("status", ""), check["name"] == "idt_hook" ? "clean" : "findings");

  CliResult text = run_nfm({"check", target_of(guest_)});
  EXPECT_EQ(text.status, 1);
  EXPECT_THAT(text.out,
              HasSubstr(fmt::format("critical: hidden_process: pid {} (nfm-hidden)", pid)));
  EXPECT_THAT(text.out, HasSubstr("critical: hidden_module: module nfm_rk_hide_module"));
  EXPECT_THAT(text.out,
              HasSubstr("critical: syscall_hook: sys_call_table[62] (__x64_sys_kill) points to "
                        "hooked_kill in module nfm_rk_hook_syscall"));

  // The shell's check answers from its snapshot, as nfm check does.
  CliResult shell = run_nfm({"shell", target_of(guest_), "-c", "check"});
  EXPECT_EQ(shell.status, 0) << shell.err;
  EXPECT_THAT(shell.out, HasSubstr("critical: hidden_module: module nfm_rk_hide_module"));

  // nfm top shows them under the VM's header.
  CliResult top = run_nfm({"top", "-b", "-n", "1", target_of(guest_)});
  EXPECT_EQ(top.status, 0) << top.err;
  EXPECT_THAT(top.out, HasSubstr("  check: critical: ftrace_hook: ftrace hook on tcp6_seq_show"));

  CliResult frame = run_nfm({"frame", "--features", "integrity", target_of(guest_)});
  ASSERT_EQ(frame.status, 0) << frame.err;
  const json rows = json::parse(frame.out)["integrity"];
  // No image given here: everything but text_modified's findings.
  EXPECT_EQ(rows.size(),
            c.report["findings"].size() - findings_of(c.report, "text_modified").size())
      << rows.dump(1);
}

TEST_P(Rootkits, AnUnknownCheckIsRefusedByName) {
  CliResult r = run_nfm({"check", "--only", "hidden_process,bogus", target_of(guest_)});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("nfm: error: --only: unknown check 'bogus' (checks: "
                               "hidden_process, hidden_module, hidden_socket, syscall_hook, "
                               "idt_hook, proc_hook, ftrace_hook, kprobe, text_modified, "
                               "forged_vmcoreinfo)"));
}

INSTANTIATE_TEST_SUITE_P(Lab, Rootkits, testing::Values("6.1-rootkits", "5.10-rootkits"),
                         nfm::lab::param_name);

}  // namespace
