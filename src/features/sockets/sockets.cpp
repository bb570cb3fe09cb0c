#include "features/sockets/sockets.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "features/sockets/socket_owners.h"
#include "kernel/layout.h"

namespace nfm {

namespace {

// User-visible numbers (UAPI, or printed by /proc/net): stable across kernels.
constexpr uint16_t kAfInet = 2, kAfInet6 = 10;
constexpr int kTcpEstablished = 1, kTcpSynRecv = 3, kTcpTimeWait = 6, kTcpClose = 7,
              kTcpListen = 10, kTcpNewSynRecv = 12;
constexpr int kSsUnconnected = 1, kSsConnecting = 2, kSsConnected = 3, kSsDisconnecting = 4;
constexpr uint32_t kSoAcceptCon = 1u << 16;  // __SO_ACCEPTCON
// include/net/af_unix.h: the UNIX table has 512 heads (256 for bound, 256 for
// unbound sockets), whether the global unix_socket_table[2 * UNIX_HASH_SIZE] (< 6.0)
// or the per-netns unix_table.buckets (kvmalloc'd, so BTF cannot size it).
constexpr uint64_t kUnixHashHeads = 512;
constexpr size_t kBucketChunk = 4096;  // bucket heads read per host call

using Slot = FieldSlot;

const char* unix_type_name(int type) {
  switch (type) {
    case 1:
      return "STREAM";
    case 2:
      return "DGRAM";
    case 3:
      return "RAW";
    case 4:
      return "RDM";
    case 5:
      return "SEQPACKET";
    default:
      return "UNKNOWN";
  }
}

// net-tools netstat's unix states (SS_UNCONNECTED is LISTENING for listeners).
const char* unix_state_name(int state, uint32_t flags) {
  switch (state) {
    case 0:
      return "FREE";
    case kSsUnconnected:
      return (flags & kSoAcceptCon) ? "LISTENING" : "";
    case kSsConnecting:
      return "CONNECTING";
    case kSsConnected:
      return "CONNECTED";
    case kSsDisconnecting:
      return "DISCONNECTING";
    default:
      return "UNKNOWN";
  }
}

std::string ntop(int family, const void* bytes) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(family, bytes, text, sizeof text);
  return text;
}

void note_walk(HashWalk& walk, const WalkResult& r) {
  walk.nodes += r.nodes;
  if (r.ok()) return;
  if (walk.broken_chains++ == 0) walk.first_error = r.end;
}

}  // namespace

