#!/usr/bin/env bash
# Load through the sidecar for each signing mode, side by side in one run: wrk sends GETs to
# Envoy's egress listener, which signs them (none, native, module, ext-proc or lua) and forwards them
# over TLS to a local upstream (a second Envoy answering 200 directly, so the upstream is never
# the bottleneck). The modes take turns for ROUNDS rounds; the table gives each mode's median.
# With two or more cores the sidecar Envoy gets core 0 to itself and everything else (wrk, the
# upstream, the controller, the signer) shares core 1, so the sidecar's own cost decides its
# requests/second and the other processes cannot steal from it. Prints a Markdown table for
# docs/benchmarks.md.
#
#   [ROUNDS=3] [MODES="none native module ext-proc lua"] [CLOSE=1] scripts/bench-load.sh [SECONDS] [CONNECTIONS]
# CLOSE=1 makes every request a new connection (`Connection: close`), for what is paid per
# connection rather than per request.
# A mode with the suffix `-nolog` (`native-nolog`) runs that signing mode without the sidecar's
# access log (`--access-log false`), to measure what the log costs; with `-noinspect`
# (`ext-proc-noinspect`), without the protocol inspection of the egress listener
# (`--protocol-inspection false`); with `-bare` (`ext-proc-bare`), without the retry policy and
# outlier detection (`--retries 0 --eject-after 0`); with `-trace1` or `-trace001`, with spans
# sent to an OpenTelemetry Collector (built by scripts/install-otelcol.sh, on the other core)
# for every request or one in a hundred. The sidecar Envoy's access log goes to a file, as a
# container's stdout does.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
connections="${2:-16}"
rounds="${ROUNDS:-3}"
close=()
[ "${CLOSE:-}" = 1 ] && close=(-H "Connection: close")
if [ "$(nproc)" -ge 2 ]; then
  sidecar_core=(taskset -c 0)
  other_core=(taskset -c 1)
else
  sidecar_core=()
  other_core=()
fi
cargo build --release --locked --quiet --bin lattice-xds
# The signer as each pod runs it: the signer alone, on one thread (see the Dockerfile).
cargo build --release --locked --quiet --no-default-features --bin lattice-xds-signer
# The signer inside Envoy (the module mode), which Envoy loads from this directory.
cargo build --release --locked --quiet -p lattice-xds-module
module_dir=$(pwd)/target/release
bin=target/release/lattice-xds
signer_bin=target/release/lattice-xds-signer
envoy=$(scripts/install-envoy.sh)
wrk=$(scripts/install-wrk.sh)
work=$(mktemp -d -t lattice-xds-load.XXXXXX)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
wait_for() { # URL EXPECTED-SUBSTRING WHAT [HOST]
  for _ in $(seq 1 400); do
    if curl -sS ${4:+-H "Host: $4"} "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "bench-load: timed out waiting for $3" >&2; return 1
}

host=demo-cluster2.example.com
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\n' "$host" > "$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null

upstream_port=$(free_port)
cat > "$work/upstream.yaml" <<YAML
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: $upstream_port } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: $work/server.pem }
              private_key: { filename: $work/server.key }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "Hello from demo-cluster2-v1\n" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
YAML

credentials=(AWS_ACCESS_KEY_ID=ASIABENCHMARK AWS_SECRET_ACCESS_KEY=bench/secret+KEY
  AWS_SESSION_TOKEN="$session_token" AWS_REGION=eu-west-1
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent)

cpu_seconds() { # CPU seconds (user + system) of each process started for the current mode
  local pid ticks
  ticks=$(getconf CLK_TCK)
  for pid in "${pids[@]}"; do
    awk -v t="$ticks" '{ printf "%.2f ", ($14 + $15) / t }' "/proc/$pid/stat" 2>/dev/null || printf "? "
  done
}

