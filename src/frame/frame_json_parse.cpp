// frame_from_json: the typed inverse of frame_json (frame_json.cpp). Every key
// frame_json writes is read back; keys it derives (uptime_s, partial) are not
// needed. A missing or mistyped key fails the whole frame with its JSON path
// ("processes[3].pid: expected an integer, got string").
#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "frame/frame_json.h"

namespace nfm {

using json = nlohmann::json;

namespace {

// Thrown inside this file only; frame_from_json turns it into an Error.
struct ParseError {
  std::string message;
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw ParseError{path.empty() ? what : path + ": " + what};
}

// A JSON object with its path, for messages.
class Obj {
 public:
  Obj(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) fail(path_, fmt::format("expected an object, got {}", j_.type_name()));
  }
  const std::string& path() const { return path_; }
  bool has(const char* key) const { return j_.contains(key); }
  const json& at_self() const { return j_; }
  std::string sub(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  const json& at(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end()) fail(sub(key), "missing");
    return *it;
  }
  Obj object(const char* key) const { return Obj(at(key), sub(key)); }

  template <typename T>
  T integer(const char* key) const {
    return as_integer<T>(at(key), sub(key));
  }
  double number(const char* key) const {
    const json& v = at(key);
    if (!v.is_number()) fail(sub(key), fmt::format("expected a number, got {}", v.type_name()));
    return v.get<double>();
  }
  bool boolean(const char* key) const {
    const json& v = at(key);
    if (!v.is_boolean()) fail(sub(key), fmt::format("expected a boolean, got {}", v.type_name()));
    return v.get<bool>();
  }
  std::string string(const char* key) const { return as_string(at(key), sub(key)); }
  std::string string_or(const char* key, std::string fallback) const {
    return has(key) ? string(key) : std::move(fallback);
  }
  std::vector<std::string> strings(const char* key) const {
    const json& v = at(key);
    if (!v.is_array()) fail(sub(key), fmt::format("expected an array, got {}", v.type_name()));
    std::vector<std::string> out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(as_string(v[i], fmt::format("{}[{}]", sub(key), i)));
    return out;
  }
  // "0xffffffffc0000000"
  uint64_t address(const char* key) const { return parse_hex(string(key), sub(key), "0x", 16); }

  template <typename T>
  static T as_integer(const json& v, const std::string& path) {
    if (!v.is_number_integer())
      fail(path, fmt::format("expected an integer, got {}",
                             v.is_number() ? "a fraction" : v.type_name()));
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        fail(path, fmt::format("{} is out of range", u));
      return static_cast<T>(u);
    }
    const int64_t s = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (s < 0) fail(path, fmt::format("{} is negative", s));
      if (static_cast<uint64_t>(s) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        fail(path, fmt::format("{} is out of range", s));
    } else {
      if (s < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          s > static_cast<int64_t>(std::numeric_limits<T>::max()))
        fail(path, fmt::format("{} is out of range", s));
    }
    return static_cast<T>(s);
  }
  static std::string as_string(const json& v, const std::string& path) {
    if (!v.is_string()) fail(path, fmt::format("expected a string, got {}", v.type_name()));
    return v.get<std::string>();
  }
  static uint64_t parse_hex(std::string_view text, const std::string& path, std::string_view prefix,
                            int base) {
    std::string_view digits = text;
    if (!prefix.empty()) {
      if (digits.substr(0, prefix.size()) != prefix)
        fail(path, fmt::format("'{}' does not start with {}", text, prefix));
      digits.remove_prefix(prefix.size());
    }
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
      fail(path, fmt::format("'{}' is not a base-{} number", text, base));
    return value;
  }

 private:
  const json& j_;
  std::string path_;
};

// Calls fn(Obj) for each element of the array `j` (path `name`).
template <typename Fn>
void each_row(const json& j, const std::string& name, Fn&& fn) {
  if (!j.is_array()) fail(name, fmt::format("expected an array, got {}", j.type_name()));
  for (size_t i = 0; i < j.size(); ++i) fn(Obj(j[i], fmt::format("{}[{}]", name, i)));
}

