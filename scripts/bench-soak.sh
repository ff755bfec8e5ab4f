#!/usr/bin/env bash
# `make bench-soak`: the controller serving 1,000 streams (half Delta, half state of the world)
# with one destination replaced every second for ten minutes after a minute's warm-up. Passes
# when its RSS stays within 10% of the first sample after the warm-up, no stream ends and every
# stream holds the last change. Release build; not part of `make test`. Prints the Markdown for
# docs/benchmarks.md.
#
#   [ROUTES=1000] [STREAMS=1000] [DURATION=600] scripts/bench-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# One connection per stream, on both ends of loopback.
ulimit -n "$(ulimit -Hn)"
cargo build --release --locked --quiet
cargo bench --locked --quiet --bench xds -- --soak "${DURATION:-600}" \
  --routes "${ROUTES:-1000}" --streams "${STREAMS:-1000}" --translate 0
