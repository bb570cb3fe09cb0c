#include "frame/frame_json.h"

#include <fmt/core.h>

#include <cmath>

namespace nfm {

using json = nlohmann::json;

std::string hex_address(uint64_t address) {
  return fmt::format("{:#x}", address);
}

json uname_json(const UnameInfo& u) {
  return {{"sysname", u.sysname}, {"nodename", u.nodename}, {"release", u.release},
          {"version", u.version}, {"machine", u.machine},   {"domainname", u.domainname}};
}

json uptime_json(const UptimeInfo& u) {
  // Seconds with /proc/uptime's two decimals (it truncates to hundredths).
  const double uptime_s = static_cast<double>(u.uptime_ns / 10'000'000) / 100.0;
  return {{"uptime_s", uptime_s},
          {"uptime_ns", u.uptime_ns},
          {"load1", u.load_centi[0] / 100.0},
          {"load5", u.load_centi[1] / 100.0},
          {"load15", u.load_centi[2] / 100.0},
          {"jiffies", u.jiffies},
          {"boot_time", u.boot_time}};
}

json cpuinfo_json(const std::vector<CpuRow>& cpus) {
  json rows = json::array();
  for (const CpuRow& c : cpus)
    rows.push_back({{"processor", c.processor},
                    {"vendor", c.vendor},
                    {"family", c.family},
                    {"model", c.model},
                    {"stepping", c.stepping},
                    {"model_name", c.model_name},
                    {"mhz", c.khz / 1000.0},
                    {"cache_kb", c.cache_kb >= 0 ? json(c.cache_kb) : json()},
                    {"flags", c.flags}});
  return rows;
}

json meminfo_json(const MemInfo& m) {
  return {{"total_kb", m.total_kb},         {"free_kb", m.free_kb},
          {"available_kb", m.available_kb}, {"buffers_kb", m.buffers_kb},
          {"cached_kb", m.cached_kb},       {"swap_total_kb", m.swap_total_kb},
          {"swap_free_kb", m.swap_free_kb}};
}

json processes_json(const std::vector<ProcessRow>& rows) {
  json out = json::array();
  for (const ProcessRow& r : rows)
    out.push_back({{"pid", r.pid},
                   {"tgid", r.tgid},
                   {"ppid", r.ppid},
                   {"comm", r.comm},
                   {"cmdline", r.cmdline},
                   {"exe", r.exe},
                   {"uid", r.uid},
                   {"gid", r.gid},
                   {"state", std::string(1, r.state)},
                   {"threads", r.threads},
                   {"nice", r.nice},
                   {"prio", r.prio},
                   {"utime_ns", r.utime_ns},
                   {"stime_ns", r.stime_ns},
                   {"cpu_pct", std::round(r.cpu_pct * 100.0) / 100.0},
                   {"rss_kb", r.rss_kb},
                   {"rss_anon_kb", r.rss_anon_kb},
                   {"rss_file_kb", r.rss_file_kb},
                   {"rss_shmem_kb", r.rss_shmem_kb},
                   {"vsz_kb", r.vsz_kb},
                   {"start_time", r.start_time_ns}});
  return out;
}

json modules_json(const std::vector<ModuleRow>& rows) {
  json out = json::array();
  for (const ModuleRow& r : rows) {
    json row = {{"name", r.name},   {"size", r.size},
                {"refcount", r.refcount}, {"state", r.state},
                {"base", hex_address(r.base)}, {"used_by", r.used_by}};
    if (r.permanent) row["permanent"] = true;
    if (!r.taints.empty()) row["taints"] = r.taints;
    out.push_back(std::move(row));
  }
  return out;
}

json kmsg_json(const std::vector<KmsgRecord>& records) {
  json out = json::array();
  for (const KmsgRecord& r : records) {
    json row = {{"seq", r.seq},     {"ts_ns", r.ts_ns},         {"level", r.level},
                {"facility", r.facility}, {"caller", r.caller()}, {"text", r.text}};
    if (!r.subsystem.empty()) row["subsystem"] = r.subsystem;
    if (!r.device.empty()) row["device"] = r.device;
    out.push_back(std::move(row));
  }
  return out;
}

json interfaces_json(const std::vector<InterfaceRow>& rows) {
  json out = json::array();
  for (const InterfaceRow& r : rows) {
    const ProcNetDevCounters c = proc_net_dev_counters(r.stats);
    json row = {{"name", r.name},
                {"ifindex", r.ifindex},
                {"mac", r.mac},
                {"mtu", r.mtu},
                {"flags", r.flags},
                {"up", r.up},
                {"ipv4", r.ipv4},
                {"ipv6", r.ipv6},
                {"rx_bytes", c.rx_bytes},
                {"rx_packets", c.rx_packets},
                {"rx_errors", c.rx_errs},
                {"rx_dropped", c.rx_drop},
                {"rx_fifo_errors", c.rx_fifo},
                {"rx_frame_errors", c.rx_frame},
                {"rx_compressed", c.rx_compressed},
                {"multicast", c.rx_multicast},
                {"tx_bytes", c.tx_bytes},
                {"tx_packets", c.tx_packets},
                {"tx_errors", c.tx_errs},
                {"tx_dropped", c.tx_drop},
                {"tx_fifo_errors", c.tx_fifo},
                {"collisions", c.tx_colls},
                {"tx_carrier_errors", c.tx_carrier},
                {"tx_compressed", c.tx_compressed},
                {"stats_source", r.stats_source}};
    if (!r.stats_exact) {
      row["stats_exact"] = false;
      row["stats_note"] = r.stats_note;
    }
    out.push_back(std::move(row));
  }
  return out;
}

json open_files_json(const std::vector<OpenFileRow>& rows) {
  json out = json::array();
  for (const OpenFileRow& r : rows) {
    json row = {{"pid", r.pid},
                {"comm", r.comm},
                {"fd", r.fd},
                {"type", r.type},
                {"path", r.path},
                {"inode", r.inode},
                {"pos", r.pos},
                {"flags", fmt::format("0{:o}", r.flags)},
                {"dev", fmt::format("{:x}:{:x}", r.dev >> 20, r.dev & 0xfffff)},
                {"fs_type", r.fs_type},
                {"file", hex_address(r.file)}};
    if (r.socket) {
      row["socket"] = hex_address(r.socket);
      row["sock"] = hex_address(r.sock);
    }
    out.push_back(std::move(row));
  }
  return out;
}

json memory_maps_json(const std::vector<MemoryMapRow>& rows, bool pages) {
  json out = json::array();
  for (const MemoryMapRow& r : rows) {
    json row = {{"pid", r.pid},
                {"comm", r.comm},
                {"start", hex_address(r.start)},
                {"end", hex_address(r.end)},
                {"perms", r.perms},
                {"offset", r.offset},
                {"dev", fmt::format("{:02x}:{:02x}", r.dev >> 20, r.dev & 0xfffff)},
                {"inode", r.inode},
                {"path", r.path},
                {"vma", hex_address(r.vma)}};
    if (pages) {
      json list = json::array();
      for (const MappedPage& p : r.pages)
        list.push_back({{"va", hex_address(p.va)},
                        {"pa", hex_address(p.pa)},
                        {"size", p.size},
                        {"writable", p.writable}});
      row["pages"] = std::move(list);
    }
    out.push_back(std::move(row));
  }
  return out;
}

json sockets_json(const std::vector<SocketRow>& rows) {
  json out = json::array();
  for (const SocketRow& r : rows) {
    // One schema for every row (UNIX rows have empty addresses, inet rows no path).
    out.push_back({{"proto", r.proto},
                   {"state", r.state},
                   {"state_code", r.state_code},
                   {"local_addr", r.local_addr},
                   {"local_port", r.local_port},
                   {"remote_addr", r.remote_addr},
                   {"remote_port", r.remote_port},
                   {"inode", r.inode},
                   {"uid", r.uid},
                   {"rx_queue", r.rx_queue},
                   {"tx_queue", r.tx_queue},
                   {"path", r.path},
                   {"type", r.type},
                   {"type_code", r.type_code},
                   {"flags", r.flags},
                   {"refcount", r.refcount},
                   {"pid", r.pid ? json(r.pid) : json()},
                   {"comm", r.pid ? json(r.comm) : json()},
                   {"sock", hex_address(r.sock)}});
  }
  return out;
}

namespace {

json status_json(const FeatureStatus& s) {
  json j = {{"ok", s.ok}, {"partial", s.partial()}, {"rows", s.rows},
            {"duration_ns", s.duration_ns}};
  if (!s.error.empty()) j["error"] = s.error;
  if (!s.walk.empty()) j["walk"] = s.walk;
  j["errors"] = json::object();
  for (const auto& [name, n] : s.errors) j["errors"][name] = n;
  j["skipped"] = json::object();
  for (const auto& [name, n] : s.skipped) j["skipped"][name] = n;
  return j;
}

json meta_json(const FrameMeta& m) {
  json features = json::object();
  for (const auto& [feature, status] : m.features)
    features[std::string(feature_name(feature))] = status_json(status);
  json kernel = {{"release", m.kernel.release},
                 {"banner", m.kernel.banner},
                 {"symbols", m.kernel.symbols_source},
                 {"types", m.kernel.types_source}};
  if (!m.kernel.build_id.empty()) kernel["build_id"] = m.kernel.build_id;
  const CrawlCost& c = m.cost;
  json j = {{"target", m.target},
          {"kernel", std::move(kernel)},
          {"host_time_ns", m.host_time_ns},
          {"duration_ns", m.duration_ns},
          {"cost",
           {{"reads", c.reads},
            {"bytes", c.bytes},
            {"syscalls", c.syscalls},
            {"read_failures", c.read_failures},
            {"page_walks", c.page_walks},
            {"translation_cache_hits", c.translation_cache_hits},
            {"direct_map_hits", c.direct_map_hits},
            {"translation_faults", c.translation_faults}}},
          {"features", std::move(features)}};
  if (!m.vm.empty()) {
    json vm = {{"name", m.vm.name}, {"host", m.vm.host}, {"pid", m.vm.pid}};
    if (!m.vm.uuid.empty()) vm["uuid"] = m.vm.uuid;
    j["vm"] = std::move(vm);
  }
  return j;
}

}  // namespace

json frame_json(const Frame& f) {
  json j = {{"schema", "nfm.frame"}, {"version", kFrameSchemaVersion}, {"meta", meta_json(f.meta)}};
  if (f.uname) j["uname"] = uname_json(*f.uname);
  if (f.uptime) j["uptime"] = uptime_json(*f.uptime);
  if (f.cpuinfo) j["cpuinfo"] = cpuinfo_json(*f.cpuinfo);
  if (f.meminfo) j["meminfo"] = meminfo_json(*f.meminfo);
  if (f.processes) j["processes"] = processes_json(f.processes->rows);
  if (f.modules) j["modules"] = modules_json(f.modules->rows);
  if (f.kmsg) j["kmsg"] = kmsg_json(f.kmsg->records);
  if (f.interfaces) j["interfaces"] = interfaces_json(f.interfaces->rows);
  if (f.open_files) j["open_files"] = open_files_json(f.open_files->rows);
  if (f.memory_maps) j["memory_maps"] = memory_maps_json(f.memory_maps->rows);
  if (f.sockets) j["sockets"] = sockets_json(f.sockets->rows);
  return j;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace nfm
