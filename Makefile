# lattice-xds: the two commands a fresh machine needs are `make demo` and `make test`.
# Everything the tests use is installed by scripts/ into ~/.cache/lattice-xds (idempotent).

CARGO ?= cargo

.PHONY: demo test lint fresh-build envoy-api bench bench-ext-proc build envoy peers kube helm iptables otelcol kube-up kube-down bench-xds bench-soak bench-discovery bench-on-demand

build:
	$(CARGO) build --locked

# The release the project pins, and the one before it, which the signer module must refuse.
envoy:
	scripts/install-envoy.sh >/dev/null
	ENVOY_VERSION=1.39.3 scripts/install-envoy.sh >/dev/null

peers:
	scripts/install-python-peers.sh >/dev/null

# kube-apiserver, kubectl and etcd built from Go modules (the first time takes 10-15 minutes).
kube:
	scripts/install-kube.sh >/dev/null

# helm built from its Go module, for the chart's tests.
helm:
	scripts/install-helm.sh >/dev/null

# An OpenTelemetry Collector built from its Go modules, for the tracing test.
otelcol:
	scripts/install-otelcol.sh >/dev/null

# iptables, for the test that applies the injected redirect rules in a network namespace.
iptables:
	scripts/install-iptables.sh >/dev/null

# A real API server on 127.0.0.1:16443 with the Gateway API and AWS controller CRDs, to run
# `lattice-xds controller --kubernetes` against by hand; prints the KUBECONFIG to export.
kube-up:
	@scripts/kube-up.sh

kube-down:
	scripts/kube-down.sh --purge

# NETNS=1 runs eks-cluster1's pod in a network namespace with the sidecar's iptables rules.
demo: build envoy peers
	DEMO_NETNS=$(NETNS) scripts/demo.sh

# Formatting of every Rust file, one crypto stack and every lint, warnings denied (.ci/run runs
# it before the tests).
lint:
	scripts/check-format.sh
	@# One crypto stack: ring. aws-lc would need cmake and a second TLS provider chosen at run time.
	@if $(CARGO) tree --locked -e normal,build -i aws-lc-rs >/dev/null 2>&1; then \
	  echo "aws-lc-rs is in the dependency graph; the project links ring alone" >&2; exit 1; fi
	$(CARGO) clippy --locked --all-targets --features fault-injection -- -D warnings
	$(CARGO) clippy --locked --no-default-features --bin lattice-xds-signer -- -D warnings
	$(CARGO) clippy --locked -p lattice-xds-module -- -D warnings

# The build as a new machine runs it: an empty CARGO_HOME, nothing downloaded before (.ci/run).
fresh-build:
	scripts/check-fresh-build.sh

# Copies the Envoy API files that proto/envoy-api.txt needs from the locked envoy-types package
# into proto/envoy-api/ (after envoy-types changes, or the list does); then read the diff.
envoy-api:
	LATTICE_XDS_UPDATE_GOLDEN=1 $(CARGO) test --locked --test envoy_api

# fault-injection compiles the test-only fault hook (src/supervise.rs) into the test binaries.
# The signer module first: the tests load it into Envoy from the build's output directory.
test: envoy peers kube helm iptables otelcol
	$(CARGO) build --locked -p lattice-xds-module
	$(CARGO) test --locked --features fault-injection

# Every benchmark but the long ones (bench-xds, bench-soak): signing, load through the sidecar,
# and the signer over ext_proc alone. Release builds; results go in docs/benchmarks.md.
bench: envoy
	scripts/bench-signing.sh
	scripts/bench-load.sh
	scripts/bench-ext-proc.sh

# The signer sidecar's binary driven over ext_proc by `lattice-xds loadtest ext-proc`.
bench-ext-proc:
	scripts/bench-ext-proc.sh

# The controller against go-control-plane under sidecar-like ADS load, and stock Envoy's memory
# as destinations grow (release builds, several minutes; results go in docs/benchmarks.md).
bench-xds: envoy
	scripts/bench-xds.sh

# Discovery of 1,000 and 5,000 services in moto's VPC Lattice: the first poll, API calls and time
# per poll, what an unchanged poll pushes, and the sidecar's memory (release build).
bench-discovery: envoy peers
	scripts/bench-discovery.sh

# Virtual hosts on demand: a host's first request with and without them (10,000 routes, 200
# hosts called), and a sidecar's memory with 10,000 destinations known and 10 called.
bench-on-demand: envoy
	scripts/bench-on-demand.sh
	CONTROLLER_ARGS="--on-demand-hosts true" CALLS=10 scripts/bench-sidecar.sh 10 10000

# The controller with 1,000 streams and a change every second for ten minutes: RSS stays flat
# (release build; results go in docs/benchmarks.md).
bench-soak:
	scripts/bench-soak.sh