const char* tcp_state_name(int state) {
  static const char* const names[] = {
      "",      "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
      "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "SYN_RECV"};
  return state > 0 && state <= kTcpNewSynRecv ? names[state] : "UNKNOWN";
}

std::string unix_socket_path(std::string_view sun_path) {
  if (sun_path.empty()) return {};
  // unix_seq_show(): a path's length counts its NUL; an abstract name has none.
  if (sun_path[0] != 0) sun_path.remove_suffix(1);
  std::string out;
  for (char c : sun_path) out += c ? c : '@';
  return out;
}

struct SocketReader::Layout {
  uint64_t init_net = 0;
  // sock_common (the head of every sock, timewait sock and request sock)
  uint64_t common_size = 0;
  Slot daddr, rcv_saddr, dport, num, family, state, net, v6_daddr, v6_rcv_saddr, refcnt, listener;
  uint64_t node = 0;  // skc_node / skc_nulls_node (a union)
  // struct sock, read as one span from 0
  Slot sk_socket, ack_backlog, rmem_alloc, wmem_alloc, sk_type;
  uint64_t sock_span = 0;
  // tcp_sock / udp_sock / inet_timewait_sock / unix_sock
  Slot rcv_nxt, copied_seq, write_seq, snd_una, forward_deficit, tw_substate, unix_addr;
  uint64_t tcp_lo = 0, tcp_hi = 0;
  uint64_t unix_address_len = 0, unix_address_name = 0, sun_path = 0, sockaddr_un_size = 0;
  // struct socket_alloc { socket; vfs_inode; }: SOCK_INODE()
  uint64_t alloc_socket = 0, alloc_inode = 0, inode_ino = 0, inode_uid = 0;
  // TCP: tcp_hashinfo
  uint64_t tcp_hashinfo = 0, ehash = 0, ehash_mask = 0, ehash_stride = 0;
  bool has_listening_hash = false;  // < 5.19: listening_hash[32], every listener
  uint64_t listening_hash = 0, listening_count = 0;
  uint64_t lhash2 = 0, lhash2_mask = 0;  // 5.19+: lhash2 only
  uint64_t listen_stride = 0, listen_head = 0, listen_node = 0;
  // UDP: udp_table
  uint64_t udp_table = 0, udp_hash = 0, udp_mask = 0, hslot_stride = 0, hslot_head = 0;
  // UNIX: the global table (< 6.0) or init_net.unx.table.buckets
  uint64_t unix_heads = 0;        // address of the array, when global
  uint64_t unix_buckets_ptr = 0;  // address of the pointer to it, when per-netns
};

Result<SocketReader> SocketReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto slot = [&](const char* type, const char* path) { return optional_slot(t, type, path); };
  auto require = [&](const char* type, const char* path) { return required_slot(t, type, path); };
  auto offset = [&](const char* type, const char* path) -> Result<uint64_t> {
    NFM_ASSIGN(Field f, t.member(type, path));
    return f.offset;
  };

  NFM_ASSIGN(l.common_size, t.size_of("sock_common"));
  NFM_ASSIGN(l.daddr, require("sock_common", "skc_daddr"));
  NFM_ASSIGN(l.rcv_saddr, require("sock_common", "skc_rcv_saddr"));
  NFM_ASSIGN(l.dport, require("sock_common", "skc_dport"));
  NFM_ASSIGN(l.num, require("sock_common", "skc_num"));
  NFM_ASSIGN(l.family, require("sock_common", "skc_family"));
  NFM_ASSIGN(l.state, require("sock_common", "skc_state"));
  NFM_ASSIGN(l.refcnt, require("sock_common", "skc_refcnt.refs.counter"));
  NFM_ASSIGN(l.node, offset("sock_common", "skc_node"));
  // Absent without CONFIG_NET_NS (one netns) or CONFIG_IPV6.
  l.net = slot("sock_common", "skc_net.net");
  l.v6_daddr = slot("sock_common", "skc_v6_daddr");
  l.v6_rcv_saddr = slot("sock_common", "skc_v6_rcv_saddr");
  l.listener = slot("sock_common", "skc_listener");
  if (l.net.present) {
    NFM_ASSIGN(l.init_net, kernel.symbol("init_net"));
  }

  NFM_ASSIGN(l.sk_socket, require("sock", "sk_socket"));
  NFM_ASSIGN(l.ack_backlog, require("sock", "sk_ack_backlog"));
  NFM_ASSIGN(l.rmem_alloc, require("sock", "sk_backlog.rmem_alloc.counter"));
  NFM_ASSIGN(l.wmem_alloc, require("sock", "sk_wmem_alloc.refs.counter"));
  NFM_ASSIGN(l.sk_type, require("sock", "sk_type"));
  for (const Slot* s : {&l.sk_socket, &l.ack_backlog, &l.rmem_alloc, &l.wmem_alloc, &l.sk_type})
    l.sock_span = std::max(l.sock_span, s->offset + s->size);
  l.sock_span = std::max(l.sock_span, l.common_size);

  NFM_ASSIGN(l.rcv_nxt, require("tcp_sock", "rcv_nxt"));
  NFM_ASSIGN(l.copied_seq, require("tcp_sock", "copied_seq"));
  NFM_ASSIGN(l.write_seq, require("tcp_sock", "write_seq"));
  NFM_ASSIGN(l.snd_una, require("tcp_sock", "snd_una"));
  l.tcp_lo = UINT64_MAX;
  for (const Slot* s : {&l.rcv_nxt, &l.copied_seq, &l.write_seq, &l.snd_una}) {
    l.tcp_lo = std::min(l.tcp_lo, s->offset);
    l.tcp_hi = std::max(l.tcp_hi, s->offset + s->size);
  }
  for (Slot* s : {&l.rcv_nxt, &l.copied_seq, &l.write_seq, &l.snd_una}) s->offset -= l.tcp_lo;
  // udp_rqueue_get() subtracts it (4.20+); older kernels show sk_rmem_alloc alone.
  l.forward_deficit = slot("udp_sock", "forward_deficit");
  NFM_ASSIGN(l.tw_substate, require("inet_timewait_sock", "tw_substate"));

  NFM_ASSIGN(l.alloc_socket, offset("socket_alloc", "socket"));
  NFM_ASSIGN(l.alloc_inode, offset("socket_alloc", "vfs_inode"));
  NFM_ASSIGN(l.inode_ino, offset("inode", "i_ino"));
  NFM_ASSIGN(l.inode_uid, offset("inode", "i_uid"));

  // TCP. 5.19 (cae3873c5b3a "net: inet: Retire port only listening_hash")
  // left lhash2 as the only listener table; before, listening_hash holds them all.
  NFM_ASSIGN(l.tcp_hashinfo, kernel.symbol("tcp_hashinfo"));
  NFM_ASSIGN(l.ehash, offset("inet_hashinfo", "ehash"));
  NFM_ASSIGN(l.ehash_mask, offset("inet_hashinfo", "ehash_mask"));
  NFM_ASSIGN(l.ehash_stride, t.size_of("inet_ehash_bucket"));
  NFM_ASSIGN(l.listen_stride, t.size_of("inet_listen_hashbucket"));
  if (auto lh = t.member("inet_hashinfo", "listening_hash")) {
    NFM_ASSIGN(ArrayInfo a, t.array(lh->type));
    l.has_listening_hash = true;
    l.listening_hash = lh->offset;
    l.listening_count = a.count;
    // Chained by sk_node (hlist) or, later, sk_nulls_node: the same place.
    l.listen_node = l.node;
    auto head = t.member("inet_listen_hashbucket", "nulls_head");
    if (!head) head = t.member("inet_listen_hashbucket", "head");
    if (!head) return head.error();
    l.listen_head = head->offset;
  } else {
    NFM_ASSIGN(l.lhash2, offset("inet_hashinfo", "lhash2"));
    NFM_ASSIGN(l.lhash2_mask, offset("inet_hashinfo", "lhash2_mask"));
    // The same series made lhash2 an hlist_nulls of sk_nulls_node.
    NFM_ASSIGN(l.listen_head, offset("inet_listen_hashbucket", "nulls_head"));
    l.listen_node = l.node;
  }

  // UDP (udp_table: hash[mask + 1] slots of sk_node chains).
  NFM_ASSIGN(l.udp_table, kernel.symbol("udp_table"));
  NFM_ASSIGN(l.udp_hash, offset("udp_table", "hash"));
  NFM_ASSIGN(l.udp_mask, offset("udp_table", "mask"));
  NFM_ASSIGN(l.hslot_stride, t.size_of("udp_hslot"));
  NFM_ASSIGN(l.hslot_head, offset("udp_hslot", "head"));

  // UNIX. 6.0 (cf2f225e2653 "af_unix: Put a socket into a per-netns hash
  // table") keeps them in net->unx.table; before, in unix_socket_table.
  NFM_ASSIGN(l.unix_addr, require("unix_sock", "addr"));
  NFM_ASSIGN(l.unix_address_len, offset("unix_address", "len"));
  NFM_ASSIGN(l.unix_address_name, offset("unix_address", "name"));
  NFM_ASSIGN(l.sun_path, offset("sockaddr_un", "sun_path"));
  NFM_ASSIGN(l.sockaddr_un_size, t.size_of("sockaddr_un"));
  if (auto buckets = t.member("net", "unx.table.buckets")) {
    NFM_ASSIGN(uint64_t init_net, kernel.symbol("init_net"));
    l.unix_buckets_ptr = init_net + buckets->offset;
  } else {
    NFM_ASSIGN(l.unix_heads, kernel.symbol("unix_socket_table"));
  }
  return SocketReader(kernel, std::move(layout));
}

