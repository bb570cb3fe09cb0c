#!/usr/bin/env bash
# Installs every Debian 12 package nfm needs to build, test and run its demo guest.
# Used by the README, by .ci/run and by scripts/demo.sh; safe to run again.
set -euo pipefail
packages=(
  # build
  build-essential cmake ninja-build pkg-config git ccache mold
  # libraries
  libbpf-dev libelf-dev libdw-dev zlib1g-dev liblzma-dev liblz4-dev libzstd-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libncurses-dev
  liblzo2-dev libsnappy-dev libxxhash-dev
  # the stores: SQLite, ClickHouse over HTTP (libcurl), the Prometheus endpoint (libmicrohttpd)
  libsqlite3-dev libcurl4-openssl-dev libmicrohttpd-dev sqlite3
  # nfm shell: line editing
  libedit-dev
  # nfm topology's pictures (graphviz's library, loaded when a picture is asked for)
  libgraphviz-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev tmux
  # the test-guest lab: QEMU, busybox, unpacking Debian kernel packages and modules
  qemu-system-x86 busybox-static cpio xz-utils zstd lz4 kmod ca-certificates
  # an independent BTF reader the type tests compare against
  dwarves
  # the store tests run their own servers (never the system services)
  clickhouse-server clickhouse-client prometheus
  # optional: libvirt domain names for nfm crawl's discovery; jq for scripts/demo.sh
  libvirt-dev jq bsdextrautils
  # the package test scrapes the installed service's /metrics
  curl
  # clang-tidy on changed files (the `tidy` test)
  clang-tidy
  # the service: sd_notify and the journal (libsystemd); the package's man pages, its
  # lint and the unit's security score (systemd-analyze)
  libsystemd-dev help2man lintian systemd
  # nfm scan: libyara's headers (the library is loaded on first use); the yara command
  # the scan benchmark compares with
  libyara-dev yara
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