// "fe:01" style device numbers (hex major:minor) back to major << 20 | minor.
uint32_t parse_dev(const std::string& text, const std::string& path) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) fail(path, fmt::format("'{}' is not MAJOR:MINOR", text));
  const uint64_t major = Obj::parse_hex(text.substr(0, colon), path, "", 16);
  const uint64_t minor = Obj::parse_hex(text.substr(colon + 1), path, "", 16);
  if (major > 0xfff || minor > 0xfffff) fail(path, fmt::format("'{}' is out of range", text));
  return static_cast<uint32_t>(major << 20 | minor);
}

UnameInfo parse_uname(const Obj& o) {
  return {o.string("sysname"), o.string("nodename"), o.string("release"),
          o.string("version"), o.string("machine"),  o.string("domainname")};
}

uint64_t centi(double value, const std::string& path) {
  if (!(value >= 0) || value > 1e15) fail(path, fmt::format("{} is out of range", value));
  return static_cast<uint64_t>(std::llround(value * 100.0));
}

UptimeInfo parse_uptime(const Obj& o) {
  UptimeInfo u;
  u.uptime_ns = o.integer<uint64_t>("uptime_ns");
  u.load_centi[0] = centi(o.number("load1"), o.sub("load1"));
  u.load_centi[1] = centi(o.number("load5"), o.sub("load5"));
  u.load_centi[2] = centi(o.number("load15"), o.sub("load15"));
  u.jiffies = o.integer<uint64_t>("jiffies");
  u.boot_time = o.integer<int64_t>("boot_time");
  return u;
}

std::vector<CpuRow> parse_cpuinfo(const json& j) {
  std::vector<CpuRow> out;
  each_row(j, "cpuinfo", [&](const Obj& o) {
    CpuRow c;
    c.processor = o.integer<uint32_t>("processor");
    c.vendor = o.string("vendor");
    c.family = o.integer<uint32_t>("family");
    c.model = o.integer<uint32_t>("model");
    c.stepping = o.integer<uint32_t>("stepping");
    c.model_name = o.string("model_name");
    const double mhz = o.number("mhz");
    if (!(mhz >= 0) || mhz > 1e12) fail(o.sub("mhz"), fmt::format("{} is out of range", mhz));
    c.khz = static_cast<uint64_t>(std::llround(mhz * 1000.0));
    const json& cache = o.at("cache_kb");
    c.cache_kb = cache.is_null() ? -1 : Obj::as_integer<int64_t>(cache, o.sub("cache_kb"));
    c.flags = o.strings("flags");
    out.push_back(std::move(c));
  });
  return out;
}

MemInfo parse_meminfo(const Obj& o) {
  MemInfo m;
  m.total_kb = o.integer<uint64_t>("total_kb");
  m.free_kb = o.integer<uint64_t>("free_kb");
  m.available_kb = o.integer<uint64_t>("available_kb");
  m.buffers_kb = o.integer<uint64_t>("buffers_kb");
  m.cached_kb = o.integer<uint64_t>("cached_kb");
  m.swap_total_kb = o.integer<uint64_t>("swap_total_kb");
  m.swap_free_kb = o.integer<uint64_t>("swap_free_kb");
  return m;
}

ProcessList parse_processes(const json& j) {
  ProcessList list;
  each_row(j, "processes", [&](const Obj& o) {
    ProcessRow r;
    r.pid = o.integer<int32_t>("pid");
    r.tgid = o.integer<int32_t>("tgid");
    r.ppid = o.integer<int32_t>("ppid");
    r.comm = o.string("comm");
    r.cmdline = o.strings("cmdline");
    r.exe = o.string("exe");
    r.uid = o.integer<uint32_t>("uid");
    r.gid = o.integer<uint32_t>("gid");
    const std::string state = o.string("state");
    if (state.size() != 1) fail(o.sub("state"), fmt::format("'{}' is not one letter", state));
    r.state = state[0];
    r.threads = o.integer<int32_t>("threads");
    r.nice = o.integer<int32_t>("nice");
    r.prio = o.integer<int32_t>("prio");
    r.utime_ns = o.integer<uint64_t>("utime_ns");
    r.stime_ns = o.integer<uint64_t>("stime_ns");
    r.cpu_pct = o.number("cpu_pct");
    r.rss_kb = o.integer<uint64_t>("rss_kb");
    r.rss_anon_kb = o.integer<uint64_t>("rss_anon_kb");
    r.rss_file_kb = o.integer<uint64_t>("rss_file_kb");
    r.rss_shmem_kb = o.integer<uint64_t>("rss_shmem_kb");
    r.vsz_kb = o.integer<uint64_t>("vsz_kb");
    r.start_time_ns = o.integer<uint64_t>("start_time");
    r.kernel_thread = r.cmdline.empty() && r.exe.empty();
    list.rows.push_back(std::move(r));
  });
  return list;
}

