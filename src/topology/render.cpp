#include "topology/render.h"

#include <fmt/core.h>

#include <map>

#include "util/time_text.h"

namespace nfm::topology {

namespace {

using nlohmann::json;

std::string who(int32_t pid, const std::string& comm) {
  return pid ? fmt::format("{}[{}]", comm, pid) : std::string("(no process)");
}

std::string seen_text(const Seen& s) {
  return fmt::format("  seen in {} frame{} {} .. {}", s.frames, s.frames == 1 ? "" : "s",
                     iso_time(s.first_ns), iso_time(s.last_ns));
}

json seen_json(const Seen& s) {
  return {{"first_ns", s.first_ns}, {"last_ns", s.last_ns}, {"frames", s.frames}};
}

json end_json(const EdgeEnd& e) {
  return {{"vm", e.vm.empty() ? json() : json(e.vm)},
          {"address", e.address},
          {"port", e.port},
          {"pid", e.pid ? json(e.pid) : json()},
          {"comm", e.pid ? json(e.comm) : json()}};
}

json service_json(const ServiceNode& s) {
  return {{"id", s.id},
          {"kind", "service"},
          {"vm", s.vm_id},
          {"proto", s.proto},
          {"port", s.port},
          {"addresses", s.addresses},
          {"pid", s.pid ? json(s.pid) : json()},
          {"comm", s.pid ? json(s.comm) : json()},
          {"seen", seen_json(s.seen)}};
}

json edge_json(const Edge& e) {
  return {{"id", e.id},
          {"from", e.from},
          {"to", e.to},
          {"vm", e.vm_id},
          {"proto", e.proto},
          {"port", e.port},
          {"client", end_json(e.client)},
          {"server", end_json(e.server)},
          {"connections", e.connections},
          {"one_sided", e.one_sided},
          {"contested_by", e.contested_by},
          {"local", e.local},
          {"inferred", e.inferred},
          {"seen", seen_json(e.seen)}};
}

std::string service_line(const ServiceNode& s) {
  std::string addresses;
  for (const std::string& a : s.addresses) addresses += (addresses.empty() ? "" : " ") + a;
  return fmt::format("listens   {}/{:<5} {:<24} on {}", s.proto, s.port, who(s.pid, s.comm),
                     addresses);
}

std::string edge_line(const Edge& e) {
  std::string contested;
  for (const std::string& vm : e.contested_by) contested += (contested.empty() ? "" : ", ") + vm;
  if (!contested.empty()) contested = ", claimed by " + contested;
  std::string server =
      e.to.starts_with("ext:")
          ? fmt::format("{}:{} (external, one-sided{})", e.server.address, e.server.port, contested)
          : fmt::format("{} {}/{} {}{}", e.server.vm, e.proto, e.port,
                        who(e.server.pid, e.server.comm), e.local ? " (local)" : "");
  if (e.from.starts_with("ext:"))
    return fmt::format("accepts   {}/{:<5} from {}:{} (external, one-sided{})", e.proto, e.port,
                       e.client.address, e.client.port, contested);
  return fmt::format("connects  {} {} -> {}{}", e.proto, who(e.client.pid, e.client.comm), server,
                     e.connections > 1 ? fmt::format("  x{}", e.connections) : "");
}

std::string dot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n')
      out += "\\n";  // DOT's line break in a label
    else if (byte < 0x20 || byte >= 0x7f)
      out += '?';  // guest bytes (a comm) need not be UTF-8, which graphviz requires
    else
      out += c;
  }
  return out + "\"";
}

}  // namespace

std::string graph_text(const Graph& g, bool history) {
  std::string out;
  for (const VmNode& vm : g.vms) {
    std::string addresses;
    for (const std::string& a : vm.addresses) addresses += " " + a;
    out += fmt::format("vm {}{}{}\n", vm.vm.name,
                       vm.vm.host.empty() ? "" : fmt::format(" (host {})", vm.vm.host), addresses);
    if (!vm.error.empty()) out += fmt::format("  error: {}\n", vm.error);
    if (history) out += " " + seen_text(vm.seen) + "\n";
    for (const ServiceNode& s : g.services) {
      if (s.vm_id != vm.id) continue;
      out += "  " + service_line(s) + (history ? seen_text(s.seen) : "") + "\n";
    }
    for (const Edge& e : g.edges) {
      if (e.vm_id == vm.id) out += "  " + edge_line(e) + (history ? seen_text(e.seen) : "") + "\n";
    }
  }
  for (const ExternalNode& x : g.externals) out += fmt::format("external {}\n", x.address);
  return out;
}

