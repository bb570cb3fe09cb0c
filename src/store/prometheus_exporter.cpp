#include "store/prometheus_exporter.h"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <unistd.h>

#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "features/interfaces/rows.h"
#include "features/meminfo/rows.h"
#include "features/processes/rows.h"
#include "features/sockets/rows.h"
#include "features/uptime/rows.h"
#include "host/qemu/proc_stat.h"
#include "util/shared_library.h"

namespace nfm {

namespace {

// The part of libmicrohttpd we use, loaded on first use (util/shared_library.h).
// clang-format off
#define NFM_MHD_FUNCTIONS(X) \
  X(MHD_start_daemon) X(MHD_stop_daemon) X(MHD_get_daemon_info) \
  X(MHD_create_response_from_buffer) X(MHD_add_response_header) X(MHD_queue_response) \
  X(MHD_destroy_response)
// clang-format on
NFM_LIBRARY_API(Mhd, NFM_MHD_FUNCTIONS);

Result<Mhd> load_mhd() {
  NFM_ASSIGN(SharedLibrary lib, SharedLibrary::open("libmicrohttpd.so.12"));
  return Mhd::bind(lib);
}

const Result<Mhd>& mhd() {
  static const Result<Mhd> api = load_mhd();
  return api;
}

// What /metrics shows of one VM: its newest frame, boiled down, plus counters
// summed over every frame.
struct VmSeries {
  VmIdentity vm;
  std::string kernel_release;
  uint64_t frames = 0;
  std::map<std::string, uint64_t> errors;  // feature -> errors counted over all frames
  double duration_s = 0;
  double time_s = 0;
  struct Process {
    int32_t pid;
    std::string comm;
    double cpu_s;
    uint64_t rss_bytes, vsz_bytes;
    int32_t threads;
  };
  std::vector<Process> processes;
  bool have_processes = false;
  std::map<std::pair<std::string, std::string>, uint64_t> sockets;  // (proto, state) -> count
  bool have_sockets = false;
  struct Interface {
    std::string name;
    uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
  };
  std::vector<Interface> interfaces;
  std::optional<MemInfo> meminfo;
  std::optional<UptimeInfo> uptime;
};

void series_from_frame(const Frame& f, VmSeries& s) {
  s.vm = f.meta.vm;
  s.kernel_release = f.meta.kernel.release;
  ++s.frames;
  for (const auto& [feature, status] : f.meta.features) {
    uint64_t n = status.ok ? 0 : 1;
    for (const auto& [_, count] : status.errors) n += count;
    s.errors[std::string(feature_name(feature))] += n;  // present (maybe 0) once asked for
  }
  s.duration_s = f.meta.duration_ns / 1e9;
  s.time_s = f.meta.host_time_ns / 1e9;
  s.have_processes = (f.get<ProcessList>() != nullptr);
  s.processes.clear();
  if (f.get<ProcessList>())
    for (const ProcessRow& p : f.get<ProcessList>()->rows)
      s.processes.push_back({p.pid, p.comm, (p.utime_ns + p.stime_ns) / 1e9, p.rss_kb * 1024,
                             p.vsz_kb * 1024, p.threads});
  s.have_sockets = (f.get<SocketList>() != nullptr);
  s.sockets.clear();
  if (f.get<SocketList>())
    for (const SocketRow& r : f.get<SocketList>()->rows)
      ++s.sockets[{r.proto, r.state.empty() ? "UNCONN" : r.state}];
  s.interfaces.clear();
  if (f.get<InterfaceList>())
    for (const InterfaceRow& r : f.get<InterfaceList>()->rows) {
      const ProcNetDevCounters c = proc_net_dev_counters(r.stats);
      s.interfaces.push_back({r.name, c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets});
    }
  s.meminfo.reset();
  if (const MemInfo* m = f.get<MemInfo>()) s.meminfo = *m;
  s.uptime.reset();
  if (const UptimeInfo* u = f.get<UptimeInfo>()) s.uptime = *u;
}

std::string number(double v) {
  return fmt::format("{}", v);
}

// Accumulates metric families in order: HELP and TYPE once, then every sample.
class Writer {
 public:
  struct Family {
    std::string help, type;
    std::string samples;
  };
  Family& family(const std::string& name, const char* type, const char* help) {
    auto it = index_.find(name);
    if (it != index_.end()) return families_[it->second].second;
    index_[name] = families_.size();
    families_.push_back({name, {help, type, {}}});
    return families_.back().second;
  }
  void sample(const std::string& name, const char* type, const char* help,
              const std::vector<std::pair<const char*, std::string>>& labels,
              const std::string& value) {
    Family& f = family(name, type, help);
    f.samples += name;
    if (!labels.empty()) {
      f.samples += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) f.samples += ',';
        first = false;
        f.samples += k;
        f.samples += "=\"";
        f.samples += prometheus_label_value(v);
        f.samples += '"';
      }
      f.samples += '}';
    }
    f.samples += ' ';
    f.samples += value;
    f.samples += '\n';
  }
  std::string text() const {
    std::string out;
    for (const auto& [name, f] : families_) {
      out += "# HELP " + name + " " + f.help + "\n";
      out += "# TYPE " + name + " " + f.type + "\n";
      out += f.samples;
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, Family>> families_;
  std::map<std::string, size_t> index_;
};

class Exporter final : public PrometheusExporter {
 public:
  explicit Exporter(std::string spec) : spec_(std::move(spec)) {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0) local_host_ = name;
  }
  ~Exporter() override {
    if (daemon_) mhd()->MHD_stop_daemon(daemon_);
  }

  Result<void> start(const ListenAddress& listen) {
    if (!mhd())
      return make_error(Errc::unsupported,
                        fmt::format("{}: needs libmicrohttpd: {}", spec_, mhd().error().message));
    sockaddr_storage addr{};
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD;
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, listen.address.c_str(), &v4) == 1) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      a->sin_family = AF_INET;
      a->sin_port = htons(listen.port);
      a->sin_addr = v4;
    } else if (inet_pton(AF_INET6, listen.address.c_str(), &v6) == 1) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(listen.port);
      a->sin6_addr = v6;
      flags |= MHD_USE_IPv6;
    } else {
      return make_error(Errc::invalid_argument,
                        fmt::format("{}: '{}' is not an IP address", spec_, listen.address));
    }
    daemon_ = mhd()->MHD_start_daemon(flags, listen.port, nullptr, nullptr, &Exporter::handle, this,
                                      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&addr),
                                      MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                      MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (!daemon_)
      return make_error(
          Errc::io, fmt::format("{}: cannot listen on {}:{} (in use, or not this host's address)",
                                spec_, listen.address, listen.port));
    const MHD_DaemonInfo* info = mhd()->MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    port_ = info ? info->port : listen.port;
    return {};
  }

  std::string describe() const override { return spec_; }
  uint16_t port() const override { return port_; }

  void write(const Frame& frame) override {
    std::lock_guard lock(mutex_);
    series_from_frame(frame, vms_[key(frame.meta.vm)]);
    ++stats_.frames_written;
  }

  void forget_vm(const VmIdentity& vm) override {
    std::lock_guard lock(mutex_);
    vms_.erase(key(vm));
  }

  SinkStats stats() const override {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  std::string render() const override {
    std::lock_guard lock(mutex_);
    Writer w;
    for (const auto& [_, s] : vms_) {
      const std::string& vm = s.vm.name;
      w.sample("nfm_vm_info", "gauge", "A VM nfm crawls (value 1), with its identity.",
               {{"vm", vm},
                {"uuid", s.vm.uuid},
                {"qemu_pid", std::to_string(s.vm.pid)},
                {"host", s.vm.host},
                {"kernel_release", s.kernel_release}},
               "1");
      w.sample("nfm_frames_total", "counter", "Frames crawled.", {{"vm", vm}},
               std::to_string(s.frames));
      w.sample("nfm_crawl_duration_seconds", "gauge", "How long the newest crawl took.",
               {{"vm", vm}}, number(s.duration_s));
      w.sample("nfm_last_crawl_timestamp_seconds", "gauge",
               "When the newest crawl began (host clock, seconds since the epoch).", {{"vm", vm}},
               number(s.time_s));
      // The host's side of the VM, read at scrape time: what %HOST is made of.
      if (s.vm.pid > 0 && s.vm.host == local_host_)
        if (auto stat = read_proc_stat(s.vm.pid); stat && !stat->exited())
          w.sample("nfm_vm_host_cpu_seconds_total", "counter",
                   "CPU time of the VM's QEMU process on this host (utime + stime).", {{"vm", vm}},
                   number(static_cast<double>(stat->utime_ticks + stat->stime_ticks) /
                          static_cast<double>(sysconf(_SC_CLK_TCK))));
      for (const auto& [feature, n] : s.errors)
        w.sample("nfm_crawl_errors_total", "counter",
                 "Items lost to bad reads or torn data, and failed features, per feature.",
                 {{"vm", vm}, {"feature", feature}}, std::to_string(n));
      if (s.uptime) {
        w.sample("nfm_guest_uptime_seconds", "gauge", "Guest time since boot.", {{"vm", vm}},
                 number(s.uptime->uptime_ns / 1e9));
        static const char* kLoad[] = {"nfm_guest_load1", "nfm_guest_load5", "nfm_guest_load15"};
        for (int i = 0; i < 3; ++i)
          w.sample(kLoad[i], "gauge", "Guest load average.", {{"vm", vm}},
                   number(s.uptime->load_centi[i] / 100.0));
      }
      if (s.meminfo) {
        w.sample("nfm_guest_memory_total_bytes", "gauge", "Guest MemTotal.", {{"vm", vm}},
                 std::to_string(s.meminfo->total_kb * 1024));
        w.sample("nfm_guest_memory_free_bytes", "gauge", "Guest MemFree.", {{"vm", vm}},
                 std::to_string(s.meminfo->free_kb * 1024));
        w.sample("nfm_guest_memory_available_bytes", "gauge", "Guest MemAvailable.", {{"vm", vm}},
                 std::to_string(s.meminfo->available_kb * 1024));
      }
      if (s.have_processes)
        w.sample("nfm_guest_processes", "gauge",
                 "Processes in the guest (kernel threads included).", {{"vm", vm}},
                 std::to_string(s.processes.size()));
      for (const auto& p : s.processes) {
        const std::vector<std::pair<const char*, std::string>> labels = {
            {"vm", vm}, {"pid", std::to_string(p.pid)}, {"comm", p.comm}};
        w.sample("nfm_process_cpu_seconds_total", "counter",
                 "Process user and system CPU time (/proc/PID/stat utime + stime).", labels,
                 number(p.cpu_s));
        w.sample("nfm_process_resident_memory_bytes", "gauge", "Process resident set size (VmRSS).",
                 labels, std::to_string(p.rss_bytes));
        w.sample("nfm_process_virtual_memory_bytes", "gauge",
                 "Process virtual memory size (VmSize).", labels, std::to_string(p.vsz_bytes));
        w.sample("nfm_process_threads", "gauge", "Threads in the process.", labels,
                 std::to_string(p.threads));
      }
      for (const auto& [ps, n] : s.sockets)
        w.sample("nfm_sockets", "gauge",
                 "Guest sockets by protocol and state (netstat's words; UNCONN: no state).",
                 {{"vm", vm}, {"proto", ps.first}, {"state", ps.second}}, std::to_string(n));
      for (const auto& i : s.interfaces) {
        const std::vector<std::pair<const char*, std::string>> labels = {{"vm", vm},
                                                                         {"interface", i.name}};
        w.sample("nfm_interface_receive_bytes_total", "counter", "Bytes received (/proc/net/dev).",
                 labels, std::to_string(i.rx_bytes));
        w.sample("nfm_interface_transmit_bytes_total", "counter", "Bytes sent (/proc/net/dev).",
                 labels, std::to_string(i.tx_bytes));
        w.sample("nfm_interface_receive_packets_total", "counter",
                 "Packets received (/proc/net/dev).", labels, std::to_string(i.rx_packets));
        w.sample("nfm_interface_transmit_packets_total", "counter", "Packets sent (/proc/net/dev).",
                 labels, std::to_string(i.tx_packets));
      }
    }
    return w.text();
  }

 private:
  static std::string key(const VmIdentity& vm) { return vm.host + "\n" + vm.name; }

  static MHD_Result handle(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/, const char* /*upload_data*/,
                           size_t* /*upload_data_size*/, void** /*con_cls*/) {
    auto* self = static_cast<Exporter*>(cls);
    unsigned int status = MHD_HTTP_OK;
    std::string body;
    const char* type = "text/plain; version=0.0.4; charset=utf-8";
    if (std::string_view(method) != "GET" && std::string_view(method) != "HEAD") {
      status = MHD_HTTP_METHOD_NOT_ALLOWED;
      body = "only GET\n";
    } else if (std::string_view(url) == "/metrics") {
      body = self->render();
    } else if (std::string_view(url) == "/") {
      type = "text/html; charset=utf-8";
      body = "<html><body><a href=\"/metrics\">nfm metrics</a></body></html>\n";
    } else {
      status = MHD_HTTP_NOT_FOUND;
      body = "not found: try /metrics\n";
    }
    MHD_Response* response =
        mhd()->MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    mhd()->MHD_add_response_header(response, "Content-Type", type);
    const MHD_Result r = mhd()->MHD_queue_response(connection, status, response);
    mhd()->MHD_destroy_response(response);
    return r;
  }

  const std::string spec_;
  std::string local_host_;  // frames of VMs on this host have their QEMU process here
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::map<std::string, VmSeries> vms_;
  SinkStats stats_;
};

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t utf8_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n;
  uint32_t min;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0)
    n = 2, min = 0x80;
  else if ((c & 0xf0) == 0xe0)
    n = 3, min = 0x800;
  else if ((c & 0xf8) == 0xf0)
    n = 4, min = 0x10000;
  else
    return 0;
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (b(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

std::string prometheus_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size();) {
    const char c = value[i];
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else {
      const size_t n = utf8_length(value, i);
      if (n == 0) {
        out += "\xef\xbf\xbd";  // U+FFFD
        ++i;
        continue;
      }
      out.append(value.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  return out;
}

Result<ListenAddress> parse_listen_address(std::string_view spec) {
  auto bad = [&](const std::string& why) {
    return make_error(
        Errc::invalid_argument,
        fmt::format("prometheus:{}: {} (expected prometheus:[ADDR:]PORT)", spec, why));
  };
  ListenAddress out;
  std::string_view port = spec;
  const size_t colon = spec.rfind(':');
  if (colon != std::string_view::npos) {
    std::string_view address = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    if (address.size() >= 2 && address.front() == '[' && address.back() == ']')
      address = address.substr(1, address.size() - 2);
    if (address.empty()) return bad("empty address");
    out.address = std::string(address);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return bad(fmt::format("'{}' is not a port number", port));
  out.port = static_cast<uint16_t>(value);
  return out;
}

Result<std::unique_ptr<PrometheusExporter>> open_prometheus_exporter(std::string_view spec) {
  NFM_ASSIGN(ListenAddress listen, parse_listen_address(spec));
  auto exporter = std::make_unique<Exporter>("prometheus:" + std::string(spec));
  NFM_TRY(exporter->start(listen));
  return std::unique_ptr<PrometheusExporter>(std::move(exporter));
}

}  // namespace nfm
