// The topology join (topology/graph.cpp) on synthetic views: N connections of one VM
// to another's service, each end's socket in its own VM. The join is a tree lookup
// per connection, so the time per connection should stay flat as N grows (a scan of
// the peer's sockets would make it grow with N: a hostile VM with a million sockets
// must not make the graph of the others quadratic). Baseline: building the views.
#include <benchmark/benchmark.h>

#include "topology/graph.h"

namespace {

using nfm::SocketRow;
using nfm::topology::VmView;

SocketRow connection(std::string la, uint16_t lp, std::string ra, uint16_t rp, int32_t pid) {
  return {.proto = "tcp",
          .state = "ESTABLISHED",
          .local_addr = std::move(la),
          .remote_addr = std::move(ra),
          .local_port = lp,
          .remote_port = rp,
          .pid = pid};
}

std::vector<VmView> views(int64_t n) {
  VmView a{.vm = {.name = "a", .host = "h"}, .time_ns = 1},
      b{.vm = {.name = "b", .host = "h"}, .time_ns = 1};
  a.interfaces.push_back({.name = "eth0", .ipv4 = {"10.1.0.1/24"}});
  b.interfaces.push_back({.name = "eth0", .ipv4 = {"10.1.0.2/24"}});
  b.sockets.push_back({.proto = "tcp",
                       .state = "LISTEN",
                       .local_addr = "0.0.0.0",
                       .remote_addr = "0.0.0.0",
                       .local_port = 443,
                       .pid = 2});
  for (int64_t i = 0; i < n; ++i) {
    // Distinct 4-tuples: one client address, ports 1..n (n <= 65535).
    const auto port = static_cast<uint16_t>(1 + i);
    a.sockets.push_back(connection("10.1.0.1", port, "10.1.0.2", 443, 1));
    b.sockets.push_back(connection("10.1.0.2", 443, "10.1.0.1", port, 2));
  }
  return {a, b};
}

void BM_views(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(views(state.range(0)));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_views)->Arg(1000)->Arg(10000)->Arg(60000)->Unit(benchmark::kMillisecond);

void BM_join(benchmark::State& state) {
  const std::vector<VmView> input = views(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(nfm::topology::build_graph(input));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_join)->Arg(1000)->Arg(10000)->Arg(60000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
