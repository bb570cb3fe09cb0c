// nfm-report: writes the guest's own view of itself to /dev/ttyS1 (the host's ground
// truth). Format, one section at a time, each written with a single write():
//   ==NFM== begin NAME\n CONTENT (always ends with \n) ==NFM== end NAME\n
// A full view is framed by "==NFM== dump SEQ" ... "==NFM== ready SEQ". Between dumps a
// "snapshot" section comes every nfm.snapshot=SEC seconds (default 2, 0 = off). Commands
// read from the port: "dump" (a new full view), "ping" (answers "==NFM== pong"),
// "crash" (panics the kernel through SysRq c), "perf SECS" (a CPU- and memory-bound
// loop for SECS seconds; answers "==NFM== perf OPS_PER_SECOND CHECK"), "timewait" (one
// TIME_WAIT socket, see make_timewait()).
// "spawn NAME" starts a sleeping child named NAME (answers "==NFM== spawned NAME PID"),
// "kill NAME" kills and reaps it ("==NFM== killed NAME PID"): known processes that come
// and go, for the time-travel tests. "files" adds a "files" section to every later dump:
// a few directories' entries with their lstat() and, for regular files, an FNV-1a 64
// checksum (opt-in: it lengthens the dump by ~10 KB of serial output).
// "serve NAME PROTO PORT" and "dial NAME PROTO ADDR PORT" start a network peer named
// NAME that listens, or connects to another guest, answering "==NFM== peer NAME PID"
// (PID 0: it failed); "kill NAME" ends it too (peers.c).
// "swap" turns on swap on zram (its modules are in /lib/modules, order in
// /etc/nfm-modules-swap), answering "==NFM== swap STATUS". "markers NAME TAG [swap]"
// starts a child named NAME that plants marker strings in its memory and the kernel
// log (markers.c); from then on every dump has a "markers" section: "NAME PID" and
// where each marker lies.
// "churn NAME" starts a child that forks and reaps short-lived children without pause
// ("kill NAME" ends it); "insmod FILE ARGS" loads a test module from /lib/nfm-extra
// (answers "==NFM== insmod FILE STATUS").
// Apart from spawn, churn, insmod, swap, markers and the peers, it never forks, so the guest's task set stays stable once the first
// dump is ready.
#include "nfm.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int tty = 1;  // stdout when not on the serial port (manual runs)
static buf_t kallsyms;  // selected /proc/kallsyms lines, read once: they do not change

static void write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(tty, p, n);
    if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (w <= 0) return;
    p += w, n -= (size_t)w;
  }
}

static void emit(const char* name, buf_t* content) {
  buf_t out = {0};
  buf_fmt(&out, "==NFM== begin %s\n", name);
  if (content->len) buf_add(&out, content->data, content->len);
  if (content->len && content->data[content->len - 1] != '\n') buf_str(&out, "\n");
  buf_fmt(&out, "==NFM== end %s\n", name);
  write_all(out.data, out.len);
  free(out.data);
  content->len = 0;
}

static void emit_file(const char* path) {
  buf_t b = {0};
  if (buf_file(&b, path) == 0) emit(path, &b);
  free(b.data);
}

static void emit_hex_file(const char* path) {
  buf_t raw = {0}, hex = {0};
  if (buf_file(&raw, path) < 0) return;
  for (size_t i = 0; i < raw.len; i++) buf_fmt(&hex, "%02x", (unsigned char)raw.data[i]);
  char name[300];
  snprintf(name, sizeof name, "hex %s", path);
  emit(name, &hex);
  free(raw.data), free(hex.data);
}

