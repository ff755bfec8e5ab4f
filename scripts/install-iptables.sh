#!/usr/bin/env bash
# Installs iptables (the redirect test applies the injected rules inside a network namespace)
# from Debian's packages. Idempotent: when iptables-restore is already there it only says so.
exec "$(dirname "$0")/apt-install.sh" iptables iptables-restore ip6tables-restore
