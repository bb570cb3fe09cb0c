#!/usr/bin/env bash
# clang-tidy (.clang-tidy) on the C++ files a range of commits changed, warnings as
# errors. CI (the `tidy` test) checks the newest commit's files; `--all` checks every
# source file.
#   bash scripts/tidy.sh BUILD_DIR [--all | BASE]     (BASE default: the newest commit's parent)
set -euo pipefail
build=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
if [[ "${2:-}" == --all ]]; then
  mapfile -t files < <(git ls-files 'src/*.cpp' 'tests/*.cpp' 'testing/*.cpp' 'bench/*.cpp')
else
  base=${2:-HEAD^1}
  mapfile -t files < <(git diff --name-only --diff-filter=d "$base" HEAD -- '*.cpp' | grep -v '^tests/golden/' || true)
fi
# Only files the build compiles (compile_commands.json knows their flags).
checked=()
for f in "${files[@]}"; do
  grep -q "\"file\": \"$PWD/$f\"" "$build/compile_commands.json" 2>/dev/null && checked+=("$f")
done
if ((${#checked[@]} == 0)); then
  echo "tidy: no changed C++ file to check"
  exit 0
fi
echo "tidy: ${#checked[@]} files"
# A GCC precompiled header (NFM_FAST_ONE_OFF_BUILD) and GCC-only warning options mean
# nothing to clang: check the files against a copy of the compile commands without them.
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
sed -E 's# -include [^ ]*cmake_pch\.hxx##g; s# -Winvalid-pch##g; s# -Wno-restrict##g' "$build/compile_commands.json" \
  >"$db/compile_commands.json"
clang-tidy -p "$db" --quiet "${checked[@]}" 2>/dev/null
echo "tidy: no warnings"
