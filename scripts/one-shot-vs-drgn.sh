#!/usr/bin/env bash
# The one-shot latency of `nfm ps --json` on the lab's ELF dump, beside drgn doing
# the same listing of the same dump, in one run (issue 18's measurement):
#   bash scripts/one-shot-vs-drgn.sh [BUILD] [RUNS]
# Needs python3-drgn and the dump's kernel debug vmlinux (the lab downloads it for
# the DWARF tests into ~/.cache/nfm/kernels/RELEASE/dbg/). drgn cannot read QEMU's
# dump as QEMU writes it (no VMCOREINFO note, no kernel-virtual segment), so it
# gets a copy with both added (scripts/elf-for-drgn.py); nfm is timed on both.
# Each command runs RUNS times, in turn with the others; medians of wall and CPU
# time (the process's own accounting) are printed, and ratios to `nfm --version`
# (the cost of starting the program at all) and to drgn. NFM_BASELINE=PATH adds
# another nfm binary (e.g. an older build) on the same dump and cache.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-bench}
runs=${2:-20}
nfm=$build/src/apps/nfm
release=6.1.0-57-cloud-amd64
vmlinux=$HOME/.cache/nfm/kernels/$release/dbg/vmlinux
[[ -x $nfm ]] || { echo "no $nfm: build nfm first" >&2; exit 2; }
command -v drgn >/dev/null || { echo "drgn is not installed (apt-get install python3-drgn)" >&2; exit 2; }
[[ -r $vmlinux ]] || { echo "no $vmlinux: the lab downloads it for the DWARF tests" >&2; exit 2; }

work=$(mktemp -d /tmp/nfm-vs-drgn.XXXXXX)
trap 'rm -rf "$work"' EXIT
export NFM_PROFILE_CACHE_DIR=$work/cache
zstd -q -d --long=28 "$here/tests/golden/lab-6.1-cloud.elf.zst" -o "$work/lab.elf"
"$nfm" ps --json "$work/lab.elf" >"$work/ps.json"  # cold: builds the profile, remembers the page
page=$(cut -d' ' -f2 "$NFM_PROFILE_CACHE_DIR/vmcoreinfo-hints")
python3 "$here/scripts/elf-for-drgn.py" "$work/lab.elf" "$page" "$work/lab-drgn.elf" >/dev/null
cat >"$work/ps.py" <<'PY'
import json
from drgn.helpers.linux.pid import for_each_task
# Processes, as nfm ps lists them: thread-group leaders.
print(json.dumps([{"pid": t.pid.value_(), "ppid": t.real_parent.pid.value_(),
                   "comm": t.comm.string_().decode()} for t in for_each_task(prog)
                  if t.pid == t.tgid]))
PY
# The same processes, both ways.
cmp <(jq -c '[.[] | .pid] | sort' "$work/ps.json") \
    <(drgn -q -c "$work/lab-drgn.elf" -s "$vmlinux" "$work/ps.py" | jq -c '[.[] | .pid] | sort') ||
  { echo "nfm and drgn list different processes" >&2; exit 1; }

python3 - "$runs" "$nfm" "$work" "$vmlinux" "${NFM_BASELINE:-}" <<'PY'
import os, statistics, subprocess, sys, time
runs, nfm, work, vmlinux, baseline = int(sys.argv[1]), *sys.argv[2:6]
commands = {
    "nfm --version (program start)": [nfm, "--version"],
    "nfm ps --json, QEMU's dump": [nfm, "ps", "--json", f"{work}/lab.elf"],
    "nfm ps --json, drgn's copy": [nfm, "ps", "--json", f"{work}/lab-drgn.elf"],
    **({"baseline nfm ps --json, QEMU's dump": [baseline, "ps", "--json", f"{work}/lab.elf"]}
       if baseline else {}),
    "drgn, the same listing": ["drgn", "-q", "-c", f"{work}/lab-drgn.elf", "-s", vmlinux,
                               f"{work}/ps.py"],
}
wall = {k: [] for k in commands}
cpu = {k: [] for k in commands}
for _ in range(runs + 1):  # the first round warms caches and is not counted
    for name, argv in commands.items():
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        if status != 0:
            sys.exit(f"{name}: exit status {status}")
        wall[name].append(time.monotonic() - t0)
        cpu[name].append(usage.ru_utime + usage.ru_stime)
print(f"{runs} runs each, in turn; load average {os.getloadavg()[0]:.2f}")
print(f"{'command':34} {'wall ms':>8} {'cpu ms':>8} {'x start':>8} {'x drgn':>8}")
med = {k: statistics.median(v[1:]) for k, v in wall.items()}
medc = {k: statistics.median(v[1:]) for k, v in cpu.items()}
start, drgn = med["nfm --version (program start)"], med["drgn, the same listing"]
for k in commands:
    print(f"{k:34} {med[k]*1e3:8.1f} {medc[k]*1e3:8.1f} {med[k]/start:8.2f} {med[k]/drgn:8.4f}")
PY
