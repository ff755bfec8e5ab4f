#!/usr/bin/env bash
# The walkthrough on one machine, without a cluster or an AWS account. ACM PCA runs in moto
# and issues the private CA and the *.example.com certificate; `lattice-xds emulate-lattice`
# stands in for VPC Lattice on 127.0.0.1:443 (TLS, SigV4, the IAM auth policies of
# examples/cluster*/), answers DNS for the services and plays the EKS Pod Identity agent; each
# emulated cluster runs its controller on its own manifests, stock Envoy and the signer. Then
# eks-cluster1's pod makes the walkthrough's two calls. Needs root, for port 443.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

bin=target/debug/lattice-xds
envoy=$(scripts/install-envoy.sh)
python=$(dirname "$(scripts/install-python-peers.sh)")
work=$(mktemp -d -t lattice-xds-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
  echo "demo: the emulated VPC Lattice listens on 127.0.0.1:443, as Lattice services do; run as root" >&2
  exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL EXPECTED-SUBSTRING WHAT LOG
  for _ in $(seq 1 400); do
    if curl -fsS "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "demo: timed out waiting for $3; its log:" >&2
  tail -n 20 "$4" >&2
  return 1
}
wait_for_log() { # FILE TEXT WHAT
  for _ in $(seq 1 400); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "demo: timed out waiting for $3; its log:" >&2
  tail -n 20 "$1" >&2
  return 1
}
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
export AWS_CONFIG_FILE=$work/none AWS_SHARED_CREDENTIALS_FILE=$work/none AWS_EC2_METADATA_DISABLED=true

moto_port=$(free_port)
echo "== ACM PCA (moto on 127.0.0.1:$moto_port): a root CA, and a certificate for *.example.com"
"$python/moto_server" -H 127.0.0.1 -p "$moto_port" > "$work/moto.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$moto_port/moto-api/" "" "moto" "$work/moto.log"
openssl req -newkey rsa:2048 -nodes -subj "/CN=*.example.com" -addext "subjectAltName=DNS:*.example.com" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
ca_arn=$("$python/python" tests/peers/pca_setup.py "http://127.0.0.1:$moto_port" "$work/tls.csr" "$work/tls.crt")
echo "   $ca_arn"

app_port() { # NAME: the walkthrough's http-server, answering with its pod name
  local port
  port=$(free_port)
  python3 - "$port" "$1" > /dev/null 2>&1 <<'PY' &
import http.server, sys
port, name = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Requesting to Pod({name}): Hello from {name}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
  pids+=($!)
  echo "$port"
}
app1=$(app_port demo-cluster1-v1)
app2=$(app_port demo-cluster2-v1)

dns_port=$(free_port); agent_port=$(free_port)
echo "== VPC Lattice, emulated on 127.0.0.1:443 (DNS on :$dns_port, Pod Identity agent on :$agent_port)"
"$bin" emulate-lattice --manifests examples/cluster1 --manifests examples/cluster2 \
  --identities demo/identities.yaml --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
  --listen 127.0.0.1:443 --region ap-northeast-2 --account 890742582773 \
  --backend "demo-cluster1-v1=http://127.0.0.1:$app1" --backend "demo-cluster2-v1=http://127.0.0.1:$app2" \
  --dns-listen "127.0.0.1:$dns_port" --pod-identity-listen "127.0.0.1:$agent_port" \
  > "$work/emulator.log" 2>&1 &
pids+=($!)
wait_for_log "$work/emulator.log" "VPC Lattice emulator ready" "the Lattice emulator"

start_pod() { # CLUSTER N: prints the pod's egress port
  local cluster=$1 n=$2 grpc http xds admin egress envoy_admin
  grpc=$(free_port); http=$(free_port); xds=$(free_port); admin=$(free_port)
  egress=$(free_port); envoy_admin=$(free_port)
  printf '%s' "demo-projected-token-eks-$cluster" > "$work/$cluster.token"
  AWS_REGION=ap-northeast-2 \
  AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$agent_port/v1/credentials" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$work/$cluster.token" \
    "$bin" signer --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" > "$work/signer-$cluster.log" 2>&1 &
  pids+=($!)
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    "$bin" controller --manifests "examples/$cluster" --domain example.com \
    --ca-arn "$ca_arn" --aws-endpoint-url "http://127.0.0.1:$moto_port" \
    --dns-resolver "127.0.0.1:$dns_port" --signing ext-proc --region ap-northeast-2 \
    --signer-grpc-address "127.0.0.1:$grpc" \
    --xds-listen "127.0.0.1:$xds" --admin-listen "127.0.0.1:$admin" \
    --egress-address 127.0.0.1 --egress-port "$egress" > "$work/controller-$cluster.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$http/readyz" "" "eks-$cluster's signer" "$work/signer-$cluster.log"
  wait_for "http://127.0.0.1:$admin/readyz" ready "eks-$cluster's controller" "$work/controller-$cluster.log"
  "$bin" bootstrap --node-id "demo-$cluster-v1-pod" --cluster "demo-$cluster-v1" --namespace apps \
    --xds-address "127.0.0.1:$xds" --admin-port "$envoy_admin" --output "$work/bootstrap-$cluster.yaml"
  "$envoy" -c "$work/bootstrap-$cluster.yaml" --disable-hot-restart --log-level warn > "$work/envoy-$cluster.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$envoy_admin/ready" LIVE "eks-$cluster's Envoy" "$work/envoy-$cluster.log"
  echo "$egress"
}
echo "== eks-cluster1: controller on examples/cluster1, stock Envoy, signer (Pod Identity: eks-cluster1/apps)"
egress1=$(start_pod cluster1 1)
echo "== eks-cluster2: controller on examples/cluster2, stock Envoy, signer (Pod Identity: eks-cluster2/apps)"
start_pod cluster2 2 > /dev/null

call() { # HOST: the app's plain HTTP call, through its sidecar's egress listener
  local output
  for _ in $(seq 1 100); do
    output=$(curl -sS -w '\n%{http_code}' -H "Host: $1" "http://127.0.0.1:$egress1/")
    case "${output##*$'\n'}" in 503|404) sleep 0.05 ;; *) break ;; esac
  done
  local body=${output%$'\n'*}
  echo "HTTP ${output##*$'\n'}"
  echo "${body%$'\n'}"
}
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- curl demo-cluster2.example.com"
call demo-cluster2.example.com
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- curl demo-cluster1.example.com"
call demo-cluster1.example.com
echo
echo "(the calls go through eks-cluster1's Envoy at 127.0.0.1:$egress1, signed with its Pod Identity"
echo " credentials; demo-cluster1's auth policy admits only eks-cluster2's apps namespace)"
