//! Translation of a [`Mesh`] into the Envoy resources a sidecar is served.
//!
//! A pure function: no I/O and no clock, so the same mesh always yields the same resources and
//! golden files under `tests/testdata/translate/` pin the output. One file per resource kind.

mod access_log;
mod cluster;
mod listener;
mod retries;
mod route;

pub use crate::xds::resources::{Host, Resources, RouteTable};
pub use listener::{NOT_REDIRECTED, ORIGINAL_DESTINATION, PASSTHROUGH};
pub use route::{DEFAULT_FORWARD, NO_ROUTE_BODY, service_provenance};
mod secret;
mod signing;
mod tracing;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::{AggregatedConfigSource, ApiVersion, ConfigSource};
use envoy_types::pb::envoy::extensions::common::matching::v3::ExtensionWithMatcher;
use envoy_types::pb::envoy::extensions::filters::common::matcher::action::v3::SkipFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::pb::xds::core::v3::TypedExtensionConfig as XdsExtension;
use envoy_types::pb::xds::r#type::matcher::v3::Matcher;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::{FieldMatcher, Predicate};
use envoy_types::pb::xds::r#type::matcher::v3::matcher::{
    MatcherList, MatcherType, OnMatch, on_match,
};

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::{
    Destination, Mesh, Protocol, Trust, UnknownHosts, custom_domain_trust, unknown_host_trust,
};

/// The egress listener's name, and the name of its route configuration.
pub const EGRESS: &str = "egress";
/// The virtual host for hosts under the fallback domains that no route names.
pub const FALLBACK_VHOST: &str = "lattice-fallback";
/// The DNS cache shared by the dynamic forward proxy filter and every shared cluster.
pub const DNS_CACHE: &str = "lattice-dns";
/// The cluster of the signer's ext_proc gRPC service.
pub const SIGNER_GRPC_CLUSTER: &str = "lattice-xds-signer-grpc";
/// The cluster of the signer's HTTP endpoint (Lua mode).
pub const SIGNER_HTTP_CLUSTER: &str = "lattice-xds-signer-http";

/// Translates `mesh` into listeners, routes, clusters and secrets.
pub fn translate(mesh: &Mesh) -> Resources {
    translate_from(mesh, None)
}

/// [`translate`], by difference from `previous`, the mesh the snapshot being replaced was
/// translated from: virtual hosts, of the full route table and fetched on demand, are made only
/// for the destinations that differ from it, and the others are kept ([`Host::Kept`]).
///
/// The sidecar's cost must not grow with destinations: every destination that needs nothing of
/// its own goes through a shared dynamic-forward-proxy cluster of its trust class, which sets
/// SNI and checks the SAN per request. Only pinned destinations and those on a port of their
/// own get a cluster each.
pub fn translate_from(mesh: &Mesh, previous: Option<&Mesh>) -> Resources {
    let mut clusters: Vec<Cluster> = Vec::new();
    for (_, destination) in http_destinations(mesh) {
        if let Upstream::Own = upstream(destination) {
            clusters.push(cluster::destination(destination, mesh));
        }
    }
    clusters.extend(
        shared_classes(mesh)
            .iter()
            .map(|(tls, protocol)| cluster::shared(tls.as_ref(), *protocol, mesh)),
    );
    clusters.extend(signing::clusters(&mesh.signing));
    clusters.extend(mesh.tracing.as_ref().map(tracing::collector));
    if mesh.egress.inspect {
        clusters.push(cluster::original_destination());
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    Resources {
        listeners: vec![listener::egress(mesh)],
        routes: vec![route::egress(mesh, previous)],
        clusters,
        secrets: mesh.bundles.values().map(secret::trust_bundle).collect(),
        on_demand: (mesh.egress.on_demand).then(|| route::on_demand(mesh, previous)),
    }
}

/// The destinations the HTTP route table serves: every one but TLS passthrough.
fn http_destinations(mesh: &Mesh) -> impl Iterator<Item = (&Arc<str>, &Arc<Destination>)> {
    (mesh.destinations.iter())
        .filter(|(_, destination)| destination.protocol != Protocol::TlsPassthrough)
}

/// Where a destination's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Upstream<'a> {
    /// A cluster of its own: a pinned address, or a port other than its scheme's default.
    Own,
    /// The shared dynamic-forward-proxy cluster of its trust class (`None`: plain HTTP) and
    /// protocol (a GRPCRoute's speaks HTTP/2).
    Shared(Option<&'a Trust>, Protocol),
}

fn upstream(destination: &Destination) -> Upstream<'_> {
    let default_port = if destination.tls.is_some() { 443 } else { 80 };
    if !destination.pinned.is_empty() || destination.port != default_port {
        Upstream::Own
    } else {
        Upstream::Shared(destination.tls.as_ref(), destination.protocol)
    }
}

