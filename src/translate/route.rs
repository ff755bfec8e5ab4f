//! The egress route configuration: a virtual host per destination, the fallback domains, and a
//! clear local 404 for every other host.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, FilterConfig, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use envoy_types::util::pack_any;

use super::{EGRESS, FALLBACK_CLUSTER, destination_cluster_name, signing};
use crate::model::{Destination, Mesh};

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
        virtual_hosts.push(VirtualHost {
            name: FALLBACK_CLUSTER.to_string(),
            domains,
            routes: vec![to_cluster(FALLBACK_CLUSTER.to_string())],
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

fn destination(destination: &Destination) -> VirtualHost {
    VirtualHost {
        name: destination.host.clone(),
        domains: with_ports(&destination.host),
        routes: vec![to_cluster(destination_cluster_name(
            &destination.host,
            destination.port,
        ))],
        ..Default::default()
    }
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
