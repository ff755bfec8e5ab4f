//! Translation of a [`Mesh`] into the Envoy resources a sidecar is served.
//!
//! A pure function: no I/O and no clock, so the same mesh always yields the same resources and
//! golden files under `tests/testdata/translate/` pin the output. One file per resource kind.

mod cluster;
mod listener;
mod route;

pub use cluster::provenance_of as provenance;
pub use route::NO_ROUTE_BODY;
mod secret;
mod signing;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::{AggregatedConfigSource, ApiVersion, ConfigSource};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Duration;

use crate::model::Mesh;

/// The egress listener's name, and the name of its route configuration.
pub const EGRESS: &str = "egress";
/// The dynamic-forward-proxy cluster (and DNS cache) for hosts no route names.
pub const FALLBACK_CLUSTER: &str = "lattice-fallback";
/// The cluster of the signer's ext_proc gRPC service.
pub const SIGNER_GRPC_CLUSTER: &str = "lattice-xds-signer-grpc";
/// The cluster of the signer's HTTP endpoint (Lua mode).
pub const SIGNER_HTTP_CLUSTER: &str = "lattice-xds-signer-http";

/// The Envoy resources for one mesh, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
    pub secrets: Vec<Secret>,
}

/// Translates `mesh` into listeners, routes, clusters and secrets.
pub fn translate(mesh: &Mesh) -> Resources {
    let mut clusters: Vec<Cluster> = mesh
        .destinations
        .values()
        .map(|destination| cluster::destination(destination, mesh))
        .collect();
    if !mesh.fallback_domains.is_empty() {
        clusters.push(cluster::fallback(mesh));
    }
    clusters.extend(signing::clusters(&mesh.signing));
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    Resources {
        listeners: vec![listener::egress(mesh)],
        routes: vec![route::egress(mesh)],
        clusters,
        secrets: mesh.bundles.values().map(secret::trust_bundle).collect(),
    }
}

/// The name of the cluster serving one destination.
pub fn destination_cluster_name(host: &str, port: u16) -> String {
    format!("lattice|{host}|{port}")
}

/// The host and port of a destination cluster's name; `None` for the other clusters.
pub fn parse_destination_cluster_name(name: &str) -> Option<(&str, u16)> {
    let (host, port) = name.strip_prefix("lattice|")?.rsplit_once('|')?;
    Some((host, port.parse().ok()?))
}

/// The name of the SDS secret holding a trust bundle.
pub fn trust_secret_name(bundle: &str) -> String {
    format!("trust-bundle/{bundle}")
}

/// How long Envoy waits for a resource it asked for before going on without it: short, so a
/// sidecar is LIVE within a second of a healthy controller answering.
const INITIAL_FETCH_TIMEOUT: Duration = Duration {
    seconds: 0,
    nanos: 500_000_000,
};

/// "Fetch it over the ADS stream": the config source of every dynamic resource.
fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3.into(),
        initial_fetch_timeout: Some(INITIAL_FETCH_TIMEOUT),
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn seconds(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}
