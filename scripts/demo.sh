#!/usr/bin/env bash
# The main job on a demo guest, from a fresh Debian 12 machine: installs what is
# needed, builds nfm, boots a real Debian kernel under QEMU with a known workload
# (testing/guest), and shows what nfm sees inside it, from the host, with no agent
# and no configuration: the guest's own view first for comparison, then `nfm crawl`
# (the monitoring daemon) finding the guest by itself and crawling it a few times,
# then single commands.
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
echo "== nfm crawl: the daemon finds the host's QEMU guests (here only the demo's, --match)"
echo "   and crawls each every second; frames go to a JSON Lines file, events to stderr:"
frames=$(mktemp /tmp/nfm-demo-frames.XXXXXX.jsonl)
echo "\$ nfm crawl --match $name --count 5 --interval 1s --emit file:$frames"
"$nfm" crawl --match "$name" --count 5 --interval 1s --emit "file:$frames" 2>&1 | cat
echo
echo "== one line per frame (jq on $frames):"
jq -r '"\(.meta.vm.name) pid \(.meta.vm.pid): \(.meta.host_time_ns / 1e9 | strftime("%H:%M:%S")) crawl \(.meta.duration_ns / 1e6 * 10 | round / 10) ms, \(.meta.cost.bytes / 1024 | round) KiB read, \(.processes | length) processes, \(.sockets | length) sockets, \(.modules | length) modules, uptime \(.uptime.uptime_s) s, \(.meminfo.free_kb / 1024 | round) MiB free"' "$frames"
echo
echo "== the processes of the last frame:"
tail -n 1 "$frames" | jq -r '["PID","PPID","UID","S","RSS_KB","COMMAND"], (.processes[] | select(.vsz_kb > 0) | [.pid, .ppid, .uid, .state, .rss_kb, (if (.cmdline | length) > 0 then (.cmdline | join(" ")) else .comm end)]) | @tsv' | column -t -s $'\t'
rm -f "$frames"
echo
echo "== single commands: what nfm sees from the host, reading the guest's memory (no agent, no files):"
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
