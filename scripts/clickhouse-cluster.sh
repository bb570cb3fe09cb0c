#!/usr/bin/env bash
# The distributed store, tested (docs/stores.md): a ClickHouse cluster of 2 shards x 2
# replicas and a ZooKeeper, all started here on loopback ports; tables by
# `nfm store init-cluster`; two crawlers of two guests each writing to different nodes;
# one replica killed and restarted mid-run; then every frame crawled is in the cluster
# once and `nfm top/topology --store` see every VM. About 3 minutes on 2 cores.
# Not in CI (its 20 minutes): run it after changing the ClickHouse store.
#   scripts/clickhouse-cluster.sh [BUILD_DIR]   (default: the test build of scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-${NFM_BUILD_DIR:-build-test}}
command -v clickhouse-server >/dev/null || { echo "clickhouse-cluster.sh: needs clickhouse-server (scripts/install-deps.sh)" >&2; exit 2; }
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "clickhouse-cluster.sh: needs ZooKeeper: apt-get install zookeeper" >&2; exit 2; }
ninja -C "$build" guest_campaign_clickhouse_cluster nfm nfm-lab >/dev/null
exec "$build/tests/guest/guest_campaign_clickhouse_cluster" "${@:2}"
