// Shared declarations of the guest helpers. Everything is linked into one static
// multi-call binary, /bin/nfm-work; the role is chosen by basename(argv[0]).
// The known workload facts are mirrored in testing/lab/workload.h: keep both in sync.
#pragma once
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/types.h>

// A growable byte buffer: sections are built in memory and written with one write().
typedef struct {
  char* data;
  size_t len, cap;
} buf_t;

void buf_add(buf_t* b, const void* p, size_t n);
void buf_str(buf_t* b, const char* s);
void buf_fmt(buf_t* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_file(buf_t* b, const char* path);  // appends a file's content; -1 if unreadable

void die(const char* what);
void set_name(const char* comm);  // prctl(PR_SET_NAME)
void signal_ready(void);          // tells the launcher this role is set up (fd 3)
void sleep_forever(void) __attribute__((noreturn));
const char* cmdline_param(const char* key);  // value of key=... on /proc/cmdline, or NULL

// "serve NAME PROTO PORT" or "dial NAME PROTO ADDR PORT" (PROTO: tcp, tcp6, udp,
// udp6): forks a peer named NAME, returns its pid once it listens or is connected,
// -1 on failure (peers.c).
pid_t peer_start(const char* command);

// Forks a child named `name` that plants marker strings tagged `tag` (with `swap`: one
// in a page it has swapped out) and stays; appends where they lie to `report`
// (markers.c). Returns its pid, -1 on failure.
pid_t markers_start(const char* name, const char* tag, int swap, buf_t* report);

int role_report(int argc, char** argv);
int role_sleep(int argc, char** argv);
int role_threads(int argc, char** argv);
int role_files(int argc, char** argv);
int role_bigalloc(int argc, char** argv);
int role_burn(int argc, char** argv);
int role_net(int argc, char** argv);
int role_crowd(int argc, char** argv);
