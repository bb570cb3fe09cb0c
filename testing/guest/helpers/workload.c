// The workload roles: processes with known names, uids, threads, fds, memory and sockets.
#include "nfm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

// "sleep NN [uid=U]": sleeps forever, optionally as uid/gid U.
int role_sleep(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "uid=", 4) == 0) {
      int id = atoi(argv[i] + 4);
      if (setgid(id) < 0 || setuid(id) < 0) die("setuid");
    }
  }
  signal_ready();
  sleep_forever();
}

static void* thread_main(void* arg) {
  char name[16];
  snprintf(name, sizeof name, "nfm-thr-%ld", (long)(intptr_t)arg);
  set_name(name);
  pause();
  return NULL;
}

// "threads N": N extra threads named nfm-thr-1..N, all sleeping; runs as uid 2000.
int role_threads(int argc, char** argv) {
  int n = argc > 2 ? atoi(argv[2]) : 4;
  if (setgid(2000) < 0 || setuid(2000) < 0) die("setuid");
  for (long i = 1; i <= n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, (void*)(intptr_t)i) != 0) die("pthread_create");
  }
  usleep(100000);  // let the threads name themselves before reporting ready
  signal_ready();
  sleep_forever();
}

static void must_dup(int fd, int want) {
  if (fd < 0) die("open");
  if (fd != want) {
    if (dup2(fd, want) < 0) die("dup2");
    close(fd);
  }
}

// "files KNOWN DATA": known fds: 10 regular file (pos 7), 11 directory /etc, 12/13 a pipe,
// 14 /dev/null, 15 the data file opened O_RDWR|O_APPEND at pos 4660.
int role_files(int argc, char** argv) {
  const char* known = argc > 2 ? argv[2] : "/etc/nfm-known.txt";
  const char* data = argc > 3 ? argv[3] : "/tmp/nfm-data.bin";
  must_dup(open(known, O_RDONLY), 10);
  if (lseek(10, 7, SEEK_SET) < 0) die("lseek");
  must_dup(open("/etc", O_RDONLY | O_DIRECTORY), 11);
  int p[2];
  if (pipe(p) < 0) die("pipe");
  // Move the pipe ends out of the way first so the dup2s can't clobber each other.
  int r = fcntl(p[0], F_DUPFD, 20), w = fcntl(p[1], F_DUPFD, 20);
  close(p[0]);
  close(p[1]);
  must_dup(r, 12);
  must_dup(w, 13);
  if (write(13, "nfm-pipe", 8) != 8) die("write pipe");  // 8 bytes left unread in the pipe
  must_dup(open("/dev/null", O_RDWR), 14);
  must_dup(open(data, O_RDWR | O_APPEND), 15);
  if (lseek(15, 4660, SEEK_SET) < 0) die("lseek");
  signal_ready();
  sleep_forever();
}

// "bigalloc MIB": an anonymous mapping at a fixed address (0x600000000000) where every
// 4 KiB page is the 16-byte line "NFMPAGE:%07u\n" (the page index) repeated 256 times.
int role_bigalloc(int argc, char** argv) {
  size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 64;
  size_t size = mib << 20;
  char* p = mmap((void*)0x600000000000ul, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  // Each line is formatted in place: a copy in a stack buffer could fall on a page
  // boundary and pass for a bigalloc page.
  for (size_t page = 0; page < size / 4096; page++) {
    char* first = p + page * 4096;
    snprintf(first, 17, "NFMPAGE:%07zu\n", page);  // its NUL is overwritten below
    for (int i = 1; i < 256; i++) memcpy(first + i * 16, first, 16);
  }
  signal_ready();
  sleep_forever();
}

// "burn": a busy loop at nice 19, so the reporter still gets the CPU. The kernel
// parameter nfm.burn=PCT (default 100) makes it spin only PCT% of each 100 ms.
int role_burn(int argc, char** argv) {
  (void)argc, (void)argv;
  setpriority(PRIO_PROCESS, 0, 19);
  const char* v = cmdline_param("nfm.burn");
  int pct = v ? atoi(v) : 100;
  signal_ready();
  volatile unsigned long spins = 0;
  for (;;) {
    if (pct >= 100) {
      spins++;
      continue;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
      for (int i = 0; i < 10000; i++) spins++;
      clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < pct);
    usleep((100 - pct) * 1000);
  }
}

static int tcp_listen(int family) {
  int s = socket(family, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  return s;
}

static void bind_any(int s, int family, int port) {
  int rc;
  if (family == AF_INET) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    rc = bind(s, (struct sockaddr*)&a, sizeof a);
  } else {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
    rc = bind(s, (struct sockaddr*)&a, sizeof a);
  }
  if (rc < 0) die("bind");
}

static int unix_listen(const char* path, int abstract) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0) die("socket unix");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  memcpy(a.sun_path + (abstract ? 1 : 0), path, n);
  socklen_t len = offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 0);
  if (!abstract) unlink(path);
  if (bind(s, (struct sockaddr*)&a, len) < 0 || listen(s, 8) < 0) die("bind unix");
  return s;
}

