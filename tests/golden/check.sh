#!/usr/bin/env bash
# The golden comparison: every command of commands.txt, run by NFM on the lab's
# checked-in dump, prints exactly the bytes it printed when the files were made
# (scripts/make-golden.sh, from the nfm of that time). A refactoring that changes
# what any command prints fails here with the diff.
#   bash tests/golden/check.sh path/to/nfm [OUTDIR]   (OUTDIR: write, don't compare)
set -euo pipefail
nfm=$1
out=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
dump=$(mktemp /tmp/nfm-golden.XXXXXX.elf)
trap 'rm -f "$dump"' EXIT
zstd -q -d --long=28 -f "$here/lab-6.1-cloud.elf.zst" -o "$dump"
# No profile cache: each run builds the profile from the dump itself.
export NFM_PROFILE_CACHE_DIR=$(mktemp -d /tmp/nfm-golden-cache.XXXXXX)
trap 'rm -f "$dump"; rm -rf "$NFM_PROFILE_CACHE_DIR"' EXIT
# A frame's timing, cost and target (the temporary file) vary; the rest is the dump's.
stable_frame() {
  jq -cS 'del(.meta.duration_ns, .meta.host_time_ns, .meta.cost, .meta.target)
          | .meta.features |= map_values(del(.duration_ns))'
}
failed=0 checked=0
while read -r file args; do
  [[ -z "$file" || "$file" == \#* ]] && continue
  read -ra argv <<<"${args//DUMP/$dump}"
  actual=$("$nfm" "${argv[@]}" 2>/dev/null) || { echo "golden: nfm $args failed"; failed=$((failed + 1)); continue; }
  [[ "$file" == frame.json ]] && actual=$(stable_frame <<<"$actual")
  if [[ -n "$out" ]]; then
    printf '%s\n' "$actual" >"$out/$file"
  elif ! diff -u "$here/expected/$file" <(printf '%s\n' "$actual") >/tmp/nfm-golden.diff; then
    echo "golden: nfm $args differs from tests/golden/expected/$file:"
    head -40 /tmp/nfm-golden.diff | cut -c1-300
    failed=$((failed + 1))
  fi
  checked=$((checked + 1))
done <"$here/commands.txt"
[[ -n "$out" ]] && { echo "golden: wrote $checked files to $out"; exit 0; }
# The commands after the first went the warm way: the dump's VMCOREINFO page (it
# lies at 0x1942000 in this dump) and its kernel's content hash were remembered.
hints=$(cat "$NFM_PROFILE_CACHE_DIR/vmcoreinfo-hints" 2>/dev/null || true)
if [[ $(wc -l <<<"$hints") -ne 1 || $(cut -d' ' -f2 <<<"$hints") != 1942000 ||
      $(cut -d' ' -f3 <<<"$hints") == 0 ]]; then
  echo "golden: the profile cache should remember this dump's VMCOREINFO page 1942000 and a content hash, it holds: '$hints'"
  failed=$((failed + 1))
fi
echo "golden: $((checked - failed)) of $checked commands print what they printed when the files were made"
((failed == 0))
