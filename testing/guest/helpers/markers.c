// Marker strings for the scan test: a child of the reporter, named as asked, that
// writes "NFM-MARK-KIND-TAG" into its heap, across a page boundary of its heap, into
// a shared file mapping, onto a thread's stack, into the kernel log (/dev/kmsg) and,
// with swap, into a page it then has the kernel swap out (MADV_PAGEOUT). It reports
// where each one lies, virtual and physical, from its own /proc/self/pagemap:
//   "KIND VA PA" lines (PA 0 when the page is not in RAM; "swapped" after a page
// the guest swapped out), then sleeps with everything in place until killed.
// Each marker is assembled in place from pieces, so that no other copy exists in
// memory (the binary holds "NFM-" and "MARK-" apart, never a whole marker).
#include "nfm.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

static const char* marker_tag;

// Writes the marker of `kind` at `dst` byte by byte from its pieces; returns its length.
static size_t put_marker(volatile char* dst, const char* kind) {
  const char* pieces[] = {"NFM-", "MARK-", kind, "-", marker_tag};
  size_t n = 0;
  for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
    for (const char* p = pieces[i]; *p; p++) dst[n++] = *p;
  return n;
}

// The page-table view of `va` in this process: "PA" (or "0 swapped"/"0 absent").
static void locate(buf_t* out, const char* kind, const volatile void* va) {
  uint64_t entry = 0, addr = (uint64_t)(uintptr_t)va;
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0 || pread(fd, &entry, sizeof entry, (off_t)(addr / 4096 * 8)) != sizeof entry)
    entry = 0;
  if (fd >= 0) close(fd);
  if (entry >> 63) {  // present: bits 0-54 are the frame number (root sees it)
    uint64_t pa = (entry & ((1ull << 55) - 1)) * 4096 + addr % 4096;
    buf_fmt(out, "%s 0x%llx 0x%llx\n", kind, (unsigned long long)addr, (unsigned long long)pa);
  } else {
    buf_fmt(out, "%s 0x%llx 0 %s\n", kind, (unsigned long long)addr,
            (entry >> 62) & 1 ? "swapped" : "absent");
  }
}

static pthread_mutex_t stack_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stack_ready = PTHREAD_COND_INITIALIZER;
static volatile char* stack_marker;

static void* stack_thread(void* arg) {
  (void)arg;
  volatile char on_stack[128];
  on_stack[put_marker(on_stack, "STACK")] = 0;
  pthread_mutex_lock(&stack_lock);
  stack_marker = on_stack;
  pthread_cond_signal(&stack_ready);
  pthread_mutex_unlock(&stack_lock);
  sleep_forever();
}

static void run_markers(int report_fd, int swap) {
  buf_t out = {0};
  // Heap: below glibc's mmap threshold, so in [heap]; every page touched.
  char* heap = malloc(64 * 1024);
  if (!heap) die("malloc");
  memset(heap, 'h', 64 * 1024);
  volatile char* h = heap + 1000;
  h[put_marker(h, "HEAP")] = 0;
  locate(&out, "heap", h);
  // Across a page boundary of the heap: 7 bytes on one page, the rest on the next.
  volatile char* boundary = (char*)(((uintptr_t)heap + 16384) & ~(uintptr_t)4095);
  volatile char* s = boundary - 7;
  s[put_marker(s, "STRADDLE")] = 0;
  locate(&out, "straddle", s);
  locate(&out, "straddle_end", boundary);
  // A shared file mapping, written through the mapping (so no write buffer holds it).
  char path[64];
  snprintf(path, sizeof path, "/tmp/nfm-mark-%s.bin", marker_tag);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, 16384) != 0) die(path);
  char* file = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (file == MAP_FAILED) die("mmap");
  close(fd);
  volatile char* f = file + 8192 + 100;
  f[put_marker(f, "FILE")] = 0;
  locate(&out, "file", f);
  // A thread's stack.
  pthread_t t;
  pthread_create(&t, NULL, stack_thread, NULL);
  pthread_mutex_lock(&stack_lock);
  while (!stack_marker) pthread_cond_wait(&stack_ready, &stack_lock);
  pthread_mutex_unlock(&stack_lock);
  locate(&out, "stack", stack_marker);
  // The kernel log: the buffer is wiped once written.
  int kmsg = open("/dev/kmsg", O_WRONLY);
  if (kmsg >= 0) {
    char line[128];
    size_t n = put_marker(line, "KMSG");
    line[n++] = '\n';
    buf_fmt(&out, "kmsg %s\n", write(kmsg, line, n) == (ssize_t)n ? "written" : "failed");
    explicit_bzero(line, sizeof line);
    close(kmsg);
  }
  // A page the guest swaps out (needs the "swap" command first).
  if (swap) {
    volatile char* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
    if (page == MAP_FAILED) die("mmap");
    page[put_marker(page + 64, "SWAP") + 64] = 0;
    madvise((void*)page, 4096, MADV_PAGEOUT);
    locate(&out, "swap", page + 64);
  }
  buf_str(&out, "end\n");
  if (write(report_fd, out.data, out.len) != (ssize_t)out.len) die("write");
  close(report_fd);
  free(out.data);
  sleep_forever();
}

pid_t markers_start(const char* name, const char* tag, int swap, buf_t* report) {
  int fds[2];
  if (pipe(fds) < 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    set_name(name);
    marker_tag = tag;
    run_markers(fds[1], swap);
  }
  close(fds[1]);
  char chunk[512];
  ssize_t n;
  while ((n = read(fds[0], chunk, sizeof chunk)) > 0) buf_add(report, chunk, (size_t)n);
  close(fds[0]);
  return pid;
}
