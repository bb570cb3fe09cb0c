#!/usr/bin/env bash
# Issue 18's live run (docs/performance.md): N lab guests (default 6, 256 MiB, the
# standard kernels in turn) crawled by one `nfm crawl --interval 100ms` for SECONDS
# (default 30) into the default SQLite store and, as the baseline of the same run, a
# JSON Lines file (every frame whole, what the store held per frame before row
# versions). Prints frames crawled and stored, drops, the store's and the file's growth
# per VM-hour and their ratio, the crawler's CPU per VM-crawl and RSS, and how long the
# daemon took to exit after --duration.
# With NFM_FLEET_BASELINE=0 the file sink is left out (the crawler's CPU is then the
# store's alone).
#   scripts/fleet-live.sh [GUESTS] [SECONDS] [BUILD_DIR]   (default: 6 30 build-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
guests=${1:-6}
seconds=${2:-30}
build=${3:-build-bench}
nfm=$build/src/apps/nfm
lab=$build/testing/lab/nfm-lab
[[ -x $nfm && -x $lab ]] || { echo "fleet-live.sh: build $build first (ninja -C $build nfm nfm-lab)" >&2; exit 2; }
work=$(mktemp -d /tmp/nfm-fleet-live-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
kernels=(5.10 6.1 6.1-cloud 6.12)
tag=fleet$$
baseline=yes
[[ ${NFM_FLEET_BASELINE:-1} == 0 ]] && baseline=
touch "$work/frames.jsonl"
for ((i = 0; i < guests; ++i)); do
  "$lab" run --kernel "${kernels[i % 4]}" --ram 256 --name "nfm-$tag-$i" >"$work/guest$i.log" 2>&1 &
  pids+=($!)
done
for ((i = 0; i < guests; ++i)); do
  for ((t = 0; t < 300; ++t)); do grep -q "^ready" "$work/guest$i.log" && break; sleep 1; done
  grep -q "^ready" "$work/guest$i.log" || { cat "$work/guest$i.log"; exit 1; }
done
echo "fleet-live: $guests guests ready; crawling for $seconds s at 100 ms"
start=$(date +%s.%N)
NFM_STORE_PATH=$work/frames.db /usr/bin/time -f "%U %S %M" -o "$work/time" \
  "$nfm" crawl --match "nfm-$tag-*" --interval 100ms --duration "${seconds}s" --log logfmt \
  --emit "sqlite:$work/frames.db" ${baseline:+--emit "file:$work/frames.jsonl"} --rotate-size 0 \
  2>"$work/crawl.log" || { cat "$work/crawl.log"; exit 1; }
end=$(date +%s.%N)
read -r user sys maxrss <"$work/time"
frames=$(sqlite3 "$work/frames.db" "SELECT count(*) FROM frames")
crawled=$(if [[ $baseline ]]; then wc -l <"$work/frames.jsonl"; else sqlite3 "$work/frames.db" "SELECT count(*) FROM frames"; fi)
db_bytes=$(sqlite3 "$work/frames.db" "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size")
file_bytes=$(stat -c %s "$work/frames.jsonl")
python3 - "$guests" "$seconds" "$start" "$end" "$user" "$sys" "$maxrss" "$frames" "$crawled" "$db_bytes" "$file_bytes" "$work/crawl.log" <<'PY'
import sys
g, secs, start, end, user, sys_, rss, frames, crawled, db, file_ = sys.argv[1:12]
g, secs = int(g), float(secs)
log = open(sys.argv[12]).read()
per_hour = 3600 / secs / g / 2**20
print(f"frames crawled {crawled}, stored {frames} ({int(frames) / g / secs:.1f} per VM per second)")
print(f"dropped: {'none' if 'dropped' not in log else [l for l in log.splitlines() if 'dropped' in l]}")
sinks = "SQLite and file sinks" if int(file_) else "SQLite sink"
print(f"crawler CPU {float(user) + float(sys_):.1f} s = {1000 * (float(user) + float(sys_)) / max(int(crawled), 1):.2f} ms per VM-crawl ({sinks}), max RSS {int(rss) / 1024:.0f} MiB")
print(f"store {int(db) * per_hour:.1f} MiB per VM-hour", end="")
print(f"; file (whole frames) {int(file_) * per_hour:.1f} MiB per VM-hour: {int(file_) / max(int(db), 1):.1f}x smaller" if int(file_) else "")
print(f"wall {float(end) - float(start):.2f} s for --duration {secs:.0f}s (attach + stop: {float(end) - float(start) - secs:.2f} s)")
stopped = [l for l in log.splitlines() if "crawl_stopped" in l]
print(stopped[-1] if stopped else log[-2000:])
PY
