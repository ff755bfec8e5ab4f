#!/usr/bin/env bash
# Installs h2load (the HTTP load generator that holds a fixed rate, for the rollout benchmark)
# from Debian's nghttp2-client package and prints its path. Idempotent.
exec "$(dirname "$0")/apt-install.sh" nghttp2-client h2load
