#!/usr/bin/env bash
# Stops the API server and etcd started by kube-up.sh (same KUBE_DIR). Their data stays, so
# kube-up.sh restarts the same cluster; `--purge` also deletes the directory.
set -euo pipefail

cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
dir="${KUBE_DIR:-$cache/kube-cluster}"

stop() {
  local pidfile="$dir/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
}

stop kube-apiserver
stop etcd
if [ "${1:-}" = "--purge" ]; then
  rm -rf "$dir"
fi
