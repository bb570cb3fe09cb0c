// The lab's ground-truth parser, on a small hand-written reporter dump.
#include <gtest/gtest.h>

#include "ground_truth.h"

namespace {

using nfm::lab::parse_ground_truth;

std::string section(const std::string& name, const std::string& content) {
  return "==NFM== begin " + name + "\n" + content + "==NFM== end " + name + "\n";
}

std::string sample_dump(int seq, const std::string& comm) {
  std::string d = "==NFM== dump " + std::to_string(seq) + "\n";
  d += section("uname",
               "sysname=Linux\nnodename=nfm-guest\nrelease=6.1.0-56-cloud-amd64\nversion=#1 "
               "SMP\nmachine=x86_64\ndomainname=nfm.test\n");
  d += section("hostname", "nfm-guest\n");
  d += section("pids", "1\n2\n42\n");
  d += section("/proc/1/stat",
               "1 (nfm-init) S 0 1 1 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 1 0 5 1134592 176 x\n");
  d += section("/proc/1/status",
               "Name:\tnfm-init\nTgid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nVmSize:\t    1108 "
               "kB\nVmRSS:\t     704 kB\n");
  d += section("hex /proc/1/cmdline", "2f62696e2f6e666d2d696e697400\n");
  d += section("/proc/1/task/1/stat", "1 (nfm-init) S 0 1 1 0\n");
  d += section("/proc/2/stat",
               "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0 x\n");
  d += section("/proc/2/status", "Name:\tkthreadd\nTgid:\t2\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n");
  d += section("hex /proc/2/cmdline", "");
  d += section("/proc/2/task/2/stat", "2 (kthreadd) S 0 0 0 0\n");
  // A comm with a space and a parenthesis, and two threads.
  d += section(
      "/proc/42/stat",
      "42 (" + comm + ") R 1 42 42 0 -1 4194304 0 0 0 0 7 3 0 0 39 19 2 0 99 2000000 5 x\n");
  d += section("/proc/42/status",
               "Name:\tx\nTgid:\t42\nUid:\t1000\t1001\t1000\t1000\nGid:"
               "\t1002\t1003\t1002\t1002\nVmSize:\t   33892 kB\nVmRSS:\t       4 kB\n");
  d += section("hex /proc/42/cmdline", "610062006300\n");  // "a\0b\0c\0"
  d += section("/proc/42/links", "exe -> /bin/nfm-work\ncwd -> /\nroot -> /\n");
  d += section("/proc/42/fd", "0 -> /dev/console\n10 -> /etc/nfm-known.txt\n12 -> pipe:[777]\n");
  d += section("/proc/42/fdinfo/10", "pos:\t7\nflags:\t0102002\nmnt_id:\t1\n");
  d += section("/proc/42/task/42/stat", "42 (" + comm + ") R 1\n");
  d += section("/proc/42/task/43/stat", "43 (nfm-thr-1) S 1\n");
  d += section("/proc/net/tcp",
               "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
               "timeout inode\n"
               "   0: 00000000:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  "
               "      0 10266 1 x\n"
               "   1: 0100007F:1B5D 0100007F:1B59 01 00000000:00000000 00:00000000 00000000  1000  "
               "      0 10270 1 x\n");
  d += section("/proc/net/tcp6",
               "  sl  local_address                         remote_address                        "
               "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
               "   0: 00000000000000000000000001000000:1B5A 00000000000000000000000000000000:0000 "
               "0A 00000000:00000000 00:00000000 00000000     0        0 10267 1 x\n");
  d += section("/proc/net/unix",
               "Num       RefCount Protocol Flags    Type St Inode Path\n"
               "0000000000000000: 00000002 00000000 00010000 0001 01 10274 /tmp/nfm.sock\n"
               "0000000000000000: 00000002 00000000 00010000 0001 01 10275 @nfm-abstract\n"
               "0000000000000000: 00000003 00000000 00000000 0001 03 10276\n");
  d += section("ifaddrs",
               "lo index=1 link 00:00:00:00:00:00 flags=0x10049\neth0 index=2 link "
               "52:54:00:12:34:56 flags=0x11043\n"
               "eth0 inet 10.0.2.15/24\neth0 inet6 fd00::15/64\n");
  d += section(
      "/proc/modules",
      "dummy 16384 0 - Live 0xffffffffc050e000\nvirtio_net 73728 0 - Live 0xffffffffc0523000\n");
  d += section("kallsyms", "ffffffff88000000 T _text\nffffffff89a1aa40 D init_task\n");
  d += section("/dev/kmsg",
               "5,0,0,-;Linux version 6.1.0\n SUBSYSTEM=x\n6,1,10,-;Command line: quiet\n");
  d += "==NFM== ready " + std::to_string(seq) + "\n";
  return d;
}

TEST(GroundTruth, ParsesTheLastCompleteDump) {
  std::string log = "garbage before\n" + sample_dump(1, "old") +
                    section("snapshot", "uptime 1.0 0.5\n") + sample_dump(2, "we(i)rd name") +
                    "==NFM== dump 3\n==NFM== begin uname\nsysname=Linux\n";  // 3 is cut short
  auto t = parse_ground_truth(log);
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  EXPECT_EQ(t->seq, 2u);
  EXPECT_EQ(t->uname.release, "6.1.0-56-cloud-amd64");
  EXPECT_EQ(t->uname.domainname, "nfm.test");
  EXPECT_EQ(t->hostname, "nfm-guest");
  ASSERT_EQ(t->processes.size(), 3u);

  const auto* init = t->process(1);
  ASSERT_NE(init, nullptr);
  EXPECT_EQ(init->comm, "nfm-init");
  EXPECT_EQ(init->args, std::vector<std::string>{"/bin/nfm-init"});
  EXPECT_EQ(init->vsz_kb, 1108u);
  EXPECT_EQ(init->rss_kb, 704u);
  EXPECT_FALSE(init->kernel_thread);
  EXPECT_TRUE(t->process(2)->kernel_thread);
  EXPECT_TRUE(t->process(2)->args.empty());

  const auto* p = t->find_process("we(i)rd name");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->pid, 42);
  EXPECT_EQ(p->ppid, 1);
  EXPECT_EQ(p->state, 'R');
  EXPECT_EQ(p->nice, 19);
  EXPECT_EQ(p->start_time, 99u);
  EXPECT_EQ(p->utime, 7u);
  EXPECT_EQ(p->uid, 1000u);
  EXPECT_EQ(p->euid, 1001u);
  EXPECT_EQ(p->gid, 1002u);
  EXPECT_EQ(p->args, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(p->exe, "/bin/nfm-work");
  EXPECT_EQ(p->tids, (std::vector<int>{42, 43}));
  ASSERT_EQ(p->fds.size(), 3u);
  EXPECT_EQ(p->fds.at(10).target, "/etc/nfm-known.txt");
  EXPECT_EQ(p->fds.at(10).pos, 7u);
  EXPECT_EQ(p->fds.at(10).flags, 0102002u);
  EXPECT_FALSE(p->fds.at(12).pos.has_value());
  EXPECT_EQ(t->threads.at(43).comm, "nfm-thr-1");
  EXPECT_EQ(t->threads.at(43).tgid, 42);
  EXPECT_EQ(t->find_process("old"), nullptr);

  ASSERT_EQ(t->inet_sockets.size(), 3u);
  EXPECT_EQ(t->inet_sockets[0].local_addr, "0.0.0.0");
  EXPECT_EQ(t->inet_sockets[0].local_port, 7001);
  EXPECT_EQ(t->inet_sockets[0].state, 10);
  EXPECT_EQ(t->inet_sockets[1].local_addr, "127.0.0.1");
  EXPECT_EQ(t->inet_sockets[1].remote_port, 7001);
  EXPECT_EQ(t->inet_sockets[1].uid, 1000u);
  EXPECT_EQ(t->inet_sockets[2].proto, "tcp6");
  EXPECT_EQ(t->inet_sockets[2].local_addr, "::1");
  ASSERT_EQ(t->unix_sockets.size(), 3u);
  EXPECT_EQ(t->unix_sockets[1].path, "@nfm-abstract");
  EXPECT_EQ(t->unix_sockets[0].flags, 0x10000u);
  EXPECT_EQ(t->unix_sockets[2].path, "");
  EXPECT_EQ(t->unix_sockets[2].state, 3);

  const auto* eth0 = t->find_interface("eth0");
  ASSERT_NE(eth0, nullptr);
  EXPECT_EQ(eth0->index, 2);
  EXPECT_EQ(eth0->mac, "52:54:00:12:34:56");
  EXPECT_EQ(eth0->inet, std::vector<std::string>{"10.0.2.15/24"});
  EXPECT_EQ(eth0->inet6, std::vector<std::string>{"fd00::15/64"});
  EXPECT_EQ(t->modules, (std::vector<std::string>{"dummy", "virtio_net"}));
  EXPECT_EQ(t->kallsyms.at("_text"), 0xffffffff88000000u);
  EXPECT_EQ(t->kmsg, (std::vector<std::string>{"Linux version 6.1.0", "Command line: quiet"}));
  ASSERT_NE(t->section("/proc/42/fdinfo/10"), nullptr);
  EXPECT_EQ(t->section_or("nope", "x"), "x");
}

TEST(GroundTruth, StripsCarriageReturns) {
  std::string dump = sample_dump(1, "c");
  std::string crlf;
  for (char c : dump) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  auto t = parse_ground_truth(crlf);
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  EXPECT_EQ(t->hostname, "nfm-guest");
  EXPECT_EQ(*t->section("hostname"), "nfm-guest\n");
}

TEST(GroundTruth, RejectsIncompleteText) {
  EXPECT_FALSE(parse_ground_truth("").ok());
  EXPECT_FALSE(parse_ground_truth("==NFM== dump 1\n==NFM== begin uname\nx\n").ok());
  EXPECT_FALSE(parse_ground_truth("==NFM== ready 4\n").ok());  // no matching dump start
}

TEST(GroundTruth, ProcNetAddresses) {
  EXPECT_EQ(nfm::lab::proc_net_address("0100007F"), "127.0.0.1");
  EXPECT_EQ(nfm::lab::proc_net_address("0F02000A"), "10.0.2.15");
  EXPECT_EQ(nfm::lab::proc_net_address("0000000000000000000000000000000000"),
            "0000000000000000000000000000000000");
  EXPECT_EQ(nfm::lab::proc_net_address("000000FD000000000000000015000000"), "fd00::15");
}

TEST(GroundTruth, SerialDoubledBytesAreToleratedAndNothingElse) {
  using nfm::lab::same_but_serial_doubles;
  EXPECT_TRUE(same_but_serial_doubles("/bin/nfm-work", "/bin/nfm-work"));
  EXPECT_TRUE(same_but_serial_doubles("/biin/nfm-work", "/bin/nfm-work"));
  EXPECT_TRUE(same_but_serial_doubles("rr--pp", "r--p"));
  EXPECT_FALSE(same_but_serial_doubles("rr--pp", "r--p", 1));                // more than allowed
  EXPECT_FALSE(same_but_serial_doubles("/bin/nfm-wrk", "/bin/nfm-work"));    // a byte lost
  EXPECT_FALSE(same_but_serial_doubles("/bin/nfm-wxork", "/bin/nfm-work"));  // a new byte
  EXPECT_FALSE(same_but_serial_doubles("/bin/nfm-work", "/bin/nfm-worx"));   // changed
  EXPECT_FALSE(same_but_serial_doubles("/bin/nfm-workk", "/bin/nfm-work/"));
}

}  // namespace
