#include "topology/graph.h"

#include <arpa/inet.h>
#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace nfm::topology {

namespace {

std::string vm_key(const VmIdentity& vm) {
  return vm.host + "/" + vm.name;
}
std::string vm_id(const VmIdentity& vm) {
  return "vm:" + vm_key(vm);
}
std::string transport(const std::string& proto) {
  return proto.starts_with("udp") ? "udp" : "tcp";
}
bool is_inet(const SocketRow& s) {
  return s.proto != "unix";
}

// A TCP listener or a bound, unconnected UDP socket.
bool is_listener(const SocketRow& s) {
  if (!is_inet(s) || s.local_port == 0) return false;
  return transport(s.proto) == "tcp" ? s.state == "LISTEN" : s.remote_port == 0;
}

// An established TCP connection, or a UDP socket connected to a peer.
bool is_connection(const SocketRow& s) {
  if (!is_inet(s) || s.remote_port == 0) return false;
  return s.state == "ESTABLISHED";
}

// `into` ∪ `from`, sorted.
void merge_names(std::vector<std::string>& into, const std::vector<std::string>& from) {
  std::set<std::string> all(into.begin(), into.end());
  all.insert(from.begin(), from.end());
  into.assign(all.begin(), all.end());
}

void see(Seen& seen, uint64_t time_ns) {
  if (seen.frames == 0 || time_ns < seen.first_ns) seen.first_ns = time_ns;
  seen.last_ns = std::max(seen.last_ns, time_ns);
  ++seen.frames;
}

// A socket's two ends, canonical: how a mirror is found.
struct Ends {
  std::string transport, local;
  uint16_t local_port = 0;
  std::string remote;
  uint16_t remote_port = 0;
  auto tied() const { return std::tie(transport, local, local_port, remote, remote_port); }
  bool operator<(const Ends& o) const { return tied() < o.tied(); }
};

// One VM's frame with what the join looks up in it, indexed: a guest with a million
// sockets makes each lookup a tree search, not a scan (a hostile VM must not make the
// join of the others quadratic).
struct IndexedView {
  const VmView* view;
  std::string key;
  std::set<std::string> own;  // canonical addresses of every interface, loopback included
  std::set<std::pair<std::string, uint16_t>> listening;  // (transport, port)
  std::map<Ends, const SocketRow*> connected;            // established TCP, connected UDP
  // Unconnected UDP sockets by (port, canonical local address).
  std::map<std::pair<uint16_t, std::string>, const SocketRow*> udp_unconnected;
};

IndexedView index_view(const VmView& v) {
  IndexedView out{.view = &v, .key = vm_key(v.vm)};
  for (const InterfaceRow& i : v.interfaces) {
    for (const auto* list : {&i.ipv4, &i.ipv6})
      for (const std::string& a : *list)
        if (std::string c = canonical_address(a); !c.empty()) out.own.insert(c);
  }
  for (const SocketRow& s : v.sockets) {
    if (!is_inet(s)) continue;
    const std::string t = transport(s.proto);
    if (is_listener(s)) out.listening.emplace(t, s.local_port);
    // Only a live connection mirrors one: a socket closing (FIN_WAIT, TIME_WAIT...) on
    // one side must not make the other side's connection vanish from the graph.
    if (is_connection(s))
      out.connected.emplace(Ends{t, canonical_address(s.local_addr), s.local_port,
                                 canonical_address(s.remote_addr), s.remote_port},
                            &s);
    else if (t == "udp" && s.local_port != 0 && s.remote_port == 0)
      out.udp_unconnected.emplace(std::pair(s.local_port, canonical_address(s.local_addr)), &s);
  }
  return out;
}

// The peer's socket of connection `s` (seen from the other VM), or nullptr.
const SocketRow* find_mirror(const IndexedView& peer, const SocketRow& s, const std::string& la,
                             const std::string& ra) {
  const std::string t = transport(s.proto);
  auto m = peer.connected.find(Ends{t, ra, s.remote_port, la, s.local_port});
  if (m != peer.connected.end()) return m->second;
  if (t != "udp") return nullptr;
  // UDP: the server's socket is usually unconnected and may be bound to the wildcard.
  for (const std::string& address : {ra, std::string("0.0.0.0"), std::string("::")}) {
    auto u = peer.udp_unconnected.find(std::pair(s.remote_port, address));
    if (u != peer.udp_unconnected.end()) return u->second;
  }
  return nullptr;
}

class Builder {
 public:
  Builder(const std::vector<VmView>& views, const GraphOptions& options) : options_(options) {
    for (const VmView& v : views) by_vm_[vm_key(v.vm)].push_back(index_view(v));
    for (auto& [key, list] : by_vm_) {
      std::sort(list.begin(), list.end(), [](const IndexedView& a, const IndexedView& b) {
        return a.view->time_ns < b.view->time_ns;
      });
      for (const IndexedView& iv : list)
        for (const std::string& a : iv.own) owners_[a].insert(key);
    }
  }