// "net P1 P2 P3 P4": TCP listeners 0.0.0.0:P1 and [::]:P2 (v6only), an ESTABLISHED
// loopback connection 127.0.0.1:7005 -> 127.0.0.1:P1 (both ends kept open), UDP sockets
// on 0.0.0.0:P3 and [::]:P4, UNIX stream listeners /tmp/nfm.sock and @nfm-abstract.
int role_net(int argc, char** argv) {
  int p1 = argc > 2 ? atoi(argv[2]) : 7001, p2 = argc > 3 ? atoi(argv[3]) : 7002;
  int p3 = argc > 4 ? atoi(argv[4]) : 7003, p4 = argc > 5 ? atoi(argv[5]) : 7004;
  int l4 = tcp_listen(AF_INET);
  bind_any(l4, AF_INET, p1);
  int l6 = tcp_listen(AF_INET6);
  bind_any(l6, AF_INET6, p2);
  if (listen(l4, 8) < 0 || listen(l6, 8) < 0) die("listen");

  int c = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(7005), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(c, (struct sockaddr*)&local, sizeof local) < 0) die("bind client");
  struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(p1), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(c, (struct sockaddr*)&peer, sizeof peer) < 0) die("connect");
  int accepted = accept(l4, NULL, NULL);
  if (accepted < 0) die("accept");
  if (write(c, "nfm-hello", 9) != 9) die("write");  // 9 bytes queued unread on the server end

  int u4 = socket(AF_INET, SOCK_DGRAM, 0), u6 = socket(AF_INET6, SOCK_DGRAM, 0);
  setsockopt(u6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  bind_any(u4, AF_INET, p3);
  bind_any(u6, AF_INET6, p4);

  unix_listen("/tmp/nfm.sock", 0);
  unix_listen("nfm-abstract", 1);
  signal_ready();
  sleep_forever();
}

// "nfm-work crowd N" (init.sh, kernel parameter nfm.crowd=N): N sleeping processes
// named nfm-crowd, each holding about what a daemon holds (16 open files, 4 bound
// sockets, 32 mappings with a touched page each), started before the workload. Not
// part of any test's workload: a crowded guest for measuring what a frame costs
// (docs/security.md's budgets). Returns once all are set up.
int role_crowd(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 0;
  int fds[2];
  if (pipe(fds) < 0) die("pipe");
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid > 0) continue;
    set_name("nfm-crowd");
    close(fds[0]);
    for (int f = 0; f < 16; f++) open(f % 2 ? "/proc/self/stat" : "/etc/nfm-known.txt", O_RDONLY);
    for (int s = 0; s < 4; s++) {
      struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      int fd = socket(AF_INET, s % 2 ? SOCK_DGRAM : SOCK_STREAM, 0);
      if (fd >= 0) bind(fd, (struct sockaddr*)&addr, sizeof addr);
    }
    // Alternating protections keep the kernel from merging neighbours into one VMA.
    for (int m = 0; m < 32; m++) {
      char* p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) break;
      p[0] = 1;
      if (m % 2) mprotect(p, 8192, PROT_READ);
    }
    if (write(fds[1], "r", 1) != 1) _exit(1);
    close(fds[1]);
    sleep_forever();
  }
  close(fds[1]);
  int ready = 0;
  char c;
  while (ready < n && read(fds[0], &c, 1) == 1) ready++;
  fprintf(stderr, "nfm-crowd: %d of %d processes ready\n", ready, n);
  return 0;
}
