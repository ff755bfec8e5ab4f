#!/usr/bin/env bash
# Draws docs/benchmarks-xds.png from what `make bench-xds` printed (its Markdown tables, in a
# file): the controller's memory per stream and push p99 against go-control-plane's as routes
# grow (Delta), and a sidecar Envoy's memory as destinations grow, with the TLS-cluster-per-
# destination design it replaced.
#
#   scripts/bench-chart.sh RESULTS.md [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."

results=$1
out=${2:-docs/benchmarks-xds.png}
gnuplot=$(scripts/install-gnuplot.sh)
work=$(mktemp -d -t lattice-xds-chart.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Rows of the push table: | routes | streams | protocol | server | sync | p50 | p99 | max | idle | with | push peak | per stream | cpu |
for server in lattice-xds go-control-plane; do
  awk -F'|' -v server="$server" '
    $4 ~ /delta/ && $5 ~ server" *$" {
      gsub(/ /, "", $2); p99 = $8; gsub(/[ ms]/, "", p99); per = $13; gsub(/[ KB]/, "", per)
      printf "%s %s %s\n", $2, per, p99 / 1000
    }' "$results" >"$work/$server.dat"
done
# Rows of the sidecar table: | destinations | RSS | ratio | clusters | virtual hosts |
awk -F'|' '$3 ~ /MB/ && $5 ~ /^ *[0-9]+ *$/ { gsub(/ /, "", $2); rss = $3; gsub(/[ MB]/, "", rss); print $2, rss }' \
  "$results" >"$work/sidecar.dat"
# The design this replaced: a TLS cluster per destination (measured before the change).
printf '100 103\n1000 397\n10000 3300\n' >"$work/before.dat"

"$gnuplot" <<GNUPLOT
set terminal pngcairo size 1500,450 font "sans,10"
set output "$out"
set multiplot layout 1,3 title "lattice-xds at scale (2 cores; make bench-xds)"
set logscale x
set key top left
set grid
set xlabel "routes (1,000 Delta streams)"
set ylabel "KB per idle stream"
set logscale y
plot "$work/lattice-xds.dat" using 1:(\$2 > 0 ? \$2 : 1) with linespoints title "lattice-xds", \
     "$work/go-control-plane.dat" using 1:2 with linespoints title "go-control-plane v0.14"
set ylabel "push p99 (s): change to every stream"
unset logscale y
plot "$work/lattice-xds.dat" using 1:3 with linespoints title "lattice-xds", \
     "$work/go-control-plane.dat" using 1:3 with linespoints title "go-control-plane v0.14"
set xlabel "destinations"
set ylabel "sidecar Envoy RSS (MB)"
set logscale y
plot "$work/sidecar.dat" using 1:2 with linespoints title "shared forward-proxy clusters", \
     "$work/before.dat" using 1:2 with linespoints title "a TLS cluster per destination (before)"
unset multiplot
GNUPLOT
echo "$out"