static int is_number(const char* s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

static int cmp_num(const struct dirent** a, const struct dirent** b) {
  return atol((*a)->d_name) - atol((*b)->d_name);
}

static int numeric_entry(const struct dirent* d) { return is_number(d->d_name); }

// The numeric entries of DIR in ascending order; returns the count (free with free_list).
static int list_numeric(const char* dir, struct dirent*** out) {
  int n = scandir(dir, out, numeric_entry, cmp_num);
  return n < 0 ? 0 : n;
}

static void free_list(struct dirent** list, int n) {
  for (int i = 0; i < n; i++) free(list[i]);
  free(list);
}

static void emit_uname(void) {
  struct utsname u;
  uname(&u);
  buf_t b = {0};
  buf_fmt(&b, "sysname=%s\nnodename=%s\nrelease=%s\nversion=%s\nmachine=%s\ndomainname=%s\n",
          u.sysname, u.nodename, u.release, u.version, u.machine, u.domainname);
  emit("uname", &b);
  char host[256] = "";
  gethostname(host, sizeof host);
  buf_fmt(&b, "%s\n", host);
  emit("hostname", &b);
  free(b.data);
}

// "ip addr": one line per address, "IFNAME index=N link MAC flags=0x..", "IFNAME inet A/P".
static void emit_ifaddrs(void) {
  struct ifaddrs* ifa;
  if (getifaddrs(&ifa) < 0) return;
  buf_t b = {0};
  for (struct ifaddrs* i = ifa; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    int fam = i->ifa_addr->sa_family;
    if (fam == AF_PACKET) {
      struct sockaddr_ll* ll = (struct sockaddr_ll*)i->ifa_addr;
      buf_fmt(&b, "%s index=%d link ", i->ifa_name, ll->sll_ifindex);
      for (int k = 0; k < ll->sll_halen; k++) buf_fmt(&b, "%s%02x", k ? ":" : "", ll->sll_addr[k]);
      buf_fmt(&b, "%s flags=0x%x\n", ll->sll_halen ? "" : "-", i->ifa_flags);
    } else if (fam == AF_INET || fam == AF_INET6) {
      char addr[INET6_ADDRSTRLEN] = "", mask[INET6_ADDRSTRLEN] = "";
      const void* a = fam == AF_INET ? (void*)&((struct sockaddr_in*)i->ifa_addr)->sin_addr
                                     : (void*)&((struct sockaddr_in6*)i->ifa_addr)->sin6_addr;
      inet_ntop(fam, a, addr, sizeof addr);
      int prefix = 0;
      if (i->ifa_netmask) {
        const unsigned char* m = fam == AF_INET ? (unsigned char*)&((struct sockaddr_in*)i->ifa_netmask)->sin_addr
                                                : (unsigned char*)&((struct sockaddr_in6*)i->ifa_netmask)->sin6_addr;
        for (int k = 0; k < (fam == AF_INET ? 4 : 16); k++) prefix += __builtin_popcount(m[k]);
      }
      (void)mask;
      buf_fmt(&b, "%s %s %s/%d\n", i->ifa_name, fam == AF_INET ? "inet" : "inet6", addr, prefix);
    }
  }
  freeifaddrs(ifa);
  emit("ifaddrs", &b);
  free(b.data);
}

// The kernel log as /dev/kmsg records ("prio,seq,usec,flags;text").
static void emit_kmsg(void) {
  int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  buf_t b = {0};
  char rec[8192];
  for (;;) {
    ssize_t n = read(fd, rec, sizeof rec);
    if (n < 0 && errno == EPIPE) continue;  // overwritten records: skip ahead
    if (n <= 0) break;
    buf_add(&b, rec, (size_t)n);
  }
  close(fd);
  emit("/dev/kmsg", &b);
  free(b.data);
}

// Addresses that pin down KASLR, read once from /proc/kallsyms.
static void read_kallsyms(void) {
  static const char* const wanted[] = {"_text", "_stext", "_etext", "_end", "init_task", "init_top_pgt",
                                       "swapper_pg_dir", "page_offset_base", "vmalloc_base",
                                       "vmemmap_base", "linux_banner", "init_uts_ns", "phys_base", NULL};
  FILE* f = fopen("/proc/kallsyms", "re");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strchr(line, '[')) break;  // module symbols come last: the core kernel is done
    char* name = strrchr(line, ' ');
    if (!name) continue;
    name++;
    size_t len = strcspn(name, "\n");
    for (int i = 0; wanted[i]; i++)
      if (strlen(wanted[i]) == len && strncmp(name, wanted[i], len) == 0) buf_str(&kallsyms, line);
  }
  fclose(f);
}

static void emit_links(const char* proc) {
  static const char* const names[] = {"exe", "cwd", "root", NULL};
  buf_t b = {0};
  char path[300], target[4096];
  for (int i = 0; names[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", proc, names[i]);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) continue;
    target[n] = 0;
    buf_fmt(&b, "%s -> %s\n", names[i], target);
  }
  snprintf(path, sizeof path, "%s/links", proc);
  emit(path, &b);
  free(b.data);
}

// "/proc/PID/fd": "N -> TARGET" lines, then each /proc/PID/fdinfo/N as its own section.
static void emit_fds(const char* proc) {
  char dir[300], path[600], target[4096];
  snprintf(dir, sizeof dir, "%s/fd", proc);
  struct dirent** list;
  int n = list_numeric(dir, &list);
  buf_t b = {0};
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
    ssize_t len = readlink(path, target, sizeof target - 1);
    if (len < 0) continue;
    target[len] = 0;
    buf_fmt(&b, "%s -> %s\n", list[i]->d_name, target);
  }
  emit(dir, &b);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/fdinfo/%s", proc, list[i]->d_name);
    emit_file(path);
  }
  free_list(list, n);
  free(b.data);
}

