#!/usr/bin/env bash
# Builds helm from its Go module into the project's cache, keyed by version, for the chart's
# tests; prints the path of the binary. Idempotent: once built, it only prints the path.
set -euo pipefail

version="${HELM_VERSION:-3.22.0}"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dest="$cache/helm-$version"

if [ -x "$dest/helm" ]; then
  echo "$dest/helm"
  exit 0
fi

mkdir -p "$dest.part"
CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$dest.part" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$version" \
  "helm.sh/helm/v3/cmd/helm@v$version" >&2
rm -rf "$dest"
mv "$dest.part" "$dest"
"$dest/helm" version >&2
echo "$dest/helm"
