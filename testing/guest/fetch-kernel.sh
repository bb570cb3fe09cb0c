#!/usr/bin/env bash
# fetch-kernel.sh ALIAS: downloads (once) the newest Debian kernel package for ALIAS and
# unpacks the parts the lab needs into $NFM_CACHE_DIR/kernels/<release>/ (default
# ~/.cache/nfm). Prints that directory on stdout. Cached kernels are reused offline.
#
# Aliases: 5.10 5.10-cloud (bullseye), 6.1 6.1-cloud (bookworm), 6.12 6.12-cloud (trixie).
# bookworm comes from the machine's apt sources; bullseye and trixie from a private
# sources list and lists dir under the cache (/etc/apt is never modified).
#
# fetch-kernel.sh --dbg ALIAS: also fetches the matching linux-image-*-dbg package and
# keeps only its DWARF vmlinux (streamed out of the ~280 MB .deb) as
# <release>/dbg/vmlinux; prints that file's path.
#
# fetch-kernel.sh --headers ALIAS: also fetches linux-headers-<release> and the packages
# it needs to build external modules (its -common part and linux-kbuild), unpacked
# together under <release>/headers; prints the kbuild directory (make -C DIR M=...).
set -euo pipefail

want_dbg= want_headers=
case ${1:-} in
  --dbg) want_dbg=1; shift ;;
  --headers) want_headers=1; shift ;;
esac
alias_name=${1:?usage: fetch-kernel.sh [--dbg|--headers] ALIAS (5.10, 5.10-cloud, 6.1, 6.1-cloud, 6.12, 6.12-cloud)}
cache=${NFM_CACHE_DIR:-$HOME/.cache/nfm}
kernels=$cache/kernels
mkdir -p "$kernels"
log() { echo "fetch-kernel: $*" >&2; }

case $alias_name in
  5.10)       suite=bullseye; regex='^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
  5.10-cloud) suite=bullseye; regex='^linux-image-5\.10\.0-[0-9]+-cloud-amd64$' ;;
  6.1)        suite=bookworm; regex='^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
  6.1-cloud)  suite=bookworm; regex='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' ;;
  6.12)       suite=trixie;   regex='^linux-image-6\.12\.[0-9]+\+deb13-amd64$' ;;
  6.12-cloud) suite=trixie;   regex='^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64$' ;;
  *) log "unknown alias '$alias_name'"; exit 2 ;;
esac

# One fetch at a time per cache: several test programs may start together.
exec 9>"$kernels/.lock"
flock 9

# Fast path: an alias resolved before (and still unpacked) needs no network.
# NFM_KERNEL_REFRESH=1 resolves "newest" again.
alias_file=$kernels/alias-$alias_name
if [[ -f $alias_file && -z ${NFM_KERNEL_REFRESH:-} ]]; then
  dir=$kernels/$(cat "$alias_file")
  if [[ -f $dir/vmlinuz && -d $dir/modules ]]; then
    if [[ -n $want_dbg ]]; then
      if [[ -f $dir/dbg/vmlinux ]]; then echo "$dir/dbg/vmlinux"; exit 0; fi
    elif [[ -n $want_headers ]]; then
      if [[ -f $dir/headers/kbuild-dir ]]; then cat "$dir/headers/kbuild-dir"; exit 0; fi
    else
      echo "$dir"; exit 0
    fi
  fi
fi

