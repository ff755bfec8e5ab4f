//! The egress route configuration: a virtual host per destination (its route, where it came
//! from, and its own request stats), the fallback domains, and a clear local 404 for every
//! other host.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, FilterConfig, Route, RouteAction, RouteConfiguration, RouteMatch, Vhds,
    VirtualHost, route::Action, route_action::ClusterSpecifier, route_action::MaxStreamDuration,
    route_match::PathSpecifier,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::retries::limit_calls;
use super::{
    EGRESS, FALLBACK_VHOST, cluster_name_of, http_destinations, shared_cluster_name, signing,
};
use crate::model::{
    Destination, Mesh, Protocol, ServiceOrigin, UnknownHosts, custom_domain_trust,
    unknown_host_trust,
};
use crate::sorted::Alongside;
use crate::xds::resources::{AbsentHosts, Host, OnDemand, RouteTable};

/// The body of the local reply for a host that is neither a destination nor under a fallback
/// domain.
pub const NO_ROUTE_BODY: &str =
    "lattice-xds: no VPC Lattice destination is configured for this host\n";

/// The full route table. With the `previous` mesh (the one the snapshot being replaced was
/// translated from), the virtual host of a destination equal to its previous self is not made
/// again but kept.
pub fn egress(mesh: &Mesh, previous: Option<&Mesh>) -> RouteTable {
    let mut unchanged = Unchanged::new(mesh, previous);
    let mut virtual_hosts: Vec<Host> = http_destinations(mesh)
        .map(|(host, d)| {
            if unchanged.is(d) {
                Host::Kept(Arc::clone(host))
            } else {
                Host::Made(Box::new(destination(d, mesh)))
            }
        })
        .collect();
    virtual_hosts.extend(fallback_domains(mesh).map(|host| Host::Made(Box::new(host))));
    virtual_hosts.push(Host::Made(Box::new(unknown_host(mesh))));
    RouteTable {
        route: RouteConfiguration {
            name: EGRESS.to_string(),
            ..Default::default()
        },
        virtual_hosts,
    }
}

/// Tells whether a destination's virtual host is the one the previous mesh gave it: the
/// destination and what every virtual host carries are as they were. Asked of the mesh's
/// destinations in order, it walks the previous mesh's alongside.
struct Unchanged<'a> {
    previous: Option<Alongside<'a, &'a BTreeMap<Arc<str>, Arc<Destination>>>>,
}

impl<'a> Unchanged<'a> {
    fn new(mesh: &Mesh, previous: Option<&'a Mesh>) -> Self {
        let previous = previous
            .filter(|previous| {
                previous.destination_stats == mesh.destination_stats && previous.calls == mesh.calls
            })
            .map(|previous| Alongside::new(&previous.destinations));
        Self { previous }
    }

    fn is(&mut self, d: &Arc<Destination>) -> bool {
        (self.previous.as_mut())
            .and_then(|previous| previous.find(d.host.as_str()))
            .is_some_and(|(_, before)| before == d)
    }
}

/// The virtual host of the hosts under the fallback domains that nothing else names.
fn fallback_domains(mesh: &Mesh) -> Option<VirtualHost> {
    if mesh.fallback_domains.is_empty() {
        return None;
    }
    let domains = (mesh.fallback_domains.iter())
        .map(|domain| format!("*.{domain}"))
        .collect();
    let trust = custom_domain_trust(&mesh.bundles);
    let mut route = to_cluster(shared_cluster_name(Some(&trust), Protocol::Http));
    limit_calls(&mut route, &mesh.calls, mesh);
    Some(VirtualHost {
        name: FALLBACK_VHOST.to_string(),
        domains,
        routes: vec![route],
        ..Default::default()
    })
}

/// The virtual host of every other host.
fn unknown_host(mesh: &Mesh) -> VirtualHost {
    match mesh.unknown_hosts {
        UnknownHosts::Forward => default_forward(mesh),
        UnknownHosts::Deny => no_route(mesh),
    }
}

/// The virtual host made for a host that no destination names, when a sidecar asks for it:
/// the fallback domains' for a host under one of them, else the unknown hosts' (the default
/// forward, or the local 404), each for that host alone.
#[derive(Clone, Debug, PartialEq)]
struct Fallback {
    domains: Vec<String>,
    under_domain: Option<VirtualHost>,
    unknown: VirtualHost,
}