  Graph build() {
    for (auto& [key, list] : by_vm_) {
      add_vm(list);
      for (const IndexedView& iv : list) add_frame(iv);
    }
    Graph g;
    for (auto& [id, n] : vms_) g.vms.push_back(std::move(n));
    for (auto& [id, n] : services_) g.services.push_back(std::move(n));
    for (auto& [id, n] : processes_) g.processes.push_back(std::move(n));
    for (auto& [id, n] : externals_) g.externals.push_back(std::move(n));
    for (auto& [id, e] : edges_) g.edges.push_back(std::move(e.edge));
    return g;
  }

 private:
  struct EdgeState {
    Edge edge;
    uint64_t newest_ns = 0;
  };

  void add_vm(const std::vector<IndexedView>& list) {
    const VmView& newest = *list.back().view;
    VmNode n{.id = vm_id(newest.vm), .vm = newest.vm, .error = newest.error};
    std::set<std::string> addresses;
    for (const IndexedView& iv : list) {
      see(n.seen, iv.view->time_ns);
      for (const std::string& a : iv.own)
        if (!is_loopback(a)) addresses.insert(a);
    }
    n.addresses.assign(addresses.begin(), addresses.end());
    vms_.emplace(n.id, std::move(n));
  }

  // The frame of VM `key` nearest in time to `time_ns` (its frames are sorted by time).
  const IndexedView& nearest(const std::string& key, uint64_t time_ns) const {
    const std::vector<IndexedView>& list = by_vm_.at(key);
    auto after =
        std::lower_bound(list.begin(), list.end(), time_ns,
                         [](const IndexedView& v, uint64_t t) { return v.view->time_ns < t; });
    if (after == list.end()) return list.back();
    if (after == list.begin()) return *after;
    auto before = std::prev(after);
    return after->view->time_ns - time_ns < time_ns - before->view->time_ns ? *after : *before;
  }

  std::string service_id(const IndexedView& iv, const std::string& t, uint16_t port) const {
    return fmt::format("svc:{}:{}:{}", iv.key, t, port);
  }

  std::string process(const IndexedView& iv, const SocketRow& s) {
    std::string id = fmt::format("proc:{}:{}", iv.key, s.pid);
    auto& n = processes_[id];
    n = {.id = id, .vm_id = vm_id(iv.view->vm), .pid = s.pid, .comm = s.comm};
    return id;
  }

  std::string external(const std::string& address) {
    std::string id = "ext:" + address;
    externals_[id] = {.id = id, .address = address};
    return id;
  }

  void add_services(const IndexedView& iv) {
    std::map<std::string, ServiceNode> frame;
    std::map<std::string, std::set<std::string>> addresses;  // by service id
    for (const SocketRow& s : iv.view->sockets) {
      if (!is_listener(s)) continue;
      const std::string t = transport(s.proto);
      ServiceNode& n = frame[service_id(iv, t, s.local_port)];
      if (n.id.empty())
        n = {.id = service_id(iv, t, s.local_port),
             .vm_id = vm_id(iv.view->vm),
             .proto = t,
             .port = s.local_port,
             .pid = s.pid,
             .comm = s.comm};
      addresses[n.id].insert(canonical_address(s.local_addr));
      if (!n.pid) n.pid = s.pid, n.comm = s.comm;
    }
    for (auto& [id, n] : frame) {
      n.addresses.assign(addresses[id].begin(), addresses[id].end());
      const bool loopback_only = std::all_of(n.addresses.begin(), n.addresses.end(),
                                             [](const std::string& a) { return is_loopback(a); });
      if (loopback_only && !options_.local) continue;
      auto [it, fresh] = services_.emplace(id, n);
      if (!fresh && iv.view->time_ns >= it->second.seen.last_ns) {
        n.seen = it->second.seen;
        it->second = n;  // the newest owner and addresses
      }
      see(it->second.seen, iv.view->time_ns);
    }
  }