apt_opts=(-o APT::Sandbox::User=root)  # no "_apt cannot access" warnings as root
if [[ $suite != bookworm ]]; then
  # Private apt configuration for the other Debian releases, reusing the machine's mirrors.
  aptdir=$cache/apt/$suite
  mkdir -p "$aptdir/lists/partial"
  src_files=(/etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  uris=$(cat "${src_files[@]}" 2>/dev/null | grep -Eo 'https?://[^ ]+' | sed 's,/$,,' | sort -u || true)
  main_uri=$(grep -E '/debian$' <<<"$uris" | head -1); main_uri=${main_uri:-http://deb.debian.org/debian}
  sec_uri=$(grep -E '/debian-security$' <<<"$uris" | head -1); sec_uri=${sec_uri:-http://deb.debian.org/debian-security}
  cat >"$aptdir/sources.list" <<LIST
deb [trusted=yes] $main_uri $suite main
deb [trusted=yes] $main_uri $suite-updates main
deb [trusted=yes] $sec_uri $suite-security main
LIST
  apt_opts+=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$aptdir/lists" -o Debug::NoLocking=1)
  # Refresh at most once a day.
  stamp=$aptdir/updated
  if [[ ! -f $stamp ]] || [[ -n $(find "$stamp" -mmin +1440) ]]; then
    log "apt-get update ($suite)"
    apt-get "${apt_opts[@]}" update -qq >&2
    touch "$stamp"
  fi
fi

pkg=$(apt-cache "${apt_opts[@]}" pkgnames linux-image- | grep -E "$regex" | sort -V | tail -1 || true)
if [[ -z $pkg && $suite == bookworm ]]; then
  log "no package in the system lists, running apt-get update"
  apt-get update -qq >&2
  pkg=$(apt-cache pkgnames linux-image- | grep -E "$regex" | sort -V | tail -1 || true)
fi
[[ -n $pkg ]] || { log "no package matches $regex in $suite"; exit 1; }
release=${pkg#linux-image-}
dir=$kernels/$release

if [[ ! -f $dir/vmlinuz || ! -d $dir/modules ]]; then
  log "downloading $pkg"
  work=$(mktemp -d "$kernels/.fetch-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  chmod 777 "$work"  # lets apt's _apt sandbox user write the .deb
  if ! (cd "$work" && apt-get "${apt_opts[@]}" download -qq "$pkg" >&2); then
    # Stale lists point at a file the mirror no longer has: refresh them once and retry.
    log "apt-get download $pkg failed; updating the package lists and retrying"
    apt-get "${apt_opts[@]}" update -qq >&2
    (cd "$work" && apt-get "${apt_opts[@]}" download -qq "$pkg" >&2) || { log "apt-get download $pkg failed"; exit 1; }
  fi
  dpkg-deb -x "$work"/*.deb "$work/root"
  mkdir -p "$work/out"
  root=$work/root
  cp "$root/boot/vmlinuz-$release" "$work/out/vmlinuz"
  cp "$root/boot/config-$release" "$work/out/config"
  cp "$root/boot/System.map-$release" "$work/out/System.map" 2>/dev/null || true  # a stub in Debian
  moddir=$root/lib/modules/$release
  [[ -d $moddir ]] || moddir=$root/usr/lib/modules/$release
  mv "$moddir" "$work/out/modules"
  dpkg-deb -f "$work"/*.deb Version >"$work/out/package-version"
  echo "$pkg" >"$work/out/package"
  rm -rf "$dir"
  mv "$work/out" "$dir"
fi
echo "$release" >"$alias_file"

if [[ -n $want_dbg ]]; then
  if [[ ! -f $dir/dbg/vmlinux ]]; then
    # The -dbg package of the exact version unpacked above: its vmlinux is that build's.
    dbg_pkg="$pkg-dbg=$(cat "$dir/package-version")"
    log "downloading $dbg_pkg (only its vmlinux is kept)"
    dwork=$(mktemp -d "$kernels/.fetch-dbg-XXXXXX")
    trap 'rm -rf "$dwork"' EXIT
    chmod 777 "$dwork"
    (cd "$dwork" && apt-get "${apt_opts[@]}" download -qq "$dbg_pkg" >&2) || {
      log "apt-get download $dbg_pkg failed; updating the package lists and retrying"
      apt-get "${apt_opts[@]}" update -qq >&2
      (cd "$dwork" && apt-get "${apt_opts[@]}" download -qq "$dbg_pkg" >&2) || { log "apt-get download $dbg_pkg failed"; exit 1; }
    }
    member=./usr/lib/debug/boot/vmlinux-$release
    dpkg-deb --fsys-tarfile "$dwork"/*.deb | tar -x -C "$dwork" "$member"
    mkdir -p "$dir/dbg"
    mv "$dwork/$member" "$dir/dbg/vmlinux.tmp"
    mv "$dir/dbg/vmlinux.tmp" "$dir/dbg/vmlinux"
    rm -rf "$dwork"
  fi
  echo "$dir/dbg/vmlinux"
  exit 0
fi

if [[ -n $want_headers ]]; then
  if [[ ! -f $dir/headers/kbuild-dir ]]; then
    # linux-headers-<release> of the exact version, and what it depends on by name:
    # its -common part and linux-kbuild (scripts, the module linker script).
    version=$(cat "$dir/package-version")
    hwork=$(mktemp -d "$kernels/.fetch-headers-XXXXXX")
    trap 'rm -rf "$hwork"' EXIT
    chmod 777 "$hwork"
    headers_pkg=linux-headers-$release
    deps=$(apt-cache "${apt_opts[@]}" show "$headers_pkg=$version" | sed -n 's/^Depends: //p' | head -1)
    wanted=("$headers_pkg=$version")
    for dep in $(tr ',' '\n' <<<"$deps" | sed -E 's/^ *([^ ]+).*/\1/' | grep -E '^linux-(headers|kbuild)-'); do
      wanted+=("$dep")
    done
    log "downloading ${wanted[*]}"
    (cd "$hwork" && apt-get "${apt_opts[@]}" download -qq "${wanted[@]}" >&2) || {
      log "apt-get download ${wanted[*]} failed"; exit 1; }
    for deb in "$hwork"/*.deb; do dpkg-deb -x "$deb" "$hwork/root"; done
    kbuild=$hwork/root/usr/src/$headers_pkg
    [[ -f $kbuild/Makefile ]] || { log "$headers_pkg has no usr/src/$headers_pkg/Makefile"; exit 1; }
    rm -rf "$dir/headers"
    mv "$hwork/root" "$dir/headers"  # relative symlinks between the packages stay valid
    # Its Makefile includes the -common part by absolute path (/usr/src/...).
    sed -i "s|/usr/src/|$dir/headers/usr/src/|g" "$dir/headers/usr/src/$headers_pkg/Makefile"
    echo "$dir/headers/usr/src/$headers_pkg" >"$dir/headers/kbuild-dir"
  fi
  cat "$dir/headers/kbuild-dir"
  exit 0
fi
echo "$dir"
