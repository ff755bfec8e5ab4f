#!/usr/bin/env bash
# Installs gnuplot (it draws the benchmark chart) from Debian's packages and prints its path.
# Idempotent: when gnuplot is already there it only prints the path.
exec "$(dirname "$0")/apt-install.sh" gnuplot-nox gnuplot
