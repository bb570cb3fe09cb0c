// nfm-work: pid 1 of the test guest (nfm-init), the workload launcher (nfm-start) and
// every workload role, chosen by basename(argv[0]).
#include "nfm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

void buf_add(buf_t* b, const void* p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("realloc");
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

void buf_str(buf_t* b, const char* s) { buf_add(b, s, strlen(s)); }

void buf_fmt(buf_t* b, const char* fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

int buf_file(buf_t* b, const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char tmp[16384];
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf_add(b, tmp, (size_t)n);
  }
  close(fd);
  return 0;
}

void die(const char* what) {
  fprintf(stderr, "nfm-work: %s: %s\n", what, strerror(errno));
  exit(1);
}

void set_name(const char* comm) { prctl(PR_SET_NAME, comm, 0, 0, 0); }

void signal_ready(void) {
  // The launcher passes the write end of a pipe as fd 3 and waits for one byte per role.
  if (write(3, "r", 1) == 1) close(3);
}

void sleep_forever(void) {
  for (;;) pause();
}

const char* cmdline_param(const char* key) {
  static char line[4096];
  static buf_t b;
  if (!b.len && buf_file(&b, "/proc/cmdline") < 0) return NULL;
  snprintf(line, sizeof line, "%s", b.data);
  size_t klen = strlen(key);
  for (char* tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n"))
    if (strncmp(tok, key, klen) == 0 && tok[klen] == '=') return tok + klen + 1;
  return NULL;
}

// The workload: argv of every process, as seen by the guest (argv[0] picks the role).
static const char* const* const workload[] = {
    (const char* const[]){"nfm-sleep-01", "sleep", "01", "uid=1000", NULL},
    (const char* const[]){"nfm-sleep-02", "sleep", "02", "uid=1001", NULL},
    (const char* const[]){"nfm-sleep-03", "sleep", "03", NULL},
    (const char* const[]){"nfm-sleep-04", "sleep", "04", NULL},
    (const char* const[]){"nfm-sleep-05", "sleep", "05", NULL},
    (const char* const[]){"nfm-sleep-06", "sleep", "06", NULL},
    (const char* const[]){"nfm-sleep-07", "sleep", "07", NULL},
    (const char* const[]){"nfm-sleep-08", "sleep", "08", NULL},
    (const char* const[]){"nfm-sleep-09", "sleep", "09", NULL},
    (const char* const[]){"nfm-sleep-10", "sleep", "10", NULL},
    (const char* const[]){"nfm-sleep-11", "sleep", "11", NULL},
    (const char* const[]){"nfm-sleep-12", "sleep", "12", NULL},
    (const char* const[]){"nfm-threads", "threads", "4", NULL},
    (const char* const[]){"nfm-files", "files", "/etc/nfm-known.txt", "/tmp/nfm-data.bin", NULL},
    (const char* const[]){"nfm-bigalloc", "bigalloc", "64", NULL},
    (const char* const[]){"nfm-burn", "burn", NULL},
    (const char* const[]){"nfm-net", "net", "7001", "7002", "7003", "7004", NULL},
};

// Starts every workload process and returns once all of them are set up, so the
// reporter's first dump sees the complete workload.
static int role_start(void) {
  int fds[2];
  if (pipe(fds) < 0) die("pipe");
  size_t n = sizeof workload / sizeof workload[0];
  for (size_t i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(fds[0]);
      if (dup2(fds[1], 3) < 0) die("dup2");
      if (fds[1] != 3) close(fds[1]);
      execv("/bin/nfm-work", (char* const*)workload[i]);
      die("execv");
    }
  }
  close(fds[1]);
  size_t ready = 0;
  char c;
  while (ready < n) {
    ssize_t r = read(fds[0], &c, 1);
    if (r == 1) ready++;
    else if (r < 0 && errno == EINTR) continue;
    else break;  // every role exited or closed fd 3 without reporting
  }
  if (ready < n) fprintf(stderr, "nfm-start: only %zu of %zu roles ready\n", ready, n);
  return 0;  // the roles are orphaned to pid 1, which reaps them
}

static pid_t spawn(const char* path, const char* argv0) {
  pid_t pid = fork();
  if (pid == 0) {
    execl(path, argv0, (char*)NULL);
    die("execl");
  }
  return pid;
}

// pid 1 after /init's setup: starts the workload, then the reporter, then reaps forever.
static int __attribute__((noreturn)) role_init(void) {
  set_name("nfm-init");
  pid_t start = spawn("/bin/nfm-work", "nfm-start");
  int status;
  while (waitpid(start, &status, 0) < 0 && errno == EINTR) {}
  spawn("/bin/nfm-work", "nfm-report");
  for (;;) {
    if (wait(&status) < 0 && errno == ECHILD) pause();
  }
}

int main(int argc, char** argv) {
  const char* base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (argc > 1 && strcmp(base, "nfm-work") == 0) {  // "nfm-work ROLE": for manual use
    argv++, argc--;
    base = argv[0];
  }
  set_name(base);
  if (strcmp(base, "nfm-init") == 0) return role_init();
  if (strcmp(base, "nfm-start") == 0) return role_start();
  if (strcmp(base, "nfm-report") == 0) return role_report(argc, argv);
  if (strncmp(base, "nfm-sleep-", 10) == 0) return role_sleep(argc, argv);
  if (strcmp(base, "nfm-threads") == 0) return role_threads(argc, argv);
  if (strcmp(base, "nfm-files") == 0) return role_files(argc, argv);
  if (strcmp(base, "nfm-bigalloc") == 0) return role_bigalloc(argc, argv);
  if (strcmp(base, "nfm-burn") == 0) return role_burn(argc, argv);
  if (strcmp(base, "nfm-net") == 0) return role_net(argc, argv);
  if (strcmp(base, "crowd") == 0) return role_crowd(argc, argv);
  fprintf(stderr, "nfm-work: unknown role '%s'\n", base);
  return 2;
}