  // Whether the socket `s` of `iv` is the server end of its connection: not when the
  // peer listens on its port (`peer_listening`); else when we listen on ours, else the
  // lower port (ties: the lower VM key).
  static bool is_server_end(const IndexedView& iv, const SocketRow& s, bool peer_listening,
                            const std::string& peer_key) {
    if (peer_listening) return false;
    if (iv.listening.count({transport(s.proto), s.local_port})) return true;
    if (s.local_port != s.remote_port) return s.local_port < s.remote_port;
    return iv.key < peer_key;
  }

  void add_frame(const IndexedView& iv) {
    add_services(iv);
    std::map<std::string, Edge> frame;  // this frame's edges, connections counted
    for (const SocketRow& s : iv.view->sockets) {
      if (!is_connection(s)) continue;
      const std::string t = transport(s.proto);
      const std::string la = canonical_address(s.local_addr), ra = canonical_address(s.remote_addr);
      if (la.empty() || ra.empty()) continue;
      Edge e{.vm_id = vm_id(iv.view->vm), .proto = t};
      e.client = {.vm = iv.view->vm.name,
                  .address = la,
                  .port = s.local_port,
                  .pid = s.pid,
                  .comm = s.comm};
      if (is_loopback(ra) || iv.own.count(ra)) {
        if (!options_.local) continue;
        const SocketRow* m = find_mirror(iv, s, la, ra);
        const bool listening = iv.listening.count({t, s.remote_port}) > 0;
        if (m && m != &s && is_server_end(iv, s, listening, iv.key)) continue;
        e.local = true;
        e.from = process(iv, s);
        e.to = listening ? service_id(iv, t, s.remote_port) : m ? process(iv, *m) : external(ra);
        e.one_sided = !listening && !m;
        e.server = {.vm = iv.view->vm.name,
                    .address = ra,
                    .port = s.remote_port,
                    .pid = m ? m->pid : 0,
                    .comm = m ? m->comm : ""};
        e.port = s.remote_port;
      } else if (Peer p = find_peer(iv, s, la, ra); p.socket) {
        const IndexedView* peer = p.view;
        const SocketRow* m = p.socket;
        const bool listening =
            peer->listening.count({t, s.remote_port}) > 0 || (t == "udp" && m->remote_port == 0);
        e.inferred = m->remote_port == 0;  // an unconnected UDP socket proves no 4-tuple
        if (is_server_end(iv, s, listening, peer->key)) continue;  // the peer's pass adds it
        e.from = process(iv, s);
        e.to = listening ? service_id(*peer, t, s.remote_port) : process(*peer, *m);
        e.server = {.vm = peer->view->vm.name,
                    .address = ra,
                    .port = s.remote_port,
                    .pid = m->pid,
                    .comm = m->comm};
        e.port = s.remote_port;
      } else if (iv.listening.count({t, s.local_port})) {
        // A client we cannot see connected to our service.
        e.one_sided = true;
        e.from = external(ra);
        e.to = service_id(iv, t, s.local_port);
        e.server = e.client;
        e.client = {.address = ra, .port = s.remote_port};
        e.port = s.local_port;
        e.contested_by = p.claimants;
      } else {
        e.contested_by = p.claimants;
        e.one_sided = true;
        e.from = process(iv, s);
        e.to = external(ra);
        e.server = {.address = ra, .port = s.remote_port};
        e.port = s.remote_port;
      }
      e.id = fmt::format("{}->{}#{}/{}", e.from, e.to, e.proto, e.port);
      auto [it, fresh] = frame.emplace(e.id, e);
      ++it->second.connections;
      merge_names(it->second.contested_by, e.contested_by);
    }
    for (auto& [id, e] : frame) {
      auto [it, fresh] = edges_.emplace(id, EdgeState{.edge = e});
      EdgeState& st = it->second;
      if (iv.view->time_ns >= st.newest_ns) {
        st.edge.client = e.client, st.edge.server = e.server;
        st.newest_ns = iv.view->time_ns;
      }
      st.edge.connections = std::max(fresh ? 0 : st.edge.connections, e.connections);
      merge_names(st.edge.contested_by, e.contested_by);
      see(st.edge.seen, iv.view->time_ns);
    }
  }

