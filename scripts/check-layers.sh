#!/usr/bin/env bash
# Fails when a source file includes a header of a layer above its own
# (docs/architecture.md). The per-layer libraries make such a call fail to link;
# this makes the include itself fail, with the file and line named.
set -euo pipefail
cd "$(dirname "$0")/../src"
declare -A allowed=(
  [util]="util"
  [schema]="schema util"
  [memory]="memory util"
  [host]="host memory util"
  [arch]="arch memory util"
  [kernel]="kernel arch memory util"
  [features]="features kernel arch memory schema util"
  [frame]="frame features kernel arch memory host schema util"
  [store]="store frame features kernel arch memory host schema util"
  [crawler]="crawler store frame features kernel arch memory host schema util"
  [query]="query crawler store frame features kernel arch memory host schema util"
  [topology]="topology crawler store frame features kernel arch memory host schema util"
  [apps]="apps topology query crawler store frame features kernel arch memory host schema util"
)
status=0
for layer in */; do
  layer=${layer%/}
  if [[ -z "${allowed[$layer]+x}" ]]; then
    echo "check-layers: src/$layer is in no layer (add it to this script and docs/architecture.md)"
    status=1
    continue
  fi
  while IFS=: read -r file line include; do
    target=$(sed -E 's/#include "([a-z_0-9]+)\/.*/\1/' <<<"$include")
    if [[ " ${allowed[$layer]} " != *" $target "* ]]; then
      echo "check-layers: src/$file:$line: $layer includes $target (${include}), a layer above it"
      status=1
    fi
  done < <(grep -rnE '^#include "[a-z_0-9]+/' "$layer" | sed -E 's/^([^:]+):([0-9]+):/\1:\2:/')
done
((status == 0)) && echo "check-layers: every include stays in its layer or below"
exit $status
