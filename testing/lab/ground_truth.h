// The guest's own view of itself ("ground truth"), parsed from what the in-guest reporter
// (testing/guest/helpers/report.c) writes to the second serial port. Parsing is a pure
// function of that text, so it is unit-testable and works on saved logs too.
//
// Every raw section stays available by name ("/proc/net/tcp", "/proc/42/maps",
// "hex /proc/42/cmdline", "/dev/kmsg", "uname", ...); the structs below are the parts
// tests need most, parsed once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace nfm::lab {

struct Uname {
  std::string sysname, nodename, release, version, machine, domainname;
};

struct FdInfo {
  std::string target;           // readlink of /proc/PID/fd/N ("/etc/x", "pipe:[123]", "socket:[9]")
  std::optional<uint64_t> pos;  // fdinfo "pos:"
  std::optional<uint32_t> flags;  // fdinfo "flags:" (octal in the file, O_* bits)
};

struct Process {
  int pid = 0, tgid = 0, ppid = 0;
  std::string comm;  // from /proc/PID/stat (raw, up to 15 chars)
  char state = '?';
  uint32_t uid = 0, gid = 0;  // real ids, from status
  uint32_t euid = 0, egid = 0;
  uint64_t vsz_kb = 0, rss_kb = 0;  // status VmSize / VmRSS (0 for kernel threads)
  uint32_t flags = 0;               // task flags (stat field 9)
  int nice = 0;
  uint64_t start_time = 0;  // clock ticks after boot (stat field 22)
  uint64_t utime = 0, stime = 0;
  bool kernel_thread = false;     // PF_KTHREAD
  std::vector<int> tids;          // every thread, the leader included
  std::vector<std::string> args;  // cmdline split at NULs
  std::map<int, FdInfo> fds;
  std::string exe;  // readlink /proc/PID/exe ("" for kernel threads)
};

struct Thread {
  int tid = 0, tgid = 0;
  std::string comm;
  char state = '?';
};

// A row of /proc/net/{tcp,tcp6,udp,udp6}; addresses in text form ("127.0.0.1", "::").
struct InetSocket {
  std::string proto;  // "tcp", "tcp6", "udp", "udp6"
  std::string local_addr, remote_addr;
  uint16_t local_port = 0, remote_port = 0;
  int state = 0;  // TCP_* numbers: 1 ESTABLISHED, 10 LISTEN; 7 for bound UDP
  uint32_t uid = 0;
  uint64_t inode = 0;
};

struct UnixSocket {
  std::string path;    // "/tmp/x", "@abstract" or "" (unnamed)
  int type = 0;        // 1 SOCK_STREAM, 2 SOCK_DGRAM, 5 SOCK_SEQPACKET
  int state = 0;       // 1 unconnected (listeners), 3 connected
  uint32_t flags = 0;  // 0x10000 = listening
  uint64_t inode = 0;
};

struct Interface {
  std::string name;
  int index = 0;
  std::string mac;                       // "52:54:00:12:34:56"
  uint32_t flags = 0;                    // IFF_*
  std::vector<std::string> inet, inet6;  // "10.0.2.15/24", "fd00::15/64"
};

struct GroundTruth {
  unsigned seq = 0;                                          // dump number (1 = the one at boot)
  std::map<std::string, std::string, std::less<>> sections;  // name -> content, \r stripped
  Uname uname;
  std::string hostname;
  std::map<int, Process> processes;  // by pid
  std::map<int, Thread> threads;     // by tid, every thread of every process
  std::vector<InetSocket> inet_sockets;
  std::vector<UnixSocket> unix_sockets;
  std::vector<Interface> interfaces;
  std::vector<std::string> modules;  // names from /proc/modules
  std::map<std::string, uint64_t, std::less<>>
      kallsyms;                   // selected symbols (_text, init_task, ...)
  std::vector<std::string> kmsg;  // kernel log records (text only)

  // A raw section, or nullptr.
  const std::string* section(std::string_view name) const;
  std::string section_or(std::string_view name, std::string fallback = {}) const;
  // The first process whose comm is `comm` (lowest pid), or nullptr; all of them.
  const Process* find_process(std::string_view comm) const;
  std::vector<const Process*> find_processes(std::string_view comm) const;
  const Interface* find_interface(std::string_view name) const;
  const Process* process(int pid) const;
};

// Parses the last complete dump ("==NFM== dump N" .. "==NFM== ready N") in `text`, which
// may be a whole serial log with snapshots and older dumps around it.
Result<GroundTruth> parse_ground_truth(std::string_view text);

// Splits reporter output into sections (name -> content); no framing required.
std::map<std::string, std::string, std::less<>> parse_sections(std::string_view text);

// The guest's truth travels over an emulated serial port that, on a loaded host,
// now and then delivers a byte twice ("/biin/x", "rr--p"). True when `guest` equals
// `ours`, or does once at most `max_extra` such doubled bytes are dropped from it.
// Anything else (a missing, changed or extra byte) is a difference.
bool same_but_serial_doubles(std::string_view guest, std::string_view ours, size_t max_extra = 3);

// A workqueue worker's name ends in what it last ran ("kworker/0:2-events"), which
// changes between the guest's look and ours: the worker itself ("kworker/0:2"); other
// names as they are.
std::string stable_comm(const std::string& comm);

// Text form of a /proc/net address ("0100007F" -> "127.0.0.1", 32 hex digits -> IPv6).
std::string proc_net_address(std::string_view hex);

}  // namespace nfm::lab
