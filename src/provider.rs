//! Sources of Gateway API objects and their conversion into the [`Mesh`](crate::model::Mesh).
//!
//! A provider (the manifest directory here; the Kubernetes API elsewhere) produces [`Inputs`]:
//! the HTTPRoutes, Gateways, GatewayClasses, IAMAuthPolicies and Namespaces it has seen, each with where it came from. The
//! [`lattice`] module turns them into destinations, reporting every object it has to skip.

pub mod discovery;
pub mod file;
pub mod kubernetes;
pub mod lattice;
pub mod manifests;
pub mod policy;

use std::fmt;
use std::sync::Arc;

use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use gateway_api::grpcroutes::GrpcRoute;
use k8s_openapi::api::core::v1::Namespace;

/// The Gateway API objects a provider has observed.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub routes: Vec<Shared<HttpRoute>>,
    pub grpc_routes: Vec<Shared<GrpcRoute>>,
    pub gateways: Vec<Shared<Gateway>>,
    pub classes: Vec<Shared<GatewayClass>>,
    pub auth_policies: Vec<Shared<policy::IamAuthPolicy>>,
    /// Namespaces, for their labels (`allowedRoutes.namespaces.from: Selector`).
    pub namespaces: Vec<Shared<Namespace>>,
}

/// An object as every rebuild shares it: read once, never copied, and the same allocation for
/// as long as it is unchanged.
pub type Shared<T> = Arc<Sourced<T>>;

/// An object together with where it was read: a file and document, or the API server.
#[derive(Clone, Debug)]
pub struct Sourced<T> {
    pub origin: String,
    pub object: T,
}

/// An input that was skipped, with enough context for a user to find and fix it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct InvalidInput {
    /// Where the object was read (`examples/routes.yaml#2`, or `kubernetes`).
    pub origin: String,
    /// The object's kind, or `document` when the text could not be read as an object.
    pub kind: String,
    /// `namespace/name` when known.
    pub object: Option<String>,
    pub reason: String,
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.kind)?;
        if let Some(object) = &self.object {
            write!(f, " {object}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a provider hands on after each change: the objects, the documents it had to skip, and
/// what it read past in objects it kept (a field their schema does not have).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub inputs: Inputs,
    pub invalid: Vec<InvalidInput>,
    /// Reported like skipped inputs, `reason` saying what was ignored; the object is served.
    pub warnings: Vec<InvalidInput>,
}

impl Observed {
    /// Adds `other`'s objects (shared, not copied) and skipped documents after these.
    pub fn append(&mut self, other: &Observed) {
        let (inputs, more) = (&mut self.inputs, &other.inputs);
        inputs.routes.extend_from_slice(&more.routes);
        inputs.grpc_routes.extend_from_slice(&more.grpc_routes);
        inputs.gateways.extend_from_slice(&more.gateways);
        inputs.classes.extend_from_slice(&more.classes);
        inputs.auth_policies.extend_from_slice(&more.auth_policies);
        inputs.namespaces.extend_from_slice(&more.namespaces);
        self.invalid.extend_from_slice(&other.invalid);
        self.warnings.extend_from_slice(&other.warnings);
    }
}

/// The most text one object may hold: its keys, strings and numbers as written. Gateway API
/// objects take a few kilobytes; one over this is refused before it is decoded or translated.
pub const MAX_OBJECT_BYTES: usize = 512 * 1024;
/// How deep one object may nest; the deepest Gateway API schema needs about ten levels.
pub const MAX_OBJECT_DEPTH: usize = 32;

/// A parsed document as a tree, to be measured before it is decoded.
pub trait Tree {
    /// The bytes of this node's own text (a string, a number; for a mapping, its keys).
    fn own_bytes(&self) -> usize;
    /// Puts the values beneath this node on `pending`, one level deeper.
    fn push_children<'a>(&'a self, depth: usize, pending: &mut Vec<(&'a Self, usize)>);
}

/// Refuses an object beyond [`MAX_OBJECT_BYTES`] or [`MAX_OBJECT_DEPTH`], with the reason. Stops
/// at the first limit crossed, so a huge object costs no more than the limit to measure.
pub fn check_object_size<T: Tree>(root: &T) -> Result<(), String> {
    let mut bytes = 0usize;
    let mut pending = vec![(root, 1usize)];
    while let Some((node, depth)) = pending.pop() {
        if depth > MAX_OBJECT_DEPTH {
            return Err(format!(
                "nests deeper than {MAX_OBJECT_DEPTH} levels; refused before decoding"
            ));
        }
        bytes += node.own_bytes();
        if bytes > MAX_OBJECT_BYTES {
            return Err(format!(
                "holds more than {} KiB of text; refused before decoding",
                MAX_OBJECT_BYTES / 1024
            ));
        }
        node.push_children(depth + 1, &mut pending);
    }
    Ok(())
}

impl Tree for serde_json::Value {
    fn own_bytes(&self) -> usize {
        match self {
            Self::String(text) => text.len(),
            Self::Object(map) => map.keys().map(String::len).sum(),
            Self::Number(_) | Self::Bool(_) | Self::Null | Self::Array(_) => 1,
        }
    }

    fn push_children<'a>(&'a self, depth: usize, pending: &mut Vec<(&'a Self, usize)>) {
        match self {
            Self::Array(items) => pending.extend(items.iter().map(|item| (item, depth))),
            Self::Object(map) => pending.extend(map.values().map(|value| (value, depth))),
            _ => {}
        }
    }
}

impl Tree for serde_yaml_ng::Value {
    fn own_bytes(&self) -> usize {
        match self {
            Self::String(text) => text.len(),
            Self::Mapping(map) => map.keys().map(|key| key.own_bytes()).sum(),
            Self::Tagged(tagged) => tagged.tag.to_string().len(),
            Self::Number(_) | Self::Bool(_) | Self::Null | Self::Sequence(_) => 1,
        }
    }

    fn push_children<'a>(&'a self, depth: usize, pending: &mut Vec<(&'a Self, usize)>) {
        match self {
            Self::Sequence(items) => pending.extend(items.iter().map(|item| (item, depth))),
            Self::Mapping(map) => pending.extend(
                map.iter()
                    .flat_map(|(key, value)| [(key, depth), (value, depth)]),
            ),
            Self::Tagged(tagged) => pending.push((&tagged.value, depth)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn objects_beyond_the_size_or_depth_limit_are_refused() {
        let small = serde_json::json!({"spec": {"hostnames": ["a.example.com"]}});
        assert_eq!(check_object_size(&small), Ok(()));

        let large = serde_json::json!({"spec": {"rules": vec!["x".repeat(1024); 513]}});
        let reason = check_object_size(&large).unwrap_err();
        assert!(reason.contains("512 KiB"), "{reason}");

        let mut deep = serde_json::json!("bottom");
        for _ in 0..MAX_OBJECT_DEPTH {
            deep = serde_json::json!([deep]);
        }
        let reason = check_object_size(&deep).unwrap_err();
        assert!(reason.contains("32 levels"), "{reason}");

        // The same in YAML.
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&format!("spec:\n  k: {}\n", "v".repeat(600 * 1024))).unwrap();
        assert!(check_object_size(&yaml).is_err());
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str("spec: {a: [1, 2]}").unwrap();
        assert_eq!(check_object_size(&yaml), Ok(()));
    }
}
