//! Turns Gateway API objects into [`Destination`]s: which HTTPRoutes and GRPCRoutes are
//! attached to a VPC Lattice gateway, which host names they claim, and how each host is reached.
//!
//! Conflicts follow the Gateway API rule: when two routes claim the same host name, the older
//! route (by creation time, then `namespace/name`), of either kind, keeps it.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::gateways::{Gateway, GatewayListeners};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::policy::IamAuthPolicy;
use super::{Inputs, InvalidInput, Sourced};
use crate::model::{
    AuthPolicyRef, Destination, Mesh, ObjectRef, PolicyLevel, RouteKind, Settings, Trust,
};

/// The `controllerName` of GatewayClasses run by the AWS Gateway API Controller.
pub const LATTICE_CONTROLLER: &str = "application-networking.k8s.aws/gateway-api-controller";
/// The annotation in which that controller records the Lattice-assigned DNS name of a route.
pub const ASSIGNED_DOMAIN_ANNOTATION: &str =
    "application-networking.k8s.aws/lattice-assigned-domain-name";

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Builds the mesh for `inputs`; every route that had to be skipped (wholly or in part) is
/// returned as an [`InvalidInput`].
pub fn build(inputs: &Inputs, settings: &Settings) -> (Mesh, Vec<InvalidInput>) {
    let gateways = LatticeGateways::new(inputs, &settings.gateway_class);
    let policies = AuthPolicies::new(&inputs.auth_policies);
    let mut mesh = settings.mesh();
    let mut invalid = Vec::new();
    for route in oldest_first(routes(inputs)) {
        let report = |reason: String| InvalidInput {
            origin: route.origin.to_string(),
            kind: route.kind.to_string(),
            object: Some(route.source.to_string()),
            reason,
        };
        match route_destinations(&route, &gateways, &policies, settings) {
            Ok(destinations) => {
                for destination in destinations {
                    if let Some(owner) = mesh.destinations.get(&destination.host) {
                        invalid.push(report(format!(
                            "hostname {} is already claimed by the older {} {}",
                            destination.host, owner.kind, owner.source
                        )));
                    } else {
                        mesh.destinations
                            .insert(destination.host.clone(), destination);
                    }
                }
            }
            Err(reason) => invalid.push(report(reason)),
        }
    }
    (mesh, invalid)
}

/// What this module reads of a route of either kind.
struct Route<'a> {
    kind: RouteKind,
    origin: &'a str,
    source: ObjectRef,
    metadata: &'a ObjectMeta,
    hostnames: &'a [String],
    parents: Vec<ParentRef<'a>>,
}

/// A route's `parentRefs` entry.
struct ParentRef<'a> {
    group: Option<&'a str>,
    kind: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
    section_name: Option<&'a str>,
}

/// Every HTTPRoute and GRPCRoute of `inputs`.
fn routes(inputs: &Inputs) -> Vec<Route<'_>> {
    // The two kinds' generated types share field names, not a type.
    macro_rules! view {
        ($route:expr, $kind:expr) => {
            Route {
                kind: $kind,
                origin: &$route.origin,
                source: object_ref(&$route.object.metadata),
                metadata: &$route.object.metadata,
                hostnames: $route.object.spec.hostnames.as_deref().unwrap_or_default(),
                parents: ($route.object.spec.parent_refs.iter().flatten())
                    .map(|parent| ParentRef {
                        group: parent.group.as_deref(),
                        kind: parent.kind.as_deref(),
                        namespace: parent.namespace.as_deref(),
                        name: &parent.name,
                        section_name: parent.section_name.as_deref(),
                    })
                    .collect(),
            }
        };
    }
    let http = inputs
        .routes
        .iter()
        .map(|route| view!(route, RouteKind::Http));
    let grpc = (inputs.grpc_routes.iter()).map(|route| view!(route, RouteKind::Grpc));
    http.chain(grpc).collect()
}

