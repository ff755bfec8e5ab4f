#!/usr/bin/env bash
# The walkthrough on one machine, without a cluster or an AWS account. moto plays ACM PCA,
# which issues the private CA and the *.example.com certificate, and the VPC Lattice API, in
# which each cluster's services are registered as its AWS Gateway API Controller would
# (tests/peers/gateway_routes.py), beside a partner's TLS passthrough service in a second
# service network. `lattice-xds emulate-lattice` stands in for VPC Lattice's data plane on
# 127.0.0.1:443 (TLS, SigV4, the auth policies the API holds), answers DNS for the services and
# plays the EKS Pod Identity agent; each emulated cluster runs its controller on its own
# manifests, discovering the rest from the API (no --domain), stock Envoy and the signer. Then
# eks-cluster1's pod makes the walkthrough's calls. Needs root, for port 443.
#
# DEMO_NETNS=1 (make demo NETNS=1) runs eks-cluster1's pod in a network namespace, as a pod
# runs: `lattice-xds redirect` installs the injected init container's iptables rules, Envoy
# runs as its own uid, and the app's plain `curl http://demo-cluster2.example.com` (resolved by
# the emulator's DNS to a VPC Lattice link-local address) is captured by the sidecar. Only
# then can the TLS passthrough call go through the sidecar: without the redirect, nothing
# brings a TLS connection to it.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

bin=${LATTICE_XDS_BIN:-target/debug/lattice-xds}
envoy=$(scripts/install-envoy.sh)
python=$(dirname "$(scripts/install-python-peers.sh)")
work=$(mktemp -d -t lattice-xds-demo.XXXXXX)
pids=()
netns=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$netns" ]; then
    ip netns del "$netns" 2>/dev/null || true
    ip link del lxdemo-host 2>/dev/null || true
    rm -rf "/etc/netns/$netns"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
  echo "demo: the emulated VPC Lattice listens on 127.0.0.1:443, as Lattice services do; run as root" >&2
  exit 1
fi

# Where the emulated Lattice and the cluster's services answer. In a network namespace they are
# across a veth pair: Lattice on its link-local address, the rest on a private network.
lattice_ip=127.0.0.1; services_ip=127.0.0.1
if [ "${DEMO_NETNS:-}" = 1 ]; then
  command -v iptables-restore >/dev/null || { echo "demo: DEMO_NETNS=1 needs iptables (scripts/install-iptables.sh)" >&2; exit 1; }
  netns="lattice-xds-demo-$$"
  lattice_ip=169.254.171.1; services_ip=10.254.171.1
  ip netns add "$netns"
  ip link add lxdemo-host type veth peer name lxdemo-pod
  ip link set lxdemo-pod netns "$netns"
  ip addr add "$lattice_ip/32" dev lxdemo-host
  ip addr add "$services_ip/24" dev lxdemo-host
  ip addr add 169.254.170.23/32 dev lxdemo-host
  ip link set lxdemo-host up
  ip netns exec "$netns" ip link set lo up
  ip netns exec "$netns" ip addr add 10.254.171.2/24 dev lxdemo-pod
  ip netns exec "$netns" ip link set lxdemo-pod up
  ip netns exec "$netns" ip route add 169.254.171.0/24 dev lxdemo-pod
  ip netns exec "$netns" ip route add 169.254.170.23/32 dev lxdemo-pod
  mkdir -p "/etc/netns/$netns"
  echo "nameserver $services_ip" > "/etc/netns/$netns/resolv.conf"
  chmod 755 "$work"