bool SocketReader::in_init_net(std::span<const uint8_t> common) const {
  const Layout& l = *layout_;
  return !l.net.present || load_unsigned(common, l.net) == l.init_net;
}

// Walks `count` bucket heads at `heads` (`stride` bytes apart, the chain head
// first), collecting each node's object address (node - node_offset).
void SocketReader::walk_table(uint64_t heads, uint64_t count, uint64_t stride, uint64_t node_offset,
                              bool check_nulls, HashWalk& walk, const SocketOptions& options,
                              std::vector<uint64_t>& socks) {
  if (!plausible_kernel_pointer(heads) || count == 0 || count > options.max_buckets || stride < 8)
    return;
  walk.read = true;
  std::vector<uint8_t> chunk;
  for (uint64_t first = 0; first < count; first += kBucketChunk) {
    const uint64_t n = std::min<uint64_t>(kBucketChunk, count - first);
    chunk.resize(n * stride);
    if (!kernel_->read(heads + first * stride, chunk.data(), chunk.size())) {
      walk.broken_chains += n;
      if (walk.first_error == WalkEnd::complete) walk.first_error = WalkEnd::bad_pointer;
      continue;
    }
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t head = 0;
      std::memcpy(&head, chunk.data() + i * stride, sizeof head);
      ++walk.buckets;
      if (head == 0 || (head & 1)) continue;  // empty
      uint64_t end = 0;
      auto r = walk_hlist_nulls(
          kernel_->space(), head, options.max_chain,
          [&](uint64_t node) {
            if (socks.size() < options.max_sockets) socks.push_back(node - node_offset);
            return true;
          },
          &end);
      // A lockless reader that ends on another bucket's marker followed a
      // socket that moved: the rest of this chain was not seen.
      if (r.ok() && check_nulls && end != 0 && end != ((first + i) << 1 | 1)) r.end = WalkEnd::torn;
      note_walk(walk, r);
    }
  }
}

