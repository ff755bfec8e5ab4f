//! Route attachment as Gateway API defines it: which listeners of which VPC Lattice Gateways a
//! route's `parentRefs` attach it to, and which of its host names each listener serves.
//!
//! A listener admits a route only when all of these hold (Gateway API `Listener`,
//! `AllowedRoutes`, `ParentReference`):
//! - `sectionName` and `port`, when the parent reference sets them, name this listener;
//! - `allowedRoutes.namespaces` admits the route's namespace: `Same` (the default) the
//!   Gateway's own, `All` any, `Selector` those whose labels match;
//! - `allowedRoutes.kinds` lists the route's kind, or is empty and the protocol carries it
//!   (HTTPRoute and GRPCRoute over HTTP and HTTPS);
//! - the route's host names intersect the listener's `hostname`: only the names inside it are
//!   served through that listener;
//! - when acceptance is required, the VPC Lattice controller has written `Accepted=True` for
//!   that parent in the route's `status.parents`.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
    GatewayListenersAllowedRoutesNamespacesSelector as Selector,
};

use super::{GATEWAY_GROUP, LATTICE_CONTROLLER, ParentRef, Route};
use crate::model::{ObjectRef, RouteKind};
use crate::provider::Inputs;

/// A listener that admits a route, with the route's host names it serves.
pub(super) struct Admitted<'a> {
    pub gateway: ObjectRef,
    pub listener: &'a GatewayListeners,
    /// The route's host names inside the listener's `hostname` (all of them without one).
    pub hostnames: Vec<String>,
}

/// Where a route attaches, and why any of its Lattice parents did not admit it.
pub(super) struct Attachment<'a> {
    pub admitted: Vec<Admitted<'a>>,
    pub refusals: Vec<String>,
    /// Parents that name a Gateway or listener that does not exist: mistakes to report even
    /// when other parents admit the route, where a listener that does not admit it is not.
    pub unknown: Vec<String>,
}

/// The Gateways of Lattice GatewayClasses, by `namespace/name`, and the labels of every
/// namespace (for `allowedRoutes.namespaces.from: Selector`).
pub(super) struct LatticeGateways<'a> {
    lattice: BTreeMap<ObjectRef, (&'a Gateway, &'a str)>,
    other: BTreeSet<ObjectRef>,
    namespace_labels: BTreeMap<&'a str, &'a BTreeMap<String, String>>,
    need_acceptance: bool,
}

impl<'a> LatticeGateways<'a> {
    /// Gateways of `class_name`, or of any class the AWS Gateway API Controller runs. With
    /// `need_acceptance`, a parent counts only once its controller has accepted the route.
    pub fn new(inputs: &'a Inputs, class_name: &'a str, need_acceptance: bool) -> Self {
        let mut controllers: BTreeMap<&str, &str> = inputs
            .classes
            .iter()
            .filter(|class| class.object.spec.controller_name == LATTICE_CONTROLLER)
            .filter_map(|class| class.object.metadata.name.as_deref())
            .map(|name| (name, LATTICE_CONTROLLER))
            .collect();
        let configured = inputs
            .classes
            .iter()
            .find(|class| class.object.metadata.name.as_deref() == Some(class_name))
            .map_or(LATTICE_CONTROLLER, |class| {
                class.object.spec.controller_name.as_str()
            });
        controllers.insert(class_name, configured);
        let mut gateways = Self {
            lattice: BTreeMap::new(),
            other: BTreeSet::new(),
            namespace_labels: BTreeMap::new(),
            need_acceptance,
        };
        for gateway in &inputs.gateways {
            let metadata = &gateway.object.metadata;
            let key = ObjectRef {
                namespace: metadata.namespace.clone().unwrap_or_default(),
                name: metadata.name.clone().unwrap_or_default(),
            };
            match controllers.get(gateway.object.spec.gateway_class_name.as_str()) {
                Some(controller) => {
                    gateways.lattice.insert(key, (&gateway.object, controller));
                }
                None => {
                    gateways.other.insert(key);
                }
            }
        }
        for namespace in &inputs.namespaces {
            let metadata = &namespace.object.metadata;
            if let (Some(name), Some(labels)) = (&metadata.name, &metadata.labels) {
                gateways.namespace_labels.insert(name, labels);
            }
        }
        gateways
    }

