#!/usr/bin/env bash
# Builds the real Kubernetes API server, kubectl and etcd from Go modules, for the tests that
# need an API server, into the project's cache, keyed by version; prints the directory that
# holds the three binaries. Idempotent: once built, it only prints the path.
#
# k8s.io/kubernetes pins its staging modules (k8s.io/api, k8s.io/apimachinery, …) at v0.0.0 and
# replaces them with ./staging paths, so a wrapper module replaces each of them with its
# published v0.<minor>.<patch> release; the list is generated from kubernetes' own go.mod.
set -euo pipefail

kube_version="${KUBE_VERSION:-1.34.4}"
etcd_version="${ETCD_VERSION:-3.6.16}"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dest="$cache/kube-$kube_version-etcd-$etcd_version"

# The Gateway API CRDs that kube-up.sh installs come from this module (Go's module cache).
gateway_api_version="${GATEWAY_API_VERSION:-v1.6.3}"
(cd "${TMPDIR:-/tmp}" && go mod download "sigs.k8s.io/gateway-api@$gateway_api_version" >&2)

if [ -x "$dest/kube-apiserver" ] && [ -x "$dest/kubectl" ] && [ -x "$dest/etcd" ]; then
  echo "$dest"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
work=$(mktemp -d -t lattice-xds-kube.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest.part" "$work/kube" "$work/etcd"

# Kubernetes: kube-apiserver and kubectl.
minor=${kube_version#*.}
staging_version="v0.$minor"
kube_mod=$(cd "$work/kube" && go mod download -json "k8s.io/kubernetes@v$kube_version" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
{
  echo "module lattice-xds.local/kube-tools"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes v$kube_version"
  echo
  python3 - "$kube_mod" "$staging_version" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for module in sorted(set(re.findall(r"^\s*(\S+) => \./staging/src/\S+", text, re.M))):
    print(f"replace {module} => {module} {sys.argv[2]}")
PY
} > "$work/kube/go.mod"
cat > "$work/kube/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$kube_version"
ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$minor" | cut -d. -f1)"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$kube_version"
(
  cd "$work/kube"
  go mod tidy -e >&2
  go build -trimpath -ldflags "$ldflags" -o "$dest.part/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
  go build -trimpath -ldflags "$ldflags" -o "$dest.part/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
)

# etcd.
cat > "$work/etcd/go.mod" <<GOMOD
module lattice-xds.local/etcd-tools

go 1.24

require go.etcd.io/etcd/server/v3 v$etcd_version
GOMOD
cat > "$work/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
(
  cd "$work/etcd"
  go mod tidy -e >&2
  go build -trimpath -ldflags "-s -w" -o "$dest.part/etcd" go.etcd.io/etcd/server/v3 >&2
)

rm -rf "$dest"
mv "$dest.part" "$dest"
"$dest/kube-apiserver" --version >&2
"$dest/etcd" --version | head -1 >&2
echo "$dest"
