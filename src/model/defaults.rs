//! The ports and ids a pod's sidecars use unless told otherwise. Every flag's default and every
//! default of the model comes from here (the chart's `values.yaml` repeats them for Helm).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The signer's ext_proc gRPC listener.
pub const SIGNER_GRPC: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9001));
/// The signer's HTTP listener (`POST /v1/sign` for the Lua mode, health, metrics).
pub const SIGNER_HTTP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9002));
/// The port iptables redirects Lattice traffic to: the sidecar Envoy's egress listener.
pub const EGRESS_PORT: u16 = 8080;
/// The uid (and gid) the sidecar Envoy runs as: exempt from the redirect, and the only peer
/// the signer's Unix sockets serve.
pub const PROXY_UID: u32 = 101;
/// The controller's ADS listener.
pub const XDS_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, XDS_PORT));
/// The controller's admin listener (status, config dumps, metrics): loopback only.
pub const ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, ADMIN_PORT));
/// The controller's ADS port, also behind its Service.
pub const XDS_PORT: u16 = 18000;
/// The controller's admin port.
pub const ADMIN_PORT: u16 = 19000;