/// The classes that need a shared cluster: those of the shared destinations, the custom
/// domains' (HTTP) when fallback domains are configured, and the unknown hosts' when they are
/// forwarded.
fn shared_classes(mesh: &Mesh) -> BTreeSet<(Option<Trust>, Protocol)> {
    // A handful of classes among many destinations: a list beats a set.
    let mut shared: Vec<(Option<&Trust>, Protocol)> = Vec::new();
    for (_, destination) in http_destinations(mesh) {
        if let Upstream::Shared(tls, protocol) = upstream(destination)
            && !shared.contains(&(tls, protocol))
        {
            shared.push((tls, protocol));
        }
    }
    let mut classes: BTreeSet<(Option<Trust>, Protocol)> = (shared.into_iter())
        .map(|(tls, protocol)| (tls.cloned(), protocol))
        .collect();
    if !mesh.fallback_domains.is_empty() {
        classes.insert((Some(custom_domain_trust(&mesh.bundles)), Protocol::Http));
    }
    if mesh.unknown_hosts == UnknownHosts::Forward {
        classes.insert((Some(unknown_host_trust(&mesh.bundles)), Protocol::Http));
    }
    classes
}

/// The name of a shared dynamic-forward-proxy cluster: `lattice-http` for plain HTTP,
/// `lattice-tls|<bundle>` or `lattice-tls|system-roots` for TLS (HTTP/2 or HTTP/1.1 as ALPN
/// negotiates), `lattice-grpc|…` for the HTTP/2 clusters of GRPCRoutes.
pub fn shared_cluster_name(tls: Option<&Trust>, protocol: Protocol) -> String {
    let scheme = match protocol {
        Protocol::Grpc => "lattice-grpc",
        Protocol::Http | Protocol::TlsPassthrough => "lattice-tls",
    };
    match tls {
        None => "lattice-http".to_string(),
        Some(Trust::SystemRoots) => format!("{scheme}|system-roots"),
        Some(Trust::Bundle(bundle)) => format!("{scheme}|{bundle}"),
    }
}

/// The name of the cluster a destination's requests go to.
fn cluster_name_of(destination: &Destination) -> String {
    match upstream(destination) {
        Upstream::Own => destination_cluster_name(&destination.host, destination.port),
        Upstream::Shared(tls, protocol) => shared_cluster_name(tls, protocol),
    }
}

/// The name of a cluster serving one destination alone.
pub fn destination_cluster_name(host: &str, port: u16) -> String {
    format!("lattice|{host}|{port}")
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

/// A duration as Envoy's configuration writes it.
fn duration(duration: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// An HTTP filter of the egress listener: its name and typed config. Both the listener and the
/// signing filters build them, so it lives here, below both.
fn http_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// An HTTP filter that a matcher skips: `config` runs for a request unless `skip` holds for it
/// (a predicate over its request headers, or over the response's for a filter that acts on the
/// way back).
fn skipped_when(
    name: &str,
    config: envoy_types::pb::google::protobuf::Any,
    skip: Predicate,
) -> HttpFilter {
    let skip_action = OnMatch {
        on_match: Some(on_match::OnMatch::Action(XdsExtension {
            name: "skip".to_string(),
            typed_config: Some(envoy_types::util::pack_any(SkipFilter {})),
        })),
        ..Default::default()
    };
    let matched = ExtensionWithMatcher {
        xds_matcher: Some(Matcher {
            matcher_type: Some(MatcherType::MatcherList(MatcherList {
                matchers: vec![FieldMatcher {
                    predicate: Some(skip),
                    on_match: Some(skip_action),
                }],
            })),
            ..Default::default()
        }),
        extension_config: Some(TypedExtensionConfig {
            name: name.to_string(),
            typed_config: Some(config),
        }),
        ..Default::default()
    };
    http_filter(name, envoy_types::util::pack_any(matched))
}
