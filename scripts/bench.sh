#!/usr/bin/env bash
# The benchmark suite, one command: installs what is needed, builds an optimized
# nfm in build-bench, boots a lab guest (6.1-cloud, the standard workload), runs
# every benchmark and writes the results to docs/performance.md.
#   bash scripts/bench.sh [--benchmark_filter=REGEX ...]   (extra args go to each program)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${NFM_BENCH_BUILD_DIR:-build-bench}
# Warnings are errors in the CI build (-O1); GCC 12 at -O3 adds false positives
# (maybe-uninitialized through inlined std::string moves), so not here.
cmake -S . -B "$build" -G Ninja -DNFM_SANITIZE=OFF -DCMAKE_BUILD_TYPE=Release -DNFM_WERROR=OFF >/dev/null
# The benchmark programs and the nfm they start; the tests are not needed here.
ninja -C "$build" nfm $(cd bench && ls bench_*.cpp | sed 's/\.cpp$//')
bash testing/guest/fetch-kernel.sh 6.1-cloud >/dev/null
results="$build/results"
rm -rf "$results" && mkdir -p "$results"
for program in "$build"/bench/bench_*; do
  [ -x "$program" ] || continue
  name=$(basename "$program")
  echo "== $name" >&2
  # Other work on the machine skews every figure: the load average goes in the report.
  "$program" --benchmark_min_time=1 --benchmark_out="$results/$name.json" \
    --benchmark_out_format=json --benchmark_context=load_average="$(cut -d' ' -f1-3 /proc/loadavg)" "$@"
done
python3 scripts/bench_report.py "$results"/*.json > docs/performance.md
echo "wrote docs/performance.md" >&2
