#include "store/store_schema.h"

#include <algorithm>

namespace nfm::store {

using json = nlohmann::json;

namespace {

Column i64(const char* name) {
  return {name, ColumnType::int64};
}
Column u64(const char* name) {
  return {name, ColumnType::uint64};
}
Column real(const char* name) {
  return {name, ColumnType::real};
}
Column text(const char* name, json fallback = nullptr) {
  return {name, ColumnType::text, false, std::move(fallback)};
}
Column list(const char* name) {
  return {name, ColumnType::text_list};
}
Column flag(const char* name, json fallback = nullptr) {
  return {name, ColumnType::boolean, false, std::move(fallback)};
}

std::vector<FeatureTable> make_tables() {
  std::vector<FeatureTable> t;
  t.push_back({Feature::uname,
               "uname",
               true,
               {text("sysname"), text("nodename"), text("release"), text("version"),
                text("machine"), text("domainname")}});
  t.push_back({Feature::uptime,
               "uptime",
               true,
               {real("uptime_s"), u64("uptime_ns"), real("load1"), real("load5"), real("load15"),
                u64("jiffies"), i64("boot_time")}});
  t.push_back({Feature::cpuinfo,
               "cpuinfo",
               false,
               {u64("processor"),
                text("vendor"),
                u64("family"),
                u64("model"),
                u64("stepping"),
                text("model_name"),
                real("mhz"),
                {"cache_kb", ColumnType::int64, true},
                list("flags")}});
  t.push_back({Feature::meminfo,
               "meminfo",
               true,
               {u64("total_kb"), u64("free_kb"), u64("available_kb"), u64("buffers_kb"),
                u64("cached_kb"), u64("swap_total_kb"), u64("swap_free_kb")}});
  t.push_back({Feature::processes,
               "processes",
               false,
               {i64("pid"),         i64("tgid"),        i64("ppid"),         text("comm"),
                list("cmdline"),    text("exe"),        u64("uid"),          u64("gid"),
                text("state"),      i64("threads"),     i64("nice"),         i64("prio"),
                u64("utime_ns"),    u64("stime_ns"),    real("cpu_pct"),     u64("rss_kb"),
                u64("rss_anon_kb"), u64("rss_file_kb"), u64("rss_shmem_kb"), u64("vsz_kb"),
                u64("start_time")}});
  t.push_back({Feature::modules,
               "modules",
               false,
               {text("name"), u64("size"), i64("refcount"), text("state"), text("base"),
                list("used_by"), flag("permanent", false), text("taints", "")}});
  t.push_back({Feature::kmsg,
               "kmsg",
               false,
               {u64("seq"), u64("ts_ns"), u64("level"), u64("facility"), text("caller"),
                text("text"), text("subsystem", ""), text("device", "")}});
  t.push_back({Feature::interfaces,
               "interfaces",
               false,
               {text("name"),
                i64("ifindex"),
                text("mac"),
                u64("mtu"),
                u64("flags"),
                flag("up"),
                list("ipv4"),
                list("ipv6"),
                u64("rx_bytes"),
                u64("rx_packets"),
                u64("rx_errors"),
                u64("rx_dropped"),
                u64("rx_fifo_errors"),
                u64("rx_frame_errors"),
                u64("rx_compressed"),
                u64("multicast"),
                u64("tx_bytes"),
                u64("tx_packets"),
                u64("tx_errors"),
                u64("tx_dropped"),
                u64("tx_fifo_errors"),
                u64("collisions"),
                u64("tx_carrier_errors"),
                u64("tx_compressed"),
                text("stats_source"),
                flag("stats_exact", true),
                text("stats_note", "")}});
  t.push_back({Feature::open_files,
               "open_files",
               false,
               {i64("pid"), text("comm"), i64("fd"), text("type"), text("path"), u64("inode"),
                u64("pos"), text("flags"), text("dev"), text("fs_type"), text("file"),
                text("socket", ""), text("sock", "")}});
  t.push_back({Feature::memory_maps,
               "memory_maps",
               false,
               {i64("pid"), text("comm"), text("start"), text("end"), text("perms"), u64("offset"),
                text("dev"), u64("inode"), text("path"), text("vma")}});
  t.push_back({Feature::sockets,
               "sockets",
               false,
               {text("proto"),
                text("state"),
                i64("state_code"),
                text("local_addr"),
                u64("local_port"),
                text("remote_addr"),
                u64("remote_port"),
                u64("inode"),
                u64("uid"),
                u64("rx_queue"),
                u64("tx_queue"),
                text("path"),
                text("type"),
                i64("type_code"),
                u64("flags"),
                u64("refcount"),
                {"pid", ColumnType::int64, true},
                {"comm", ColumnType::text, true},
                text("sock")}});
  return t;
}

}  // namespace

const std::vector<FeatureTable>& feature_tables() {
  static const std::vector<FeatureTable> tables = make_tables();
  return tables;
}

std::vector<const json*> section_rows(const FeatureTable& table, const json& frame) {
  std::vector<const json*> rows;
  auto it = frame.find(table.name);
  if (it == frame.end()) return rows;
  if (table.object) {
    if (it->is_object()) rows.push_back(&*it);
  } else if (it->is_array()) {
    for (const json& row : *it)
      if (row.is_object()) rows.push_back(&row);
  }
  return rows;
}

const json& column_value(const Column& column, const json& row) {
  auto it = row.find(column.name);
  return it == row.end() ? column.fallback : *it;
}

void KmsgDedup::begin_frame(const std::string& vm, const json& kmsg_rows) {
  auto it = last_seen_.find(vm);
  have_ = it != last_seen_.end();
  last_ = have_ ? it->second : Last{};
  any_ = false;
  max_ = {};
  if (!kmsg_rows.is_array()) return;
  bool rebooted = false;
  for (const json& r : kmsg_rows) {
    auto seq = r.find("seq");
    auto ts = r.find("ts_ns");
    if (seq == r.end() || !seq->is_number_unsigned() || ts == r.end() || !ts->is_number_unsigned())
      continue;
    const Last record{seq->get<uint64_t>(), ts->get<uint64_t>()};
    if (!any_ || record.seq > max_.seq) max_ = record;
    any_ = true;
    if (have_ && record.seq == last_.seq && record.ts_ns != last_.ts_ns) rebooted = true;
  }
  if (have_ && any_ && (rebooted || max_.seq < last_.seq)) have_ = false;
}

void KmsgDedup::end_frame(const std::string& vm) {
  if (any_ && (!have_ || max_.seq > last_.seq)) last_seen_[vm] = max_;
}

int64_t frame_key(const FrameMeta& meta) {
  // FNV-1a over the VM's identity and the frame's time.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    h = (h ^ 0xff) * 0x100000001b3ull;
  };
  mix(meta.vm.host);
  mix(meta.vm.name);
  mix(meta.vm.uuid);
  mix(std::to_string(meta.vm.pid));
  mix(std::to_string(meta.host_time_ns));
  mix(meta.target);
  return static_cast<int64_t>(h & 0x7fffffffffffffffull);
}

}  // namespace nfm::store
