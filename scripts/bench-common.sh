# Sourced by the benchmark scripts: a scratch directory removed on exit, the background
# processes started into `pids` (stopped by stop_all and on exit), and a free loopback port.
#   work=$(mktemp -d ...); source scripts/bench-common.sh
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A session token as long as the ~1 KB ones Pod Identity hands out: it is signed and sent with
# every request.
session_token="IQoJb3JpZ2luX2VjE$(printf 'Bench/Token+Segment%04d' $(seq 1 50) | head -c 1000)"
