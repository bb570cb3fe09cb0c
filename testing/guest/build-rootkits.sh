#!/usr/bin/env bash
# build-rootkits.sh ALIAS: builds the test rootkits (rootkits/*.c) against Debian's
# linux-headers for the kernel ALIAS names (fetch-kernel.sh --headers), with the
# host's gcc. Prints the directory holding the .ko files. Cached by content hash
# under $NFM_CACHE_DIR/rootkits (default ~/.cache/nfm).
set -euo pipefail

alias_name=${1:?usage: build-rootkits.sh ALIAS}
here=$(cd "$(dirname "$0")" && pwd)
kbuild=$(bash "$here/fetch-kernel.sh" --headers "$alias_name")
cache=${NFM_CACHE_DIR:-$HOME/.cache/nfm}/rootkits
mkdir -p "$cache"
key=$( { cat "$here/build-rootkits.sh" "$here"/rootkits/*; echo "$kbuild"; cat "$kbuild/../../../../package-version" 2>/dev/null || true; gcc --version; } | sha256sum | cut -c1-16)
out=$cache/$key
exec 9>"$cache/$key.lock"
flock 9
if [[ ! -f $out/done ]]; then
  work=$(mktemp -d "$cache/.build-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cp "$here"/rootkits/* "$work/"
  # The headers' Makefile names the compiler the kernel was built with (gcc-12 for
  # bookworm); where the host has another, the host's is used.
  cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(gcc-[0-9]*\).*/\1/p' "$kbuild/include/config/auto.conf" 2>/dev/null || true)
  command -v "${cc:-none}" >/dev/null 2>&1 || cc=gcc
  if ! make -s -C "$kbuild" M="$work" CC="$cc" modules >"$work/build.log" 2>&1; then
    echo "build-rootkits: building against $kbuild failed:" >&2
    tail -20 "$work/build.log" >&2
    exit 1
  fi
  mkdir -p "$out.tmp"
  cp "$work"/*.ko "$out.tmp/"
  touch "$out.tmp/done"
  rm -rf "$out"
  mv "$out.tmp" "$out"
fi
echo "$out"
