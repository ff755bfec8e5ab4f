#!/usr/bin/env bash
# Builds the go-control-plane comparison peer for `make bench-xds` (bench/go-control-plane-peer)
# into the project's cache, keyed by a hash of its main.go, go.mod and go.sum; prints the path of
# the binary. Idempotent: once built for the current sources, it only prints the path.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$root/bench/go-control-plane-peer"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dest="$cache/bench/go-control-plane-peer"

command -v go >/dev/null || { echo "build-go-peer: go is not installed" >&2; exit 1; }

key=$(cd "$src" && cat main.go go.mod go.sum | sha256sum | cut -c1-16)
bin="$dest/go-control-plane-peer-$key"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

# True when a directory exists and is writable, or could be created.
writable() {
  local dir=$1
  while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
  [ -d "$dir" ] && [ -w "$dir" ]
}
# Go's default module and build caches, unless they cannot be written here.
if ! writable "$(go env GOMODCACHE)"; then
  export GOPATH="$cache/go" GOMODCACHE="$cache/go/pkg/mod"
fi
if ! writable "$(go env GOCACHE)"; then
  export GOCACHE="$cache/go-build"
fi

echo "build-go-peer: building $bin" >&2
mkdir -p "$dest"
part=$(mktemp "$dest/.part.XXXXXX")
trap 'rm -f "$part"' EXIT
(
  cd "$src"
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$part" . >&2
)
chmod 755 "$part"
mv "$part" "$bin"
# Binaries built from older sources are no longer needed.
find "$dest" -maxdepth 1 -type f -name 'go-control-plane-peer-*' ! -path "$bin" -delete
echo "$bin"
