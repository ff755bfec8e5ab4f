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
    pub routes: Vec<RouteTable>,
    pub clusters: Vec<Cluster>,
    pub secrets: Vec<Secret>,
    /// With virtual hosts on demand: what incremental streams are served instead of `routes`.
    pub on_demand: Option<OnDemand>,
}

/// A route configuration served whole, with its virtual hosts apart: the snapshot splices its
/// encoding from theirs, so a host that did not change is neither made nor encoded again.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteTable {
    /// Every field but the virtual hosts.
    pub route: RouteConfiguration,
    /// The virtual hosts, in the order they are served.
    pub virtual_hosts: Vec<Host>,
}

/// A virtual host of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum Host {
    /// Made for this snapshot.
    Made(Box<VirtualHost>),
    /// The previous snapshot's of this name, unchanged: served as that snapshot serves it.
    Kept(Arc<str>),
}

impl Host {
    pub fn name(&self) -> &str {
        match self {
            Host::Made(host) => &host.name,
            Host::Kept(name) => name,
        }
    }
}

impl RouteTable {
    /// The table of `route`, every virtual host made.
    pub fn whole(mut route: RouteConfiguration) -> Self {
        let virtual_hosts = std::mem::take(&mut route.virtual_hosts);
        Self {
            route,
            virtual_hosts: (virtual_hosts.into_iter())
                .map(|host| Host::Made(Box::new(host)))
                .collect(),
        }
    }

    /// The route configuration, when every virtual host was made (none is kept).
    pub fn configuration(&self) -> Option<RouteConfiguration> {
        let virtual_hosts = (self.virtual_hosts.iter())
            .map(|host| match host {
                Host::Made(host) => Some((**host).clone()),
                Host::Kept(_) => None,
            })
            .collect::<Option<Vec<VirtualHost>>>()?;
        Some(RouteConfiguration {
            virtual_hosts,
            ..self.route.clone()
        })
    }
}

/// A route configuration whose virtual hosts are fetched one by one (VHDS), the first time a
/// request names their host.
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemand {
    /// No virtual host of its own: each one comes when it is asked for.
    pub route: RouteConfiguration,
    /// The virtual hosts, named as the proxy asks for them.
    pub virtual_hosts: Vec<Host>,
    /// How a name that `virtual_hosts` lacks is answered.
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