run_mode() { # MODE -> prints "rps p50-ms p99-ms non-2xx envoy-µs/request signer-µs/request signer-RSS-kB envoy-RSS-kB"
  local mode=$1 signer_pid=
  local signing=$mode access_log=true inspect=true extra=()
  case $signing in *-bare) signing=${signing%-bare}; extra=(--retries 0 --eject-after 0) ;; esac
  case $signing in
    *-trace1) signing=${signing%-trace1}; extra=(--trace-collector "$collector" --trace-sampling 1) ;;
    *-trace001) signing=${signing%-trace001}; extra=(--trace-collector "$collector" --trace-sampling 0.01) ;;
  esac
  case $signing in *-noinspect) signing=${signing%-noinspect}; inspect=false ;; esac
  case $signing in *-nolog) signing=${signing%-nolog}; access_log=false ;; esac
  local xds admin egress envoy_admin signer_grpc signer_http
  xds=$(free_port); admin=$(free_port); egress=$(free_port); envoy_admin=$(free_port)
  signer_grpc=$(free_port); signer_http=$(free_port)
  "${other_core[@]}" "$envoy" -c "$work/upstream.yaml" --disable-hot-restart --log-level error --base-id 7 \
    --concurrency 1 2> "$work/upstream-$mode.log" &
  pids+=($!)
  "${other_core[@]}" "$bin" controller --manifests examples --xds-listen "127.0.0.1:$xds" --admin-listen "127.0.0.1:$admin" \
    --signing "$signing" --access-log "$access_log" --protocol-inspection "$inspect" \
    --region eu-west-1 --ca-file "$work/ca.pem" \
    --signer-grpc-address "127.0.0.1:$signer_grpc" --signer-http-address "127.0.0.1:$signer_http" \
    --egress-address 127.0.0.1 --egress-port "$egress" \
    --resolve "$host=127.0.0.1:$upstream_port" "${extra[@]}" --log warn 2> "$work/controller-$mode.log" &
  pids+=($!)
  if [ "$signing" = ext-proc ] || [ "$signing" = lua ]; then
    env "${credentials[@]}" "${other_core[@]}" "$signer_bin" --grpc-listen "127.0.0.1:$signer_grpc" \
      --http-listen "127.0.0.1:$signer_http" --log warn 2> "$work/signer-$mode.log" &
    signer_pid=$!
    pids+=($!)
    wait_for "http://127.0.0.1:$signer_http/readyz" ready "the signer"
  fi
  wait_for "http://127.0.0.1:$admin/readyz" ready "the controller"
  "$bin" bootstrap --node-id bench-pod --cluster bench --xds-address "127.0.0.1:$xds" \
    --admin-port "$envoy_admin" > "$work/bootstrap-$mode.yaml"
  env "${credentials[@]}" ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$module_dir" "${sidecar_core[@]}" "$envoy" \
    -c "$work/bootstrap-$mode.yaml" --disable-hot-restart \
    --log-level error --concurrency 1 > "$work/access-$mode.log" 2> "$work/envoy-$mode.log" &
  local envoy_pid=$!
  pids+=($!)
  wait_for "http://127.0.0.1:$egress/" "Hello from demo-cluster2-v1" "requests through Envoy ($mode)" "$host"
  "${other_core[@]}" "$wrk" -t1 -c"$connections" -d2s -H "Host: $host" "${close[@]}" "http://127.0.0.1:$egress/" > /dev/null
  local before after
  before=$(cpu_seconds)
  "${other_core[@]}" "$wrk" -t1 -c"$connections" -d"${seconds}s" --latency -H "Host: $host" "${close[@]}" \
    "http://127.0.0.1:$egress/" > "$work/wrk-$mode.txt"
  after=$(cpu_seconds)
  local signer_rss=0
  [ -n "$signer_pid" ] && signer_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$signer_pid/status")
  local envoy_rss
  envoy_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$envoy_pid/status")
  stop_all
  echo "$before" > "$work/cpu-before-$mode"
  echo "$after" > "$work/cpu-after-$mode"
  python3 - "$work/wrk-$mode.txt" "$work/cpu-before-$mode" "$work/cpu-after-$mode" "$signing" "$signer_rss" "$envoy_rss" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
before = [float(x) for x in open(sys.argv[2]).read().split()]
after = [float(x) for x in open(sys.argv[3]).read().split()]
used = [a - b for a, b in zip(after, before)]
# Processes in start order: upstream, controller, [signer], sidecar Envoy.
sidecar_cpu = used[-1]
signer_cpu = used[2] if sys.argv[4] in ("ext-proc", "lua") else 0.0
def millis(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
# The latency distribution's lines start with their label; `86.50%` in the `+/- Stdev`
# column of the summary line does not.
p50 = millis(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1))
p99 = millis(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
requests = int(re.search(r"(\d+) requests in", text).group(1))
envoy_us = sidecar_cpu / requests * 1e6
signer_us = signer_cpu / requests * 1e6
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {errors.group(1) if errors else 0} {envoy_us:.0f} {signer_us:.0f} {sys.argv[5]} {sys.argv[6]}")
PY
}