static void emit_process(const char* pid) {
  char proc[64], path[300];
  snprintf(proc, sizeof proc, "/proc/%s", pid);
  static const char* const files[] = {"stat", "status", "maps", NULL};
  for (int i = 0; files[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", proc, files[i]);
    emit_file(path);
  }
  snprintf(path, sizeof path, "%s/cmdline", proc);
  emit_hex_file(path);
  emit_links(proc);
  emit_fds(proc);
  snprintf(path, sizeof path, "%s/task", proc);
  struct dirent** tasks;
  int n = list_numeric(path, &tasks);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/task/%s/stat", proc, tasks[i]->d_name);
    emit_file(path);
    snprintf(path, sizeof path, "%s/task/%s/status", proc, tasks[i]->d_name);
    emit_file(path);
  }
  free_list(tasks, n);
}

// A little known traffic before each view, so interface counters are not trivial:
// a datagram to a closed port over lo (its ICMP error comes back over lo too) and one
// out of dummy0; eth0 only the first time (ARP to QEMU's gateway, whose reply comes in).
static void make_traffic(void) {
  static int eth0_done;
  const char* dst[] = {"127.0.0.1", "192.168.77.2", eth0_done ? NULL : "10.0.2.2"};
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  for (int i = 0; i < 3; i++) {
    if (!dst[i]) continue;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, dst[i], &to.sin_addr);
    sendto(s, "nfm-traffic", 11, MSG_DONTWAIT, (struct sockaddr*)&to, sizeof to);
  }
  close(s);
  eth0_done = 1;
}

// Each interface's /sys/class/net/NAME/mtu (ifaddrs has no MTU).
static void emit_net_sysfs(void) {
  DIR* d = opendir("/sys/class/net");
  if (!d) return;
  for (struct dirent* e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[300];
    snprintf(path, sizeof path, "/sys/class/net/%s/mtu", e->d_name);
    emit_file(path);
  }
  closedir(d);
}

// One line per entry: "PATH MODE(octal) NLINK UID GID SIZE MTIME INO MAJOR,MINOR FNV64|-"
// (MAJOR,MINOR: st_rdev, for device files), for each
// listed directory, the directory itself first, then its entries (no . and ..).
static int files_wanted = 0;
static buf_t markers_report;  // the "markers" section, once planted

static void emit_files(void) {
  if (!files_wanted) return;
  static const char* const dirs[] = {"/", "/etc", "/tmp", "/dev", NULL};
  buf_t b = {0};
  for (int i = 0; dirs[i]; i++) {
    struct dirent** list;
    int n = scandir(dirs[i], &list, NULL, alphasort);
    for (int j = -1; j < (n < 0 ? 0 : n); j++) {
      char path[600];
      if (j < 0) {
        snprintf(path, sizeof path, "%s", dirs[i]);
      } else {
        const char* name = list[j]->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s%s%s", dirs[i], dirs[i][1] ? "/" : "", name);
      }
      struct stat st;
      if (lstat(path, &st) < 0) continue;
      buf_fmt(&b, "%s %o %lu %u %u %lld %lld %lu %u,%u ", path, (unsigned)st.st_mode,
              (unsigned long)st.st_nlink, (unsigned)st.st_uid, (unsigned)st.st_gid,
              (long long)st.st_size, (long long)st.st_mtime, (unsigned long)st.st_ino,
              major(st.st_rdev), minor(st.st_rdev));
      buf_t content = {0};
      if (S_ISREG(st.st_mode) && st.st_size <= (1 << 20) && buf_file(&content, path) == 0) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t k = 0; k < content.len; k++) h = (h ^ (unsigned char)content.data[k]) * 0x100000001b3ull;
        buf_fmt(&b, "%016llx\n", (unsigned long long)h);
      } else {
        buf_str(&b, "-\n");
      }
      free(content.data);
    }
    if (n > 0) free_list(list, n);
  }
  emit("files", &b);
  free(b.data);
}

