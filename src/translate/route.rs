//! The egress route configuration: a virtual host per destination (its route, where it came
//! from, and its own request stats), the fallback domains, and a clear local 404 for every
//! other host.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, FilterConfig, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, route::Action, route_action::ClusterSpecifier, route_action::MaxStreamDuration,
    route_match::PathSpecifier,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;

use super::{
    EGRESS, FALLBACK_VHOST, cluster_name_of, http_destinations, shared_cluster_name, signing,
};
use crate::model::{
    Destination, Mesh, Protocol, ServiceOrigin, UnknownHosts, custom_domain_trust,
    unknown_host_trust,
};

/// The body of the local reply for a host that is neither a destination nor under a fallback
/// domain.
pub const NO_ROUTE_BODY: &str =
    "lattice-xds: no VPC Lattice destination is configured for this host\n";

pub fn egress(mesh: &Mesh) -> RouteConfiguration {
    let mut virtual_hosts: Vec<VirtualHost> = http_destinations(mesh)
        .map(|d| destination(d, mesh))
        .collect();
    if !mesh.fallback_domains.is_empty() {
        let domains = mesh
            .fallback_domains
            .iter()
            .map(|domain| format!("*.{domain}"))
            .collect();
        let trust = custom_domain_trust(&mesh.bundles);
        virtual_hosts.push(VirtualHost {
            name: FALLBACK_VHOST.to_string(),
            domains,
            routes: vec![to_cluster(shared_cluster_name(
                Some(&trust),
                Protocol::Http,
            ))],
            ..Default::default()
        });
    }
    virtual_hosts.push(match mesh.unknown_hosts {
        UnknownHosts::Forward => default_forward(mesh),
        UnknownHosts::Deny => no_route(mesh),
    });
    RouteConfiguration {
        name: EGRESS.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

/// The statistics prefix of every destination's route: its request stats are
/// `vhost.<host>.route.destination.*` (totals, status codes, timing).
const STAT_PREFIX: &str = "destination";

/// A destination's virtual host: its one name (the connection manager strips any port from the
/// Host header before routing, so `host:80` and `host:443` match it too), and one route whose
/// name says where the destination came from.
///
/// Each virtual host costs every sidecar memory, so it carries only what is its own: the
/// provenance is the route's name (a string, about a tenth of what the same facts cost Envoy as
/// metadata; see `docs/benchmarks.md`), and the request stats are optional.
fn destination(destination: &Destination, mesh: &Mesh) -> VirtualHost {
    let mut route = to_cluster(cluster_name_of(destination));
    route.name = provenance(destination);
    if destination.protocol == Protocol::Grpc
        && let Some(Action::Route(action)) = &mut route.action
    {
        // A stream may last as long as its client wants: no route timeout, and the client's
        // `grpc-timeout` bounds it.
        action.timeout = Some(Duration::default());
        action.max_stream_duration = Some(MaxStreamDuration {
            grpc_timeout_header_max: Some(Duration::default()),
            ..Default::default()
        });
    }
    if mesh.destination_stats {
        route.stat_prefix = STAT_PREFIX.to_string();
    }
    VirtualHost {
        name: destination.host.clone(),
        domains: vec![destination.host.clone()],
        routes: vec![route],
        ..Default::default()
    }
}

/// Separates the provenance entries in a route's name.
const PROVENANCE_SEPARATOR: &str = "; ";

/// Where a destination came from, readable in any config dump and as `%ROUTE_NAME%` in the
/// access log: `destination host:port`, the local route and the IAM auth policies VPC Lattice
/// evaluates for it, then the VPC Lattice service the API lists under the name (its account,
/// service networks and auth), separated by `; ` (no Kubernetes name or ARN contains one).
fn provenance(destination: &Destination) -> String {
    let mut entries = vec![format!(
        "destination {}:{}",
        destination.host, destination.port
    )];
    if let Some(route) = &destination.route {
        entries.push(format!("route {}", route.route));
        entries.extend((route.auth_policies.iter()).map(|policy| format!("auth policy {policy}")));
    }
    if let Some(service) = &destination.service {
        entries.push(format!("service {}", service_provenance(service)));
    }
    entries.join(PROVENANCE_SEPARATOR)
}

/// A discovered service's part of the provenance: its name and ARN, owning account, service
/// networks and auth settings.
pub fn service_provenance(service: &ServiceOrigin) -> String {
    let mut entries = vec![
        format!("{} ({})", service.name, service.arn),
        format!("account {}", service.account),
    ];
    entries.extend(
        (service.networks.iter())
            .map(|network| format!("service network {} ({})", network.name, network.auth)),
    );
    entries.push(format!("service auth {}", service.auth));
    if !service.listeners_read {
        entries.push("listeners unread, HTTPS on 443 assumed".to_string());
    }
    entries.join(PROVENANCE_SEPARATOR)
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

/// The route name of the default forward, in every config dump and the access log.
pub const DEFAULT_FORWARD: &str = "default forward: no route or discovered service names this host";

/// The catch-all with `--unknown-hosts forward`: the host is still a VPC Lattice service (the
/// redirect captures only Lattice's ranges), so it is signed and sent over HTTPS on 443 through
/// the shared cluster whose certificate check names the host and trusts the private CAs and the
/// system roots. The signature binds the host, and it goes only to a peer whose certificate
/// names that host.
fn default_forward(mesh: &Mesh) -> VirtualHost {
    let trust = unknown_host_trust(&mesh.bundles);
    let mut route = to_cluster(shared_cluster_name(Some(&trust), Protocol::Http));
    route.name = DEFAULT_FORWARD.to_string();
    VirtualHost {
        name: "default-forward".to_string(),
        domains: vec!["*".to_string()],
        routes: vec![route],
        ..Default::default()
    }
}

/// The catch-all with `--unknown-hosts deny`: a 404 with a body that says why, answered
/// locally and never signed.
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
