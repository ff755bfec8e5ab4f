#!/usr/bin/env bash
# A sidecar's memory as destinations grow: for each N, a manifest directory with N HTTPRoutes
# (custom domains under example.com, on the walkthrough's gateway), one controller, and one
# stock Envoy (`--concurrency 2`, as the injected sidecar runs it; CONCURRENCY=N for another
# worker count) that follows it over ADS. Once Envoy holds
# all N virtual hosts and is LIVE, its RSS and cluster count are read. Prints a Markdown table
# for docs/benchmarks.md.
#
#   [BIN=target/release/lattice-xds] [CONTROLLER_ARGS="--destination-stats false"] \
#     [CONCURRENCY=2] [CALLS=K] [SIGNING=native|module] scripts/bench-sidecar.sh [N...]
#   (default: 10 1000 10000)
# SIGNING=module signs with the signer module (target/release/liblattice_xds_signer.so, built
# here) instead of Envoy's native filter, so Envoy's RSS includes the module at rest.
# CALLS=K (with CONTROLLER_ARGS="--on-demand-hosts true") makes one request to each of the
# first K hosts once Envoy is LIVE, and reads the RSS once it holds their K virtual hosts.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 1000 10000)
bin="${BIN:-target/release/lattice-xds}"
workers="${CONCURRENCY:-2}"
if [ -z "${BIN:-}" ]; then cargo build --release --locked --quiet; fi
signing="${SIGNING:-native}"
envoy_env=()
if [ "$signing" = module ]; then
  cargo build --release --locked --quiet -p lattice-xds-module
  envoy_env=(ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(pwd)/target/release" AWS_REGION=us-west-2
    AWS_ACCESS_KEY_ID=ASIABENCHMARK AWS_SECRET_ACCESS_KEY=bench/secret AWS_EC2_METADATA_DISABLED=true
    AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent)
fi
envoy=$(scripts/install-envoy.sh)
work=$(mktemp -d -t lattice-xds-sidecar.XXXXXX)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Waits until Envoy's admin answers CHECK (a python expression over `text`) for URL.
wait_admin() { # URL CHECK WHAT
  for _ in $(seq 1 1200); do
    if curl -fsS "$1" 2>/dev/null | python3 -c "import sys; text=sys.stdin.read(); sys.exit(0 if ($2) else 1)"; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench-sidecar: timed out waiting for $3" >&2
  return 1
}

echo "| destinations | Envoy RSS (\`--concurrency $workers\`, signing $signing) | × RSS at ${sizes[0]} | clusters | virtual hosts |"
echo "|---:|---:|---:|---:|---:|"
base=""
for n in "${sizes[@]}"; do
  dir="$work/routes-$n"
  write_routes "$dir" "$n"
  xds=$(free_port); admin=$(free_port); envoy_admin=$(free_port); egress=$(free_port)
  "$bin" controller --manifests "$dir" --xds-listen "127.0.0.1:$xds" --admin-listen "127.0.0.1:$admin" \
    --domain example.com --signing "$signing" --region us-west-2 \
    --egress-address 127.0.0.1 --egress-port "$egress" ${CONTROLLER_ARGS:-} \
    >"$work/controller-$n.log" 2>&1 &
  pids+=($!)
  "$bin" bootstrap --node-id "sidecar-$n" --cluster bench --xds-address "127.0.0.1:$xds" \
    --admin-port "$envoy_admin" >"$work/bootstrap-$n.yaml"
  if [ -n "${BOOTSTRAP_EXTRA:-}" ]; then printf '%s\n' "$BOOTSTRAP_EXTRA" >>"$work/bootstrap-$n.yaml"; fi
  env "${envoy_env[@]}" "$envoy" -c "$work/bootstrap-$n.yaml" --concurrency "$workers" --log-level warn \
    >"$work/envoy-$n.log" 2>&1 &
  envoy_pid=$!
  pids+=("$envoy_pid")
  wait_admin "http://127.0.0.1:$envoy_admin/stats?filter=^http.egress.rds.egress.config_reload$" \
    "int(text.split(':')[-1] or 0) >= 1" "Envoy to load its routes"
  held=$n
  if [ -n "${CALLS:-}" ]; then
    # On demand: only the hosts called are fetched.
    wait_admin "http://127.0.0.1:$envoy_admin/server_info" "'\"LIVE\"' in text" "Envoy to be LIVE"
    held=$(( CALLS < n ? CALLS : n ))
    for i in $(seq 0 $(( held - 1 ))); do
      curl -s -o /dev/null -H "Host: svc-$i.example.com" "http://127.0.0.1:$egress/" || true
    done
  fi
  # Every destination's virtual host (or every one called), plus the fallback and the 404 host.
  wait_admin "http://127.0.0.1:$envoy_admin/config_dump?resource=dynamic_route_configs" \
    "text.count('\"svc-') >= $held" "$held virtual hosts"
  wait_admin "http://127.0.0.1:$envoy_admin/server_info" "'\"LIVE\"' in text" "Envoy to be LIVE"
  # Steady state: what Envoy holds once the update's transient allocations are returned.
  sleep "${SETTLE:-3}"
  rss=$(rss_kb "$envoy_pid")
  clusters=$(curl -fsS "http://127.0.0.1:$envoy_admin/clusters?format=json" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("cluster_statuses", [])))')
  vhosts=$(curl -fsS "http://127.0.0.1:$envoy_admin/config_dump?resource=dynamic_route_configs" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(c["route_config"].get("virtual_hosts", [])) for c in d["configs"]))')
  [ -n "$base" ] || base=$rss
  ratio=$(python3 -c "print(f'{$rss / $base:.2f}')")
  printf '| %s | %s MB | %s | %s | %s |\n' "$n" "$(python3 -c "print(f'{$rss / 1024:.0f}')")" \
    "$ratio" "$clusters" "$vhosts"
  stop_all
done
