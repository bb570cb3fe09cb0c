#include "query/osquery_tables.h"

#include <arpa/inet.h>
#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nfm::query {

namespace {

// "tcp", "udp6", "unix" -> osquery's family (AF_*) and protocol (IPPROTO_*).
#define NFM_FAMILY(s)                                     \
  "CASE WHEN " s ".proto IN ('tcp','udp') THEN 2 WHEN " s \
  ".proto IN ('tcp6','udp6') THEN 10 ELSE 1 END"
#define NFM_PROTOCOL(s) \
  "CASE WHEN " s ".proto LIKE 'tcp%' THEN 6 WHEN " s ".proto LIKE 'udp%' THEN 17 ELSE 0 END"
#define NFM_INET_ONLY(s, column) "CASE WHEN " s ".proto <> 'unix' THEN " s "." column " END"
// A value of another section of the same frame (the same snapshot).
#define NFM_SAME_FRAME(expr, table, s) \
  "(SELECT " expr " FROM " table " x WHERE x.snapshot = " s ".snapshot LIMIT 1)"

const std::vector<OsqueryTable> kTables = {
    {"processes", "processes (not threads), as osquery's processes",
     "SELECT vm, host, time, pid, comm AS name, exe AS path, nfm_join(cmdline, ' ') AS cmdline, "
     "state, NULL AS cwd, NULL AS root, uid, gid, euid, egid, NULL AS suid, "
     "NULL AS sgid, "
     "CASE WHEN exe = '' THEN -1 WHEN exe LIKE '% (deleted)' THEN 0 ELSE 1 END AS on_disk, "
     "NULL AS wired_size, rss_kb * 1024 AS resident_size, vsz_kb * 1024 AS total_size, "
     "utime_ns / 1000000 AS user_time, stime_ns / 1000000 AS system_time, "
     "NULL AS disk_bytes_read, NULL AS disk_bytes_written, " NFM_SAME_FRAME(
         "x.boot_time", "nfm_uptime", "p") " + start_time / 1000000000 AS start_time, "
                                           "ppid AS parent, NULL AS pgroup, threads, nice, "
                                           "(" NFM_SAME_FRAME(
                                               "x.uptime_ns", "nfm_uptime",
                                               "p") " - start_time) / 1000000000 "
                                                    "AS elapsed_time, NULL AS cgroup_path "
                                                    "FROM nfm_processes p"},
    {"process_open_files", "every open file descriptor with its path",
     "SELECT vm, host, time, pid, fd, path FROM nfm_open_files"},
    {"process_open_sockets", "sockets held by processes, per descriptor",
     "SELECT f.vm, f.host, f.time, f.pid, f.fd, s.inode AS socket, " NFM_FAMILY(
         "s") " AS family, " NFM_PROTOCOL("s") " AS protocol, " NFM_INET_ONLY("s",
                                                                              "local_addr") " AS "
                                                                                            "local_"
                                                                                            "addres"
                                                                                            "s,"
                                                                                            " " NFM_INET_ONLY(
                                                                                                "s",
                                                                                                "re"
                                                                                                "mo"
                                                                                                "te"
                                                                                                "_a"
                                                                                                "dd"
                                                                                                "r") " AS remote_address, " NFM_INET_ONLY("s",
                                                                                                                                          "local_port") " AS local_port, " NFM_INET_ONLY("s",
                                                                                                                                                                                         "remote_port") " AS remote_port, "
                                                                                                                                                                                                        "CASE WHEN s.proto = 'unix' THEN s.path END AS path, "
                                                                                                                                                                                                        "CASE WHEN s.proto LIKE 'tcp%' THEN s.state END AS state, NULL AS net_namespace "
                                                                                                                                                                                                        "FROM nfm_open_files f JOIN nfm_sockets s ON s.snapshot = f.snapshot AND s.sock = f.sock "
                                                                                                                                                                                                        "WHERE f.type = 'socket'"},
    {"listening_ports", "listening TCP, bound unconnected UDP and listening UNIX sockets",
     "SELECT s.vm, s.host, s.time, s.pid, CASE WHEN s.proto = 'unix' THEN 0 ELSE s.local_port END "
     "AS port, " NFM_PROTOCOL("s") " AS protocol, " NFM_FAMILY("s") " AS family, " NFM_INET_ONLY(
         "s",
         "local_addr") " AS address, "
                       "(SELECT min(f.fd) FROM nfm_open_files f WHERE f.snapshot = s.snapshot AND "
                       "f.pid = s.pid "
                       "AND f.sock = s.sock) AS fd, s.inode AS socket, "
                       "CASE WHEN s.proto = 'unix' THEN s.path END AS path, NULL AS net_namespace "
                       "FROM nfm_sockets s WHERE (s.proto IN ('tcp','tcp6') AND s.state = "
                       "'LISTEN') "
                       "OR (s.proto IN ('udp','udp6') AND s.remote_port = 0 AND s.local_port <> 0) "
                       "OR (s.proto = 'unix' AND (s.flags & 65536) <> 0)"},
    {"process_memory_map", "every process's mappings, as /proc/PID/maps",
     "SELECT vm, host, time, pid, start, \"end\", perms AS permissions, \"offset\", dev AS device, "
     "inode, path, CASE WHEN path = '' OR substr(path, 1, 1) = '[' THEN 1 ELSE 0 END AS pseudo "
     "FROM nfm_memory_maps"},
    {"kernel_modules", "loaded modules, as /proc/modules",
     "SELECT vm, host, time, name, size, "
     "CASE WHEN json_array_length(used_by) = 0 THEN '-' ELSE nfm_join(used_by, ',') END AS "
     "used_by, "
     "state AS status, base AS address FROM nfm_modules"},
    {"interface_addresses", "each interface's IPv4 and IPv6 addresses",
     "SELECT i.vm, i.host, i.time, i.name AS interface, nfm_cidr_address(a.value) AS address, "
     "nfm_cidr_mask(a.value) AS mask, "
     "CASE WHEN (i.flags & 2) <> 0 THEN nfm_cidr_broadcast(a.value) END AS broadcast, "
     "NULL AS point_to_point, NULL AS type, NULL AS friendly_name "
     "FROM nfm_interfaces i, json_each(i.ipv4) a "
     "UNION ALL "
     "SELECT i.vm, i.host, i.time, i.name, nfm_cidr_address(a.value), nfm_cidr_mask(a.value), "
     "NULL, NULL, NULL, NULL FROM nfm_interfaces i, json_each(i.ipv6) a"},
    {"interface_details", "network interfaces with their counters",
     "SELECT vm, host, time, name AS interface, mac, NULL AS type, mtu, NULL AS metric, flags, "
     "rx_packets AS ipackets, tx_packets AS opackets, rx_bytes AS ibytes, tx_bytes AS obytes, "
     "rx_errors AS ierrors, tx_errors AS oerrors, rx_dropped AS idrops, tx_dropped AS odrops, "
     "collisions, NULL AS last_change, NULL AS link_speed, NULL AS pci_slot "
     "FROM nfm_interfaces"},
    {"os_version", "the running kernel (not the distribution: /etc/os-release is not read)",
     "SELECT vm, host, time, sysname AS name, release AS version, "
     "nfm_version_part(release, 0) AS major, nfm_version_part(release, 1) AS minor, "
     "nfm_version_part(release, 2) AS patch, version AS build, 'linux' AS platform, "
     "NULL AS platform_like, NULL AS codename, machine AS arch, NULL AS extra, "
     "NULL AS install_date FROM nfm_uname"},
    {"system_info", "host name, CPUs and memory",
     "SELECT u.vm, u.host, u.time, u.nodename AS hostname, NULL AS uuid, u.machine AS cpu_type, "
     "NULL AS cpu_subtype, "
     "(SELECT x.model_name FROM nfm_cpuinfo x WHERE x.snapshot = u.snapshot ORDER BY x.processor "
     "LIMIT 1) AS cpu_brand, NULL AS cpu_physical_cores, "
     "(SELECT count(*) FROM nfm_cpuinfo x WHERE x.snapshot = u.snapshot) AS cpu_logical_cores, "
     "NULL AS cpu_sockets, NULL AS cpu_microcode, " NFM_SAME_FRAME(
         "x.total_kb * 1024", "nfm_meminfo",
         "u") " AS physical_memory, "
              "NULL AS hardware_vendor, NULL AS hardware_model, NULL AS hardware_version, "
              "NULL AS hardware_serial, NULL AS computer_name, u.nodename AS local_hostname "
              "FROM nfm_uname u"},
    {"uptime", "time since boot",
     "SELECT vm, host, time, uptime_ns / 86400000000000 AS days, "
     "uptime_ns / 3600000000000 % 24 AS hours, uptime_ns / 60000000000 % 60 AS minutes, "
     "uptime_ns / 1000000000 % 60 AS seconds, uptime_ns / 1000000000 AS total_seconds "
     "FROM nfm_uptime"},
    {"memory_info", "/proc/meminfo in bytes",
     "SELECT vm, host, time, total_kb * 1024 AS memory_total, free_kb * 1024 AS memory_free, "
     "available_kb * 1024 AS memory_available, buffers_kb * 1024 AS buffers, "
     "cached_kb * 1024 AS cached, NULL AS swap_cached, NULL AS active, NULL AS inactive, "
     "swap_total_kb * 1024 AS swap_total, swap_free_kb * 1024 AS swap_free FROM nfm_meminfo"},
    {"cpu_info", "one row per logical CPU",
     "SELECT vm, host, time, 'CPU' || processor AS device_id, model_name AS model, "
     "vendor AS manufacturer, NULL AS processor_type, NULL AS cpu_status, "
     "NULL AS number_of_cores, 1 AS logical_processors, NULL AS address_width, "
     "CAST(mhz AS INTEGER) AS current_clock_speed, NULL AS max_clock_speed, "
     "NULL AS socket_designation FROM nfm_cpuinfo"},
    {"kernel_log", "the kernel's log records (nfm's own: dmesg)", "SELECT * FROM nfm_kmsg"},
};

void text_result(sqlite3_context* ctx, const std::string& text) {
  sqlite3_result_text(ctx, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

std::optional<std::string> text_arg(sqlite3_value* v) {
  if (sqlite3_value_type(v) == SQLITE_NULL) return std::nullopt;
  const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
  return std::string(p, static_cast<size_t>(sqlite3_value_bytes(v)));
}

// An address with its prefix ("10.0.2.15/24", "fe80::1/64"), parsed.
struct Cidr {
  int family = AF_INET;
  unsigned char bytes[16] = {};
  int prefix = 0;
};

std::optional<Cidr> parse_cidr(const std::string& text) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos) return std::nullopt;
  Cidr c;
  const std::string address = text.substr(0, slash);
  c.family = address.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (inet_pton(c.family, address.c_str(), c.bytes) != 1) return std::nullopt;
  try {
    c.prefix = std::stoi(text.substr(slash + 1));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (c.prefix < 0 || c.prefix > (c.family == AF_INET ? 32 : 128)) return std::nullopt;
  return c;
}

std::string ntop(int family, const unsigned char* bytes) {
  char out[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, out, sizeof out);
  return out;
}

// nfm_cidr_address(text), nfm_cidr_mask(text), nfm_cidr_broadcast(text): NULL for
// anything that is not ADDRESS/PREFIX.
enum class CidrPart { address, mask, broadcast };

template <CidrPart part>
void cidr_function(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const std::optional<std::string> text = text_arg(argv[0]);
  const std::optional<Cidr> c = text ? parse_cidr(*text) : std::nullopt;
  if (!c) return sqlite3_result_null(ctx);
  const int size = c->family == AF_INET ? 4 : 16;
  unsigned char mask[16] = {};
  for (int bit = 0; bit < c->prefix; ++bit)
    mask[bit / 8] |= static_cast<unsigned char>(0x80 >> (bit % 8));
  if constexpr (part == CidrPart::address) {
    text_result(ctx, ntop(c->family, c->bytes));
  } else if constexpr (part == CidrPart::mask) {
    text_result(ctx, ntop(c->family, mask));
  } else {
    if (c->family != AF_INET) return sqlite3_result_null(ctx);
    unsigned char broadcast[16];
    for (int i = 0; i < size; ++i)
      broadcast[i] = static_cast<unsigned char>(c->bytes[i] | ~mask[i]);
    text_result(ctx, ntop(c->family, broadcast));
  }
}

// nfm_join(json_array_text, separator): the array's strings joined; NULL for non-arrays.
void join_function(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const std::optional<std::string> text = text_arg(argv[0]);
  const std::string separator = text_arg(argv[1]).value_or("");
  const nlohmann::json j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
  if (!j.is_array()) return sqlite3_result_null(ctx);
  std::string out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (i) out += separator;
    out += j[i].is_string() ? j[i].get<std::string>() : j[i].dump();
  }
  text_result(ctx, out);
}

// nfm_version_part('6.1.0-27-amd64', 1) = 1: the N-th dot-separated number, or NULL.
void version_part_function(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const std::optional<std::string> text = text_arg(argv[0]);
  const int64_t index = sqlite3_value_int64(argv[1]);
  if (!text) return sqlite3_result_null(ctx);
  size_t pos = 0;
  for (int64_t i = 0; i <= index; ++i) {
    size_t end = pos;
    while (end < text->size() && std::isdigit(static_cast<unsigned char>((*text)[end]))) ++end;
    if (end == pos || end - pos > 9) return sqlite3_result_null(ctx);
    if (i == index) return sqlite3_result_int64(ctx, std::stoll(text->substr(pos, end - pos)));
    if (end >= text->size() || (*text)[end] != '.') return sqlite3_result_null(ctx);
    pos = end + 1;
  }
  sqlite3_result_null(ctx);
}

Result<void> add_function(sqlite3* db, const char* name, int args,
                          void (*f)(sqlite3_context*, int, sqlite3_value**)) {
  if (sqlite3_create_function_v2(db, name, args, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, f,
                                 nullptr, nullptr, nullptr) != SQLITE_OK)
    return make_error(Errc::io, fmt::format("cannot add {}: {}", name, sqlite3_errmsg(db)));
  return {};
}

}  // namespace

const std::vector<OsqueryTable>& osquery_tables() {
  return kTables;
}

Result<void> create_osquery_views(sqlite3* db) {
  NFM_TRY(add_function(db, "nfm_cidr_address", 1, cidr_function<CidrPart::address>));
  NFM_TRY(add_function(db, "nfm_cidr_mask", 1, cidr_function<CidrPart::mask>));
  NFM_TRY(add_function(db, "nfm_cidr_broadcast", 1, cidr_function<CidrPart::broadcast>));
  NFM_TRY(add_function(db, "nfm_join", 2, join_function));
  NFM_TRY(add_function(db, "nfm_version_part", 2, version_part_function));
  for (const OsqueryTable& t : kTables) {
    const std::string sql = fmt::format("CREATE VIEW {} AS {}", t.name, t.select);
    char* message = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      Error e = make_error(Errc::invalid_argument,
                           fmt::format("view {}: {}", t.name, message ? message : "?"));
      sqlite3_free(message);
      return e;
    }
  }
  return {};
}

}  // namespace nfm::query
