#!/usr/bin/env bash
# Builds the Debian package from a release tree: build-package/nfm_VERSION_amd64.deb,
# then lints it (lintian, errors fail). Install with: apt install ./build-package/nfm_*.deb
# (docs/service.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${NFM_PACKAGE_DIR:-build-package}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/nfm/ccache}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNFM_BUILD_TESTS=OFF \
  -DNFM_BUILD_BENCH=OFF -DNFM_FAST_ONE_OFF_BUILD=ON -DNFM_WERROR=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
ninja -C "$build"
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/nfm_*.deb)
lintian --fail-on error "$deb"
echo "$deb"
