#!/usr/bin/env bash
# Installs wrk (the HTTP load generator the signing benchmark uses) from Debian's packages and
# prints its path. Idempotent: when wrk is already there it only prints the path.
exec "$(dirname "$0")/apt-install.sh" wrk wrk
