#!/usr/bin/env bash
# `make bench-xds`: the controller against go-control-plane (built from its Go module by
# scripts/build-go-peer.sh) under sidecar-like ADS load, side by side in one run, then stock
# Envoy's memory as destinations grow. Release builds; not part of `make test`. Prints the
# Markdown tables for docs/benchmarks.md and draws docs/benchmarks-xds.png from them.
#
#   [ROUTES=1000,10000] [STREAMS=1000] [PROTOCOLS=delta,sotw] [ROUNDS=3] scripts/bench-xds.sh
# PROTOCOLS may also name on-demand: incremental streams with virtual hosts on demand, against
# the peer's full route table over delta.
set -euo pipefail
cd "$(dirname "$0")/.."

# One connection per stream, on both ends of loopback.
ulimit -n "$(ulimit -Hn)"
peer=$(scripts/build-go-peer.sh)
cargo build --release --locked --quiet
results=$(mktemp -t lattice-xds-bench.XXXXXX)
trap 'rm -f "$results"' EXIT
{
  cargo bench --locked --quiet --bench xds -- --peer "$peer" \
    --routes "${ROUTES:-1000,10000}" --streams "${STREAMS:-1000}" \
    --protocols "${PROTOCOLS:-delta,sotw}" --rounds "${ROUNDS:-3}"
  echo
  BIN=target/release/lattice-xds scripts/bench-sidecar.sh 10 1000 10000
} | tee "$results"
scripts/bench-chart.sh "$results"
