// The sockets feature: its columns and its place in the frame.
#include "features/feature.h"

#include "features/processes/processes.h"
#include "features/sockets/sockets.h"

namespace nfm {

namespace {

using R = SocketRow;
using schema::Column;
using schema::json;
using schema::Type;

// The owner's columns are null when no process holds the socket.
schema::Field<R> owner_pid() {
  return schema::custom_field<R>(
      Column{.name = "pid",
             .type = Type::int64,
             .doc = "owning process (lowest pid holding it, as netstat -p); null when none",
             .nullable = true},
      [](const R& r) { return r.pid ? json(r.pid) : json(); },
      [](R& r, const json& v, const std::string& path) {
        r.pid = v.is_null() ? 0 : schema::read_integer<int32_t>(v, path);
      });
}

schema::Field<R> owner_comm() {
  return schema::custom_field<R>(
      Column{.name = "comm",
             .type = Type::text,
             .doc = "the owning process's command name; null when none",
             .nullable = true},
      [](const R& r) { return r.pid ? json(r.comm) : json(); },
      [](R& r, const json& v, const std::string& path) {
        r.comm = v.is_null() ? std::string() : schema::read_string(v, path);
      });
}

}  // namespace

const schema::Fields<SocketRow>& socket_fields() {
  using schema::field;
  // One schema for every row (UNIX rows have empty addresses, inet rows no path).
  static const schema::Fields<SocketRow> fields{{
      field("proto", &R::proto, "tcp, tcp6, udp, udp6 or unix"),
      field("state", &R::state, "netstat's word for the state (LISTEN, ESTABLISHED, ...)"),
      field("state_code", &R::state_code, "the st column of /proc/net (TCP_*, SS_* for UNIX)"),
      field("local_addr", &R::local_addr, "local address (inet_ntop text)"),
      field("local_port", &R::local_port, "local port"),
      field("remote_addr", &R::remote_addr, "remote address (inet_ntop text)"),
      field("remote_port", &R::remote_port, "remote port"),
      field("inode", &R::inode, "sock_i_ino() (0 without a struct socket)"),
      field("uid", &R::uid, "sock_i_uid(): the socket inode's owner"),
      field("rx_queue", &R::rx_queue, "/proc/net rx_queue", "bytes"),
      field("tx_queue", &R::tx_queue, "/proc/net tx_queue", "bytes"),
      field("path", &R::path, "UNIX: bound path (\"@name\" for abstract ones)"),
      field("type", &R::type, "UNIX: STREAM, DGRAM, SEQPACKET, ..."),
      field("type_code", &R::type_code, "UNIX: SOCK_* (/proc/net/unix Type)"),
      field("flags", &R::flags, "UNIX: /proc/net/unix Flags"),
      field("refcount", &R::refcount, "UNIX: sk_refcnt (/proc/net/unix RefCount)"),
      owner_pid(),
      owner_comm(),
      schema::address_field("sock", &R::sock, "struct sock address"),
  }};
  return fields;
}

NFM_FEATURE(sockets) {
  FeatureInfo f{.name = "sockets",
                .aliases = {"netstat"},
                .doc = "TCP, UDP and UNIX sockets with their owners, like netstat -tuxanp",
                .order = 110};
  set_rows_codec(f, &SocketList::rows, socket_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    SocketReader* reader = feature_reader<SocketReader>(ctx, "sockets", status);
    if (!reader) return {};
    auto r = reader->list(ctx.options<SocketOptions>("sockets"), shared_tasks(ctx));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    // Four hash tables, not one list: the walk is the first table that broke.
    status.walk = "complete";
    for (const HashWalk* w : {&r->tcp_listen, &r->tcp_established, &r->udp, &r->unix_table}) {
      if (!w->read)
        status.walk = "bad_pointer";
      else if (w->broken_chains && status.walk == "complete")
        status.walk = walk_end_name(w->first_error);
    }
    status.count_error("broken_chains", r->tcp_listen.broken_chains +
                                            r->tcp_established.broken_chains +
                                            r->udp.broken_chains + r->unix_table.broken_chains);
    status.count_error("row_errors", r->row_errors);
    status.count_error("inode_errors", r->inode_errors);
    status.count_error("owner_errors", r->owner_errors + (r->owners_read ? 0 : 1));
    status.rows = r->rows.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
