//! Turns Gateway API objects into [`Destination`]s: which HTTPRoutes and GRPCRoutes are
//! attached to a VPC Lattice gateway, which host names they claim, and how each host is reached.
//!
//! A route attaches to the listeners that admit it (`attach.rs`: `allowedRoutes`, listener host
//! names, the VPC Lattice controller's `Accepted`), and each of its host names is served through
//! the best listener that serves that name. Conflicts follow the Gateway API rule: when two
//! routes claim the same host name, the older route (by creation time, then `namespace/name`),
//! of either kind, keeps it. The Lattice-assigned name counts only in the shape Lattice gives
//! the route's own service, so that no route can claim another's.

mod attach;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteRulesRetry};
use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use gateway_api::grpcroutes::GrpcRoute;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use attach::{Admitted, LatticeGateways};

use super::discovery::Service;
use super::policy::IamAuthPolicy;
use super::{Inputs, InvalidInput, Shared, Sourced};
use crate::model::{
    AuthPolicyRef, Calls, Destination, Mesh, ObjectRef, PolicyLevel, Protocol, RouteKind,
    RouteOrigin, RouteRetry, Settings, StatusCodes, Trust,
};

/// The `controllerName` of GatewayClasses run by the AWS Gateway API Controller.
pub const LATTICE_CONTROLLER: &str = "application-networking.k8s.aws/gateway-api-controller";
/// The annotation in which that controller records the Lattice-assigned DNS name of a route.
pub const ASSIGNED_DOMAIN_ANNOTATION: &str =
    "application-networking.k8s.aws/lattice-assigned-domain-name";

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Builds the mesh for `inputs` and the services `discovered` in the VPC Lattice API; every
/// route that had to be skipped (wholly or in part) is returned as an [`InvalidInput`].
pub fn build(
    inputs: &Inputs,
    discovered: &[Service],
    settings: &Settings,
) -> (Mesh, Vec<InvalidInput>) {
    Builder::default().build(inputs, discovered, settings)
}

/// Builds meshes one after another, each by difference from the one before: a route that is
/// the same shared object as at the previous build, while the gateways, classes, namespaces,
/// auth policies and settings are too, yields the destinations it yielded then without being
/// attached and checked again. Which route keeps a contested host name is decided on every
/// build, from those yields; the mesh's map of destinations is the previous one with only the
/// host names of the routes that came or went decided again, as long as the discovered services
/// are the same too.
#[derive(Default)]
pub struct Builder {
    /// What every route's yield depends on besides the route, as at the previous build.
    context: Option<Context>,
    /// Each route's yield, by its kind and the address of its shared object, with the last
    /// build whose inputs held the route.
    yields: HashMap<Key, (u64, Arc<Yield>)>,
    /// The yields in Gateway API precedence: a route that comes is put in its place and one
    /// that goes is taken out, so the order is not sorted again on every build.
    ordered: Vec<Arc<Yield>>,
    /// Counts builds.
    build: u64,
    /// What the previous build made, to be changed where routes came or went.
    previous: Option<Built>,
}

/// A route's kind and the address of its shared object.
type Key = (RouteKind, usize);

/// A build's destinations, and the services discovered then.
struct Built {
    destinations: BTreeMap<Arc<str>, Arc<Destination>>,
    discovered: Vec<Service>,
}

#[derive(Clone)]
struct Context {
    gateways: Vec<Shared<Gateway>>,
    classes: Vec<Shared<GatewayClass>>,
    namespaces: Vec<Shared<Namespace>>,
    auth_policies: Vec<Shared<IamAuthPolicy>>,
    settings: Settings,
}

impl Context {
    fn of(inputs: &Inputs, settings: &Settings) -> Self {
        Self {
            gateways: inputs.gateways.clone(),
            classes: inputs.classes.clone(),
            namespaces: inputs.namespaces.clone(),
            auth_policies: inputs.auth_policies.clone(),
            settings: settings.clone(),
        }
    }

    /// The same objects (not equal ones: the same allocations) and equal settings.
    fn same(&self, other: &Self) -> bool {
        fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
        }
        same(&self.gateways, &other.gateways)
            && same(&self.classes, &other.classes)
            && same(&self.namespaces, &other.namespaces)
            && same(&self.auth_policies, &other.auth_policies)
            && self.settings == other.settings
    }
}

