// nfm store init-cluster: the tables of a sharded, replicated ClickHouse store
// (docs/stores.md), made from the features' declarations like a single server's.
#include <fmt/core.h>

#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "store/clickhouse_store.h"

namespace nfm::app {

namespace {

struct InitClusterArgs {
  std::string store;
  std::string cluster = "nfm";
  bool print = false;
};

}  // namespace

void register_store(CLI::App& app) {
  CLI::App* store = app.add_subcommand("store", "Prepare a frame store");
  store->require_subcommand(1);
  auto args = std::make_shared<InitClusterArgs>();
  CLI::App* init = store->add_subcommand(
      "init-cluster",
      "Create nfm's tables on every node of a ClickHouse cluster: replicated local tables "
      "(NAME_local) and the Distributed tables nfm writes and reads, sharded by VM");
  init->footer(
      "\nThe servers need ZooKeeper, the cluster in <remote_servers> and the {shard} and "
      "{replica}\nmacros configured (docs/stores.md). Statements run ON CLUSTER through the "
      "node named;\nexisting tables are left alone. Then point each crawler at any node: "
      "--emit clickhouse:URL.\n");
  init->add_option("STORE", args->store, "clickhouse:http://HOST:8123/DB (any node)");
  init->add_option("--cluster", args->cluster, "the cluster's name in <remote_servers>")
      ->capture_default_str();
  init->add_flag("--print", args->print, "print the SQL instead of running it (no server needed)");
  init->callback([args] {
    std::string url = args->store;
    if (url.rfind("clickhouse:", 0) == 0) url = url.substr(11);
    if (args->print) {
      auto u = parse_clickhouse_url(url.empty() ? "http://localhost:8123/nfm" : url);
      if (!u) throw CLI::RuntimeError(report_error(u.error().message));
      for (const std::string& sql : clickhouse_cluster_ddl(u->database, args->cluster))
        fmt::print("{};\n", sql);
      return;
    }
    if (url.empty())
      throw CLI::RuntimeError(
          report_error("store init-cluster: which node? (clickhouse:http://HOST:8123/DB)"));
    auto r = init_clickhouse_cluster(url, args->cluster, [](const std::string& sql) {
      fmt::print(stderr, "nfm: {}\n", sql.substr(0, sql.find(" (")));
    });
    if (!r) throw CLI::RuntimeError(report_error(r.error().message));
    fmt::print(stderr, "nfm: the cluster's tables are ready\n");
  });
}

}  // namespace nfm::app
