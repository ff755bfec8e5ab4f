#!/usr/bin/env bash
# Builds the controller as a new machine does, with an empty CARGO_HOME: the registry then holds
# only what this build downloads itself (no dev-dependency, no other platform's package), so a
# build script that reads anything else fails here.
#
# The CARGO_HOME is emptied before every run but keeps its path, and the target directory is
# kept: compiled packages are reused from the second run on (a new registry path would compile
# them all again), while the project's own build script runs again in every fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
home="$cache/fresh-build/cargo-home"
rm -rf "$home"
mkdir -p "$home"
trap 'rm -rf "$home"' EXIT
start=$(date +%s)
CARGO_HOME="$home" cargo build --locked --target-dir "$cache/fresh-build/target"
echo "built with an empty CARGO_HOME in $(( $(date +%s) - start )) s" >&2