/// What one route yields, and what its reports and precedence need of it.
struct Yield {
    key: Key,
    /// The route's shared object, which keeps its address (the key) from being reused.
    _object: Arc<dyn std::any::Any + Send + Sync>,
    /// Gateway API precedence: creation time, then `namespace/name`, then kind.
    order: (Option<Time>, ObjectRef, RouteKind),
    origin: String,
    destinations: Result<(Vec<Arc<Destination>>, Vec<String>), String>,
}

impl Yield {
    fn hosts(&self) -> impl Iterator<Item = &String> {
        let destinations = self.destinations.as_ref().map(|(yielded, _)| yielded);
        destinations
            .into_iter()
            .flatten()
            .map(|destination| &destination.host)
    }
}

impl Builder {
    /// The mesh for `inputs` and the services `discovered` in the VPC Lattice API; every
    /// route that had to be skipped (wholly or in part) is returned as an [`InvalidInput`].
    ///
    /// The VPC Lattice API is the authority on names: a host that a discovered service answers
    /// to is served by a local route only when the route is that service's own (VPC Lattice
    /// names it after the route, as the AWS Gateway API Controller does); the two then make one
    /// destination. Any other route that claims the name is reported and the service keeps it.
    pub fn build(
        &mut self,
        inputs: &Inputs,
        discovered: &[Service],
        settings: &Settings,
    ) -> (Mesh, Vec<InvalidInput>) {
        let context = Context::of(inputs, settings);
        if !self
            .context
            .as_ref()
            .is_some_and(|before| before.same(&context))
        {
            self.yields.clear();
            self.ordered.clear();
            self.previous = None;
        }
        self.context = Some(context);
        let touched = self.yield_routes(inputs, settings);

        let mut mesh = settings.mesh();
        let mut invalid = classless_gateways(inputs, settings);
        let (owners, conflicts) = owners(discovered);
        invalid.extend(conflicts);
        // Each host name's destination: the first claim in precedence order that may keep it.
        let mut claimed: HashMap<&str, Arc<Destination>> =
            HashMap::with_capacity(self.ordered.len());
        for route in &self.ordered {
            let (_, source, kind) = &route.order;
            let report = |reason: String| InvalidInput {
                origin: route.origin.clone(),
                kind: kind.to_string(),
                object: Some(source.to_string()),
                reason,
            };
            let (destinations, refusals) = match &route.destinations {
                Ok(yielded) => yielded,
                Err(reason) => {
                    invalid.push(report(reason.clone()));
                    continue;
                }
            };
            invalid.extend(refusals.iter().cloned().map(report));
            for yielded in destinations {
                let host = yielded.host.as_str();
                if let Some(owner) = claimed.get(host) {
                    let owner = owner.route.as_ref().map_or_else(String::new, |route| {
                        format!("{} {}", route.kind, route.route)
                    });
                    invalid.push(report(format!(
                        "hostname {host} is already claimed by the older {owner}"
                    )));
                    continue;
                }
                let mut destination = Arc::clone(yielded);
                if let Some(service) = owners.get(host) {
                    let own = lattice_service_name(&source.name, &source.namespace);
                    if service.origin.name != own {
                        invalid.push(report(format!(
                            "hostname {host} belongs to VPC Lattice service {} ({}), which the VPC Lattice API lists under that name; this route's service would be named {own}",
                            service.origin.name, service.origin.arn
                        )));
                        continue;
                    }
                    Arc::make_mut(&mut destination).service = Some(Arc::clone(&service.origin));
                }
                claimed.insert(host, destination);
            }
        }
        let mut discovered_destinations: BTreeMap<Arc<str>, Arc<Destination>> = BTreeMap::new();
        for service in discovered {
            for destination in service.destinations(settings) {
                let owned = owners
                    .get(destination.host.as_str())
                    .is_some_and(|owner| std::ptr::eq(*owner, service));
                if owned && !claimed.contains_key(destination.host.as_str()) {
                    let host = destination.host.as_str().into();
                    discovered_destinations.insert(host, Arc::new(destination));
                }
            }
        }

        let destinations = match self.previous.take() {
            // Only the names of the routes that came or went can have changed hands.
            Some(Built {
                mut destinations,
                discovered: before,
            }) if before == discovered => {
                for host in touched {
                    let now = claimed.get(host.as_str()).cloned();
                    match now.or_else(|| discovered_destinations.remove(host.as_str())) {
                        Some(destination) => destinations.insert(host.into(), destination),
                        None => destinations.remove(host.as_str()),
                    };
                }
                destinations
            }
            _ => {
                let mut destinations: BTreeMap<Arc<str>, Arc<Destination>> = claimed
                    .into_iter()
                    .map(|(host, destination)| (host.into(), destination))
                    .collect();
                destinations.append(&mut discovered_destinations);
                destinations
            }
        };
        self.previous = Some(Built {
            destinations: destinations.clone(),
            discovered: discovered.to_vec(),
        });
        mesh.destinations = destinations;
        (mesh, invalid)
    }

