#!/usr/bin/env bash
# Fetches (once) every kernel the test suite boots, so parallel test programs
# find them cached. Kernels live in $NFM_CACHE_DIR (default ~/.cache/nfm).
set -euo pipefail
here=$(dirname "$0")
for alias in 5.10 6.1 6.1-cloud 6.12 6.12-cloud; do
  dir=$(bash "$here/fetch-kernel.sh" "$alias")
  echo "prepare: $alias -> $dir"
done
# The DWARF vmlinux of one kernel (the smallest), for the profile-source tests.
echo "prepare: 6.1-cloud dbg -> $(bash "$here/fetch-kernel.sh" --dbg 6.1-cloud)"