  // The watched VM (other than this one) that owns `ra` and shows the other end.
  // Several VMs may share an address (each behind its own NAT): only a mirrored
  // socket says which one is the peer. When more than one shows it, no VM's word
  // decides for another: the connection stays one-sided, the claimants named.
  struct Peer {
    const IndexedView* view = nullptr;
    const SocketRow* socket = nullptr;
    std::vector<std::string> claimants;  // VM names, when contested
  };
  Peer find_peer(const IndexedView& iv, const SocketRow& s, const std::string& la,
                 const std::string& ra) const {
    Peer found;
    auto owners = owners_.find(ra);
    if (owners == owners_.end()) return found;
    size_t mirrors = 0;
    for (const std::string& key : owners->second) {
      if (key == iv.key) continue;
      const IndexedView& peer = nearest(key, iv.view->time_ns);
      const SocketRow* m = find_mirror(peer, s, la, ra);
      if (!m) continue;
      found.claimants.push_back(peer.view->vm.name);
      if (++mirrors == 1) found.view = &peer, found.socket = m;
    }
    // The same holds for our own end: another VM showing this very connection from
    // our address (a copy of our address and our socket) makes it contested too.
    if (mirrors == 1) {
      const Ends ours{transport(s.proto), la, s.local_port, ra, s.remote_port};
      auto same = owners_.find(la);
      for (const std::string& key :
           same == owners_.end() ? std::set<std::string>{} : same->second) {
        if (key == iv.key || key == found.view->key) continue;
        const IndexedView& other = nearest(key, iv.view->time_ns);
        if (!other.connected.count(ours)) continue;
        if (mirrors++ == 1) found.claimants = {iv.view->vm.name};
        found.claimants.push_back(other.view->vm.name);
      }
    }
    if (mirrors > 1)
      found.view = nullptr, found.socket = nullptr;
    else
      found.claimants.clear();
    return found;
  }

  GraphOptions options_;
  std::map<std::string, std::vector<IndexedView>> by_vm_;
  std::map<std::string, std::set<std::string>> owners_;  // address -> VM keys
  std::map<std::string, VmNode> vms_;
  std::map<std::string, ServiceNode> services_;
  std::map<std::string, ProcessNode> processes_;
  std::map<std::string, ExternalNode> externals_;
  std::map<std::string, EdgeState> edges_;
};

}  // namespace

std::string canonical_address(std::string_view text) {
  std::string a(text.substr(0, text.find('/')));
  char out[INET6_ADDRSTRLEN];
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) return inet_ntop(AF_INET, &v4, out, sizeof out);
  if (inet_pton(AF_INET6, a.c_str(), &v6) != 1) return "";
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    std::memcpy(&v4, &v6.s6_addr[12], 4);
    return inet_ntop(AF_INET, &v4, out, sizeof out);
  }
  return inet_ntop(AF_INET6, &v6, out, sizeof out);
}

bool is_loopback(const std::string& canonical) {
  return canonical == "::1" || canonical.starts_with("127.");
}

VmView view_of_frame(const Frame& frame) {
  VmView v{.vm = frame.meta.vm, .time_ns = frame.meta.host_time_ns};
  if (v.vm.name.empty()) v.vm.name = frame.meta.target;  // a dump read by itself
  std::vector<std::string> errors;
  if (const auto* i = frame.get<InterfaceList>()) v.interfaces = i->rows;
  if (const auto* s = frame.get<SocketList>()) v.sockets = s->rows;
  for (const char* name : {"interfaces", "sockets"}) {
    auto it = frame.meta.features.find(Feature::named(name));
    if (it != frame.meta.features.end() && !it->second.error.empty())
      errors.push_back(fmt::format("{}: {}", name, it->second.error));
    else if (!frame.sections.count(name))
      errors.push_back(fmt::format("{}: not in the frame", name));
  }
  for (const std::string& e : errors) v.error += (v.error.empty() ? "" : "; ") + e;
  return v;
}

Graph build_graph(const std::vector<VmView>& views, const GraphOptions& options) {
  return Builder(views, options).build();
}

GraphDiff diff_graphs(const Graph& before, const Graph& after) {
  GraphDiff d;
  auto split = [](const auto& old_list, const auto& new_list, auto& added, auto& removed) {
    std::set<std::string> old_ids, new_ids;
    for (const auto& x : old_list) old_ids.insert(x.id);
    for (const auto& x : new_list) new_ids.insert(x.id);
    for (const auto& x : new_list)
      if (!old_ids.count(x.id)) added.push_back(x);
    for (const auto& x : old_list)
      if (!new_ids.count(x.id)) removed.push_back(x);
  };
  split(before.services, after.services, d.services_added, d.services_removed);
  split(before.edges, after.edges, d.edges_added, d.edges_removed);
  return d;
}

}  // namespace nfm::topology
