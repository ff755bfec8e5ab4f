#!/usr/bin/env bash
# The walkthrough on one machine, without a cluster or an AWS account: the controller serves
# the seed's two HTTPRoutes (examples/) to one stock Envoy, and a request for
# demo-cluster2.example.com goes through Envoy's egress listener to a local HTTPS server that
# stands in for the VPC Lattice service, with a certificate from a CA made here.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/lattice-xds
envoy=$(scripts/install-envoy.sh)
work=$(mktemp -d -t lattice-xds-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL EXPECTED-SUBSTRING WHAT
  for _ in $(seq 1 200); do
    if curl -fsS "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "demo: timed out waiting for $3" >&2; return 1
}

echo "== a private CA and a certificate for demo-cluster2.example.com (stand-in for ACM PCA)"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=demo private CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=demo-cluster2.example.com" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:demo-cluster2.example.com\n' > "$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null

upstream_port=$(free_port); xds_port=$(free_port); admin_port=$(free_port)
egress_port=$(free_port); envoy_admin=$(free_port)

echo "== the demo-cluster2 service (HTTPS on 127.0.0.1:$upstream_port)"
python3 - "$upstream_port" "$work" <<'PY' &
import http.server, ssl, sys
port, work = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Requesting to Pod(demo-cluster2-v1): Hello from demo-cluster2-v1 (TLS server name: {getattr(self.connection, 'sni', None)})\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(f"{work}/server.pem", f"{work}/server.key")
def remember_sni(sock, name, _context):
    sock.sni = name
context.sni_callback = remember_sni
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
pids+=($!)

echo "== lattice-xds controller on examples/"
"$bin" controller --manifests examples \
  --xds-listen "127.0.0.1:$xds_port" --admin-listen "127.0.0.1:$admin_port" \
  --domain example.com --signing none --ca-file "$work/ca.pem" \
  --egress-address 127.0.0.1 --egress-port "$egress_port" \
  --resolve "demo-cluster2.example.com=127.0.0.1:$upstream_port" 2> "$work/controller.log" &
pids+=($!)
wait_for "http://127.0.0.1:$admin_port/readyz" ready "the controller"

echo "== stock Envoy ($("$envoy" --version | grep -o 'version: [^ ]*' | cut -d/ -f2)) started from 'lattice-xds bootstrap'"
"$bin" bootstrap --node-id demo-cluster1-v1-pod --cluster demo-cluster1-v1 --namespace apps \
  --xds-address "127.0.0.1:$xds_port" --admin-port "$envoy_admin" > "$work/bootstrap.yaml"
"$envoy" -c "$work/bootstrap.yaml" --disable-hot-restart --log-level warn 2> "$work/envoy.log" &
pids+=($!)
wait_for "http://127.0.0.1:$envoy_admin/ready" LIVE "Envoy to be LIVE"

echo
echo "\$ lattice-xds proxy-status"
"$bin" proxy-status --admin "http://127.0.0.1:$admin_port"
echo
echo "\$ curl -H 'Host: demo-cluster2.example.com' http://127.0.0.1:$egress_port/   # through the sidecar"
curl -sS -i -H 'Host: demo-cluster2.example.com' "http://127.0.0.1:$egress_port/" | tr -d '\r' | grep -E '^HTTP|^Requesting'
echo
echo "\$ curl -H 'Host: unknown.test' http://127.0.0.1:$egress_port/   # not a Lattice destination"
curl -sS -i -H 'Host: unknown.test' "http://127.0.0.1:$egress_port/" | tr -d '\r' | grep -E '^HTTP|^lattice-xds'
echo
echo "This demo runs with --signing none: the local VPC Lattice that would check signatures and"
echo "auth policies is not built yet. 'lattice-xds signer' signs (see the README), and"
echo "'make test' shows every signing mode verified end to end."