/// Routes in the order Gateway API gives precedence: creation time, then `namespace/name`
/// (then kind, so that the order never depends on how the inputs were listed).
fn oldest_first(mut routes: Vec<Route<'_>>) -> Vec<Route<'_>> {
    routes.sort_by_cached_key(|route| {
        (
            route.metadata.creation_timestamp.clone(),
            route.source.clone(),
            route.kind,
        )
    });
    routes
}

fn object_ref(metadata: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        namespace: metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        name: metadata.name.clone().unwrap_or_default(),
    }
}

/// The destinations one route yields, or why the route cannot be served at all.
fn route_destinations(
    route: &Route<'_>,
    gateways: &LatticeGateways,
    policies: &AuthPolicies,
    settings: &Settings,
) -> Result<Vec<Destination>, String> {
    let source = route.source.clone();
    let mut listeners = Vec::new();
    let mut networks = BTreeSet::new();
    for parent in &route.parents {
        if let Some((gateway, attached)) = gateways.attach(parent, &source.namespace)? {
            networks.insert(gateway);
            listeners.extend(attached);
        }
    }
    // Prefer TLS: a route reachable over HTTPS is never called in plain text.
    let Some(listener) = listeners
        .iter()
        .max_by_key(|l| (l.protocol == "HTTPS", l.port))
    else {
        return Ok(Vec::new());
    };
    let https = listener.protocol == "HTTPS";
    if route.kind == RouteKind::Grpc && !https {
        return Err(format!(
            "a GRPCRoute needs an HTTPS listener (VPC Lattice serves gRPC over HTTP/2 with TLS); listener {} is {}",
            listener.name, listener.protocol
        ));
    }
    let port = u16::try_from(listener.port).map_err(|_| {
        format!(
            "listener {} has an invalid port {}",
            listener.name, listener.port
        )
    })?;

    let mut hosts: Vec<(String, Trust)> = Vec::new();
    for hostname in route.hostnames {
        hosts.push((checked_host(hostname)?, settings.custom_domain_trust()));
    }
    let annotations = route.metadata.annotations.as_ref();
    if let Some(assigned) = annotations.and_then(|a| a.get(ASSIGNED_DOMAIN_ANNOTATION)) {
        hosts.push((checked_host(assigned)?, Trust::SystemRoots));
    }
    let auth_policies = policies.guarding(&networks, route.kind, &source);
    let mut seen = BTreeSet::new();
    Ok(hosts
        .into_iter()
        .filter(|(host, _)| seen.insert(host.clone()))
        .map(|(host, trust)| Destination {
            pinned: settings.pinned.get(&host).copied(),
            host,
            port,
            tls: https.then_some(trust),
            source: source.clone(),
            kind: route.kind,
            auth_policies: auth_policies.clone(),
        })
        .collect())
}

/// A host name a sidecar can route to: lower-cased, RFC 1123, no wildcard, no IP address.
fn checked_host(hostname: &str) -> Result<String, String> {
    let host = hostname.to_ascii_lowercase();
    if host.starts_with("*.") {
        return Err(format!(
            "hostname {hostname:?} is a wildcard; a sidecar needs one name to resolve and verify"
        ));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "hostname {hostname:?} is an IP address, which Gateway API forbids"
        ));
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "hostname {hostname:?} is not a valid RFC 1123 DNS name"
        ));
    }
    Ok(host)
}

/// The Gateways of Lattice GatewayClasses, by `namespace/name`.
struct LatticeGateways<'a> {
    lattice: BTreeMap<ObjectRef, &'a Gateway>,
    other: BTreeSet<ObjectRef>,
}

