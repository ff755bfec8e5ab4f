#!/usr/bin/env bash
# Starts a real Kubernetes API server on 127.0.0.1, for trying the controller's Kubernetes
# provider by hand (`make kube-up`) and for the tests: etcd and kube-apiserver, built from Go
# modules by install-kube.sh, with generated certificates, service-account signing keys, RBAC
# authorization and an admin client certificate. It then installs the Gateway API CRDs
# (standard channel) and the AWS Gateway API Controller CRDs, writes a kubeconfig and prints
# `export KUBECONFIG=<path>`.
#
# Everything lives in one directory (KUBE_DIR, default ~/.cache/lattice-xds/kube-cluster):
# certificates, etcd's data, logs, pid files. Running it again on a running cluster changes
# nothing; on a stopped one (kube-down.sh without --purge) it restarts the same cluster with its
# data. Ports: KUBE_APISERVER_PORT (16443), ETCD_CLIENT_PORT (12379), ETCD_PEER_PORT (12380).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dir="${KUBE_DIR:-$cache/kube-cluster}"
apiserver_port="${KUBE_APISERVER_PORT:-16443}"
etcd_port="${ETCD_CLIENT_PORT:-12379}"
etcd_peer_port="${ETCD_PEER_PORT:-12380}"
gateway_api_version="${GATEWAY_API_VERSION:-v1.6.3}"

bin="$("$root/scripts/install-kube.sh")"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
kubectl=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")

log() { echo "kube-up: $*" >&2; }

running() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

# Polls a command for up to $1 seconds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out after ${seconds}s waiting for $what; last lines of its log:"
      tail -n 20 "$dir/$what.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# Certificates: a cluster CA, the API server's serving certificate, an admin client
# certificate (group system:masters), and the service-account token signing key.
make_certificates() {
  local pki="$dir/pki"
  mkdir -p "$pki"
  [ -f "$pki/admin.crt" ] && return
  log "generating certificates in $pki"
  (
    cd "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=lattice-xds-test-cluster-ca" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile <(printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth') \
      -out apiserver.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/O=system:masters/CN=lattice-xds-admin" -keyout admin.key -out admin.csr 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile <(printf 'extendedKeyUsage=clientAuth') -out admin.crt 2>/dev/null
    openssl genrsa -out service-account.key 2048 2>/dev/null
    openssl rsa -in service-account.key -pubout -out service-account.pub 2>/dev/null
    rm -f ./*.csr ca.srl
  )
}

write_kubeconfig() {
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lattice-xds-test
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $dir/pki/admin.crt
    client-key: $dir/pki/admin.key
contexts:
- name: lattice-xds-test
  context:
    cluster: lattice-xds-test
    user: admin
current-context: lattice-xds-test
EOF
}

start_etcd() {
  running etcd && return
  log "starting etcd on 127.0.0.1:$etcd_port"
  setsid "$bin/etcd" \
    --name lattice-xds-test \
    --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "lattice-xds-test=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls "" \
    --log-level warn \
    >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
  wait_for 30 etcd curl -fsS "http://127.0.0.1:$etcd_port/health"
}

start_apiserver() {
  running kube-apiserver && return
  log "starting kube-apiserver on https://127.0.0.1:$apiserver_port"
  setsid "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$apiserver_port" \
    --tls-cert-file "$dir/pki/apiserver.crt" \
    --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$dir/pki/service-account.pub" \
    --service-account-signing-key-file "$dir/pki/service-account.key" \
    --authorization-mode RBAC \
    --service-cluster-ip-range 10.96.0.0/16 \
    --enable-priority-and-fairness=false \
    --profiling=false \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  echo $! >"$dir/kube-apiserver.pid"
  wait_for 90 kube-apiserver "${kubectl[@]}" get --raw /readyz
}

# The Gateway API CRDs come from the sigs.k8s.io/gateway-api module (standard channel); the
# AWS Gateway API Controller's CRDs are kept in this repository (tests/kubernetes/crds), written
# from that project's published API because its Go module is not served by the module proxy.
install_crds() {
  local module
  module=$(cd "$dir" && go mod download -json "sigs.k8s.io/gateway-api@$gateway_api_version" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  log "installing CRDs: Gateway API $gateway_api_version (standard), AWS Gateway API Controller"
  "${kubectl[@]}" apply --server-side --force-conflicts -f "$module/config/crd/standard/" >/dev/null
  "${kubectl[@]}" apply --server-side --force-conflicts -f "$root/tests/kubernetes/crds/" >/dev/null
  # A CRD that was just created may have no status yet, which `kubectl wait` reports as an
  # error rather than waiting; ask again until every one is established.
  wait_for 60 CRDs "${kubectl[@]}" wait --for condition=Established --timeout 10s crd --all
}

make_certificates
write_kubeconfig
start_etcd
start_apiserver
install_crds
echo "export KUBECONFIG=$dir/kubeconfig"