bool SocketReader::read_inode(uint64_t socket, SocketRow& row) {
  const Layout& l = *layout_;
  const uint64_t inode = socket - l.alloc_socket + l.alloc_inode;
  auto ino = kernel_->read_value<uint64_t>(inode + l.inode_ino);
  auto uid = kernel_->read_value<uint32_t>(inode + l.inode_uid);
  if (!ino || !uid) return false;
  row.inode = *ino;
  row.uid = *uid;
  return true;
}

bool SocketReader::read_inet(uint64_t sk, bool tcp, SocketRow& row, SocketList& out) {
  const Layout& l = *layout_;
  const std::span<const uint8_t> b(buffer_);
  const auto family = static_cast<uint16_t>(load_unsigned(b, l.family));
  const bool v6 = family == kAfInet6;
  row.proto = std::string(tcp ? "tcp" : "udp") + (v6 ? "6" : "");
  row.sock = sk;
  if (v6 && l.v6_daddr.present) {
    row.local_addr = ntop(AF_INET6, b.data() + l.v6_rcv_saddr.offset);
    row.remote_addr = ntop(AF_INET6, b.data() + l.v6_daddr.offset);
  } else {
    row.local_addr = ntop(AF_INET, b.data() + l.rcv_saddr.offset);
    row.remote_addr = ntop(AF_INET, b.data() + l.daddr.offset);
  }
  row.local_port = static_cast<uint16_t>(load_unsigned(b, l.num));
  row.remote_port = ntohs(static_cast<uint16_t>(load_unsigned(b, l.dport)));
  int state = static_cast<int>(load_unsigned(b, l.state));

  if (tcp && state == kTcpTimeWait) {
    // inet_timewait_sock: only sock_common is shared with struct sock. /proc
    // shows tw_substate (TIME_WAIT, or FIN_WAIT2 for an orphan), no inode, uid 0.
    auto sub = kernel_->read_value<uint8_t>(sk + l.tw_substate.offset);
    if (!sub) return false;
    row.state_code = *sub;
    row.state = tcp_state_name(row.state_code);
    return true;
  }
  if (tcp && state == kTcpNewSynRecv) {
    // A request_sock (embryo): /proc shows SYN_RECV, the listener's uid, no inode.
    row.state_code = kTcpSynRecv;
    row.state = tcp_state_name(kTcpSynRecv);
    const uint64_t listener = load_unsigned(b, l.listener);
    if (listener) {
      auto socket = kernel_->read_pointer(listener + l.sk_socket.offset);
      SocketRow owner;
      if (socket && *socket && read_inode(*socket, owner)) row.uid = owner.uid;
    }
    return true;
  }

  // A full socket: the rest of struct sock.
  buffer_.resize(l.sock_span);
  if (!kernel_->read(sk, buffer_.data(), buffer_.size())) return false;
  const std::span<const uint8_t> s(buffer_);
  state = static_cast<int>(load_unsigned(s, l.state));
  row.state_code = state;
  if (tcp) {
    row.state = tcp_state_name(state);
    std::vector<uint8_t> t(l.tcp_hi - l.tcp_lo);
    if (!kernel_->read(sk + l.tcp_lo, t.data(), t.size())) return false;
    const auto u32 = [&](const Slot& f) { return static_cast<uint32_t>(load_unsigned(t, f)); };
    // get_tcp4_sock(): listeners show their accept backlog.
    if (state == kTcpListen) {
      row.rx_queue = static_cast<uint32_t>(load_unsigned(s, l.ack_backlog));
    } else {
      const auto rx = static_cast<int32_t>(u32(l.rcv_nxt) - u32(l.copied_seq));
      row.rx_queue = rx > 0 ? static_cast<uint32_t>(rx) : 0;
    }
    row.tx_queue = u32(l.write_seq) - u32(l.snd_una);
  } else {
    // netstat: an unconnected UDP socket (TCP_CLOSE) has no state word.
    row.state = state == kTcpEstablished ? "ESTABLISHED" : state == kTcpClose ? "" : "UNKNOWN";
    // udp4_format_sock(): sk_wmem_alloc_get() and udp_rqueue_get().
    row.tx_queue = static_cast<uint32_t>(load_unsigned(s, l.wmem_alloc)) - 1;
    int32_t deficit = 0;
    if (l.forward_deficit.present) {
      auto d = kernel_->read_value<int32_t>(sk + l.forward_deficit.offset);
      if (d) deficit = *d;
    }
    row.rx_queue = static_cast<uint32_t>(load_unsigned(s, l.rmem_alloc)) - deficit;
  }
  const uint64_t socket = load_unsigned(s, l.sk_socket);
  if (socket && !read_inode(socket, row)) ++out.inode_errors;
  return true;
}