modes=(${MODES:-none native module ext-proc lua})
# A collector for the tracing modes, for the whole run.
collector=""
case " ${modes[*]}" in *-trace*)
  otelcol=$(scripts/install-otelcol.sh)
  collector="127.0.0.1:$(free_port)"
  cat > "$work/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $collector
exporters:
  file:
    path: $work/spans.jsonl
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
YAML
  "${other_core[@]}" "$otelcol" --config "$work/otelcol.yaml" 2> "$work/otelcol.log" &
  collector_pid=$!
  trap 'kill "$collector_pid" 2>/dev/null; stop_all; rm -rf "$work"' EXIT
  wait_for_log() { for _ in $(seq 1 400); do grep -q "$1" "$2" && return 0; sleep 0.05; done; return 1; }
  wait_for_log "Everything is ready" "$work/otelcol.log" || { echo "bench-load: the collector did not start" >&2; exit 1; }
  ;;
esac
results="$work/results"
: > "$results"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    line=$(run_mode "$mode")
    echo "$round $mode $line" >> "$results"
    echo "bench-load: round $round, $mode: $line (req/s, p50 ms, p99 ms, non-2xx, Envoy µs CPU/req, signer µs CPU/req, signer RSS kB, Envoy RSS kB)" >&2
  done
done

pinning="the sidecar Envoy alone on core 0, everything else on core 1"
[ ${#sidecar_core[@]} -eq 0 ] && pinning="no pinning (one core)"
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs));" \
  "wrk -t1 -c$connections -d${seconds}s${close:+ with Connection: close}; $rounds rounds; $pinning;" \
  "Envoy $("$envoy" --version | grep -o 'version: [^ ]*' | cut -d/ -f2) with --concurrency 1; release build."
echo
python3 - "$results" "${modes[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
modes = sys.argv[2:]
by_mode = {mode: [r[2:] for r in rows if r[1] == mode] for mode in modes}
def median(mode, column):
    return statistics.median(float(r[column]) for r in by_mode[mode])
per_round = {}  # round -> mode -> requests/s
for r in rows:
    per_round.setdefault(r[0], {})[r[1]] = float(r[2])
def ratios(mode):  # this mode's requests/s over native's, round by round
    return [v[mode] / v["native"] for v in per_round.values() if "native" in v and mode in v]
print("| mode | requests/s | × native | × native, per round | p50 (ms) | p99 (ms) | non-2xx | "
      "sidecar Envoy CPU/request (µs) | signer CPU/request (µs) | signer ÷ native Envoy CPU | "
      "sidecars' CPU × native | "
      "signer RSS under load | sidecar Envoy RSS under load | pod's sidecars (Envoy + signer) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
native_envoy_us = median("native", 4) if "native" in modes else None
native = median("native", 0) if "native" in modes else None
for mode in modes:
    rps = median(mode, 0)
    ratio = f"{rps / native:.2f}" if native else "–"
    spread = ratios(mode)
    spread = f"{min(spread):.2f}–{max(spread):.2f}" if spread else "–"
    errors = sum(int(r[3]) for r in by_mode[mode])
    signer_us = median(mode, 5)
    signed = mode.startswith(("ext-proc", "lua"))
    share = f"{signer_us / native_envoy_us:.2f}" if signed and native_envoy_us else "–"
    # Envoy's and the signer's CPU per request together, against the native filter's Envoy.
    total = f"{(median(mode, 4) + signer_us) / native_envoy_us:.2f}" if native_envoy_us else "–"
    signer_mb = max(float(r[6]) for r in by_mode[mode]) / 1024
    rss = f"{signer_mb:.1f} MB" if signed else "–"
    envoy_mb = max(float(r[7]) for r in by_mode[mode]) / 1024
    print(f"| {mode} | {rps:.0f} | {ratio} | {spread} | {median(mode, 1):.2f} | {median(mode, 2):.2f} | "
          f"{errors} | {median(mode, 4):.0f} | {signer_us:.0f} | {share} | {total} | {rss} | {envoy_mb:.1f} MB | "
          f"{envoy_mb + signer_mb:.1f} MB |")
PY
