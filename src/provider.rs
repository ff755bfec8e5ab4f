//! Sources of Gateway API objects and their conversion into the [`Mesh`](crate::model::Mesh).
//!
//! A provider (the manifest directory here; the Kubernetes API elsewhere) produces [`Inputs`]:
//! the HTTPRoutes, Gateways, GatewayClasses and IAMAuthPolicies it has seen, each with where it came from. The
//! [`lattice`] module turns them into destinations, reporting every object it has to skip.

pub mod file;
pub mod kubernetes;
pub mod lattice;
pub mod manifests;
pub mod policy;

use std::fmt;

use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use gateway_api::httproutes::HttpRoute;

/// The Gateway API objects a provider has observed.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub routes: Vec<Sourced<HttpRoute>>,
    pub gateways: Vec<Sourced<Gateway>>,
    pub classes: Vec<Sourced<GatewayClass>>,
    pub auth_policies: Vec<Sourced<policy::IamAuthPolicy>>,
}

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

/// What a provider hands on after each change: the objects and the documents it had to skip.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub inputs: Inputs,
    pub invalid: Vec<InvalidInput>,
}