json graph_json(const Graph& g) {
  json nodes = json::array(), edges = json::array();
  for (const VmNode& vm : g.vms)
    nodes.push_back({{"id", vm.id},
                     {"kind", "vm"},
                     {"name", vm.vm.name},
                     {"uuid", vm.vm.uuid},
                     {"host", vm.vm.host},
                     {"addresses", vm.addresses},
                     {"error", vm.error.empty() ? json() : json(vm.error)},
                     {"seen", seen_json(vm.seen)}});
  for (const ServiceNode& s : g.services) nodes.push_back(service_json(s));
  for (const ProcessNode& p : g.processes)
    nodes.push_back(
        {{"id", p.id}, {"kind", "process"}, {"vm", p.vm_id}, {"pid", p.pid}, {"comm", p.comm}});
  for (const ExternalNode& x : g.externals)
    nodes.push_back({{"id", x.id}, {"kind", "external"}, {"address", x.address}});
  for (const Edge& e : g.edges) edges.push_back(edge_json(e));
  return {{"nodes", std::move(nodes)}, {"edges", std::move(edges)}};
}

std::string graph_dot(const Graph& g) {
  std::string out =
      "digraph topology {\n"
      "  rankdir=LR;\n  compound=true;\n"
      "  node [fontname=\"Helvetica\", fontsize=10];\n"
      "  edge [fontname=\"Helvetica\", fontsize=9];\n";
  size_t cluster = 0;
  for (const VmNode& vm : g.vms) {
    std::string label = vm.vm.name;
    for (const std::string& a : vm.addresses) label += "\n" + a;
    out += fmt::format("  subgraph cluster_{} {{\n    label={};\n    style=rounded;\n", cluster++,
                       dot_quote(label));
    out += fmt::format("    {} [shape=point, style=invis];\n", dot_quote(vm.id));
    for (const ServiceNode& s : g.services)
      if (s.vm_id == vm.id)
        out += fmt::format(
            "    {} [shape=box, style=filled, fillcolor=\"#dbe9f6\", label={}];\n", dot_quote(s.id),
            dot_quote(fmt::format("{}/{}\n{}", s.proto, s.port, who(s.pid, s.comm))));
    for (const ProcessNode& p : g.processes)
      if (p.vm_id == vm.id)
        out += fmt::format("    {} [shape=ellipse, label={}];\n", dot_quote(p.id),
                           dot_quote(who(p.pid, p.comm)));
    out += "  }\n";
  }
  for (const ExternalNode& x : g.externals)
    out += fmt::format("  {} [shape=octagon, style=dashed, label={}];\n", dot_quote(x.id),
                       dot_quote(x.address + "\n(external)"));
  for (const Edge& e : g.edges) {
    std::string label = fmt::format("{}/{}", e.proto, e.port);
    if (e.connections > 1) label += fmt::format(" x{}", e.connections);
    out += fmt::format("  {} -> {} [label={}{}];\n", dot_quote(e.from), dot_quote(e.to),
                       dot_quote(label), e.one_sided ? ", style=dashed" : "");
  }
  return out + "}\n";
}

std::string diff_text(const GraphDiff& d) {
  std::string out;
  for (const ServiceNode& s : d.services_added) out += "+ " + service_line(s) + "\n";
  for (const ServiceNode& s : d.services_removed) out += "- " + service_line(s) + "\n";
  for (const Edge& e : d.edges_added) out += "+ " + edge_line(e) + "\n";
  for (const Edge& e : d.edges_removed) out += "- " + edge_line(e) + "\n";
  return out;
}

json diff_json(const GraphDiff& d) {
  auto list = [](const auto& items, auto to_json) {
    json out = json::array();
    for (const auto& x : items) out.push_back(to_json(x));
    return out;
  };
  return {{"services_added", list(d.services_added, service_json)},
          {"services_removed", list(d.services_removed, service_json)},
          {"edges_added", list(d.edges_added, edge_json)},
          {"edges_removed", list(d.edges_removed, edge_json)}};
}

}  // namespace nfm::topology
