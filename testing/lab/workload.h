// What the test guest runs, as known facts for tests to compare against. The guest side
// is testing/guest/init.sh and testing/guest/helpers/*.c: keep them in sync.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace nfm::lab::workload {

inline constexpr std::string_view hostname = "nfm-guest";
inline constexpr std::string_view domainname = "nfm.test";

// pid 1 (after /init's setup) and the reporter, its child.
inline constexpr std::string_view init_comm = "nfm-init";
inline constexpr std::string_view reporter_comm = "nfm-report";

// nfm-sleep-01 .. nfm-sleep-12, args {comm, "sleep", "NN"[, "uid=U"]}, all children of pid 1.
inline constexpr int sleeper_count = 12;
inline std::string sleeper_comm(int i) {  // i in 1..12
  return std::string("nfm-sleep-") + (i < 10 ? "0" : "") + std::to_string(i);
}
inline constexpr uint32_t sleeper_uid(int i) {
  return i == 1 ? 1000 : i == 2 ? 1001 : 0;
}  // gid equal

// nfm-threads (uid/gid 2000): the leader plus 4 threads named nfm-thr-1 .. nfm-thr-4.
inline constexpr std::string_view threads_comm = "nfm-threads";
inline constexpr int extra_threads = 4;
inline constexpr uint32_t threads_uid = 2000;
inline std::string thread_comm(int i) {
  return "nfm-thr-" + std::to_string(i);
}  // 1..4

// nfm-files: known fds.
inline constexpr std::string_view files_comm = "nfm-files";
inline constexpr std::string_view known_file = "/etc/nfm-known.txt";
inline constexpr std::string_view known_file_content = "nfm known file\nline 2\n";
inline constexpr std::string_view data_file = "/tmp/nfm-data.bin";  // 8192 zero bytes
inline constexpr uint64_t data_file_size = 8192;
inline constexpr int fd_known = 10;  // known_file, O_RDONLY, pos 7
inline constexpr uint64_t fd_known_pos = 7;
inline constexpr int fd_dir = 11;         // "/etc", O_RDONLY|O_DIRECTORY
inline constexpr int fd_pipe_read = 12;   // "pipe:[N]", 8 bytes ("nfm-pipe") unread
inline constexpr int fd_pipe_write = 13;  // the same pipe
inline constexpr int fd_devnull = 14;     // "/dev/null", O_RDWR
inline constexpr int fd_data = 15;        // data_file, O_RDWR|O_APPEND, pos 4660
inline constexpr uint64_t fd_data_pos = 4660;

// nfm-bigalloc: a 64 MiB anonymous private mapping at bigalloc_address; page i holds the
// 16-byte line "NFMPAGE:%07u\n" (i) repeated 256 times.
inline constexpr std::string_view bigalloc_comm = "nfm-bigalloc";
inline constexpr uint64_t bigalloc_address = 0x600000000000;
inline constexpr uint64_t bigalloc_size = 64ull << 20;
inline std::string bigalloc_line(uint32_t page) {
  char line[17];
  std::snprintf(line, sizeof line, "NFMPAGE:%07u\n", page);
  return std::string(line, 16);
}

// nfm-burn: a busy loop at nice 19 (kernel parameter nfm.burn=PCT limits its duty cycle).
inline constexpr std::string_view burn_comm = "nfm-burn";
inline constexpr int burn_nice = 19;

// nfm-net (uid 0).
inline constexpr std::string_view net_comm = "nfm-net";
inline constexpr uint16_t tcp4_listen_port = 7001;  // 0.0.0.0
inline constexpr uint16_t tcp6_listen_port = 7002;  // [::], v6only
inline constexpr uint16_t udp4_port = 7003;         // 0.0.0.0
inline constexpr uint16_t udp6_port = 7004;         // [::], v6only
inline constexpr uint16_t client_port = 7005;       // 127.0.0.1:7005 -> 127.0.0.1:7001, ESTABLISHED
inline constexpr std::string_view unix_path = "/tmp/nfm.sock";
inline constexpr std::string_view unix_abstract = "@nfm-abstract";

// Every workload comm except the sleepers.
inline constexpr std::array<std::string_view, 6> other_comms = {
    threads_comm, files_comm, bigalloc_comm, burn_comm, net_comm, reporter_comm};

// Network set up by /init.
inline constexpr std::string_view eth0_inet = "10.0.2.15/24";
inline constexpr std::string_view eth0_inet6 = "fd00::15/64";
inline constexpr std::string_view dummy0_inet = "192.168.77.1/24";

}  // namespace nfm::lab::workload
