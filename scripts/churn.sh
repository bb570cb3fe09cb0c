#!/usr/bin/env bash
# The churn campaign (docs/security.md): a real guest forking without pause (each child
# opening a file and binding a socket) under `nfm crawl --interval 1ms` for MINUTES
# (default 10), the long form of the test CI runs for 20 s. Passes when the crawler
# lived, kept crawling and its resident set stayed flat; prints its summary line.
#   scripts/churn.sh [MINUTES] [BUILD_DIR]   (default: 10, the test build of scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
build=${2:-${NFM_BUILD_DIR:-build-test}}
[[ -x $build/tests/guest/guest_test_crawl ]] || { echo "churn.sh: build $build first (ninja -C $build guest_test_crawl nfm nfm-lab)" >&2; exit 2; }
NFM_CHURN_SECONDS=$((minutes * 60)) "$build/tests/guest/guest_test_crawl" \
  --gtest_filter='Crawl.KeepsUpWithAGuestThatForksWithoutPause'
