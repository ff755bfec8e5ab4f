//! Serving Envoy: a layer that takes its own input ([`resources`]), keeps consistent, versioned
//! snapshots of it, and serves them over the Aggregated Discovery Service (state of the world and
//! incremental). The layers above plug in through interfaces it owns: authentication
//! ([`auth::Authenticate`]) and the streams' events ([`events::Callbacks`], which the proxy
//! registry and the metrics implement).

pub mod auth;
mod delta;
pub mod events;
pub mod holdings;
pub mod json;
pub mod limits;
pub mod registry;
pub mod resources;
pub mod server;
pub mod snapshot;
mod sotw;
mod stream;
mod transport;
pub mod wire;

pub use transport::AdsService;

/// Type URLs of the resources served, in the order pushes are made: clusters before the
/// listeners and routes that use them, secrets last (make-before-break, `xds_protocol.rst`
/// "Eventual consistency considerations").
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    /// Virtual hosts fetched on demand (VHDS), over incremental streams only.
    pub const VIRTUAL_HOST: &str = "type.googleapis.com/envoy.config.route.v3.VirtualHost";

    /// Every served type, in push order.
    pub const ORDER: [&str; 5] = [CLUSTER, LISTENER, ROUTE, VIRTUAL_HOST, SECRET];

    /// The short name used in metrics and tables (`CDS`, `LDS`, ...).
    pub fn short(type_url: &str) -> &str {
        match type_url {
            CLUSTER => "CDS",
            LISTENER => "LDS",
            ROUTE => "RDS",
            SECRET => "SDS",
            VIRTUAL_HOST => "VHDS",
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment" => "EDS",
            other => other.rsplit('.').next().unwrap_or(other),
        }
    }

    /// Types whose wildcard subscription is the full state (`xds_protocol.rst` "Deleting
    /// Resources": for LDS and CDS a missing resource means it was deleted).
    pub fn is_full_state(type_url: &str) -> bool {
        type_url == CLUSTER || type_url == LISTENER
    }

    /// The served type URL equal to `type_url`; `None` for any other.
    pub fn known(type_url: &str) -> Option<&'static str> {
        ORDER.into_iter().find(|known| *known == type_url)
    }

    /// Where in the push order a type goes; unknown types last.
    pub fn rank(type_url: &str) -> usize {
        ORDER
            .iter()
            .position(|t| *t == type_url)
            .unwrap_or(ORDER.len())
    }
}
