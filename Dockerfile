# The one lattice-xds image: the controller and the redirect and bootstrap init containers run
# lattice-xds; the signer sidecar runs lattice-xds-signer, the signer alone (no Kubernetes or ACM
# PCA client), since every pod pays for it; or the signer runs inside Envoy as a module. Build: docker build -t lattice-xds:0.1.0 .

FROM rust:1.92-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin lattice-xds \
    && cargo build --release --locked --no-default-features --bin lattice-xds-signer \
    && cargo build --release --locked -p lattice-xds-module \
    && cp target/release/lattice-xds target/release/lattice-xds-signer /usr/local/bin/ \
    && mkdir -p /usr/local/lib/lattice-xds \
    && cp target/release/liblattice_xds_signer.so /usr/local/lib/lattice-xds/

# iptables for the redirect init container; CA certificates for the controller's AWS calls.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/lattice-xds /usr/local/bin/lattice-xds-signer /usr/local/bin/
# The signer as an Envoy 1.40 dynamic module (signing.mode=module): the bootstrap init container
# copies it beside Envoy's bootstrap.
COPY --from=build /usr/local/lib/lattice-xds/liblattice_xds_signer.so /usr/local/lib/lattice-xds/
# Non-root by default; only the redirect init container runs as root, with NET_ADMIN.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lattice-xds"]
