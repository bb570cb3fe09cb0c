// Network peers for the topology test: a child of the reporter that serves a port
// or dials another guest, named as asked, so the test knows every connection's
// process on both ends. The reporter's "serve"/"dial" commands start them and
// "kill NAME" ends them (report.c).
#include "nfm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kMaxConnections = 64 };

static int family_of(const char* proto) { return strchr(proto, '6') ? AF_INET6 : AF_INET; }
static int type_of(const char* proto) {
  return strncmp(proto, "udp", 3) == 0 ? SOCK_DGRAM : SOCK_STREAM;
}

// ADDR:PORT (or the wildcard when addr is NULL) as a sockaddr of the proto's family.
static socklen_t make_address(const char* proto, const char* addr, int port,
                              struct sockaddr_storage* out) {
  memset(out, 0, sizeof *out);
  if (family_of(proto) == AF_INET6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*)out;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_any;
    if (addr && inet_pton(AF_INET6, addr, &a->sin6_addr) != 1) return 0;
    return sizeof *a;
  }
  struct sockaddr_in* a = (struct sockaddr_in*)out;
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  a->sin_addr.s_addr = htonl(INADDR_ANY);
  if (addr && inet_pton(AF_INET, addr, &a->sin_addr) != 1) return 0;
  return sizeof *a;
}

// Listens (TCP: accepts and holds every connection until its client closes it;
// UDP: echoes every datagram). Returns only on failure.
static int serve(const char* proto, int port, int ready_fd) {
  int l = socket(family_of(proto), type_of(proto) | SOCK_CLOEXEC, 0);
  int one = 1;
  if (l < 0) return -1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family_of(proto) == AF_INET6) setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  struct sockaddr_storage a;
  socklen_t len = make_address(proto, NULL, port, &a);
  if (bind(l, (struct sockaddr*)&a, len) < 0) return -1;
  if (type_of(proto) == SOCK_STREAM && listen(l, 16) < 0) return -1;
  if (write(ready_fd, "r", 1) != 1) return -1;
  close(ready_fd);
  struct pollfd p[kMaxConnections + 1] = {{.fd = l, .events = POLLIN}};
  int n = 1;
  for (;;) {
    if (poll(p, n, -1) < 0 && errno != EINTR) return -1;
    if (p[0].revents & POLLIN) {
      if (type_of(proto) == SOCK_DGRAM) {
        char buf[512];
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t got = recvfrom(l, buf, sizeof buf, 0, (struct sockaddr*)&from, &from_len);
        if (got > 0) sendto(l, buf, got, 0, (struct sockaddr*)&from, from_len);
      } else {
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (s >= 0 && n <= kMaxConnections) p[n++] = (struct pollfd){.fd = s, .events = POLLIN};
        else if (s >= 0) close(s);
      }
    }
    for (int i = 1; i < n; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[512];
      if (read(p[i].fd, buf, sizeof buf) > 0) continue;
      close(p[i].fd);  // the client hung up: so do we (no CLOSE_WAIT left behind)
      p[i--] = p[--n];
    }
  }
}

// Connects (UDP: connects and waits for the echo of one datagram), then holds the
// connection until killed.
static int dial(const char* proto, const char* addr, int port, int ready_fd) {
  int s = socket(family_of(proto), type_of(proto) | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct timeval timeout = {.tv_sec = 20};
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  struct sockaddr_storage a;
  socklen_t len = make_address(proto, addr, port, &a);
  if (!len || connect(s, (struct sockaddr*)&a, len) < 0) return -1;
  if (type_of(proto) == SOCK_DGRAM) {
    char echo[16];
    if (send(s, "nfm-udp", 7, 0) != 7 || recv(s, echo, sizeof echo, 0) != 7) return -1;
  }
  if (write(ready_fd, "r", 1) != 1) return -1;
  close(ready_fd);
  sleep_forever();
}

pid_t peer_start(const char* command) {
  char name[16], proto[8], addr[64];
  int port = 0;
  int dialing = strncmp(command, "dial ", 5) == 0;
  int fields = dialing ? sscanf(command, "dial %15s %7s %63s %d", name, proto, addr, &port)
                       : sscanf(command, "serve %15s %7s %d", name, proto, &port);
  if (fields != (dialing ? 4 : 3) || port <= 0 || port > 65535) return -1;
  int ready[2];
  if (pipe(ready) < 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    set_name(name);
    dialing ? dial(proto, addr, port, ready[1]) : serve(proto, port, ready[1]);
    _exit(1);
  }
  close(ready[1]);
  char b = 0;
  // The child says when it listens or is connected: a dump after the command sees it.
  ssize_t got = pid > 0 ? read(ready[0], &b, 1) : -1;
  close(ready[0]);
  if (got == 1) return pid;
  if (pid > 0) waitpid(pid, NULL, 0);
  return -1;
}
