//! lattice-xds: an xDS control plane that drives stock Envoy sidecars so that pods can call
//! services through Amazon VPC Lattice, signed with SigV4 and trusting private CAs.

pub mod admin;
pub mod bootstrap;
pub mod certificates;
pub mod check;
pub mod cli;
pub mod controller;
pub mod emulator;
pub mod https;
pub mod inject;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod provider;
pub mod proxy_status;
pub mod redirect;
pub mod signer;
pub mod supervise;
pub mod translate;
pub mod trust;
pub mod xds;

/// The project's own gRPC API, compiled from `proto/` by the build script.
pub mod admin_api {
    tonic::include_proto!("lattice_xds.admin.v1");
}
