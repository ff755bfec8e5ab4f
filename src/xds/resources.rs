//! What the serving layer serves: the resources of one snapshot, as the layer above hands
//! them in. Everything about where they come from stays above; this layer packs them, checks
//! that their references resolve, and serves them.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

/// The resources of one snapshot, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
    pub secrets: Vec<Secret>,
    /// With virtual hosts on demand: what incremental streams are served instead of `routes`.
    pub on_demand: Option<OnDemand>,
}

/// A route configuration whose virtual hosts are fetched one by one (VHDS), the first time a
/// request names their host.
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemand {
    /// No virtual host of its own: each one comes when it is asked for.
    pub route: RouteConfiguration,
    /// The virtual hosts, named as the proxy asks for them; with a previous snapshot, only
    /// those that differ from it.
    pub virtual_hosts: Vec<VirtualHost>,
    /// The names of the virtual hosts that are the previous snapshot's unchanged: they are
    /// served as that snapshot serves them.
    pub kept: Vec<String>,
    /// How a name that neither lists is answered.
    pub absent: AbsentHosts,
}

/// Makes the virtual host of a name, or `None` when the name has none.
type MakeHost = dyn Fn(&str) -> Option<VirtualHost> + Send + Sync;

/// The virtual host of a name that no listed one has: made when a proxy asks for it. Two are
/// equal when their versions are: a snapshot whose only change would be an equal one keeps the
/// type's version.
#[derive(Clone)]
pub struct AbsentHosts {
    /// Changes whenever what `make` makes changes.
    pub version: Vec<u8>,
    pub make: Arc<MakeHost>,
}

impl PartialEq for AbsentHosts {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl std::fmt::Debug for AbsentHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsentHosts")
            .field("version", &self.version.len())
            .finish_non_exhaustive()
    }
}
