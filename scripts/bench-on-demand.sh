#!/usr/bin/env bash
# What fetching a virtual host on demand adds to a host's first request: N routes (plain HTTP,
# on the walkthrough gateway's HTTP listener), CALLED of them pinned to one local upstream; one
# controller and one stock Envoy, first with every destination in the route table, then with
# `--on-demand-hosts true`. For each of the CALLED hosts, a first request and then a second one
# on a new connection each; the table gives their p50 and p99, per mode, in one run.
#
#   [BIN=target/release/lattice-xds] scripts/bench-on-demand.sh [N] [CALLED]   (10000 200)
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-10000}"
called="${2:-200}"
bin="${BIN:-target/release/lattice-xds}"
if [ -z "${BIN:-}" ]; then cargo build --release --locked --quiet --bin lattice-xds; fi
envoy=$(scripts/install-envoy.sh)
work=$(mktemp -d -t lattice-xds-on-demand.XXXXXX)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh

write_routes "$work/routes" "$n" http-listener

upstream=$(free_port)
python3 - "$upstream" > /dev/null 2>&1 <<'PY' &
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
upstream_pid=$!
resolve=$(python3 -c "print(','.join(f'svc-{i}.example.com=127.0.0.1:$upstream' for i in range($called)))")

run_mode() { # ON-DEMAND -> prints the latencies of first and second requests, ms
  local xds admin envoy_admin egress
  xds=$(free_port); admin=$(free_port); envoy_admin=$(free_port); egress=$(free_port)
  "$bin" controller --manifests "$work/routes" --xds-listen "127.0.0.1:$xds" --admin-listen "127.0.0.1:$admin" \
    --signing none --egress-address 127.0.0.1 --egress-port "$egress" --on-demand-hosts "$1" \
    --resolve "$resolve" --log warn > "$work/controller-$1.log" 2>&1 &
  pids+=($!)
  "$bin" bootstrap --node-id "bench-$1" --cluster bench --xds-address "127.0.0.1:$xds" \
    --admin-port "$envoy_admin" > "$work/bootstrap-$1.yaml"
  "$envoy" -c "$work/bootstrap-$1.yaml" --concurrency 2 --log-level warn > "$work/envoy-$1.log" 2>&1 &
  pids+=($!)
  python3 - "$envoy_admin" "$egress" "$called" <<'PY'
import http.client, json, statistics, sys, time, urllib.request
admin, egress, called = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(1200):
    try:
        info = urllib.request.urlopen(f"http://127.0.0.1:{admin}/server_info").read()
        if b'"LIVE"' in info:
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    sys.exit("Envoy did not become LIVE")
time.sleep(1)
def get(host):
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", egress, timeout=30)
    connection.request("GET", "/", headers={"Host": host})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        sys.exit(f"{host}: {response.status}")
    return (time.perf_counter() - started) * 1000
first, second = [], []
for i in range(called):
    host = f"svc-{i}.example.com"
    first.append(get(host))
    second.append(get(host))
def p(values, q):
    return statistics.quantiles(values, n=100)[q - 1]
print(f"{p(first, 50):.2f} {p(first, 99):.2f} {p(second, 50):.2f} {p(second, 99):.2f}")
PY
  stop_all
}

full=$(run_mode false)
on_demand=$(run_mode true)
kill "$upstream_pid" 2>/dev/null || true
echo "$n routes, $called hosts called (a first request, then a second, each on a new connection); Envoy $("$envoy" --version | grep -o 'version: [^ ]*' | cut -d/ -f2), --concurrency 2."
echo
echo "| route table | first request p50 (ms) | p99 | second request p50 (ms) | p99 |"
echo "|---|---:|---:|---:|---:|"
read -r a b c d <<< "$full"
echo "| every destination | $a | $b | $c | $d |"
read -r a b c d <<< "$on_demand"
echo "| on demand | $a | $b | $c | $d |"
