#!/usr/bin/env bash
# A rolling restart of the called service, as the application sees it through its sidecar:
# the local VPC Lattice emulator serves svc-0.example.com (signed with ext_proc, checked as
# Lattice does) with TARGETS targets that take requests in turn while each refuses for DOWN in
# turn (`--fault svc-0.example.com=rolling=TARGETSxDOWN`, answered 503 as Lattice answers for
# an unavailable target). h2load sends GETs at RATE requests/s for SECONDS through the
# sidecar, once per mode, ROUNDS times each in turn: `no-retries` (`--retries 0`), `default`
# (one retry), `retries-N` (`--retries N`). Prints a Markdown table for docs/benchmarks.md.
#
#   [ROUNDS=2] [RATE=200] [TARGETS=3] [DOWN=2s] [MODES="no-retries default"] \
#     scripts/bench-rollout.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
rounds="${ROUNDS:-2}"
rate="${RATE:-200}"
targets="${TARGETS:-3}"
down="${DOWN:-2s}"
clients=4
cargo build --release --locked --quiet --bin lattice-xds
cargo build --release --locked --quiet --no-default-features --bin lattice-xds-signer
bin=target/release/lattice-xds
signer_bin=target/release/lattice-xds-signer
envoy=$(scripts/install-envoy.sh)
h2load=$(scripts/install-h2load.sh)
work=$(mktemp -d -t lattice-xds-rollout.XXXXXX)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
wait_for() { # URL EXPECTED-SUBSTRING WHAT [HOST]
  for _ in $(seq 1 400); do
    if curl -sS ${4:+-H "Host: $4"} "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "bench-rollout: timed out waiting for $3" >&2; return 1
}

host=svc-0.example.com
write_routes "$work/manifests" 1
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=*.example.com" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:*.example.com\n' > "$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null
cat > "$work/identities.yaml" <<YAML
- name: eks-cluster1/apps/bench
  accessKeyId: ASIABENCHMARKROLLOUT
  secretAccessKey: bench-rollout-secret-0000000000000000000
  sessionToken: bench-rollout-token
  arn: arn:aws:sts::111122223333:assumed-role/bench/eks-eks-cluster1-bench-0000
  tags: {eks-cluster-name: eks-cluster1, kubernetes-namespace: apps}
YAML
credentials=(AWS_ACCESS_KEY_ID=ASIABENCHMARKROLLOUT AWS_SECRET_ACCESS_KEY=bench-rollout-secret-0000000000000000000
  AWS_SESSION_TOKEN=bench-rollout-token AWS_REGION=us-east-1
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent)

# The service's one backend: a plain HTTP Envoy answering 200.
backend_port=$(free_port)
cat > "$work/backend.yaml" <<YAML
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: $backend_port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: backend
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "Hello from svc-0\n" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
YAML
"$envoy" -c "$work/backend.yaml" --disable-hot-restart --log-level error --base-id 11 \
  --concurrency 1 2> "$work/backend.log" &
pids+=($!)
lattice=$(free_port)
"$bin" emulate-lattice --manifests "$work/manifests" --identities "$work/identities.yaml" \
  --tls-cert "$work/server.pem" --tls-key "$work/server.key" --listen "127.0.0.1:$lattice" \
  --backend "svc-0=http://127.0.0.1:$backend_port" --region us-east-1 \
  --fault "$host=rolling=${targets}x$down" --log warn 2> "$work/emulator.log" &
pids+=($!)
signer_grpc=$(free_port); signer_http=$(free_port)
env "${credentials[@]}" "$signer_bin" --grpc-listen "127.0.0.1:$signer_grpc" \
  --http-listen "127.0.0.1:$signer_http" --log warn 2> "$work/signer.log" &
pids+=($!)
wait_for "http://127.0.0.1:$signer_http/readyz" ready "the signer"
shared_pids=("${pids[@]}")