    /// Every route's yield: kept from the previous build when its object is the same, else
    /// worked out now. Returns the host names of the routes that came or went, when there is a
    /// previous build to change.
    fn yield_routes(&mut self, inputs: &Inputs, settings: &Settings) -> BTreeSet<String> {
        let gateways = LatticeGateways::new(
            inputs,
            &settings.gateway_class,
            settings.accepted_routes_only,
        );
        let policies = AuthPolicies::new(&inputs.auth_policies);
        self.build += 1;
        let build = self.build;
        let made = |key: Key, route: Route<'_>, object: Arc<dyn std::any::Any + Send + Sync>| {
            let destinations = route_destinations(&route, &gateways, &policies, settings).map(
                |(destinations, refusals)| {
                    (destinations.into_iter().map(Arc::new).collect(), refusals)
                },
            );
            Arc::new(Yield {
                key,
                order: (
                    route.metadata.creation_timestamp.clone(),
                    route.source.clone(),
                    route.kind,
                ),
                origin: route.origin.to_string(),
                destinations,
                _object: object,
            })
        };
        let mut came = Vec::new();
        let mut see = |key: Key, make: &dyn Fn() -> Arc<Yield>| match self.yields.get_mut(&key) {
            Some((seen, _)) => *seen = build,
            None => {
                let route = make();
                self.yields.insert(key, (build, Arc::clone(&route)));
                came.push(route);
            }
        };
        for route in &inputs.routes {
            let key = (RouteKind::Http, address(route));
            see(key, &|| made(key, http_view(route), route.clone()));
        }
        for route in &inputs.grpc_routes {
            let key = (RouteKind::Grpc, address(route));
            see(key, &|| made(key, grpc_view(route), route.clone()));
        }
        // Touched names matter only to a build that has a previous one to change.
        let noting = self.previous.is_some();
        let mut touched = BTreeSet::new();
        let held = self.yields.len();
        self.yields.retain(|_, (seen, route)| {
            let kept = *seen == build;
            if !kept && noting {
                touched.extend(route.hosts().cloned());
            }
            kept
        });
        let yields = &self.yields;
        if yields.len() < held {
            self.ordered.retain(|route| yields.contains_key(&route.key));
        }
        if noting {
            touched.extend(came.iter().flat_map(|route| route.hosts().cloned()));
        }
        // A few routes that came go in their places; many (the first build) are sorted in.
        if came.len() > 64 {
            self.ordered.extend(came);
            self.ordered.sort_by(|a, b| a.order.cmp(&b.order));
        } else {
            for route in came {
                let at = (self.ordered).partition_point(|other| other.order <= route.order);
                self.ordered.insert(at, route);
            }
        }
        touched
    }
}