impl Fallback {
    /// The virtual host for `name` (`egress/<host>`, as the sidecar asks for it); `None` for a
    /// name of another form.
    fn virtual_host(&self, name: &str) -> Option<VirtualHost> {
        let host = name.strip_prefix(EGRESS)?.strip_prefix('/')?;
        if host.is_empty() {
            return None;
        }
        let under = |domain: &String| {
            host.strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
        };
        let template = match &self.under_domain {
            Some(fallback) if self.domains.iter().any(under) => fallback,
            _ => &self.unknown,
        };
        Some(VirtualHost {
            name: name.to_string(),
            domains: vec![host.to_string()],
            ..template.clone()
        })
    }

    /// Bytes that change whenever what [`Fallback::virtual_host`] makes changes.
    fn encoded(&self) -> Vec<u8> {
        use prost::Message as _;
        let mut bytes = self.domains.join(",").into_bytes();
        for template in self.under_domain.iter().chain([&self.unknown]) {
            bytes.extend(template.encode_to_vec());
        }
        bytes
    }
}

/// The name a sidecar asks for the virtual host of `host` by: `egress/<host>`.
fn on_demand_name(host: &str) -> String {
    format!("{EGRESS}/{host}")
}

/// The on-demand form of [`egress`], which keeps unchanged virtual hosts the same way.
pub fn on_demand(mesh: &Mesh, previous: Option<&Mesh>) -> OnDemand {
    let mut unchanged = Unchanged::new(mesh, previous);
    let virtual_hosts = http_destinations(mesh)
        .map(|(_, d)| {
            if unchanged.is(d) {
                Host::Kept(on_demand_name(&d.host).into())
            } else {
                Host::Made(Box::new(VirtualHost {
                    name: on_demand_name(&d.host),
                    ..destination(d, mesh)
                }))
            }
        })
        .collect();
    let route = RouteConfiguration {
        name: EGRESS.to_string(),
        vhds: Some(Vhds {
            config_source: Some(super::ads()),
        }),
        ..Default::default()
    };
    let fallback = fallback(mesh);
    let version = fallback.encoded();
    OnDemand {
        route,
        virtual_hosts,
        absent: AbsentHosts {
            version,
            make: Arc::new(move |name| fallback.virtual_host(name)),
        },
    }
}

/// What a host that no destination names gets, on demand.
fn fallback(mesh: &Mesh) -> Fallback {
    Fallback {
        domains: mesh.fallback_domains.clone(),
        under_domain: fallback_domains(mesh),
        unknown: unknown_host(mesh),
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
    if destination.protocol != Protocol::Grpc {
        limit_calls(&mut route, &destination.calls, mesh);
    } else if let Some(Action::Route(action)) = &mut route.action {
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
    limit_calls(&mut route, &mesh.calls, mesh);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Settings;

    #[test]
    fn a_host_no_destination_names_gets_its_own_fallback_virtual_host() {
        let mut settings = Settings {
            fallback_domains: vec!["example.com".to_string()],
            unknown_hosts: UnknownHosts::Deny,
            ..Settings::default()
        };
        let fallback = super::fallback(&settings.mesh());
        let under = fallback.virtual_host("egress/a.b.example.com").unwrap();
        assert_eq!(under.name, "egress/a.b.example.com");
        assert_eq!(under.domains, ["a.b.example.com"]);
        assert!(matches!(under.routes[0].action, Some(Action::Route(_))));
        // Not under the domain: the unknown hosts' answer (a local 404 here).
        for host in ["example.com", "notexample.com", "other.test"] {
            let unknown = fallback.virtual_host(&format!("egress/{host}")).unwrap();
            assert_eq!(unknown.domains, [host]);
            assert!(matches!(
                unknown.routes[0].action,
                Some(Action::DirectResponse(_))
            ));
        }
        assert_eq!(fallback.virtual_host("other/a.example.com"), None);
        assert_eq!(fallback.virtual_host("egress/"), None);
        // What is made changes with the settings, and so does its version's input.
        settings.unknown_hosts = UnknownHosts::Forward;
        let forwarding = super::fallback(&settings.mesh());
        assert_ne!(forwarding.encoded(), fallback.encoded());
    }
}
