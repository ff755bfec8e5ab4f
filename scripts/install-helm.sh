#!/usr/bin/env bash
# Builds helm from its Go module into the project's cache, keyed by version, for the chart's
# tests; prints the path of the binary. Idempotent: once built, it only prints the path.
set -euo pipefail

version="${HELM_VERSION:-3.22.0}"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dest="$cache/helm-$version"

# The chart's optional parts use cert-manager's and Kyverno's CRDs; the chart tests install them
# from these modules (Go's module cache).
(cd "${TMPDIR:-/tmp}" && go mod download github.com/cert-manager/cert-manager@v1.21.2 \
  github.com/kyverno/kyverno@v1.19.1 >&2)

if [ -x "$dest/helm" ]; then
  echo "$dest/helm"
  exit 0
fi

mkdir -p "$dest.part"
# As helm's own Makefile does: the Kubernetes version helm assumes (lint, template) is that of
# the client-go it is built with.
gomod=$(cd "${TMPDIR:-/tmp}" && go mod download -json "helm.sh/helm/v3@v$version" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
k8s_minor=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -1)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$dest.part" go install -trimpath \
  -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@v$version" >&2
rm -rf "$dest"
mv "$dest.part" "$dest"
"$dest/helm" version >&2
echo "$dest/helm"
