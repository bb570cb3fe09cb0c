#!/usr/bin/env bash
# The main job on a demo guest, from a fresh Debian 12 machine: installs what is
# needed, builds nfm, boots a real Debian kernel under QEMU with a known workload
# (testing/guest), and shows what nfm sees inside it, from the host, with no agent
# and no configuration. The guest's own view is printed first for comparison.
#
#   bash scripts/demo.sh [--kernel 6.1-cloud|6.1|5.10|6.12] [--keep]
#
# --keep leaves the demo guest running (its QEMU pid is printed) so you can try
# more commands, e.g.  build/src/apps/nfm ps qemu:nfm-demo
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=6.1-cloud
keep=0
while (($#)); do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (nfm reads the QEMU process's memory: CAP_SYS_PTRACE)" >&2; exit 1; }

bash scripts/install-deps.sh
build=${NFM_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" nfm nfm-lab >/dev/null
nfm="$build/src/apps/nfm"

name=nfm-demo
log=$(mktemp /tmp/nfm-demo.XXXXXX)
echo "== booting a Debian $kernel guest under QEMU (TCG; about 10-60 s) ..."
# nfm.burn=10: the workload's CPU burner takes a tenth of a core, not all of it.
"$build/testing/lab/nfm-lab" run --kernel "$kernel" --name "$name" --append nfm.burn=10 >"$log" 2>&1 &
lab=$!
stop() { kill "$lab" 2>/dev/null || true; wait "$lab" 2>/dev/null || true; }
((keep)) || trap stop EXIT
for _ in $(seq 600); do
  grep -q '^ready in' "$log" && break
  kill -0 "$lab" 2>/dev/null || { cat "$log"; echo "demo: the guest did not boot" >&2; exit 1; }
  sleep 0.5
done
sleep 1  # let the lab print its summary
echo
echo "== the guest's own view (written by the guest to its second serial port):"
sed -n '/^uname:/,$p' "$log" | head -40
echo
echo "== what nfm sees from the host, reading the guest's memory (no agent, no files):"
echo "\$ nfm uname qemu:$name"
"$nfm" uname "qemu:$name"
for cmd in "ps" "lsmod" "uptime" "meminfo"; do
  echo "\$ nfm $cmd qemu:$name"
  "$nfm" $cmd "qemu:$name"
done
echo "\$ nfm dmesg qemu:$name | tail -5"
"$nfm" dmesg "qemu:$name" | tail -5
echo
echo "== nfm --help"
"$nfm" --help
if ((keep)); then
  echo
  echo "The demo guest keeps running (nfm-lab pid $lab). Try: $nfm ps --threads qemu:$name ; stop it with: kill $lab"
fi
