// `sockets`' section of a frame: TCP, UDP and UNIX sockets like netstat -tuxanp.
// Row types and columns only: no kernel model here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/walk_result.h"
#include "schema/fields.h"

namespace nfm {

struct SocketRow {
  std::string proto;  // "tcp", "tcp6", "udp", "udp6", "unix"
  // netstat's words: TCP "LISTEN", "ESTABLISHED", "TIME_WAIT", ...; UDP "" (unconnected)
  // or "ESTABLISHED"; UNIX "LISTENING", "CONNECTED", "" (unconnected), ...
  std::string state;
  // The number /proc/net prints in its "st" column: TCP_* for inet sockets
  // (request sockets as SYN_RECV, time-wait ones by their substate), SS_* for UNIX.
  int state_code = 0;
  std::string local_addr, remote_addr;  // inet_ntop text: "127.0.0.1", "::", "::ffff:10.0.2.15"
  uint16_t local_port = 0, remote_port = 0;
  uint64_t inode = 0;  // sock_i_ino(): 0 for sockets without a struct socket (time-wait, request)
  uint32_t uid = 0;    // sock_i_uid(): the socket inode's owner
  // /proc/net's tx_queue:rx_queue. TCP: write_seq - snd_una and rcv_nxt - copied_seq
  // (listeners: rx = accept backlog); UDP: allocated send and receive memory.
  uint32_t rx_queue = 0, tx_queue = 0;
  // UNIX only.
  std::string path;       // "/tmp/x", "@abstract" (NULs shown as '@', like /proc), "" unnamed
  std::string type;       // "STREAM", "DGRAM", "SEQPACKET", ... (netstat's words)
  int type_code = 0;      // SOCK_* (/proc/net/unix "Type")
  uint32_t flags = 0;     // /proc/net/unix "Flags": __SO_ACCEPTCON (0x10000) for listeners
  uint32_t refcount = 0;  // sk_refcnt (/proc/net/unix "RefCount")
  // The owning process (lowest pid holding a file for the socket), as netstat -p.
  int32_t pid = 0;  // 0: none found (kernel sockets, time-wait, embryos)
  std::string comm;
  uint64_t sock = 0;  // struct sock (or inet_timewait_sock, request_sock) address
  uint64_t net = 0;   // its struct net (0 without CONFIG_NET_NS); not a column
};

// How one hash table walk went: every bucket's chain walked, bounded.
struct HashWalk {
  bool read = false;           // the table itself was found and readable
  uint64_t buckets = 0;        // buckets visited
  uint64_t nodes = 0;          // chain nodes seen (every netns, every family)
  uint64_t broken_chains = 0;  // chains that ended early (limit, cycle, bad pointer, moved)
  WalkEnd first_error = WalkEnd::complete;
  bool ok() const { return read && broken_chains == 0; }
};

struct SocketOptions {
  bool tcp = true, udp = true, unix_sockets = true;
  bool owners = true;            // look up the owning processes (walks every fd table)
  size_t max_buckets = 1 << 24;  // per table (ehash is sized by RAM: 2^16-2^21 typically)
  size_t max_chain = 1 << 16;    // nodes per bucket chain
  size_t max_sockets = 1 << 20;  // rows in all
  // TCP and UDP sockets of every network namespace, not only init_net's (what
  // netstat in the guest's first namespace shows): for the rootkit checks.
  bool every_netns = false;
};

struct SocketList {
  static constexpr std::string_view kFeature = "sockets";
  std::vector<SocketRow> rows;  // tcp, tcp6, udp, udp6, unix; each in table order
  HashWalk tcp_listen, tcp_established, udp, unix_table;
  uint64_t row_errors = 0;    // sockets skipped because a read failed
  uint64_t inode_errors = 0;  // sockets whose inode could not be read (inode 0)
  // Owner lookup (SocketOptions::owners).
  bool owners_read = false;
  uint64_t owner_errors = 0;  // tasks whose fd table could not be read, or failed lookups
  std::string owners_error;   // why the lookup did not run at all
};

// netstat's name for a TCP state number ("LISTEN" for 10), or "UNKNOWN".
const char* tcp_state_name(int state);

// A bound UNIX socket's name as /proc/net/unix prints it, from the sun_path bytes
// its unix_address holds (addr->len minus sun_family): a path loses its
// terminating NUL, an abstract name's leading NUL becomes '@', and any other NUL
// prints as '@' too.
std::string unix_socket_path(std::string_view sun_path);

const schema::Fields<SocketRow>& socket_fields();

}  // namespace nfm
