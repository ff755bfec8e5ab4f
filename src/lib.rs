//! lattice-xds: an xDS control plane that drives stock Envoy sidecars so that pods can call
//! services through Amazon VPC Lattice, signed with SigV4 and trusting private CAs.
//!
//! The modules are declared in the order the data flows: sources → model → translation →
//! serving, then the processes that compose them and the tools around them. The model, in the
//! middle, imports none of the others.
//!
//! The `controller` feature (on by default) brings everything but the signer: the controller,
//! the webhook, the emulator and the tools, with the Kubernetes and ACM PCA clients. Without
//! it the crate is the signer alone, which the `lattice-xds-signer` binary runs; the modules it
//! needs are the ones below without a `cfg`.

// Sources: Gateway API objects from a manifest directory or the Kubernetes API, turned into the
// model; CA certificates from ACM PCA.
#[cfg(feature = "controller")]
pub mod provider;
#[cfg(feature = "controller")]
pub mod trust;

// The model: destinations, trust bundles and signing settings, in plain Rust types.
pub mod model;

// Translation: the model into Envoy listeners, routes, clusters and secrets (pure).
#[cfg(feature = "controller")]
pub mod translate;

// Serving: versioned snapshots and the ADS streams that send them.
#[cfg(feature = "controller")]
pub mod xds;

// The admin listener: health, readiness, metrics, proxy status and CSDS.
#[cfg(feature = "controller")]
pub mod admin;
#[cfg(feature = "controller")]
pub mod metrics;

/// The project's own gRPC API, compiled from `proto/` by the build script.
#[cfg(feature = "controller")]
pub mod admin_api {
    tonic::include_proto!("lattice_xds.admin.v1");
}

// Serving connections (ADS, the webhook): certificates, bounds on connections, TLS and HTTP.
#[cfg(feature = "controller")]
pub mod certificates;
#[cfg(feature = "controller")]
pub mod connections;
#[cfg(feature = "controller")]
pub mod https;

// Processes: the controller, the composition root of everything above.
#[cfg(feature = "controller")]
pub mod controller;

// What runs in or for each pod: the Envoy bootstrap, the injection webhook, the traffic
// redirect, and the signer sidecar.
#[cfg(feature = "controller")]
pub mod bootstrap;
#[cfg(feature = "controller")]
pub mod inject;
#[cfg(feature = "controller")]
pub mod redirect;
pub mod signer;

// Shared by the processes: the AWS SDK's HTTPS client, the logger, memory given back to the
// operating system, sorted maps looked up in order, supervised tasks.
pub mod aws;
pub mod logging;
#[cfg(feature = "controller")]
pub mod memory;
pub mod sorted;
pub mod supervise;

// Tools: the command line (flags parsed once into each process's configuration), and what a
// user or a test runs beside the processes.
#[cfg(feature = "controller")]
pub mod cli;

#[cfg(feature = "controller")]
pub mod check;
#[cfg(feature = "controller")]
pub mod emulator;
#[cfg(feature = "controller")]
pub mod grpc_health;
#[cfg(feature = "controller")]
pub mod loadtest;
#[cfg(feature = "controller")]
pub mod policy;
#[cfg(feature = "controller")]
pub mod proxy_status;
#[cfg(feature = "controller")]
pub mod validate;