impl<'a> LatticeGateways<'a> {
    /// Gateways of `class_name`, or of any class the AWS Gateway API Controller runs.
    fn new(inputs: &'a Inputs, class_name: &'a str) -> Self {
        let classes: BTreeSet<&str> = inputs
            .classes
            .iter()
            .filter(|class| class.object.spec.controller_name == LATTICE_CONTROLLER)
            .filter_map(|class| class.object.metadata.name.as_deref())
            .chain([class_name])
            .collect();
        let mut gateways = Self {
            lattice: BTreeMap::new(),
            other: BTreeSet::new(),
        };
        for gateway in &inputs.gateways {
            let key = ObjectRef {
                namespace: gateway
                    .object
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_default(),
                name: gateway.object.metadata.name.clone().unwrap_or_default(),
            };
            if classes.contains(gateway.object.spec.gateway_class_name.as_str()) {
                gateways.lattice.insert(key, &gateway.object);
            } else {
                gateways.other.insert(key);
            }
        }
        gateways
    }

    /// The Lattice gateway and its listeners that a parent reference attaches to; none for
    /// another implementation's gateway, an error for a gateway or listener that does not exist.
    fn attach(
        &self,
        parent: &ParentRef<'_>,
        route_namespace: &str,
    ) -> Result<Option<(ObjectRef, Vec<&'a GatewayListeners>)>, String> {
        let group = parent.group.unwrap_or(GATEWAY_GROUP);
        if group != GATEWAY_GROUP || parent.kind.unwrap_or("Gateway") != "Gateway" {
            return Ok(None);
        }
        let key = ObjectRef {
            namespace: parent.namespace.unwrap_or(route_namespace).to_string(),
            name: parent.name.to_string(),
        };
        let Some(gateway) = self.lattice.get(&key) else {
            if self.other.contains(&key) {
                return Ok(None);
            }
            return Err(format!("unknown parent: Gateway {key} does not exist"));
        };
        let listeners = gateway.spec.listeners.iter();
        let Some(section) = parent.section_name else {
            return Ok(Some((key, listeners.collect())));
        };
        let attached: Vec<_> = listeners
            .filter(|listener| listener.name == section)
            .collect();
        if attached.is_empty() {
            return Err(format!(
                "unknown parent: Gateway {key} has no listener named {section:?}"
            ));
        }
        Ok(Some((key, attached)))
    }
}

/// IAMAuthPolicies by the Gateway, HTTPRoute or GRPCRoute they target.
struct AuthPolicies {
    by_target: BTreeMap<(&'static str, ObjectRef), Vec<ObjectRef>>,
}

impl AuthPolicies {
    fn new(policies: &[Sourced<IamAuthPolicy>]) -> Self {
        let mut by_target: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for policy in policies {
            let target = &policy.object.spec.target_ref;
            let kind = match target.kind.as_str() {
                "Gateway" => "Gateway",
                "HTTPRoute" => "HTTPRoute",
                "GRPCRoute" => "GRPCRoute",
                _ => continue,
            };
            if target.group != GATEWAY_GROUP {
                continue;
            }
            let namespace = policy
                .object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string());
            let target = ObjectRef {
                namespace: target.namespace.clone().unwrap_or(namespace.clone()),
                name: target.name.clone(),
            };
            let name = policy.object.metadata.name.clone().unwrap_or_default();
            by_target
                .entry((kind, target))
                .or_default()
                .push(ObjectRef { namespace, name });
        }
        Self { by_target }
    }

    /// The service-network policies of `gateways` and the service policies of `route`.
    fn guarding(
        &self,
        gateways: &BTreeSet<ObjectRef>,
        kind: RouteKind,
        route: &ObjectRef,
    ) -> Vec<AuthPolicyRef> {
        let at = |kind: &'static str, target: &ObjectRef, level: PolicyLevel| {
            self.by_target
                .get(&(kind, target.clone()))
                .into_iter()
                .flatten()
                .map(move |policy| AuthPolicyRef {
                    level,
                    policy: policy.clone(),
                })
        };
        let mut guarding: Vec<_> = gateways
            .iter()
            .flat_map(|gateway| at("Gateway", gateway, PolicyLevel::ServiceNetwork))
            .chain(at(kind.as_str(), route, PolicyLevel::Service))
            .collect();
        // The same policy may be seen through several inputs naming it; it guards once.
        guarding.sort();
        guarding.dedup();
        guarding
    }
}

#[cfg(test)]
mod tests;
