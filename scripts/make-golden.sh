#!/usr/bin/env bash
# Makes the golden comparison's files (tests/golden/): boots the lab's 6.1-cloud
# guest, dumps its memory once (an ELF core, zstd), and records what NFM prints for every
# command of tests/golden/commands.txt. Run it with the nfm whose output is the
# reference (the one before a refactoring), never to make a failing test pass.
#   bash scripts/make-golden.sh BUILD_DIR_OF_REFERENCE_NFM
set -euo pipefail
build=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
golden=tests/golden
run=$(mktemp -d /tmp/nfm-make-golden.XXXXXX)
"$build/testing/lab/nfm-lab" run --kernel 6.1-cloud --ram 256 --name nfm-golden \
  --append "nfm.burn=0 nfm.snapshot=0" >"$run/lab.log" 2>&1 &
lab=$!
trap 'kill $lab 2>/dev/null; wait $lab 2>/dev/null; rm -rf "$run"' EXIT
for _ in $(seq 600); do
  grep -q '^ready in' "$run/lab.log" && break
  kill -0 $lab 2>/dev/null || { cat "$run/lab.log"; exit 1; }
  sleep 0.5
done
qmp=$(grep -oE '/tmp/[^ ]*qmp\.sock' "$run/lab.log" | head -1)
# Pause, then dump as an ELF core (zstd makes its zero pages nothing).
python3 - "$qmp" "$run/guest.elf" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def cmd(name, **args):
    f.write(json.dumps({"execute": name, "arguments": args}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            if "error" in r: sys.exit(f"{name}: {r['error']}")
            return r
json.loads(f.readline()); cmd("qmp_capabilities"); cmd("stop")
cmd("dump-guest-memory", paging=False, protocol="file:" + sys.argv[2])
PY
zstd -q -10 --long=28 -f "$run/guest.elf" -o "$golden/lab-6.1-cloud.elf.zst"
mkdir -p "$golden/expected"
bash "$golden/check.sh" "$build/src/apps/nfm" "$golden/expected"
ls -la "$golden/lab-6.1-cloud.elf.zst"
