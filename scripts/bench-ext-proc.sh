#!/usr/bin/env bash
# The signer sidecar's binary driven directly over ext_proc by `lattice-xds loadtest ext-proc`,
# as Envoy drives it (one stream per request, headers only), with no Envoy in between: its
# requests/s, latency and CPU per request alone, its idle RSS and its RSS under load, and its
# binary's size. Release builds; prints the Markdown for docs/benchmarks.md.
#
#   [DURATION=10s] [CONCURRENCY=16] scripts/bench-ext-proc.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet --bin lattice-xds
cargo build --release --locked --quiet --no-default-features --bin lattice-xds-signer
bin=target/release/lattice-xds
signer_bin=target/release/lattice-xds-signer
work=$(mktemp -d -t lattice-xds-ext-proc.XXXXXX)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh

grpc=$(free_port); http=$(free_port)
env -i PATH="$PATH" AWS_ACCESS_KEY_ID=ASIABENCHMARK AWS_SECRET_ACCESS_KEY=bench/secret+KEY \
  AWS_SESSION_TOKEN="$session_token" AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
  "$signer_bin" --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" --log warn \
  2> "$work/signer.log" &
signer=$!
pids+=("$signer")
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
  sleep 0.05
done
idle=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$signer/status")
threads=$(awk '/^Threads:/ { print $2 }' "/proc/$signer/status")
size=$(stat -c %s "$signer_bin")
full=$(stat -c %s "$bin")

"$bin" loadtest ext-proc --target "127.0.0.1:$grpc" --duration 2s \
  --concurrency "${CONCURRENCY:-16}" > /dev/null 2>&1
"$bin" loadtest ext-proc --target "127.0.0.1:$grpc" --duration "${DURATION:-10s}" \
  --concurrency "${CONCURRENCY:-16}" --pid "$signer"
echo
echo "Signer binary: $(awk -v b="$size" 'BEGIN { printf "%.1f MB", b / 1048576 }')" \
  "(lattice-xds, the full binary: $(awk -v b="$full" 'BEGIN { printf "%.1f MB", b / 1048576 }'));" \
  "idle RSS ${idle} MB with ${threads} thread(s)."
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs));" \
  "concurrency ${CONCURRENCY:-16}, ${DURATION:-10s}; the load tool shares the machine with the signer."
