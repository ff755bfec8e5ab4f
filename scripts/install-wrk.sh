#!/usr/bin/env bash
# Installs wrk (the HTTP load generator the signing benchmark uses) from Debian's packages and
# prints its path. Idempotent: when wrk is already there it only prints the path.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  command -v wrk
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get install -y -qq wrk >/dev/null 2>&1 || {
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq wrk >/dev/null
}
command -v wrk
