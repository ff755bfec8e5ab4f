#!/usr/bin/env bash
# Installs the Python test peers into a virtual environment in the project's cache and prints
# the path of its python: botocore (an independent SigV4 implementation) and moto's server
# (ACM PCA issuing real X.509 certificates). Idempotent: a second run only checks the pinned
# versions and prints the path.
set -euo pipefail

cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
venv="$cache/python-peers"
python="$venv/bin/python"
requirements=(botocore==1.44.8 "moto[server]==5.2.5")

installed() {
  local frozen
  frozen=$("$python" -m pip --disable-pip-version-check freeze 2>/dev/null) || return 1
  grep -qxF "botocore==1.44.8" <<< "$frozen" && grep -qxF "moto==5.2.5" <<< "$frozen" \
    && [ -x "$venv/bin/moto_server" ]
}

if [ -x "$python" ] && installed; then
  echo "$python"
  exit 0
fi

python3 -m venv "$venv" >&2
"$python" -m pip install --disable-pip-version-check --quiet "${requirements[@]}" >&2
echo "$python"