run_mode() { # MODE (no-retries | default | retries-N) -> "requests failed retried"
  local mode=$1 flags=()
  case $mode in
    no-retries) flags=(--retries 0) ;;
    retries-*) flags=(--retries "${mode#retries-}") ;;
  esac
  local xds admin egress envoy_admin
  xds=$(free_port); admin=$(free_port); egress=$(free_port); envoy_admin=$(free_port)
  "$bin" controller --manifests "$work/manifests" --xds-listen "127.0.0.1:$xds" \
    --admin-listen "127.0.0.1:$admin" --signing ext-proc --region us-east-1 --ca-file "$work/ca.pem" \
    --signer-grpc-address "127.0.0.1:$signer_grpc" --signer-http-address "127.0.0.1:$signer_http" \
    --egress-address 127.0.0.1 --egress-port "$egress" --resolve "$host=127.0.0.1:$lattice" \
    "${flags[@]}" --log warn 2> "$work/controller-$mode.log" &
  local controller=$!
  wait_for "http://127.0.0.1:$admin/readyz" ready "the controller"
  "$bin" bootstrap --node-id bench-pod --cluster bench --xds-address "127.0.0.1:$xds" \
    --admin-port "$envoy_admin" > "$work/bootstrap-$mode.yaml"
  "$envoy" -c "$work/bootstrap-$mode.yaml" --disable-hot-restart --log-level error \
    --base-id 12 --concurrency 1 > /dev/null 2> "$work/envoy-$mode.log" &
  local sidecar=$!
  # Routed: any answer from the service, whichever target took it.
  wait_for "http://127.0.0.1:$egress/" "" "requests through Envoy ($mode)" "$host"
  "$h2load" --h1 -c "$clients" --rps "$((rate / clients))" -D "$seconds" \
    -H ":authority: $host" "http://127.0.0.1:$egress/" > "$work/h2load-$mode.txt"
  local retried
  retried=$(curl -sS "http://127.0.0.1:$envoy_admin/stats?filter=upstream_rq_retry$" \
    | awk -F': ' '/lattice\|/ { print $2 }')
  kill "$sidecar" "$controller" 2>/dev/null || true
  wait "$sidecar" "$controller" 2>/dev/null || true
  python3 - "$work/h2load-$mode.txt" "${retried:-0}" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
total = int(done.group(3))
failed = total - int(codes.group(1))
print(total, failed, sys.argv[2])
PY
}

results="$work/results"
: > "$results"
modes=(${MODES:-no-retries default})
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    line=$(run_mode "$mode")
    echo "$round $mode $line" >> "$results"
    echo "bench-rollout: round $round, $mode: $line (requests, failed as the application saw them, retries)" >&2
  done
done

echo "Machine: $(nproc) cores; h2load --h1 -c$clients at $rate requests/s for ${seconds}s; a rolling" \
  "restart of ${targets} targets, each refusing for $down in turn; $rounds rounds; Envoy" \
  "$("$envoy" --version | grep -o 'version: [^ ]*' | cut -d/ -f2) with --concurrency 1; release build."
echo
python3 - "$results" "${modes[@]}" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
labels = {"no-retries": "no retries (`--retries 0`)", "default": "the default (one retry)"}
print("| sidecar | requests | failed (as the application saw them) | share failed | retries |")
print("|---|---|---|---|---|")
for mode in sys.argv[2:]:
    label = labels.get(mode, f"`--retries {mode.removeprefix('retries-')}`")
    mine = [r for r in rows if r[1] == mode]
    total = sum(int(r[2]) for r in mine)
    failed = sum(int(r[3]) for r in mine)
    retried = sum(int(r[4]) for r in mine)
    share = 100.0 * failed / total if total else 0.0
    per_round = ", ".join(r[3] for r in mine)
    print(f"| {label} | {total} | {failed} ({per_round} by round) | {share:.2f}% | {retried} |")
PY