fi
in_pod() { if [ -n "$netns" ]; then ip netns exec "$netns" "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL EXPECTED-SUBSTRING WHAT LOG [RUNNER...]
  local url=$1 expected=$2 what=$3 log=$4
  shift 4
  for _ in $(seq 1 400); do
    if "$@" curl -fsS "$url" 2>/dev/null | grep -q "$expected"; then return 0; fi
    sleep 0.05
  done
  echo "demo: timed out waiting for $what; its log:" >&2
  tail -n 20 "$log" >&2
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
region=ap-northeast-2
assigned="*.$region.vpclattice.amazonaws.com"
echo "== ACM PCA (moto on 127.0.0.1:$moto_port): a root CA, and a certificate for *.example.com"
"$python/moto_server" -H 127.0.0.1 -p "$moto_port" > "$work/moto.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$moto_port/moto-api/" "" "moto" "$work/moto.log"
# The same certificate serves the Lattice-assigned names, which in AWS carry Amazon's public
# certificate: here the private CA stands in for the system roots (--system-ca-file below).
openssl req -newkey rsa:2048 -nodes -subj "/CN=*.example.com" \
  -addext "subjectAltName=DNS:*.example.com,DNS:$assigned" \
  -keyout "$work/tls.key" -out "$work/tls.crt.csr" 2>/dev/null
ca_arn=$("$python/python" tests/peers/pca_setup.py "http://127.0.0.1:$moto_port" "$work/tls.crt.csr" "$work/tls.crt")
awk 'found; /END CERTIFICATE/ { found = 1 }' "$work/tls.crt" > "$work/ca.pem"
echo "   $ca_arn"

echo "== VPC Lattice API (moto): each cluster's routes as its AWS Gateway API Controller registers them"
registered=$("$python/python" tests/peers/gateway_routes.py "http://127.0.0.1:$moto_port" "$region" 10.0.0.0/16 \
  examples/cluster1 examples/cluster2 | "$python/python" tests/peers/lattice_services.py)
vpc=$(echo "$registered" | "$python/python" -c 'import json, sys; print(json.load(sys.stdin)["vpc"])')
# A partner's services, shared into the VPC through a second service network: one behind a TLS
# passthrough listener (TLS goes to the service itself; Lattice admits anonymous callers only),
# and one known by its Lattice-assigned name alone. (The clusters' own services have custom
# domains, and moto then gives the custom domain as dnsEntry: their assigned names are not in
# its API.)
partner=$(printf '{"endpoint": "http://127.0.0.1:%s", "region": "%s", "vpc": "%s",
  "networks": [{"name": "partner-network", "auth": "NONE"}],
  "services": [{"name": "ledger-partner", "custom_domain": "ledger.example.com", "auth": "NONE",
                "listeners": [["TLS_PASSTHROUGH", 443]], "networks": ["partner-network"]},
               {"name": "inventory-partner", "custom_domain": null, "auth": "NONE",
                "listeners": [["HTTPS", 443]], "networks": ["partner-network"]}]}' \
  "$moto_port" "$region" "$vpc" | "$python/python" tests/peers/lattice_services.py)
"$python/python" - "$registered" "$partner" <<'PY'
import json, sys
for document in sys.argv[1:]:
    for name, service in json.loads(document)["services"].items():
        print(f"   {name}: {service['dns']} ({service['arn']})")
PY
inventory=$(echo "$partner" | "$python/python" -c 'import json, sys; print(json.load(sys.stdin)["services"]["inventory-partner"]["dns"])')

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
app3=$(app_port inventory-partner)
# eks-cluster1's gRPC service (examples/cluster1/greeter.yaml): the standard health service.
greeter=$(free_port)
"$bin" grpc-health serve --listen "127.0.0.1:$greeter" --service greeter > "$work/greeter.log" 2>&1 &
pids+=($!)
# The partner's ledger: HTTPS it terminates itself, with its own certificate.
ledger=$(free_port)
python3 - "$ledger" "$work/tls.crt" "$work/tls.key" > /dev/null 2>&1 <<'PY' &
import http.server, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"Hello from ledger (TLS terminated by the service itself)\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
pids+=($!)

dns_port=$(free_port); agent="127.0.0.1:$(free_port)"
# In the namespace the agent is where EKS puts it, beside the namespace's link.
if [ -n "$netns" ]; then dns_port=53; agent=169.254.170.23:80; fi
echo "== VPC Lattice, emulated on $lattice_ip:443 (DNS on $services_ip:$dns_port, Pod Identity agent on $agent)"
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
"$bin" emulate-lattice --vpc-id "$vpc" --aws-endpoint-url "http://127.0.0.1:$moto_port" \
  --identities demo/identities.yaml --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
  --listen "$lattice_ip:443" --region "$region" \
  --backend "demo-cluster1-apps=http://127.0.0.1:$app1" --backend "demo-cluster2-apps=http://127.0.0.1:$app2" \
  --backend "greeter-apps=http://127.0.0.1:$greeter" --backend "ledger-partner=127.0.0.1:$ledger" \
  --backend "inventory-partner=http://127.0.0.1:$app3" \
  --dns-listen "$services_ip:$dns_port" --dns-answer "$lattice_ip" \
  --pod-identity-listen "$agent" \
  > "$work/emulator.log" 2>&1 &
pids+=($!)
wait_for_log "$work/emulator.log" "VPC Lattice emulator ready" "the Lattice emulator"

start_pod() { # CLUSTER INSIDE: sets $egress to the pod's egress port; INSIDE=1 runs it in the namespace
  local cluster=$1 inside=$2 grpc http xds admin envoy_admin run=() xds_ip=127.0.0.1
  grpc=$(free_port); http=$(free_port); xds=$(free_port); admin=$(free_port)
  egress=$(free_port); envoy_admin=$(free_port)
  local egress_at=(--egress-address 127.0.0.1)
  if [ "$inside" = 1 ]; then run=(ip netns exec "$netns"); xds_ip=$services_ip; egress_at=(); fi
  printf '%s' "demo-projected-token-eks-$cluster" > "$work/$cluster.token"
  AWS_REGION=$region \
  AWS_CONTAINER_CREDENTIALS_FULL_URI="http://$agent/v1/credentials" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$work/$cluster.token" \
    "${run[@]}" "$bin" signer --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" > "$work/signer-$cluster.log" 2>&1 &
  pids+=($!)
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    "$bin" controller --manifests "examples/$cluster" \
    --ca-arn "$ca_arn" --aws-endpoint-url "http://127.0.0.1:$moto_port" --vpc-id "$vpc" \
    --system-ca-file "$work/ca.pem" \
    --dns-resolver "$services_ip:$dns_port" --signing ext-proc --region "$region" \
    --signer-grpc-address "127.0.0.1:$grpc" \
    --xds-listen "$xds_ip:$xds" --admin-listen "127.0.0.1:$admin" \
    "${egress_at[@]}" --egress-port "$egress" > "$work/controller-$cluster.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$http/readyz" "" "eks-$cluster's signer" "$work/signer-$cluster.log" "${run[@]}"
  wait_for "http://127.0.0.1:$admin/readyz" ready "eks-$cluster's controller" "$work/controller-$cluster.log"
  "$bin" bootstrap --node-id "demo-$cluster-v1-pod" --cluster "demo-$cluster-v1" --namespace apps \
    --xds-address "$xds_ip:$xds" --admin-port "$envoy_admin" --output "$work/bootstrap-$cluster.yaml"
  if [ "$inside" = 1 ]; then
    # As injected: the redirect rules first, then Envoy as its own uid, which they exempt.
    "${run[@]}" "$bin" redirect --egress-port "$egress" --proxy-uid 101 --proxy-gid 101
    cp "$envoy" "$work/envoy"
    chmod 755 "$work/envoy"; chmod 644 "$work/bootstrap-$cluster.yaml"
    "${run[@]}" setpriv --reuid 101 --regid 101 --clear-groups \
      "$work/envoy" -c "$work/bootstrap-$cluster.yaml" --disable-hot-restart --log-level warn \
      --file-flush-interval-msec 200 > "$work/envoy-$cluster.log" 2>&1 &
  else
    # Access log lines within 200 ms (Envoy's default is 10 s), for known_by below.
    "$envoy" -c "$work/bootstrap-$cluster.yaml" --disable-hot-restart --log-level warn \
      --file-flush-interval-msec 200 > "$work/envoy-$cluster.log" 2>&1 &
  fi
  pids+=($!)
  wait_for "http://127.0.0.1:$envoy_admin/ready" LIVE "eks-$cluster's Envoy" "$work/envoy-$cluster.log" "${run[@]}"
}
echo "== eks-cluster1: controller on examples/cluster1, stock Envoy, signer (Pod Identity: eks-cluster1/apps)"
start_pod cluster1 "${DEMO_NETNS:-0}"
egress1=$egress
echo "== eks-cluster2: controller on examples/cluster2, stock Envoy, signer (Pod Identity: eks-cluster2/apps)"
start_pod cluster2 0

call() { # HOST: the app's plain HTTP call, through its sidecar's egress listener
  local output
  for _ in $(seq 1 100); do
    if [ -n "$netns" ]; then
      # Transparent: the app resolves and dials the host; iptables hands it to the sidecar.
      output=$(ip netns exec "$netns" curl -sS -w '\n%{http_code}' "http://$1/")
    else
      output=$(curl -sS -w '\n%{http_code}' -H "Host: $1" "http://127.0.0.1:$egress1/")
    fi
    case "${output##*$'\n'}" in 503|404) sleep 0.05 ;; *) break ;; esac
  done
  local body=${output%$'\n'*}
  echo "HTTP ${output##*$'\n'}"
  echo "${body%$'\n'}"
}
grpc_call() { # HOST SERVICE: the app's gRPC health check, through its sidecar's egress listener
  local output
  for _ in $(seq 1 100); do
    if [ -n "$netns" ]; then
      output=$(ip netns exec "$netns" "$bin" grpc-health check "$1" --target "$1:80" --service "$2" 2>&1)
    else
      output=$("$bin" grpc-health check "$1" --target "127.0.0.1:$egress1" --service "$2" 2>&1)
    fi
    # Until the sidecar has the destination: 404 (UNIMPLEMENTED) or no upstream (UNAVAILABLE).
    case "$output" in *Unimplemented*|*Unavailable*) sleep 0.05 ;; *) break ;; esac
  done
  echo "$output"
}
known_by() { # HOST: how eks-cluster1's sidecar knew the host, from its access log
  "$python/python" - "$work/envoy-cluster1.log" "$1" <<'PY'
import json, sys, time
for _ in range(50):  # the access log is flushed every 200 ms
    route = None
    for line in open(sys.argv[1], errors="replace"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        # An HTTP request by its Host; a passed-through TLS connection by its server name.
        if sys.argv[2] in (entry.get("authority", "").split(":")[0], entry.get("server_name")):
            route = entry.get("route") or ""
    if route is not None:
        break
    time.sleep(0.1)
if route is None:
    print("(the sidecar logged no request for this host)")
elif route.startswith("default forward"):
    print("(the sidecar knew the host by: the default forward; no route or discovered service names it)")
elif route.startswith("passthrough"):
    print("(the sidecar saw TLS and passed it through, unsigned and untouched, to the address dialed)")
else:
    parts = route.split("; ")
    def part(prefix):
        return next((p[len(prefix):] for p in parts if p.startswith(prefix)), None)
    known = []
    if part("route "):
        known.append(f"local route {part('route ')}")
    service = next((p for p in parts if p.startswith("service ")
                    and not p.startswith(("service network ", "service auth "))), None)
    if service:
        name = service[len("service "):].split(" (")[0]
        network = (part("service network ") or "").split(" (")[0]
        known.append(f"discovered service {name} of service network {network}")
    print(f"(the sidecar knew the host by: {', '.join(known)})")
PY
}
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- curl demo-cluster2.example.com"
call demo-cluster2.example.com
known_by demo-cluster2.example.com
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- curl demo-cluster1.example.com"
call demo-cluster1.example.com
known_by demo-cluster1.example.com
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- curl $inventory"
call "$inventory"
known_by "$inventory"
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- grpc-health-probe -addr greeter.example.com:80 -service greeter"
grpc_call greeter.example.com greeter
known_by greeter.example.com
echo
echo "\$ kubectl --context eks-cluster1 exec -n apps deploy/demo-cluster1-v1 -- curl https://ledger.example.com"
if [ -n "$netns" ]; then
  # The partner's certificate is checked by the app itself: the sidecar never touches TLS.
  output=$(ip netns exec "$netns" curl -sS --cacert "$work/ca.pem" -w '\n%{http_code}' https://ledger.example.com/)
  echo "HTTP ${output##*$'\n'}"
  body=${output%$'\n'*}
  echo "${body%$'\n'}"
  known_by ledger.example.com
else
  echo "(not made: a TLS call reaches the sidecar only through the redirect; run make demo NETNS=1)"
fi
echo
echo "(the calls go through eks-cluster1's Envoy (egress port $egress1), signed with its Pod Identity"
echo " credentials; demo-cluster1's auth policy admits only eks-cluster2's apps namespace, the"
echo " greeter GRPCRoute's only eks-cluster1's: gRPC in clear text to the sidecar, HTTP/2 over TLS"
echo " to Lattice; the ledger's TLS passes the sidecar unsigned, as Lattice's TLS passthrough"
echo " listeners admit only anonymous callers)"