// Children started by "spawn", by name.
static struct {
  char name[16];
  pid_t pid;
} spawned[16];

// Remembers a child for "kill NAME" (killed at once when the table is full): its
// pid, or -1.
static pid_t track(const char* name, pid_t pid) {
  for (int i = 0; pid > 0 && i < 16; i++) {
    if (spawned[i].pid) continue;
    snprintf(spawned[i].name, sizeof spawned[i].name, "%s", name);
    spawned[i].pid = pid;
    return pid;
  }
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return -1;
}

static void spawn(const char* name) {
  char line[96];
  pid_t pid = fork();
  if (pid == 0) {
    set_name(name);
    sleep_forever();
  }
  pid = track(name, pid);
  snprintf(line, sizeof line, "==NFM== spawned %s %d\n", name, pid > 0 ? (int)pid : 0);
  write_all(line, strlen(line));
}

// "churn NAME": a child (at nice 19) that forks short-lived children as fast as it
// can, until "kill NAME". Each child opens a file and binds a UDP socket, then exits
// and is reaped: the task list, the PID namespace, fd tables and the socket tables
// change while nfm reads them.
static void churn(const char* name) {
  char line[96];
  pid_t pid = fork();
  if (pid == 0) {
    set_name(name);
    setpriority(PRIO_PROCESS, 0, 19);
    for (;;) {
      pid_t child = fork();
      if (child == 0) {
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (s >= 0) bind(s, (struct sockaddr*)&addr, sizeof addr);
        open("/proc/self/stat", O_RDONLY);
        _exit(0);
      }
      if (child > 0) waitpid(child, NULL, 0);
    }
  }
  pid = track(name, pid);
  snprintf(line, sizeof line, "==NFM== churn %s %d\n", name, pid > 0 ? (int)pid : 0);
  write_all(line, strlen(line));
}

// "swap": zram swap for "markers ... swap" (MADV_PAGEOUT needs somewhere to put pages).
static void start_swap(void) {
  char line[64];
  int status = system(
      "while read -r ko args; do [ -n \"$ko\" ] && insmod /lib/modules/$ko $args; done "
      "</etc/nfm-modules-swap; echo 32M >/sys/block/zram0/disksize && mkswap /dev/zram0 "
      ">/dev/null && swapon /dev/zram0");
  snprintf(line, sizeof line, "==NFM== swap %d\n", status);
  write_all(line, strlen(line));
}

// "markers NAME TAG [swap]" (markers.c).
static void start_markers(const char* args) {
  char name[16] = "", tag[32] = "", swap[8] = "", line[96];
  sscanf(args, "%15s %31s %7s", name, tag, swap);
  markers_report.len = 0;
  pid_t pid = track(name, markers_start(name, tag, strcmp(swap, "swap") == 0, &markers_report));
  char head[64];
  snprintf(head, sizeof head, "%s %d\n", name, pid > 0 ? (int)pid : 0);
  buf_t report = {0};
  buf_str(&report, head);
  buf_add(&report, markers_report.data, markers_report.len);
  free(markers_report.data);
  markers_report = report;
  snprintf(line, sizeof line, "==NFM== markers %s %d\n", name, pid > 0 ? (int)pid : 0);
  write_all(line, strlen(line));
}

// "serve ..." / "dial ...": a network peer (peers.c), killed like a spawned child.
static void start_peer(const char* command) {
  char name[16] = "", line[128];
  sscanf(command, "%*s %15s", name);
  pid_t pid = track(name, peer_start(command));
  snprintf(line, sizeof line, "==NFM== peer %s %d\n", name, pid > 0 ? (int)pid : 0);
  write_all(line, strlen(line));
}

static void kill_spawned(const char* name) {
  char line[96];
  int pid = 0;
  for (int i = 0; i < 16; i++) {
    if (!spawned[i].pid || strcmp(spawned[i].name, name) != 0) continue;
    pid = spawned[i].pid;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    spawned[i].pid = 0;
    break;
  }
  snprintf(line, sizeof line, "==NFM== killed %s %d\n", name, pid);
  write_all(line, strlen(line));
}

// "insmod FILE [ARGS]": loads the test module /lib/nfm-extra/FILE (GuestOptions::
// extra_files) with busybox insmod; answers "==NFM== insmod FILE STATUS".
static void load_module(const char* args) {
  char command[512], file[128] = "", line[192];
  sscanf(args, "%127s", file);
  snprintf(command, sizeof command, "insmod /lib/nfm-extra/%s", args);
  int status = system(command);
  snprintf(line, sizeof line, "==NFM== insmod %s %d\n", file, status);
  write_all(line, strlen(line));
}