ModuleList parse_modules(const json& j) {
  ModuleList list;
  each_row(j, "modules", [&](const Obj& o) {
    ModuleRow r;
    r.name = o.string("name");
    r.size = o.integer<uint64_t>("size");
    r.refcount = o.integer<int64_t>("refcount");
    r.state = o.string("state");
    r.base = o.address("base");
    r.used_by = o.strings("used_by");
    r.permanent = o.has("permanent") && o.boolean("permanent");
    r.taints = o.string_or("taints", "");
    list.rows.push_back(std::move(r));
  });
  return list;
}

// "T123" (thread) or "C0" (cpu): KmsgRecord::caller() backwards.
uint32_t parse_caller(const std::string& text, const std::string& path) {
  if (text.size() < 2 || (text[0] != 'T' && text[0] != 'C'))
    fail(path, fmt::format("'{}' is not T<tid> or C<cpu>", text));
  const uint64_t n = Obj::parse_hex(text.substr(1), path, "", 10);
  if (n > 0x7fffffff) fail(path, fmt::format("'{}' is out of range", text));
  return static_cast<uint32_t>(text[0] == 'C' ? (n | 0x80000000u) : n);
}

KmsgLog parse_kmsg(const json& j) {
  KmsgLog log;
  each_row(j, "kmsg", [&](const Obj& o) {
    KmsgRecord r;
    r.seq = o.integer<uint64_t>("seq");
    r.ts_ns = o.integer<uint64_t>("ts_ns");
    r.level = o.integer<uint8_t>("level");
    r.facility = o.integer<uint8_t>("facility");
    r.caller_id = parse_caller(o.string("caller"), o.sub("caller"));
    r.text = o.string("text");
    r.subsystem = o.string_or("subsystem", "");
    r.device = o.string_or("device", "");
    r.finalized = true;
    log.records.push_back(std::move(r));
  });
  return log;
}

InterfaceList parse_interfaces(const json& j) {
  InterfaceList list;
  each_row(j, "interfaces", [&](const Obj& o) {
    InterfaceRow r;
    r.name = o.string("name");
    r.ifindex = o.integer<int32_t>("ifindex");
    r.mac = o.string("mac");
    r.mtu = o.integer<uint32_t>("mtu");
    r.flags = o.integer<uint32_t>("flags");
    r.up = o.boolean("up");
    r.ipv4 = o.strings("ipv4");
    r.ipv6 = o.strings("ipv6");
    // The /proc/net/dev columns, each put back into one LinkStats field that
    // proc_net_dev_counters() maps to it (sums land in their first term).
    LinkStats& s = r.stats;
    s.rx_bytes = o.integer<uint64_t>("rx_bytes");
    s.rx_packets = o.integer<uint64_t>("rx_packets");
    s.rx_errors = o.integer<uint64_t>("rx_errors");
    s.rx_dropped = o.integer<uint64_t>("rx_dropped");
    s.rx_fifo_errors = o.integer<uint64_t>("rx_fifo_errors");
    s.rx_frame_errors = o.integer<uint64_t>("rx_frame_errors");
    s.rx_compressed = o.integer<uint64_t>("rx_compressed");
    s.multicast = o.integer<uint64_t>("multicast");
    s.tx_bytes = o.integer<uint64_t>("tx_bytes");
    s.tx_packets = o.integer<uint64_t>("tx_packets");
    s.tx_errors = o.integer<uint64_t>("tx_errors");
    s.tx_dropped = o.integer<uint64_t>("tx_dropped");
    s.tx_fifo_errors = o.integer<uint64_t>("tx_fifo_errors");
    s.collisions = o.integer<uint64_t>("collisions");
    s.tx_carrier_errors = o.integer<uint64_t>("tx_carrier_errors");
    s.tx_compressed = o.integer<uint64_t>("tx_compressed");
    r.stats_source = o.string("stats_source");
    r.stats_exact = !o.has("stats_exact") || o.boolean("stats_exact");
    r.stats_note = o.string_or("stats_note", "");
    list.rows.push_back(std::move(r));
  });
  return list;
}

