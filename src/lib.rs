//! lattice-xds: an xDS control plane that drives stock Envoy sidecars so that pods can call
//! services through Amazon VPC Lattice, signed with SigV4 and trusting private CAs.
//!
//! The `controller` feature (on by default) brings everything but the signer: the controller,
//! the webhook, the emulator and the tools, with the Kubernetes and ACM PCA clients. Without
//! it the crate is the signer alone, which the `lattice-xds-signer` binary runs.

// What the signer needs.
pub mod aws;
pub mod model;
pub mod signer;
pub mod supervise;

/// Declares the modules that exist only with the `controller` feature.
macro_rules! with_controller {
    ($($module:ident),* $(,)?) => {
        $(
            #[cfg(feature = "controller")]
            pub mod $module;
        )*
    };
}

with_controller!(
    admin,
    bootstrap,
    certificates,
    check,
    cli,
    controller,
    emulator,
    grpc_health,
    https,
    inject,
    loadtest,
    memory,
    metrics,
    policy,
    provider,
    proxy_status,
    redirect,
    translate,
    trust,
    xds,
);

/// The project's own gRPC API, compiled from `proto/` by the build script.
#[cfg(feature = "controller")]
pub mod admin_api {
    tonic::include_proto!("lattice_xds.admin.v1");
}
