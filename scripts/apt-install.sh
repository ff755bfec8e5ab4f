#!/usr/bin/env bash
# Installs a Debian package unless its commands are already there, and prints the path of the
# first command. Usage: apt-install.sh PACKAGE COMMAND... Idempotent.
set -euo pipefail

package=$1
shift
missing=0
for command in "$@"; do
  command -v "$command" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get install -y -qq "$package" >/dev/null 2>&1 || {
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq "$package" >/dev/null
  }
fi
command -v "$1"