    /// Every listener that admits `route` through its Lattice parents, and why each other
    /// parent does not (one that names a Gateway or listener that does not exist among them):
    /// a bad parent does not take the good ones with it.
    pub fn attach(&self, route: &Route<'_>) -> Attachment<'a> {
        let mut attachment = Attachment {
            admitted: Vec::new(),
            refusals: Vec::new(),
            unknown: Vec::new(),
        };
        for parent in &route.parents {
            let group = parent.group.unwrap_or(GATEWAY_GROUP);
            if group != GATEWAY_GROUP || parent.kind.unwrap_or("Gateway") != "Gateway" {
                continue;
            }
            let key = ObjectRef {
                namespace: parent
                    .namespace
                    .unwrap_or(&route.source.namespace)
                    .to_string(),
                name: parent.name.to_string(),
            };
            let Some(&(gateway, controller)) = self.lattice.get(&key) else {
                if !self.other.contains(&key) {
                    let unknown = format!("unknown parent: Gateway {key} does not exist");
                    attachment.unknown.push(unknown);
                }
                continue;
            };
            let named = match named_listeners(gateway, parent, &key) {
                Ok(named) => named,
                Err(unknown) => {
                    attachment.unknown.push(unknown);
                    continue;
                }
            };
            if self.need_acceptance {
                match acceptance(route, parent, &key, controller) {
                    Some(Ok(())) => {}
                    Some(Err(reason)) => {
                        attachment.refusals.push(format!(
                            "{controller} did not accept it on Gateway {key}: {reason}"
                        ));
                        continue;
                    }
                    None => {
                        attachment.refusals.push(format!(
                            "not yet accepted on Gateway {key}: status.parents has no Accepted condition from {controller} for this parent"
                        ));
                        continue;
                    }
                }
            }
            for listener in named {
                match self.admits(listener, &key, route) {
                    Ok(hostnames) => attachment.admitted.push(Admitted {
                        gateway: key.clone(),
                        listener,
                        hostnames,
                    }),
                    Err(reason) => attachment.refusals.push(reason),
                }
            }
        }
        attachment
    }

    /// The route's host names that `listener` of `gateway` serves, or why it admits none.
    fn admits(
        &self,
        listener: &GatewayListeners,
        gateway: &ObjectRef,
        route: &Route<'_>,
    ) -> Result<Vec<String>, String> {
        let at = || format!("listener {} of Gateway {gateway}", listener.name);
        let allowed = listener.allowed_routes.as_ref();
        let namespaces = allowed.and_then(|allowed| allowed.namespaces.as_ref());
        let route_namespace = route.source.namespace.as_str();
        match namespaces.and_then(|namespaces| namespaces.from.as_ref()) {
            None | Some(From::Same) if route_namespace != gateway.namespace => {
                return Err(format!(
                    "{} admits routes of its own namespace only (allowedRoutes.namespaces.from: Same)",
                    at()
                ));
            }
            Some(From::Selector) => {
                let selector = namespaces.and_then(|namespaces| namespaces.selector.as_ref());
                let labels = self.namespace_labels.get(route_namespace).copied();
                if !selector.is_some_and(|selector| selects(selector, labels)) {
                    return Err(format!(
                        "{} admits routes of the namespaces its selector picks, and namespace {route_namespace} is not one (allowedRoutes.namespaces.selector)",
                        at()
                    ));
                }
            }
            None | Some(From::Same | From::All) => {}
        }
        if !kind_allowed(listener, route.kind) {
            return Err(format!(
                "{} does not admit {}s (allowedRoutes.kinds, or its protocol {})",
                at(),
                route.kind,
                listener.protocol
            ));
        }
        let Some(listener_host) = &listener.hostname else {
            return Ok(route.hostnames.to_vec());
        };
        let inside: Vec<String> = (route.hostnames.iter())
            .filter(|host| within(listener_host, host))
            .cloned()
            .collect();
        if inside.is_empty() && !route.hostnames.is_empty() {
            return Err(format!(
                "{} serves {listener_host} only, and none of the route's host names is within it",
                at()
            ));
        }
        Ok(inside)
    }
}

/// The listeners a parent reference names: by `sectionName` and `port` when it sets them.
fn named_listeners<'a>(
    gateway: &'a Gateway,
    parent: &ParentRef<'_>,
    key: &ObjectRef,
) -> Result<Vec<&'a GatewayListeners>, String> {
    let named: Vec<_> = (gateway.spec.listeners.iter())
        .filter(|listener| parent.section_name.is_none_or(|name| listener.name == name))
        .filter(|listener| parent.port.is_none_or(|port| listener.port == port))
        .collect();
    if named.is_empty() {
        let wanted = match (parent.section_name, parent.port) {
            (Some(name), Some(port)) => format!("named {name:?} on port {port}"),
            (Some(name), None) => format!("named {name:?}"),
            (None, Some(port)) => format!("on port {port}"),
            (None, None) => "at all".to_string(),
        };
        return Err(format!(
            "unknown parent: Gateway {key} has no listener {wanted}"
        ));
    }
    Ok(named)
}