/// Where a shared object lives: the same for as long as it is held.
/// Gateways whose `gatewayClassName` names no GatewayClass (a misspelt class, most often):
/// neither VPC Lattice's nor another implementation's, so nothing serves them or their routes.
fn classless_gateways(inputs: &Inputs, settings: &Settings) -> Vec<InvalidInput> {
    let classes: BTreeSet<&str> = (inputs.classes.iter())
        .filter_map(|class| class.object.metadata.name.as_deref())
        .chain([settings.gateway_class.as_str()])
        .collect();
    (inputs.gateways.iter())
        .filter(|gateway| !classes.contains(gateway.object.spec.gateway_class_name.as_str()))
        .map(|gateway| {
            let metadata = &gateway.object.metadata;
            InvalidInput {
                origin: gateway.origin.clone(),
                kind: "Gateway".to_string(),
                object: Some(format!(
                    "{}/{}",
                    metadata.namespace.as_deref().unwrap_or_default(),
                    metadata.name.as_deref().unwrap_or_default()
                )),
                reason: format!(
                    "gatewayClassName {:?} names no GatewayClass (VPC Lattice's is {:?}): the Gateway is no service network, and routes attached to it are not served",
                    gateway.object.spec.gateway_class_name, settings.gateway_class
                ),
            }
        })
        .collect()
}

fn address<T>(object: &Arc<T>) -> usize {
    Arc::as_ptr(object) as usize
}

/// The service that owns each discovered name: the first by ARN when two answer to the same
/// name (another account's custom domain, say); each other claim is reported.
fn owners(discovered: &[Service]) -> (BTreeMap<String, &Service>, Vec<InvalidInput>) {
    let mut owners: BTreeMap<String, &Service> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut by_arn: Vec<&Service> = discovered.iter().collect();
    by_arn.sort_by(|a, b| a.origin.arn.cmp(&b.origin.arn));
    for service in by_arn {
        for name in service.names() {
            match owners.get(&name) {
                Some(owner) => conflicts.push(InvalidInput {
                    origin: "vpc-lattice".to_string(),
                    kind: DISCOVERED_KIND.to_string(),
                    object: Some(service.origin.arn.clone()),
                    reason: format!(
                        "hostname {name} is also the name of VPC Lattice service {} ({}), which keeps it",
                        owner.origin.name, owner.origin.arn
                    ),
                }),
                None => {
                    owners.insert(name, service);
                }
            }
        }
    }
    (owners, conflicts)
}

/// The kind under which a discovered VPC Lattice service is reported.
pub const DISCOVERED_KIND: &str = "VpcLatticeService";

/// What this module reads of a route of either kind.
struct Route<'a> {
    kind: RouteKind,
    origin: &'a str,
    source: ObjectRef,
    metadata: &'a ObjectMeta,
    hostnames: &'a [String],
    parents: Vec<ParentRef<'a>>,
    status: Vec<StatusParent<'a>>,
    /// Each rule's `timeouts` and `retry`; empty for a kind without them.
    rules: Vec<RuleCalls<'a>>,
}

/// What one rule of a route says of its calls.
struct RuleCalls<'a> {
    request: Option<&'a str>,
    backend_request: Option<&'a str>,
    retry: Option<&'a HttpRouteRulesRetry>,
}

fn accepted_condition(conditions: &[Condition]) -> Option<Result<(), &str>> {
    let accepted = conditions
        .iter()
        .find(|condition| condition.type_ == "Accepted")?;
    match accepted.status.as_str() {
        "True" => Some(Ok(())),
        "False" => Some(Err(accepted.reason.as_str())),
        _ => None,
    }
}

/// A route's `parentRefs` entry.
struct ParentRef<'a> {
    group: Option<&'a str>,
    kind: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
    section_name: Option<&'a str>,
    port: Option<i32>,
}

/// A route's `status.parents` entry: what a controller said of one parent.
struct StatusParent<'a> {
    parent: ParentRef<'a>,
    controller: &'a str,
    /// The entry's `Accepted` condition: `Ok` when `True`, the reason when `False`, `None`
    /// when the controller has not decided.
    accepted: Option<Result<(), &'a str>>,
}

// The two kinds' generated types share field names, not a type.
macro_rules! parent_ref {
    ($parent:expr) => {
        ParentRef {
            group: $parent.group.as_deref(),
            kind: $parent.kind.as_deref(),
            namespace: $parent.namespace.as_deref(),
            name: &$parent.name,
            section_name: $parent.section_name.as_deref(),
            port: $parent.port,
        }
    };
}