bool SocketReader::read_unix(uint64_t sk, SocketRow& row, SocketList& out) {
  const Layout& l = *layout_;
  buffer_.resize(l.sock_span);
  if (!kernel_->read(sk, buffer_.data(), buffer_.size())) return false;
  const std::span<const uint8_t> s(buffer_);
  row.proto = "unix";
  row.sock = sk;
  const int state = static_cast<int>(load_unsigned(s, l.state));
  const uint64_t socket = load_unsigned(s, l.sk_socket);
  row.type_code = static_cast<int>(load_unsigned(s, l.sk_type));
  row.type = unix_type_name(row.type_code);
  row.flags = state == kTcpListen ? kSoAcceptCon : 0;
  row.refcount = static_cast<uint32_t>(load_unsigned(s, l.refcnt));
  // unix_seq_show(): a socket without a struct socket is an embryo or dying.
  const bool established = state == kTcpEstablished;
  row.state_code = socket ? (established ? kSsConnected : kSsUnconnected)
                          : (established ? kSsConnecting : kSsDisconnecting);
  row.state = unix_state_name(row.state_code, row.flags);
  if (socket && !read_inode(socket, row)) ++out.inode_errors;

  auto addr = kernel_->read_pointer(sk + l.unix_addr.offset);
  if (!addr) return false;
  if (*addr) {
    auto len = kernel_->read_value<int32_t>(*addr + l.unix_address_len);
    if (!len) return false;
    const auto n = static_cast<uint64_t>(std::clamp<int64_t>(*len, 0, l.sockaddr_un_size));
    if (n > l.sun_path) {
      std::vector<char> name(n);
      if (!kernel_->read(*addr + l.unix_address_name, name.data(), n)) return false;
      row.path = unix_socket_path(std::string_view(name.data() + l.sun_path, n - l.sun_path));
    }
  }
  return true;
}