OpenFileList parse_open_files(const json& j) {
  OpenFileList list;
  each_row(j, "open_files", [&](const Obj& o) {
    OpenFileRow r;
    r.pid = o.integer<int32_t>("pid");
    r.comm = o.string("comm");
    r.fd = o.integer<int32_t>("fd");
    r.type = o.string("type");
    r.path = o.string("path");
    r.inode = o.integer<uint64_t>("inode");
    r.pos = o.integer<uint64_t>("pos");
    const uint64_t flags = Obj::parse_hex(o.string("flags"), o.sub("flags"), "0", 8);
    if (flags > 0xffffffffu) fail(o.sub("flags"), "out of range");
    r.flags = static_cast<uint32_t>(flags);
    r.dev = parse_dev(o.string("dev"), o.sub("dev"));
    r.fs_type = o.string("fs_type");
    r.file = o.address("file");
    if (o.has("socket")) {
      r.socket = o.address("socket");
      r.sock = o.address("sock");
    }
    list.rows.push_back(std::move(r));
  });
  return list;
}

MemoryMapList parse_memory_maps(const json& j) {
  MemoryMapList list;
  each_row(j, "memory_maps", [&](const Obj& o) {
    MemoryMapRow r;
    r.pid = o.integer<int32_t>("pid");
    r.comm = o.string("comm");
    r.start = o.address("start");
    r.end = o.address("end");
    r.perms = o.string("perms");
    r.offset = o.integer<uint64_t>("offset");
    r.dev = parse_dev(o.string("dev"), o.sub("dev"));
    r.inode = o.integer<uint64_t>("inode");
    r.path = o.string("path");
    r.vma = o.address("vma");
    if (o.has("pages"))
      each_row(o.at("pages"), o.sub("pages"), [&](const Obj& p) {
        r.pages.push_back(
            {p.address("va"), p.address("pa"), p.integer<uint64_t>("size"), p.boolean("writable")});
      });
    list.rows.push_back(std::move(r));
  });
  return list;
}

SocketList parse_sockets(const json& j) {
  SocketList list;
  each_row(j, "sockets", [&](const Obj& o) {
    SocketRow r;
    r.proto = o.string("proto");
    r.state = o.string("state");
    r.state_code = o.integer<int>("state_code");
    r.local_addr = o.string("local_addr");
    r.local_port = o.integer<uint16_t>("local_port");
    r.remote_addr = o.string("remote_addr");
    r.remote_port = o.integer<uint16_t>("remote_port");
    r.inode = o.integer<uint64_t>("inode");
    r.uid = o.integer<uint32_t>("uid");
    r.rx_queue = o.integer<uint32_t>("rx_queue");
    r.tx_queue = o.integer<uint32_t>("tx_queue");
    r.path = o.string("path");
    r.type = o.string("type");
    r.type_code = o.integer<int>("type_code");
    r.flags = o.integer<uint32_t>("flags");
    r.refcount = o.integer<uint32_t>("refcount");
    const json& pid = o.at("pid");
    if (!pid.is_null()) {
      r.pid = Obj::as_integer<int32_t>(pid, o.sub("pid"));
      r.comm = o.string("comm");
    }
    r.sock = o.address("sock");
    list.rows.push_back(std::move(r));
  });
  return list;
}

std::map<std::string, uint64_t> parse_counts(const Obj& o) {
  std::map<std::string, uint64_t> out;
  for (const auto& [name, value] : o.at_self().items())
    out[name] = Obj::as_integer<uint64_t>(value, o.path() + "." + name);
  return out;
}

