#!/usr/bin/env bash
# Builds an OpenTelemetry Collector from its Go modules, for the tracing tests: the OTLP
# receiver (gRPC and HTTP) and the file exporter (OTLP JSON, one line per batch), nothing else.
# Into the project's cache, keyed by version; prints the binary's path. Idempotent: once built,
# it only prints the path.
set -euo pipefail

version="${OTELCOL_VERSION:-0.161.0}"
cache="${LATTICE_XDS_CACHE:-$HOME/.cache/lattice-xds}"
# The build below is keyed by its own text, so a change to it builds again.
recipe=$(sed -n '/^cat > "$work\/main.go"/,/^GO$/p' "$0" | sha256sum | cut -c1-12)
dest="$cache/otelcol-$version-$recipe"

if [ -x "$dest/otelcol" ]; then
  echo "$dest/otelcol"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
work=$(mktemp -d -t lattice-xds-otelcol.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest.part"

cat > "$work/go.mod" <<GOMOD
module lattice-xds.local/otelcol

go 1.24

require (
	go.opentelemetry.io/collector/otelcol v$version
	go.opentelemetry.io/collector/receiver/otlpreceiver v$version
	github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v$version
)
GOMOD
# The collector's own entry point, with the two components in its factories.
cat > "$work/main.go" <<'GO'
package main

import (
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func main() {
	factories := func() (otelcol.Factories, error) {
		receivers, err := otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory())
		if err != nil {
			return otelcol.Factories{}, err
		}
		exporters, err := otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory())
		if err != nil {
			return otelcol.Factories{}, err
		}
		return otelcol.Factories{
			Receivers: receivers,
			Exporters: exporters,
			Telemetry: otelconftelemetry.NewFactory(),
		}, nil
	}
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol", Description: "OTLP in, JSON file out", Version: "test"},
		Factories: factories,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
				DefaultScheme:     "env",
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
(
  cd "$work"
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$dest.part/otelcol" . >&2
)
rm -rf "$dest"
mv "$dest.part" "$dest"
"$dest/otelcol" --version >&2
echo "$dest/otelcol"
