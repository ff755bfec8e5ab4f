#!/usr/bin/env bash
# Discovery from the VPC Lattice API at scale: for each N, N services (HTTPS on 443, a custom
# domain each) registered in moto's VPC Lattice in one service network, one controller
# (release build) discovering them every 2 s, and one stock Envoy following it. Prints a
# Markdown table for docs/benchmarks.md: the first poll (every service described), the API
# calls of an unchanged poll (averaged over ten) and the time of the last, the controller's RSS, the pushes an unchanged poll sends to
# the idle sidecar (must be 0), and the sidecar's RSS with every service as a destination.
#
#   [BIN=target/release/lattice-xds] scripts/bench-discovery.sh [N...]   (default: 1000 5000)
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 5000)
bin="${BIN:-target/release/lattice-xds}"
if [ -z "${BIN:-}" ]; then cargo build --release --locked --quiet; fi
envoy=$(scripts/install-envoy.sh)
python=$(scripts/install-python-peers.sh)
work=$(mktemp -d -t lattice-xds-discovery.XXXXXX)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# The sum of a metric's samples (all label sets) on the controller's admin port.
metric() { # ADMIN NAME
  curl -fsS "http://127.0.0.1:$1/metrics" |
    awk -v name="$2" '$1 == name || index($1, name "{") == 1 { sum += $2 } END { printf "%.3f", sum }'
}
# How much a metric grew since BEFORE, as a whole number.
since() { # ADMIN NAME BEFORE
  python3 -c "print(int($(metric "$1" "$2") - $3))"
}
wait_for() { # WHAT CHECK (a shell command)
  for _ in $(seq 1 6000); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "bench-discovery: timed out waiting for $1" >&2
  return 1
}

echo "| services | first poll (all described) | API calls, first poll | last unchanged poll | API calls per unchanged poll (10) | controller RSS | pushes by 10 unchanged polls | sidecar RSS |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
  moto_port=$(free_port)
  "$(dirname "$python")/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto-$n.log" 2>&1 &
  pids+=($!)
  wait_for "moto" "curl -fsS http://127.0.0.1:$moto_port/moto-api/"
  "$python" - "$n" >"$work/spec-$n.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"vpc": None,
                  "networks": [{"name": "bench", "auth": "AWS_IAM",
                                "policy": {"Version": "2012-10-17", "Statement": []}}],
                  "services": [{"name": f"svc-{i}", "custom_domain": f"svc-{i}.example.com",
                                "auth": "AWS_IAM", "listeners": [["HTTPS", 443]],
                                "networks": ["bench"]} for i in range(n)]}))
PY
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); j['endpoint']=sys.argv[2]; j['region']='us-east-1'; print(json.dumps(j))" \
    "$work/spec-$n.json" "http://127.0.0.1:$moto_port" |
    "$python" tests/peers/lattice_services.py >/dev/null

  xds=$(free_port); admin=$(free_port); envoy_admin=$(free_port); egress=$(free_port)
  mkdir -p "$work/empty"
  started=$(date +%s.%N)
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    "$bin" controller --manifests "$work/empty" --xds-listen "127.0.0.1:$xds" --admin-listen "127.0.0.1:$admin" \
    --service-network bench --discovery-interval 2s --region us-east-1 \
    --aws-endpoint-url "http://127.0.0.1:$moto_port" --signing none \
    --egress-address 127.0.0.1 --egress-port "$egress" >"$work/controller-$n.log" 2>&1 &
  controller_pid=$!
  pids+=("$controller_pid")
  wait_for "the first poll" "[ \"\$(metric $admin lattice_xds_discovered_services)\" = $n.000 ]"
  first=$(python3 -c "print(f'{$(date +%s.%N) - $started:.1f} s')")
  first_calls=$(metric "$admin" lattice_xds_discovery_api_calls_total)

  "$bin" bootstrap --node-id "sidecar-$n" --cluster bench --xds-address "127.0.0.1:$xds" \
    --admin-port "$envoy_admin" >"$work/bootstrap-$n.yaml"
  "$envoy" -c "$work/bootstrap-$n.yaml" --concurrency 2 --log-level warn >"$work/envoy-$n.log" 2>&1 &
  envoy_pid=$!
  pids+=("$envoy_pid")
  wait_for "all $n virtual hosts" \
    "curl -fsS 'http://127.0.0.1:$envoy_admin/config_dump?resource=dynamic_route_configs' | python3 -c 'import sys; sys.exit(0 if sys.stdin.read().count(\"\\\"svc-\") >= $n else 1)'"
  wait_for "Envoy to be LIVE" "curl -fsS http://127.0.0.1:$envoy_admin/server_info | grep -q '\"LIVE\"'"

  # Ten unchanged polls (every tenth describes up to 200 known services again): their API
  # calls, the last one's time, and what they pushed.
  polls=$(metric "$admin" lattice_xds_discovery_polls_total)
  calls=$(metric "$admin" lattice_xds_discovery_api_calls_total)
  pushes=$(metric "$admin" lattice_xds_pushes_total)
  wait_for "ten more polls" "[ \$(since $admin lattice_xds_discovery_polls_total $polls) -ge 10 ]"
  steady_calls=$(python3 -c "print(f'{($(metric "$admin" lattice_xds_discovery_api_calls_total) - $calls) / 10:.0f}')")
  steady=$(python3 -c "print(f'{$(metric "$admin" lattice_xds_discovery_poll_seconds):.2f} s')")
  pushed=$(since "$admin" lattice_xds_pushes_total "$pushes")
  printf '| %s | %s | %.0f | %s | %s | %s MB | %s | %s MB |\n' "$n" "$first" "$first_calls" "$steady" \
    "$steady_calls" "$(rss_mb "$controller_pid")" "$pushed" "$(rss_mb "$envoy_pid")"
  stop_all
done