static void dump(unsigned seq) {
  char line[64];
  snprintf(line, sizeof line, "==NFM== dump %u\n", seq);
  write_all(line, strlen(line));
  make_traffic();
  emit_uname();
  static const char* const files[] = {
      "/proc/version", "/proc/cmdline", "/proc/cpuinfo", "/proc/meminfo", "/proc/uptime",
      "/proc/loadavg", "/proc/stat", "/proc/modules", "/proc/iomem", "/proc/mounts",
      "/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6", "/proc/net/unix",
      "/proc/net/dev", "/proc/net/if_inet6", "/proc/net/route", "/proc/net/arp", NULL};
  for (int i = 0; files[i]; i++) emit_file(files[i]);
  emit_ifaddrs();
  emit_net_sysfs();
  emit_files();
  if (markers_report.len) {
    buf_t m = {0};
    buf_add(&m, markers_report.data, markers_report.len);
    emit("markers", &m);
    free(m.data);
  }
  if (!kallsyms.len) read_kallsyms();
  buf_t k = {0};
  buf_add(&k, kallsyms.data ? kallsyms.data : "", kallsyms.len);
  emit("kallsyms", &k);
  free(k.data);
  emit_kmsg();
  struct dirent** pids;
  int n = list_numeric("/proc", &pids);
  buf_t list = {0};
  for (int i = 0; i < n; i++) buf_fmt(&list, "%s\n", pids[i]->d_name);
  emit("pids", &list);
  free(list.data);
  for (int i = 0; i < n; i++) emit_process(pids[i]->d_name);
  free_list(pids, n);
  snprintf(line, sizeof line, "==NFM== ready %u\n", seq);
  write_all(line, strlen(line));
}

// A cheap periodic view: clocks, uptime and the stat line of every task.
static void snapshot(void) {
  buf_t b = {0};
  struct timespec mono, real;
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  buf_fmt(&b, "monotonic %ld.%09ld\nrealtime %ld.%09ld\nuptime ", (long)mono.tv_sec, mono.tv_nsec,
          (long)real.tv_sec, real.tv_nsec);
  buf_file(&b, "/proc/uptime");
  struct dirent** pids;
  int n = list_numeric("/proc", &pids);
  for (int i = 0; i < n; i++) {
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/task", pids[i]->d_name);
    struct dirent** tasks;
    int m = list_numeric(path, &tasks);
    for (int j = 0; j < m; j++) {
      snprintf(path, sizeof path, "/proc/%s/task/%s/stat", pids[i]->d_name, tasks[j]->d_name);
      buf_str(&b, "stat ");
      buf_file(&b, path);
    }
    free_list(tasks, m);
  }
  free_list(pids, n);
  emit("snapshot", &b);
  free(b.data);
}

