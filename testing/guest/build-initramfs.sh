#!/usr/bin/env bash
# build-initramfs.sh KERNEL_DIR OUT.cpio.gz: the test guest's initramfs for the kernel
# unpacked by fetch-kernel.sh in KERNEL_DIR: busybox-static, /init (init.sh), the static
# helper binary built from helpers/*.c, and the workload's kernel modules (decompressed,
# with their dependencies, load order in /etc/nfm-modules). Cached by content hash under
# $NFM_CACHE_DIR/initramfs (default ~/.cache/nfm).
set -euo pipefail

kdir=${1:?usage: build-initramfs.sh KERNEL_DIR OUT.cpio.gz}
out=${2:?usage: build-initramfs.sh KERNEL_DIR OUT.cpio.gz}
here=$(cd "$(dirname "$0")" && pwd)
cache=${NFM_CACHE_DIR:-$HOME/.cache/nfm}/initramfs
mkdir -p "$cache"
busybox=/bin/busybox
if [[ ! -x $busybox ]] || readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
  echo "build-initramfs: $busybox is missing or not static (install busybox-static)" >&2; exit 1
fi
[[ -f $kdir/vmlinuz && -d $kdir/modules ]] || { echo "build-initramfs: $kdir is not a kernel dir" >&2; exit 1; }

# Modules the workload needs: virtio-net and e1000 NICs, dummy0. Absent ones are skipped
# (the cloud flavour has no e1000), built-in ones too.
wanted=(virtio_pci virtio_net e1000 dummy)
declare -A module_args=([dummy]="numdummies=1")
# Loaded only by the reporter's "swap" command (zram swap for the scan test): order in
# /etc/nfm-modules-swap.
swap_modules=(zram)

key=$( { cat "$here/build-initramfs.sh" "$here/init.sh" "$here"/helpers/*; cat "$kdir/package-version" "$kdir/package" 2>/dev/null; echo "$kdir"; sha256sum "$busybox"; } | sha256sum | cut -c1-16)
cached=$cache/$key.cpio.gz
exec 9>"$cache/$key.lock"  # one build per key at a time; different kernels build in parallel
flock 9
if [[ ! -f $cached ]]; then
  work=$(mktemp -d "$cache/.build-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  root=$work/root
  mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,lib/modules}
  cp "$busybox" "$root/bin/busybox"
  gcc -static -O2 -Wall -pthread -Wno-format-truncation -o "$root/bin/nfm-work" "$here"/helpers/*.c 2> >(grep -v 'statically linked' >&2)
  for role in nfm-init nfm-start nfm-report; do ln -s nfm-work "$root/bin/$role"; done
  cp "$here/init.sh" "$root/init"
  chmod 755 "$root/init"

  # Module name -> file (names compare with '-' and '_' equal).
  declare -A path_of
  while IFS= read -r f; do
    name=${f##*/}; name=${name%%.ko*}; path_of[${name//-/_}]=$f
  done < <(find "$kdir/modules" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
  declare -A done_
  order=()
  visit() {  # depth-first: dependencies before the module
    local m=${1//-/_}
    [[ -n ${done_[$m]:-} ]] && return 0
    done_[$m]=1
    local f=${path_of[$m]:-}
    [[ -n $f ]] || return 0  # built in (listed in modules.builtin) or not in this flavour
    local deps
    deps=$(modinfo -F depends "$f" 2>/dev/null || true)
    local d
    for d in ${deps//,/ }; do visit "$d"; done
    order+=("$m")
  }
  install_modules() {  # the modules of `order`, listed in file $1
    : >"$1"
    for m in "${order[@]}"; do
      f=${path_of[$m]}
      case $f in
        *.xz) xz -dc "$f" ;; *.zst) zstd -qdc "$f" ;; *.gz) gzip -dc "$f" ;; *) cat "$f" ;;
      esac >"$root/lib/modules/$m.ko"
      echo "$m.ko ${module_args[$m]:-}" >>"$1"
    done
  }
  for m in "${wanted[@]}"; do visit "$m"; done
  install_modules "$root/etc/nfm-modules"
  order=()
  for m in "${swap_modules[@]}"; do visit "$m"; done
  install_modules "$root/etc/nfm-modules-swap"
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6 >"$work/initramfs.cpio.gz")
  mv "$work/initramfs.cpio.gz" "$cached"
fi
touch "$cached"  # the mtime marks use: builds unused for 30 days are dropped
find "$cache" -maxdepth 1 \( -name '*.cpio.gz' -o -name '*.lock' \) -mtime +30 -delete 2>/dev/null || true
cp "$cached" "$out"
