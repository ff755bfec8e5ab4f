# lattice-xds: the two commands a fresh machine needs are `make demo` and `make test`.
# Everything the tests use is installed by scripts/ into ~/.cache/lattice-xds (idempotent).

CARGO ?= cargo

.PHONY: demo test build envoy peers

build:
	$(CARGO) build --locked

envoy:
	scripts/install-envoy.sh >/dev/null

peers:
	scripts/install-python-peers.sh >/dev/null

demo: build envoy
	scripts/demo.sh

test: envoy peers
	$(CARGO) test --locked