macro_rules! view {
    ($route:expr, $kind:expr) => {
        Route {
            kind: $kind,
            origin: &$route.origin,
            source: object_ref(&$route.object.metadata),
            metadata: &$route.object.metadata,
            hostnames: $route.object.spec.hostnames.as_deref().unwrap_or_default(),
            parents: ($route.object.spec.parent_refs.iter().flatten())
                .map(|parent| parent_ref!(parent))
                .collect(),
            status: ($route.object.status.iter())
                .flat_map(|status| &status.parents)
                .map(|status| StatusParent {
                    parent: parent_ref!(status.parent_ref),
                    controller: &status.controller_name,
                    accepted: accepted_condition(&status.conditions),
                })
                .collect(),
            rules: Vec::new(),
        }
    };
}

fn http_view(route: &Sourced<HttpRoute>) -> Route<'_> {
    let rules = route.object.spec.rules.iter().flatten();
    Route {
        rules: rules
            .map(|rule| {
                let timeouts = rule.timeouts.as_ref();
                RuleCalls {
                    request: timeouts.and_then(|t| t.request.as_deref()),
                    backend_request: timeouts.and_then(|t| t.backend_request.as_deref()),
                    retry: rule.retry.as_ref(),
                }
            })
            .collect(),
        ..view!(route, RouteKind::Http)
    }
}

fn grpc_view(route: &Sourced<GrpcRoute>) -> Route<'_> {
    view!(route, RouteKind::Grpc)
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

/// The destinations one route yields and why any of its names is not served, or why the route
/// cannot be served at all.
fn route_destinations(
    route: &Route<'_>,
    gateways: &LatticeGateways,
    policies: &AuthPolicies,
    settings: &Settings,
) -> Result<(Vec<Destination>, Vec<String>), String> {
    if route.parents.is_empty() {
        return Err(
            "attaches to nothing: spec.parentRefs is empty, so no Gateway serves the route"
                .to_string(),
        );
    }
    let attachment = gateways.attach(route);
    let admitted = attachment.admitted;
    // Prefer TLS: a route reachable over HTTPS is never called in plain text.
    let rank = |admitted: &&Admitted<'_>| {
        let listener = admitted.listener;
        (listener.protocol == "HTTPS", listener.port)
    };
    let Some(best) = admitted.iter().max_by_key(rank) else {
        // No Lattice parent at all is another implementation's route; parents that all
        // refused it are reported.
        let mut refusals = attachment.unknown;
        refusals.extend(attachment.refusals);
        return match refusals.is_empty() {
            true => Ok((Vec::new(), Vec::new())),
            false => Err(refusals.join("; ")),
        };
    };
    if route.kind == RouteKind::Grpc && best.listener.protocol != "HTTPS" {
        return Err(format!(
            "a GRPCRoute needs an HTTPS listener (VPC Lattice serves gRPC over HTTP/2 with TLS); listener {} is {}",
            best.listener.name, best.listener.protocol
        ));
    }

    // Served through the parents that admit it; a parent that names nothing is still reported.
    let mut refusals = attachment.unknown;
    let mut hosts: Vec<(String, Trust, &Admitted<'_>)> = Vec::new();
    for hostname in route.hostnames {
        let host = checked_host(hostname)?;
        let serving = (admitted.iter())
            .filter(|admitted| admitted.hostnames.iter().any(|name| name == hostname))
            .max_by_key(rank);
        match serving {
            Some(admitted) => hosts.push((host, settings.custom_domain_trust(), admitted)),
            None => refusals.push(format!(
                "hostname {host} is outside the hostname of every listener the route attaches to"
            )),
        }
    }
    let annotations = route.metadata.annotations.as_ref();
    if let Some(assigned) = annotations.and_then(|a| a.get(ASSIGNED_DOMAIN_ANNOTATION)) {
        match assigned_name(assigned, &route.source) {
            Ok(host) => hosts.push((host, Trust::SystemRoots, best)),
            Err(reason) => refusals.push(reason),
        }
    }
    if hosts.is_empty() && refusals.is_empty() {
        return Err(format!(
            "names no host: spec.hostnames is empty, and VPC Lattice has not yet given the route a name (annotation {ASSIGNED_DOMAIN_ANNOTATION})"
        ));
    }
    let networks: BTreeSet<ObjectRef> = (admitted.iter())
        .map(|admitted| admitted.gateway.clone())
        .collect();
    let auth_policies = policies.guarding(&networks, route.kind, &route.source);
    let calls = route_calls(route, settings.calls, &mut refusals);
    let mut seen = BTreeSet::new();
    let mut destinations = Vec::new();
    for (host, trust, admitted) in hosts {
        if !seen.insert(host.clone()) {
            continue;
        }
        let listener = admitted.listener;
        let port = u16::try_from(listener.port).map_err(|_| {
            format!(
                "listener {} has an invalid port {}",
                listener.name, listener.port
            )
        })?;
        destinations.push(Destination {
            pinned: settings.pinned.get(&host).cloned().unwrap_or_default(),
            host,
            port,
            tls: (listener.protocol == "HTTPS").then_some(trust),
            protocol: match route.kind {
                RouteKind::Http => Protocol::Http,
                RouteKind::Grpc => Protocol::Grpc,
            },
            route: Some(RouteOrigin {
                route: route.source.clone(),
                kind: route.kind,
                auth_policies: auth_policies.clone(),
            }),
            service: None,
            calls,
        });
    }
    Ok((destinations, refusals))
}

