#!/usr/bin/env bash
# Installs the Python test peers (botocore as an independent SigV4 implementation) into a virtual
# environment in the project's cache and prints the path of its python. Idempotent: a second run
# only checks the pinned versions and prints the path.
set -euo pipefail

cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
venv="$cache/python-peers"
python="$venv/bin/python"
requirements=(botocore==1.44.8)

if [ -x "$python" ] && "$python" -m pip --disable-pip-version-check freeze 2>/dev/null \
    | grep -qxF "${requirements[0]}"; then
  echo "$python"
  exit 0
fi

python3 -m venv "$venv" >&2
"$python" -m pip install --disable-pip-version-check --quiet "${requirements[@]}" >&2
echo "$python"
