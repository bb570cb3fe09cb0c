#!/usr/bin/env bash
# Fuzz campaigns (docs/security.md): builds the fuzz targets of tests/fuzz with clang,
# libFuzzer, ASan and UBSan in build-fuzz/, seeds each from the lab's checked-in dump
# (tests/fuzz/make_seeds.cpp) and runs each for SECONDS. A crash, a sanitizer report, a
# hang (-timeout) or a memory blow-up (-rss_limit_mb) stops that target and leaves the
# input in build-fuzz/findings/TARGET/; copy it to tests/fuzz/regressions/TARGET/ once
# fixed, so that ctest replays it from then on.
#   scripts/fuzz.sh [--time SECONDS] [TARGET...]    (default: 3600 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=3600
targets=()
while (($#)); do
  case "$1" in
    --time) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(memory_image vmcoreinfo kallsyms btf isf guest_memory dwarf)
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target '$t' (${all[*]})" >&2; exit 2; }
done

build=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DNFM_SANITIZE=ON -DNFM_FUZZ=ON \
  -DNFM_BUILD_BENCH=OFF -DNFM_WERROR=OFF >/dev/null
ninja -C "$build" fuzz_make_seeds "${targets[@]/#/fuzz_}"
[[ -d "$build/seeds" ]] || "$build/tests/fuzz/fuzz_make_seeds" "$build/seeds" # the seeds
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t" findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  seeds=()
  [[ -d $build/seeds/$t ]] && seeds+=("$build/seeds/$t")
  [[ -d tests/fuzz/seeds/$t ]] && seeds+=("tests/fuzz/seeds/$t")  # checked in (dwarf)
  [[ -d tests/fuzz/regressions/$t ]] && seeds+=("tests/fuzz/regressions/$t")
  echo "== $t: $seconds s (corpus $corpus)"
  # -max_len: the largest seed's size. libFuzzer's own guess caps at 1 MiB and would
  # cut the real BTF (4 MiB) and kallsyms (1.7 MiB) seeds to a header that fails at once.
  max_len=$(find "${seeds[@]}" -type f -printf '%s\n' | sort -n | tail -1)
  "$build/tests/fuzz/fuzz_$t" "$corpus" "${seeds[@]}" -max_total_time="$seconds" \
    -max_len="$((max_len > 4096 ? max_len : 4096))" -timeout=30 -rss_limit_mb=3072 \
    -print_final_stats=1 \
    -artifact_prefix="$findings/" 2>"$build/fuzz-$t.log" || {
    echo "fuzz.sh: $t found something: $(ls "$findings")"
    tail -40 "$build/fuzz-$t.log"
    exit 1
  }
  grep -E "^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz-$t.log"
done