FeatureStatus parse_status(const Obj& o) {
  FeatureStatus s;
  s.ok = o.boolean("ok");
  s.rows = o.integer<uint64_t>("rows");
  s.duration_ns = o.integer<uint64_t>("duration_ns");
  s.error = o.string_or("error", "");
  s.walk = o.string_or("walk", "");
  s.errors = parse_counts(o.object("errors"));
  s.skipped = parse_counts(o.object("skipped"));
  return s;
}

FrameMeta parse_meta(const Obj& o) {
  FrameMeta m;
  m.target = o.string("target");
  const Obj kernel = o.object("kernel");
  m.kernel.release = kernel.string("release");
  m.kernel.banner = kernel.string("banner");
  m.kernel.symbols_source = kernel.string("symbols");
  m.kernel.types_source = kernel.string("types");
  m.kernel.build_id = kernel.string_or("build_id", "");
  m.host_time_ns = o.integer<uint64_t>("host_time_ns");
  m.duration_ns = o.integer<uint64_t>("duration_ns");
  const Obj cost = o.object("cost");
  CrawlCost& c = m.cost;
  c.reads = cost.integer<uint64_t>("reads");
  c.bytes = cost.integer<uint64_t>("bytes");
  c.syscalls = cost.integer<uint64_t>("syscalls");
  c.read_failures = cost.integer<uint64_t>("read_failures");
  c.page_walks = cost.integer<uint64_t>("page_walks");
  c.translation_cache_hits = cost.integer<uint64_t>("translation_cache_hits");
  c.direct_map_hits = cost.integer<uint64_t>("direct_map_hits");
  c.translation_faults = cost.integer<uint64_t>("translation_faults");
  const Obj features = o.object("features");
  for (const auto& [name, status] : features.at_self().items()) {
    const auto feature = parse_feature(name);
    if (!feature || feature_name(*feature) != name) continue;  // a newer writer's feature
    m.features[*feature] = parse_status(Obj(status, features.path() + "." + name));
  }
  if (o.has("vm")) {
    const Obj vm = o.object("vm");
    m.vm.name = vm.string("name");
    m.vm.host = vm.string("host");
    m.vm.pid = vm.integer<int64_t>("pid");
    m.vm.uuid = vm.string_or("uuid", "");
  }
  return m;
}

}  // namespace

Result<Frame> frame_from_json(const json& j) {
  try {
    const Obj root(j, "");
    const std::string schema = root.string("schema");
    if (schema != "nfm.frame")
      return make_error(Errc::bad_format,
                        fmt::format("frame: schema is '{}', not 'nfm.frame'", schema));
    const int version = root.integer<int>("version");
    if (version != kFrameSchemaVersion)
      return make_error(Errc::unsupported,
                        fmt::format("frame: schema version {} (this nfm reads version {})", version,
                                    kFrameSchemaVersion));
    Frame f;
    f.meta = parse_meta(root.object("meta"));
    if (root.has("uname")) f.uname = parse_uname(root.object("uname"));
    if (root.has("uptime")) f.uptime = parse_uptime(root.object("uptime"));
    if (root.has("cpuinfo")) f.cpuinfo = parse_cpuinfo(root.at("cpuinfo"));
    if (root.has("meminfo")) f.meminfo = parse_meminfo(root.object("meminfo"));
    if (root.has("processes")) f.processes = parse_processes(root.at("processes"));
    if (root.has("modules")) f.modules = parse_modules(root.at("modules"));
    if (root.has("kmsg")) f.kmsg = parse_kmsg(root.at("kmsg"));
    if (root.has("interfaces")) f.interfaces = parse_interfaces(root.at("interfaces"));
    if (root.has("open_files")) f.open_files = parse_open_files(root.at("open_files"));
    if (root.has("memory_maps")) f.memory_maps = parse_memory_maps(root.at("memory_maps"));
    if (root.has("sockets")) f.sockets = parse_sockets(root.at("sockets"));
    return f;
  } catch (const ParseError& e) {
    return make_error(Errc::bad_format, "frame: " + e.message);
  }
}

}  // namespace nfm
