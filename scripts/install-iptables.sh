#!/usr/bin/env bash
# Installs iptables (the redirect test applies the injected rules inside a network namespace)
# from Debian's packages. Idempotent: when iptables-restore is already there it only says so.
set -euo pipefail

if command -v iptables-restore >/dev/null 2>&1 && command -v ip6tables-restore >/dev/null 2>&1; then
  command -v iptables-restore
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get install -y -qq iptables >/dev/null 2>&1 || {
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq iptables >/dev/null
}
command -v iptables-restore