/// The calls of a route's destinations: each rule's `timeouts`, `0s` for no limit. A rule
/// without `timeouts` has the defaults; one that sets only `request` has no limit per attempt
/// but that. The sidecar routes the host as a whole and VPC Lattice picks the rule, so when the
/// rules differ the longest limit holds: no rule's requests are cut short. A value that is not
/// a duration is reported, and the default holds for it. Likewise a rule's `retry` (the
/// experimental channel's) holds for the whole host: the most attempts, every code and the
/// longest backoff of the rules that have one.
fn route_calls(route: &Route<'_>, defaults: Calls, refusals: &mut Vec<String>) -> Calls {
    // `None` is no limit.
    let mut limit = |field: &str, value: Option<&str>, default: Option<Duration>| {
        let Some(value) = value else {
            return default;
        };
        match gateway_duration(value) {
            Ok(limit) => Calls::limit(limit),
            Err(why) => {
                refusals.push(format!(
                    "timeouts.{field} {value:?} is not a duration ({why}); the default holds"
                ));
                default
            }
        }
    };
    let limits = (route.rules.iter()).map(|rule| {
        let attempt_default = rule.request.map_or(defaults.attempt_timeout, |_| None);
        (
            limit("request", rule.request, defaults.request_timeout),
            limit("backendRequest", rule.backend_request, attempt_default),
        )
    });
    let longest = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| a.max(b));
    let limits =
        limits.reduce(|(r, a), (request, attempt)| (longest(r, request), longest(a, attempt)));
    let mut calls = match limits {
        Some((request_timeout, attempt_timeout)) => Calls {
            request_timeout,
            attempt_timeout,
            ..defaults
        },
        None => defaults,
    };
    let retries = (route.rules.iter()).filter_map(|rule| rule_retry(rule.retry?, refusals));
    if let Some((attempts, retry)) = retries.reduce(|(a, one), (b, other)| {
        let backoff = one.backoff.max(other.backoff);
        let codes = one.codes.union(other.codes);
        (a.max(b), RouteRetry { codes, backoff })
    }) {
        calls.retries = attempts.unwrap_or(calls.retries);
        calls.retry = Some(retry);
    }
    calls
}

/// One rule's `retry`: its attempts (`None`: the default number), and its codes (a 503 when it
/// lists none) and backoff. A field that cannot be used is reported and left out.
fn rule_retry(
    retry: &HttpRouteRulesRetry,
    refusals: &mut Vec<String>,
) -> Option<(Option<u32>, RouteRetry)> {
    let attempts = retry.attempts.and_then(|attempts| {
        let allowed = u32::try_from(attempts)
            .ok()
            .filter(|n| *n <= MAX_ROUTE_RETRIES);
        if allowed.is_none() {
            refusals.push(format!(
                "retry.attempts {attempts} is not from 0 to {MAX_ROUTE_RETRIES}; the default holds"
            ));
        }
        allowed
    });
    let mut codes = StatusCodes::default();
    for code in retry.codes.iter().flatten() {
        if !u16::try_from(*code).is_ok_and(|code| codes.insert(code)) {
            refusals.push(format!(
                "retry.codes {code} is not a status from {} to {}; left out",
                StatusCodes::FIRST,
                StatusCodes::LAST
            ));
        }
    }
    if codes.is_empty() {
        codes.insert(503);
    }
    let backoff = retry
        .backoff
        .as_deref()
        .and_then(|backoff| match gateway_duration(backoff) {
            Ok(wait) => Calls::limit(wait),
            Err(why) => {
                refusals.push(format!(
                    "retry.backoff {backoff:?} is not a duration ({why}); Envoy's own holds"
                ));
                None
            }
        });
    Some((attempts, RouteRetry { codes, backoff }))
}