/// What `controller` said in the route's status of this parent: accepted, refused (and why),
/// or nothing yet.
fn acceptance<'r>(
    route: &Route<'r>,
    parent: &ParentRef<'_>,
    key: &ObjectRef,
    controller: &str,
) -> Option<Result<(), &'r str>> {
    let status = route.status.iter().find(|status| {
        status.controller == controller
            && status.parent.group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            && status.parent.kind.unwrap_or("Gateway") == "Gateway"
            && status.parent.name == key.name
            && status.parent.namespace.unwrap_or(&route.source.namespace) == key.namespace
            && status.parent.section_name == parent.section_name
            && status.parent.port == parent.port
    })?;
    status.accepted
}

/// Whether a label selector picks a namespace with `labels` (none known: no labels).
fn selects(selector: &Selector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let value = |key: &str| labels.and_then(|labels| labels.get(key));
    let labels_match =
        (selector.match_labels.iter().flatten()).all(|(key, wanted)| value(key) == Some(wanted));
    let expressions_match = (selector.match_expressions.iter().flatten()).all(|expression| {
        let values = expression.values.as_deref().unwrap_or_default();
        let found = value(&expression.key);
        match expression.operator.as_str() {
            "In" => found.is_some_and(|found| values.contains(found)),
            "NotIn" => found.is_none_or(|found| !values.contains(found)),
            "Exists" => found.is_some(),
            "DoesNotExist" => found.is_none(),
            // An operator the API server would have refused: select nothing.
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Whether `listener` admits routes of `kind`: listed in `allowedRoutes.kinds`, or, when that
/// is empty, carried by its protocol.
fn kind_allowed(listener: &GatewayListeners, kind: RouteKind) -> bool {
    let kinds = (listener.allowed_routes.as_ref())
        .and_then(|allowed| allowed.kinds.as_deref())
        .unwrap_or_default();
    if kinds.is_empty() {
        return matches!(listener.protocol.as_str(), "HTTP" | "HTTPS");
    }
    kinds.iter().any(|allowed| {
        allowed.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            && allowed.kind == kind.as_str()
    })
}

/// Whether `host` is inside a listener's `hostname`: equal to it, or, for `*.suffix`, one or
/// more labels followed by `.suffix`. Both sides compare without case.
pub(super) fn within(listener: &str, host: &str) -> bool {
    let listener = listener.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    match listener.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => listener == host,
    }
}
