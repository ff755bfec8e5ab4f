//! The egress route configuration: a virtual host per destination (its route, its own request
//! stats, and where it came from), the fallback domains, and a clear local 404 for every other
//! host.

use envoy_types::pb::envoy::config::core::v3::{DataSource, Metadata, data_source::Specifier};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, FilterConfig, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::dynamic_forward_proxy::v3::{
    PerRouteConfig as ForwardProxyPerRoute, per_route_config::HostRewriteSpecifier,
};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use envoy_types::util::pack_any;

use super::listener::FORWARD_PROXY_FILTER;
use super::{
    EGRESS, FALLBACK_VHOST, Upstream, cluster_name_of, shared_cluster_name, signing, upstream,
};
use crate::model::{Destination, Mesh, custom_domain_trust};

/// The body of the local reply for a host that is neither a destination nor under a fallback
/// domain.
pub const NO_ROUTE_BODY: &str =
    "lattice-xds: no VPC Lattice destination is configured for this host\n";

pub fn egress(mesh: &Mesh) -> RouteConfiguration {
    let mut virtual_hosts: Vec<VirtualHost> = mesh.destinations.values().map(destination).collect();
    if !mesh.fallback_domains.is_empty() {
        let domains = mesh
            .fallback_domains
            .iter()
            .flat_map(|domain| with_ports(&format!("*.{domain}")))
            .collect();
        let trust = custom_domain_trust(&mesh.bundles);
        virtual_hosts.push(VirtualHost {
            name: FALLBACK_VHOST.to_string(),
            domains,
            routes: vec![to_cluster(shared_cluster_name(Some(&trust)))],
            ..Default::default()
        });
    }
    virtual_hosts.push(no_route(mesh));
    RouteConfiguration {
        name: EGRESS.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

/// `host`, `host:80` and `host:443`: the Host header an application sends, with or without a
/// default port. Envoy matches domains case-insensitively.
fn with_ports(host: &str) -> Vec<String> {
    vec![
        host.to_string(),
        format!("{host}:80"),
        format!("{host}:443"),
    ]
}

/// The statistics prefix of every destination's route: its request stats are
/// `vhost.<host>.route.destination.*` (status codes, totals, timing).
const STAT_PREFIX: &str = "destination";

fn destination(destination: &Destination) -> VirtualHost {
    let mut route = to_cluster(cluster_name_of(destination));
    route.stat_prefix = STAT_PREFIX.to_string();
    // Through a shared cluster, the forward proxy resolves the destination's own name whatever
    // port the Host header carries; it runs before signing, so the signed Host is the one sent.
    let typed_per_filter_config = match upstream(destination) {
        Upstream::Shared(_) => {
            let rewrite = ForwardProxyPerRoute {
                host_rewrite_specifier: Some(HostRewriteSpecifier::HostRewriteLiteral(
                    destination.host.clone(),
                )),
            };
            [(FORWARD_PROXY_FILTER.to_string(), pack_any(rewrite))].into()
        }
        Upstream::Own => Default::default(),
    };
    VirtualHost {
        name: destination.host.clone(),
        domains: with_ports(&destination.host),
        routes: vec![route],
        typed_per_filter_config,
        metadata: Some(provenance(destination)),
        ..Default::default()
    }
}

/// The filter metadata key under which a virtual host records where it came from.
const METADATA_KEY: &str = "lattice-xds";

/// Where a destination came from, readable in any config dump: `destination host:port`, the
/// route, then the IAM auth policies VPC Lattice evaluates for it. One list under one key:
/// protobuf maps encode in no fixed order, and the encoding must not change while the
/// destination does not.
fn provenance(destination: &Destination) -> Metadata {
    let string = |text: String| Value {
        kind: Some(Kind::StringValue(text)),
    };
    let values = [
        format!("destination {}:{}", destination.host, destination.port),
        format!("route {}", destination.source),
    ]
    .into_iter()
    .chain(
        destination
            .auth_policies
            .iter()
            .map(|policy| format!("auth policy {policy}")),
    )
    .map(string)
    .collect();
    let source = Value {
        kind: Some(Kind::ListValue(ListValue { values })),
    };
    Metadata {
        filter_metadata: [(
            METADATA_KEY.to_string(),
            Struct {
                fields: [("source".to_string(), source)].into(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// The provenance entries of a destination's virtual host (`destination host:port`, `route
/// ns/name`, then `auth policy ns/name (level)` for each policy); empty for other hosts.
pub fn provenance_of(virtual_host: &VirtualHost) -> Vec<String> {
    let Some(metadata) = &virtual_host.metadata else {
        return Vec::new();
    };
    let Some(Kind::ListValue(list)) = metadata
        .filter_metadata
        .get(METADATA_KEY)
        .and_then(|fields| fields.fields.get("source"))
        .and_then(|value| value.kind.as_ref())
    else {
        return Vec::new();
    };
    list.values
        .iter()
        .filter_map(|value| match &value.kind {
            Some(Kind::StringValue(text)) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn to_cluster(cluster: String) -> Route {
    Route {
        r#match: Some(every_path()),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The catch-all: a 404 with a body that says why, answered locally and never signed.
fn no_route(mesh: &Mesh) -> VirtualHost {
    let typed_per_filter_config = signing::filter_name(mesh.signing.mode)
        .map(|name| {
            let disabled = FilterConfig {
                disabled: true,
                ..Default::default()
            };
            (name.to_string(), pack_any(disabled))
        })
        .into_iter()
        .collect();
    VirtualHost {
        name: "no-route".to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            r#match: Some(every_path()),
            action: Some(Action::DirectResponse(DirectResponseAction {
                status: 404,
                body: Some(DataSource {
                    specifier: Some(Specifier::InlineString(NO_ROUTE_BODY.to_string())),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }],
        typed_per_filter_config,
        ..Default::default()
    }
}

fn every_path() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
        ..Default::default()
    }
}
