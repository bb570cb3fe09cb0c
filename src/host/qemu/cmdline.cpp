#include "host/qemu/cmdline.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

namespace nfm {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// QEMU's key=value,key=value option syntax; ",," is a literal comma. A first
// item without '=' gets `implied_key` (e.g. "-name foo" means guest=foo).
std::vector<std::pair<std::string, std::string>> parse_kv(std::string_view text,
                                                          std::string_view implied_key) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string item;
  auto finish = [&](bool first) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      out.emplace_back(first ? std::string(implied_key) : item, first ? item : "on");
    } else {
      out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
    item.clear();
  };
  bool first = true;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        item += ',';
        ++i;
        continue;
      }
      finish(first);
      first = false;
      continue;
    }
    item += text[i];
  }
  if (!item.empty() || first) finish(first);
  return out;
}

bool parse_bool(std::string_view v) {
  return v == "on" || v == "yes" || v == "true" || v == "y";
}

}  // namespace

Result<uint64_t> parse_qemu_size(std::string_view text, int default_shift) {
  text = trim(text);
  if (text.empty()) return make_error(Errc::invalid_argument, "empty size");
  // Mirrors qemu_strtosz(): a number (fractions allowed) and an optional
  // binary suffix B/K/M/G/T/P/E.
  std::string num(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(num.c_str(), &end);
  if (end == num.c_str() || errno != 0 || v < 0 || !std::isfinite(v)) {
    return make_error(Errc::invalid_argument, fmt::format("bad size '{}'", text));
  }
  std::string_view suffix(end);
  int shift = default_shift;
  if (!suffix.empty()) {
    if (suffix.size() != 1)
      return make_error(Errc::invalid_argument, fmt::format("bad size suffix in '{}'", text));
    switch (suffix[0]) {
      case 'b':
      case 'B':
        shift = 0;
        break;
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      case 'p':
      case 'P':
        shift = 50;
        break;
      case 'e':
      case 'E':
        shift = 60;
        break;
      default:
        return make_error(Errc::invalid_argument, fmt::format("bad size suffix in '{}'", text));
    }
  }
  const double bytes = std::ldexp(v, shift);
  if (bytes >= 18446744073709551616.0)
    return make_error(Errc::invalid_argument, fmt::format("size '{}' too large", text));
  return static_cast<uint64_t>(bytes);
}

const QemuMemoryBackend* QemuCmdline::backend(std::string_view id) const {
  for (const auto& b : backends) {
    if (b.id == id) return &b;
  }
  return nullptr;
}

std::vector<const QemuMemoryBackend*> QemuCmdline::ram_backends() const {
  std::vector<const QemuMemoryBackend*> out;
  if (!machine_memory_backend.empty()) {
    if (const auto* b = backend(machine_memory_backend)) out.push_back(b);
    return out;
  }
  // With NUMA memdevs, machine RAM is the node backends back to back, in node order.
  for (const auto& id : numa_memdevs) {
    if (const auto* b = backend(id)) out.push_back(b);
  }
  return out;
}

Result<QemuCmdline> parse_qemu_cmdline(std::span<const std::string> argv) {
  QemuCmdline c;
  if (!argv.empty()) c.argv0 = argv[0];
  std::map<std::string, std::string> socket_chardevs;  // -chardev socket id -> path
  std::vector<std::string> qmp_chardevs;               // -mon chardev=ID,mode=control
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string_view opt = argv[i];
    if (opt.size() < 2 || opt[0] != '-') continue;
    opt.remove_prefix(opt[1] == '-' ? 2 : 1);  // QEMU accepts -opt and --opt
    // Options we care about all take one argument.
    const bool wanted = opt == "name" || opt == "m" || opt == "machine" || opt == "M" ||
                        opt == "object" || opt == "numa" || opt == "mem-path" || opt == "uuid" ||
                        opt == "qmp" || opt == "chardev" || opt == "mon";
    if (!wanted || i + 1 >= argv.size()) continue;
    const std::string& arg = argv[++i];

    if (opt == "name") {
      for (auto& [k, v] : parse_kv(arg, "guest")) {
        if (k == "guest") c.name = v;
      }
    } else if (opt == "m") {
      for (auto& [k, v] : parse_kv(arg, "size")) {
        if (k != "size") continue;
        // A bare number means MiB (QEMU: "Fix up legacy suffix-less format").
        NFM_ASSIGN(c.ram_size, parse_qemu_size(v, 20));
        c.ram_size_given = true;
      }
    } else if (opt == "machine" || opt == "M") {
      for (auto& [k, v] : parse_kv(arg, "type")) {
        if (k == "type") c.machine = v;
        if (k == "memory-backend") c.machine_memory_backend = v;
        if (k == "max-ram-below-4g") {
          NFM_ASSIGN(uint64_t m, parse_qemu_size(v, 0));
          c.max_ram_below_4g = m;
        }
      }
    } else if (opt == "numa") {
      auto kv = parse_kv(arg, "type");
      for (auto& [k, v] : kv) {
        if (k == "memdev") c.numa_memdevs.push_back(v);
      }
    } else if (opt == "mem-path") {
      c.mem_path = arg;
    } else if (opt == "uuid") {
      c.uuid = arg;
    } else if (opt == "qmp") {
      // -qmp unix:PATH[,server=on,wait=off] (also unix:PATH,server,nowait)
      if (c.qmp_socket.empty() && starts_with(arg, "unix:")) {
        auto kv = parse_kv(std::string_view(arg).substr(5), "path");
        if (!kv.empty() && kv[0].first == "path") c.qmp_socket = kv[0].second;
      }
    } else if (opt == "chardev") {
      auto kv = parse_kv(arg, "backend");
      std::string id, path;
      bool socket = false;
      for (auto& [k, v] : kv) {
        if (k == "backend") socket = v == "socket";
        if (k == "id") id = v;
        if (k == "path") path = v;
      }
      if (socket && !id.empty() && !path.empty()) socket_chardevs[id] = path;
    } else if (opt == "mon") {
      std::string chardev;
      bool control = false;
      for (auto& [k, v] : parse_kv(arg, "chardev")) {
        if (k == "chardev") chardev = v;
        if (k == "mode") control = v == "control";
      }
      if (control && !chardev.empty()) qmp_chardevs.push_back(chardev);
    } else if (opt == "object") {
      QemuMemoryBackend b;
      if (!arg.empty() && arg[0] == '{') {
        // libvirt's JSON form: {"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}
        auto j = nlohmann::json::parse(arg, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object()) return make_error(Errc::bad_format, "bad JSON -object: " + arg);
        b.type = j.value("qom-type", "");
        b.id = j.value("id", "");
        if (j.contains("size")) {
          if (j["size"].is_number_unsigned()) {
            b.size = j["size"].get<uint64_t>();
          } else if (j["size"].is_string()) {
            NFM_ASSIGN(b.size, parse_qemu_size(j["size"].get<std::string>(), 0));
          }
        }
        b.mem_path = j.value("mem-path", "");
        if (j.contains("share")) b.share = j["share"].is_boolean() ? j["share"].get<bool>() : false;
      } else {
        for (auto& [k, v] : parse_kv(arg, "qom-type")) {
          if (k == "qom-type") b.type = v;
          if (k == "id") b.id = v;
          if (k == "size") {
            NFM_ASSIGN(b.size, parse_qemu_size(v, 0));
          }
          if (k == "mem-path") b.mem_path = v;
          if (k == "share") b.share = parse_bool(v);
        }
      }
      if (starts_with(b.type, "memory-backend-")) c.backends.push_back(std::move(b));
    }
  }
  if (c.qmp_socket.empty()) {
    for (const auto& id : qmp_chardevs) {
      if (auto it = socket_chardevs.find(id); it != socket_chardevs.end()) {
        c.qmp_socket = it->second;
        break;
      }
    }
  }
  // With -machine memory-backend=, the backend's size is the RAM size.
  auto ram = c.ram_backends();
  if (!ram.empty()) {
    uint64_t total = 0;
    for (const auto* b : ram) total += b->size;
    c.ram_size = total;
  }
  return c;
}

}  // namespace nfm