Result<SocketList> SocketReader::list(const SocketOptions& options, const ProcessList* tasks) {
  const Layout& l = *layout_;
  SocketList out;
  std::unordered_set<uint64_t> seen;  // a socket moving chains mid-walk is listed once

  std::vector<SocketRow> tcp4, tcp6, udp4, udp6, unix_rows;
  auto collect = [&](const std::vector<uint64_t>& socks, bool tcp) {
    for (uint64_t sk : socks) {
      if (!seen.insert(sk).second) continue;
      buffer_.resize(l.common_size);
      if (!kernel_->read(sk, buffer_.data(), buffer_.size())) {
        ++out.row_errors;
        continue;
      }
      if (!options.every_netns && !in_init_net(buffer_)) continue;
      const auto family = static_cast<uint16_t>(load_unsigned(buffer_, l.family));
      if (family != kAfInet && family != kAfInet6) continue;
      SocketRow row;
      if (l.net.present) row.net = load_unsigned(buffer_, l.net);
      if (!read_inet(sk, tcp, row, out)) {
        ++out.row_errors;
        continue;
      }
      auto& dest = tcp ? (family == kAfInet6 ? tcp6 : tcp4) : (family == kAfInet6 ? udp6 : udp4);
      dest.push_back(std::move(row));
    }
  };

  if (options.tcp) {
    std::vector<uint64_t> socks;
    if (l.has_listening_hash) {
      walk_table(l.tcp_hashinfo + l.listening_hash + l.listen_head, l.listening_count,
                 l.listen_stride, l.listen_node, false, out.tcp_listen, options, socks);
    } else {
      auto lhash2 = kernel_->read_pointer(l.tcp_hashinfo + l.lhash2);
      auto mask = kernel_->read_value<uint32_t>(l.tcp_hashinfo + l.lhash2_mask);
      if (lhash2 && mask)
        walk_table(*lhash2 + l.listen_head, uint64_t{*mask} + 1, l.listen_stride, l.listen_node,
                   false, out.tcp_listen, options, socks);
    }
    collect(socks, true);
    socks.clear();
    auto ehash = kernel_->read_pointer(l.tcp_hashinfo + l.ehash);
    auto mask = kernel_->read_value<uint32_t>(l.tcp_hashinfo + l.ehash_mask);
    if (ehash && mask)
      walk_table(*ehash, uint64_t{*mask} + 1, l.ehash_stride, l.node, true, out.tcp_established,
                 options, socks);
    collect(socks, true);
  }

  if (options.udp) {
    std::vector<uint64_t> socks;
    auto hash = kernel_->read_pointer(l.udp_table + l.udp_hash);
    auto mask = kernel_->read_value<uint32_t>(l.udp_table + l.udp_mask);
    if (hash && mask)
      walk_table(*hash + l.hslot_head, uint64_t{*mask} + 1, l.hslot_stride, l.node, false, out.udp,
                 options, socks);
    collect(socks, false);
  }

  if (options.unix_sockets) {
    std::vector<uint64_t> socks;
    uint64_t heads = l.unix_heads;
    if (l.unix_buckets_ptr) {
      auto p = kernel_->read_pointer(l.unix_buckets_ptr);
      heads = p ? *p : 0;
    }
    walk_table(heads, kUnixHashHeads, 8, l.node, false, out.unix_table, options, socks);
    for (uint64_t sk : socks) {
      if (!seen.insert(sk).second) continue;
      buffer_.resize(l.common_size);
      if (!kernel_->read(sk, buffer_.data(), buffer_.size())) {
        ++out.row_errors;
        continue;
      }
      if (!in_init_net(buffer_)) continue;
      SocketRow row;
      if (read_unix(sk, row, out))
        unix_rows.push_back(std::move(row));
      else
        ++out.row_errors;
    }
  }

  for (auto* part : {&tcp4, &tcp6, &udp4, &udp6, &unix_rows})
    for (SocketRow& r : *part) out.rows.push_back(std::move(r));

  if (options.owners) {
    auto owners = find_socket_owners(*kernel_, {}, tasks);
    if (owners) {
      out.owners_read = true;
      out.owner_errors = owners->errors;
      for (SocketRow& r : out.rows) {
        if (!r.inode) continue;
        if (const SocketOwner* o = owners->first(r.inode)) {
          r.pid = o->pid;
          r.comm = o->comm;
        }
      }
    } else {
      out.owners_error = owners.error().to_string();
    }
  }
  return out;
}

}  // namespace nfm
