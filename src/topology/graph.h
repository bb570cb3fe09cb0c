// Who talks to whom: the network topology of many VMs, joined from what each VM's
// frames say about its interfaces and sockets. A TCP connection is seen from both
// ends (A's socket A:a -> B:b and B's mirror B:b -> A:a); joining the two gives an
// edge from the client's process to the server's service with both processes named.
// A connection whose peer no monitored VM owns (not monitored, NAT, outside) is an
// edge to an external endpoint, marked one-sided. Built from frames only: live
// crawls and stored history make the same graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "features/interfaces/rows.h"
#include "features/sockets/rows.h"
#include "frame/frame.h"

namespace nfm::topology {

// One VM at one time: what the graph is made of.
struct VmView {
  VmIdentity vm;
  uint64_t time_ns = 0;  // host wall clock of the crawl
  std::vector<InterfaceRow> interfaces;
  std::vector<SocketRow> sockets;
  std::string error;  // why interfaces or sockets could not be read ("" when both were)
};

// The view of `frame` (its interfaces and sockets sections).
VmView view_of_frame(const Frame& frame);

struct GraphOptions {
  bool local = false;  // keep loopback connections and services listening on loopback only
};

// When something was seen, over the frames the graph was made from.
struct Seen {
  uint64_t first_ns = 0, last_ns = 0;
  uint64_t frames = 0;  // how many of a VM's frames showed it
};

struct VmNode {
  std::string id;  // "vm:HOST/NAME"
  VmIdentity vm;
  std::vector<std::string> addresses;  // of every interface but loopback, without prefix length
  Seen seen;
  std::string error;  // the newest frame's, "" when it read both sections
};

// A listening TCP socket or a bound, unconnected UDP socket: one per VM, transport and port.
struct ServiceNode {
  std::string id;  // "svc:HOST/NAME:tcp:8080"
  std::string vm_id;
  std::string proto;  // "tcp" or "udp"
  uint16_t port = 0;
  std::vector<std::string> addresses;  // bound addresses ("0.0.0.0", "::", "192.168.50.2")
  int32_t pid = 0;                     // owner (0: none found)
  std::string comm;
  Seen seen;
};

// A process with at least one connection it started (the client end of an edge).
struct ProcessNode {
  std::string id;  // "proc:HOST/NAME:PID"
  std::string vm_id;
  int32_t pid = 0;
  std::string comm;
};

// An address no monitored VM owns.
struct ExternalNode {
  std::string id;  // "ext:ADDRESS"
  std::string address;
};

// One end of a connection as its VM sees it ("" vm for an external one).
struct EdgeEnd {
  std::string vm;  // VM name
  std::string address;
  uint16_t port = 0;
  int32_t pid = 0;
  std::string comm;
};

struct Edge {
  std::string id;  // "FROM->TO"
  std::string from,
      to;  // node ids: a process or external node -> a service, process or external node
  std::string
      vm_id;  // the VM whose socket shows it: the client's, or the server's for an external client
  std::string proto;         // "tcp" or "udp"
  uint16_t port = 0;         // the server's port
  EdgeEnd client, server;    // the newest connection's ends
  uint64_t connections = 0;  // the most seen at once in one frame
  bool one_sided = false;    // only one end's VM shows it
  // VMs that each show the other end (sharing its address): no one VM's sockets decide
  // for another, so the edge stays one-sided and names them all.
  std::vector<std::string> contested_by;
  bool local = false;  // loopback, within one VM (GraphOptions::local)
  // The server end was matched by an unconnected UDP socket on the port: it proves
  // no 4-tuple, only that the peer VM listens there.
  bool inferred = false;
  Seen seen;
};

struct Graph {
  std::vector<VmNode> vms;
  std::vector<ServiceNode> services;
  std::vector<ProcessNode> processes;
  std::vector<ExternalNode> externals;
  std::vector<Edge> edges;  // every list sorted by id
};

// The graph of `views`: any number of VMs, any number of frames each (history).
// Each frame's connections are joined with the peer VM's frame nearest in time.
Graph build_graph(const std::vector<VmView>& views, const GraphOptions& options = {});

// What changed from `before` to `after`: nodes and edges (by id) that appeared or went away.
struct GraphDiff {
  std::vector<ServiceNode> services_added, services_removed;
  std::vector<Edge> edges_added, edges_removed;
  bool empty() const {
    return services_added.empty() && services_removed.empty() && edges_added.empty() &&
           edges_removed.empty();
  }
};
GraphDiff diff_graphs(const Graph& before, const Graph& after);

// An address as the graph compares it: inet_ntop's canonical text, IPv4-mapped IPv6
// ("::ffff:10.0.0.1") as plain IPv4, a prefix length ("/24") dropped; "" when not an address.
std::string canonical_address(std::string_view text);
bool is_loopback(const std::string& canonical);

}  // namespace nfm::topology