// "crash": panic the kernel the way an operator's worst day does (SysRq c), so tests
// can prove nfm still reads a dead guest.
static void crash(void) {
  write_all("==NFM== crashing\n", 17);
  int fd = open("/proc/sysrq-trigger", O_WRONLY);
  if (fd >= 0) {
    if (write(fd, "c", 1) != 1) perror("sysrq-trigger");
    close(fd);
  }
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

// "perf SECS": how fast the guest computes while nfm reads it (the guest-side cost of
// monitoring). Each op hashes a word and updates a pseudo-random slot of a 16 MiB
// buffer, so both the CPU and the memory system are exercised. Answers
// "==NFM== perf OPS_PER_SECOND CHECK" measured on the guest's own clock.
static void perf(double seconds) {
  enum { kWords = 16 << 20 >> 3 };
  uint64_t* buf = calloc(kWords, sizeof *buf);
  if (!buf) {
    write_all("==NFM== perf 0\n", 15);
    return;
  }
  uint64_t x = 0x9E3779B97F4A7C15ull, ops = 0;
  const double start = now(), end = start + seconds;
  double t = start;
  while (t < end) {
    for (int i = 0; i < 4096; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[x % kWords] += x;
    }
    ops += 4096;
    t = now();
  }
  char line[64];
  // Print a byte of the buffer's sum too, so the compiler cannot drop the stores.
  uint64_t sum = 0;
  for (int i = 0; i < kWords; i += 4096) sum += buf[i];
  snprintf(line, sizeof line, "==NFM== perf %.0f %u\n", ops / (t - start), (unsigned)(sum & 0xff));
  write_all(line, strlen(line));
  free(buf);
}

// "timewait": leaves one TIME_WAIT socket (it lasts 60 s) for the socket tests: a
// loopback connection whose client closes first. Every fd is closed again before the
// answer "==NFM== timewait CLIENT_PORT SERVER_PORT" (ports 0 on failure).
static void make_timewait(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in c_addr = a;
  socklen_t len = sizeof a;
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, s = -1;
  int ok = l >= 0 && bind(l, (struct sockaddr*)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
           getsockname(l, (struct sockaddr*)&a, &len) == 0;
  if (ok) c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ok = ok && c >= 0 && connect(c, (struct sockaddr*)&a, sizeof a) == 0;
  len = sizeof c_addr;
  ok = ok && getsockname(c, (struct sockaddr*)&c_addr, &len) == 0;
  if (ok) s = accept(l, NULL, NULL);
  ok = ok && s >= 0;
  char b;
  if (c >= 0) close(c);  // the active close: FIN_WAIT, then TIME_WAIT
  if (ok) ok = read(s, &b, 1) == 0;  // the client's FIN
  if (s >= 0) close(s);
  if (l >= 0) close(l);
  usleep(100000);  // the last ACK, over loopback
  char line[80];
  snprintf(line, sizeof line, "==NFM== timewait %u %u\n", ok ? ntohs(c_addr.sin_port) : 0,
           ok ? ntohs(a.sin_port) : 0);
  write_all(line, strlen(line));
}

int role_report(int argc, char** argv) {
  const char* port = argc > 1 ? argv[1] : "/dev/ttyS1";
  if (strcmp(port, "-") != 0) {
    tty = open(port, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty < 0) die(port);
    struct termios t;
    if (tcgetattr(tty, &t) == 0) {
      cfmakeraw(&t);  // no echo, no CR/LF translation, no signals
      cfsetispeed(&t, B115200);
      cfsetospeed(&t, B115200);
      t.c_cc[VMIN] = 1, t.c_cc[VTIME] = 0;
      tcsetattr(tty, TCSANOW, &t);
    }
  }
  const char* v = cmdline_param("nfm.snapshot");
  double period = v ? atof(v) : 2.0;
  unsigned seq = 1;
  dump(seq++);
  if (tty == 1) return 0;  // manual run on stdout: one dump
  char cmd[256];
  size_t cmd_len = 0;
  double next = now() + period;
  for (;;) {
    int timeout = -1;
    if (period > 0) {
      double left = next - now();
      timeout = left > 0 ? (int)(left * 1000) + 1 : 0;
    }
    struct pollfd p = {.fd = tty, .events = POLLIN};
    int r = poll(&p, 1, timeout);
    if (r > 0) {
      char in[256];
      ssize_t n = read(tty, in, sizeof in);
      for (ssize_t i = 0; i < n; i++) {
        if (in[i] == '\n' || in[i] == '\r') {
          cmd[cmd_len] = 0;
          if (strcmp(cmd, "dump") == 0) dump(seq++);
          else if (strcmp(cmd, "ping") == 0) write_all("==NFM== pong\n", 13);
          else if (strcmp(cmd, "crash") == 0) crash();
          else if (strncmp(cmd, "perf ", 5) == 0) perf(atof(cmd + 5));
          else if (strcmp(cmd, "timewait") == 0) make_timewait();
          else if (strncmp(cmd, "spawn ", 6) == 0) spawn(cmd + 6);
          else if (strcmp(cmd, "files") == 0) files_wanted = 1;
          else if (strncmp(cmd, "kill ", 5) == 0) kill_spawned(cmd + 5);
          else if (strncmp(cmd, "insmod ", 7) == 0) load_module(cmd + 7);
          else if (strncmp(cmd, "churn ", 6) == 0) churn(cmd + 6);
          else if (strcmp(cmd, "swap") == 0) start_swap();
          else if (strncmp(cmd, "markers ", 8) == 0) start_markers(cmd + 8);
          else if (strncmp(cmd, "serve ", 6) == 0 || strncmp(cmd, "dial ", 5) == 0)
            start_peer(cmd);
          cmd_len = 0;
        } else if (cmd_len + 1 < sizeof cmd) {
          cmd[cmd_len++] = in[i];
        }
      }
    }
    if (period > 0 && now() >= next) {
      snapshot();
      next = now() + period;
    }
  }
}