/// The most retries a route may ask for.
const MAX_ROUTE_RETRIES: u32 = 10;

/// A Gateway API duration (GEP-2257): one to four parts, each up to five digits and a unit
/// (`h`, `m`, `s` or `ms`), as in `1h30m` or `500ms`.
fn gateway_duration(text: &str) -> Result<Duration, &'static str> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&digits) {
            return Err("each part is one to five digits and a unit");
        }
        let number: u32 = rest[..digits].parse().map_err(|_| "not a number")?;
        rest = &rest[digits..];
        let (unit, length) = match rest.as_bytes() {
            [b'm', b's', ..] => (Duration::from_millis(1), 2),
            [b'h', ..] => (Duration::from_secs(3600), 1),
            [b'm', ..] => (Duration::from_secs(60), 1),
            [b's', ..] => (Duration::from_secs(1), 1),
            _ => return Err("the units are h, m, s and ms"),
        };
        rest = &rest[length..];
        total += unit * number;
        parts += 1;
    }
    match parts {
        0 => Err("empty"),
        1..=4 => Ok(total),
        _ => Err("at most four parts"),
    }
}

/// The Lattice-assigned name of `route`'s service, when `name` has the shape VPC Lattice gives
/// it: `<service>-<service id>.<hash>.vpc-lattice-svcs.<region>.on.aws`, where the AWS Gateway
/// API Controller names the service `<route name, 20 characters>-<namespace, 18 characters>`.
/// Anyone who may edit a route may write the annotation; this shape keeps it to the route's own.
fn assigned_name(name: &str, route: &ObjectRef) -> Result<String, String> {
    let host = checked_host(name)?;
    let refuse = |why: &str| {
        Err(format!(
            "the {ASSIGNED_DOMAIN_ANNOTATION} annotation {host:?} is not served: {why}"
        ))
    };
    let labels: Vec<&str> = host.split('.').collect();
    let [first, _hash, "vpc-lattice-svcs", _region, "on", "aws"] = labels.as_slice() else {
        return refuse(
            "it is not a name VPC Lattice assigns (<service>-<id>.<hash>.vpc-lattice-svcs.<region>.on.aws)",
        );
    };
    let service = lattice_service_name(&route.name, &route.namespace);
    let id = first
        .strip_prefix(service.as_str())
        .and_then(|rest| rest.strip_prefix('-'));
    match id {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(host),
        _ => refuse(&format!(
            "VPC Lattice names this route's service {service}, and the name is not that service's"
        )),
    }
}

/// The name the AWS Gateway API Controller gives the VPC Lattice service of a route: its name
/// cut to 20 characters and its namespace cut to 18, each without a leading or trailing `-`.
fn lattice_service_name(name: &str, namespace: &str) -> String {
    let cut = |text: &str, length: usize| {
        let end = text.len().min(length);
        text.get(..end)
            .unwrap_or(text)
            .trim_matches('-')
            .to_string()
    };
    format!("{}-{}", cut(name, 20), cut(namespace, 18)).to_ascii_lowercase()
}

/// A host name a sidecar can route to: lower-cased, RFC 1123, no wildcard, no IP address.
pub(super) fn checked_host(hostname: &str) -> Result<String, String> {
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

/// IAMAuthPolicies by the Gateway, HTTPRoute or GRPCRoute they target.
struct AuthPolicies {
    by_target: BTreeMap<(&'static str, ObjectRef), Vec<ObjectRef>>,
}

impl AuthPolicies {
    fn new(policies: &[Shared<IamAuthPolicy>]) -> Self {
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
