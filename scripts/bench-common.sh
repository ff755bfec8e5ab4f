# Sourced by the benchmark scripts: a scratch directory removed on exit, the background
# processes started into `pids` (stopped by stop_all and on exit), a free loopback port, and
# a directory of N routes.
#   work=$(mktemp -d ...); source scripts/bench-common.sh
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

# N routes svc-0 .. svc-N-1 on the walkthrough's gateway, each with one host name
# svc-I.example.com, attached to LISTENER (the HTTPS listener with the custom domain by default).
write_routes() { # DIR N [LISTENER]
  mkdir -p "$1"
  cp examples/cluster1/gateway.yaml "$1/"
  python3 - "$1/routes.yaml" "$2" "${3:-https-listener-with-custom-domain}" <<'PY'
import sys
path, n, listener = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as out:
    for i in range(n):
        out.write(f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: svc-{i}
  namespace: apps
spec:
  hostnames:
  - svc-{i}.example.com
  parentRefs:
  - name: lattice-gateway
    namespace: lattice-gateway
    sectionName: {listener}
  rules:
  - backendRefs:
    - name: svc-{i}
      port: 80
""")
PY
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A session token as long as the ~1 KB ones Pod Identity hands out: it is signed and sent with
# every request.
session_token="IQoJb3JpZ2luX2VjE$(printf 'Bench/Token+Segment%04d' $(seq 1 50) | head -c 1000)"
