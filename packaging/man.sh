#!/usr/bin/env bash
# Man pages from the commands' own --help (help2man): nfm(1) and nfm-COMMAND(1) for
# each subcommand. Usage: man.sh NFM OUTDIR VERSION
set -euo pipefail
nfm=$1 out=$2 version=$3
mkdir -p "$out"
rm -f "$out"/*.1.gz
# Listed first, so that a failure stops the script (set -e does not see into < <(...)).
commands=$("$nfm" completion --commands)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# help2man runs a program with --help: one wrapper per subcommand.
see_also="[SEE ALSO]\n"
while IFS=$'\t' read -r name description; do
  see_also+=".BR nfm-$name (1),\n"
done <<<"$commands"
printf '%b' "$see_also" > "$work/see-also.h2m"
help2man --no-info --no-discard-stderr --version-string="$version" \
  --name="agentless, out-of-band monitoring of Linux virtual machines" \
  --include="$work/see-also.h2m" --output="$out/nfm.1" "$nfm"
while IFS=$'\t' read -r name description; do
  printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$nfm" "$name" > "$work/nfm-$name"
  chmod +x "$work/nfm-$name"
  printf '[SEE ALSO]\n.BR nfm (1)\n' > "$work/nfm-$name.h2m"
  help2man --no-info --no-discard-stderr --version-string="$version" \
    --name="${description%%:*}" --include="$work/nfm-$name.h2m" \
    --output="$out/nfm-$name.1" "$work/nfm-$name"
  # help2man names the page after the wrapper's path; the page is nfm-NAME.
  sed -i "s|$work/||g" "$out/nfm-$name.1"
done <<<"$commands"
gzip -9nf "$out"/*.1
