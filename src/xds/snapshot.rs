//! Versioned, consistency-checked sets of resources.
//!
//! A snapshot is published only when every reference inside it resolves: each listener's route
//! configuration, each route's cluster, each cluster's SDS secret (go-control-plane's
//! `Snapshot.Consistent`). Types keep their version while their content is unchanged, so a
//! proxy is only pushed what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::transport_socket;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteConfiguration, route::Action, route_action::ClusterSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    UpstreamTlsContext, common_tls_context::ValidationContextType,
};
use foldhash::{HashSet, HashSetExt};
use prost::Message;
use sha2::Digest as _;

use super::resources::{AbsentHosts, Host, Resources, RouteTable};
use super::type_url;
use super::wire::Packed;
use crate::sorted::Alongside;

/// The latest published snapshot; `None` until the first consistent one.
pub type Snapshots = tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>;

/// One resource as served: its name, its content hash (the Delta resource version) and its
/// packed bytes, which every stream that sends it shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    pub version: String,
    pub packed: Packed,
}

/// The resources of one type and the version they were last changed at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeResources {
    pub version: String,
    pub resources: BTreeMap<String, Resource>,
    /// How a subscribed name that `resources` lacks is answered, for a type whose every name
    /// has an answer (a virtual host for any host).
    pub absent: Option<AbsentHosts>,
}

impl TypeResources {
    /// The resource of `name`: listed, or made for it.
    pub fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, Resource>> {
        match self.resources.get(name) {
            Some(resource) => Some(std::borrow::Cow::Borrowed(resource)),
            None => self.made(name).map(std::borrow::Cow::Owned),
        }
    }

    /// The resource made for `name`, which the type does not list; `None` when it has none.
    pub fn made(&self, name: &str) -> Option<Resource> {
        let host = (self.absent.as_ref()?.make)(name)?;
        let packed = Packed::new(&host);
        Some(Resource {
            name: name.to_string(),
            version: content_version(packed.value()),
            packed,
        })
    }
}

/// An immutable, consistent set of resources of every served type. Every stream shares it;
/// a type whose content did not change is shared with the previous snapshot too.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub version: u64,
    pub created: Instant,
    pub types: BTreeMap<&'static str, Arc<TypeResources>>,
    /// The types as incremental streams are served them: the same, but for the routes when
    /// virtual hosts are fetched on demand, and those virtual hosts.
    pub incremental: BTreeMap<&'static str, Arc<TypeResources>>,
    /// The virtual hosts of each route configuration served whole, by its name: what the next
    /// snapshot keeps unchanged hosts from.
    pub tables: BTreeMap<String, Arc<Spliced>>,
}

/// The virtual hosts a route configuration's encoding was spliced from, in name order.
#[derive(Debug, Default)]
pub struct Spliced {
    hosts: Vec<(Arc<str>, SplicedHost)>,
}

#[derive(Clone, Debug)]
struct SplicedHost {
    /// The host's own encoding: a slice of the route configuration's.
    bytes: Bytes,
    /// The start of the encoding's SHA-256.
    hash: [u8; 8],
    /// The clusters it routes to.
    clusters: Arc<[String]>,
}

/// A reference inside the resources that does not resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Inconsistent {
    /// A resource name appears twice in one type.
    #[error("{kind} {name:?} is defined twice")]
    Duplicate { kind: String, name: String },
    /// A resource refers to one that does not exist.
    #[error("{from} refers to {kind} {name:?}, which does not exist")]
    Dangling {
        from: String,
        kind: &'static str,
        name: String,
    },
    /// A resource said to be kept from the previous snapshot is not in it.
    #[error("virtual host {name:?} is kept from a snapshot that does not have it")]
    NotKept { name: String },
}

impl Snapshot {
    /// Builds snapshot `version` from `resources`, reusing the type versions of `previous` for
    /// every type whose content did not change. The virtual hosts `resources` keeps from
    /// `previous` are taken as it serves them, bytes and versions, without packing them again.
    pub fn new(
        version: u64,
        resources: &Resources,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Inconsistent> {
        let mut routes = TypeResources::default();
        let mut tables = BTreeMap::new();
        for table in &resources.routes {
            let name = &table.route.name;
            let before = previous.and_then(|previous| {
                let resource = previous.types.get(type_url::ROUTE)?.resources.get(name)?;
                Some((resource, previous.tables.get(name)?))
            });
            let (mut resource, mut spliced) = splice(table, before.map(|(_, spliced)| &**spliced))?;
            if let Some((old, old_spliced)) = before
                && *old == resource
            {
                // Unchanged: the previous bytes, so the type stays the previous one.
                (resource, spliced) = (old.clone(), Arc::clone(old_spliced));
            }
            tables.insert(name.clone(), spliced);
            if routes.resources.insert(name.clone(), resource).is_some() {
                let kind = type_url::short(type_url::ROUTE).to_string();
                let name = name.clone();
                return Err(Inconsistent::Duplicate { kind, name });
            }
        }
        check_references(resources, &tables)?;
        let mut types = BTreeMap::new();
        types.insert(type_url::CLUSTER, packed(&resources.clusters, |c| &c.name)?);
        types.insert(
            type_url::LISTENER,
            packed(&resources.listeners, |l| &l.name)?,
        );
        types.insert(type_url::ROUTE, routes);
        types.insert(type_url::SECRET, packed(&resources.secrets, |s| &s.name)?);
        let mut incremental = BTreeMap::new();
        if let Some(on_demand) = &resources.on_demand {
            let route = std::slice::from_ref(&on_demand.route);
            incremental.insert(type_url::ROUTE, packed(route, |r| &r.name)?);
            let before = previous.and_then(|p| p.incremental.get(type_url::VIRTUAL_HOST));
            let mut hosts = TypeResources::default();
            for host in &on_demand.virtual_hosts {
                let resource = match host {
                    Host::Made(host) => resource(&**host, &host.name),
                    Host::Kept(name) => (before.and_then(|before| before.resources.get(&**name)))
                        .ok_or_else(|| Inconsistent::NotKept {
                            name: name.to_string(),
                        })?
                        .clone(),
                };
                if let Some(old) = hosts.resources.insert(host.name().to_string(), resource) {
                    let kind = type_url::short(type_url::VIRTUAL_HOST).to_string();
                    let name = old.name;
                    return Err(Inconsistent::Duplicate { kind, name });
                }
            }
            hosts.absent = Some(on_demand.absent.clone());
            incremental.insert(type_url::VIRTUAL_HOST, hosts);
        }
        let shared = |mut current: TypeResources, old: Option<&Arc<TypeResources>>| {
            let unchanged = old
                .filter(|old| old.resources == current.resources && old.absent == current.absent);
            match unchanged {
                Some(old) => Arc::clone(old),
                None => {
                    current.version = version.to_string();
                    Arc::new(current)
                }
            }
        };
        let types: BTreeMap<&'static str, Arc<TypeResources>> = types
            .into_iter()
            .map(|(type_url, current)| {
                let old = previous.and_then(|previous| previous.types.get(type_url));
                (type_url, shared(current, old))
            })
            .collect();
        let mut incremental: BTreeMap<&'static str, Arc<TypeResources>> = incremental
            .into_iter()
            .map(|(type_url, current)| {
                let old = previous.and_then(|previous| previous.incremental.get(type_url));
                (type_url, shared(current, old))
            })
            .collect();
        for (type_url, resources) in &types {
            incremental
                .entry(type_url)
                .or_insert_with(|| Arc::clone(resources));
        }
        Ok(Snapshot {
            version,
            created: Instant::now(),
            types,
            incremental,
            tables,
        })
    }
}

fn packed<T: Message + prost::Name>(
    items: &[T],
    name: impl Fn(&T) -> &String,
) -> Result<TypeResources, Inconsistent> {
    let mut resources = BTreeMap::new();
    for item in items {
        let resource = resource(item, name(item));
        if let Some(old) = resources.insert(resource.name.clone(), resource) {
            let kind = type_url::short(&T::type_url()).to_string();
            return Err(Inconsistent::Duplicate {
                kind,
                name: old.name,
            });
        }
    }
    Ok(TypeResources {
        version: String::new(),
        resources,
        absent: None,
    })
}

fn resource<T: Message + prost::Name>(item: &T, name: &str) -> Resource {
    let packed = Packed::new(item);
    Resource {
        name: name.to_string(),
        version: content_version(packed.value()),
        packed,
    }
}

/// Packs a route table, its encoding spliced from its virtual hosts' own: those kept are taken
/// from `before`, the previous snapshot's table of the same name, as they were encoded there.
fn splice(
    table: &RouteTable,
    before: Option<&Spliced>,
) -> Result<(Resource, Arc<Spliced>), Inconsistent> {
    let mut hosts: Vec<(Arc<str>, SplicedHost)> = Vec::with_capacity(table.virtual_hosts.len());
    // The table lists its hosts in name order, so the previous one is walked alongside.
    let mut previous = before.map(|before| Alongside::new(&before.hosts[..]));
    for host in &table.virtual_hosts {
        match host {
            Host::Made(host) => {
                let bytes = Bytes::from(host.encode_to_vec());
                let hash = hash(&bytes);
                let clusters = Arc::from(cluster_names(&host.routes));
                let made = SplicedHost {
                    bytes,
                    hash,
                    clusters,
                };
                hosts.push((Arc::from(host.name.as_str()), made));
            }
            Host::Kept(name) => {
                let (name, kept) =
                    (previous.as_mut().and_then(|p| p.find(&**name))).ok_or_else(|| {
                        Inconsistent::NotKept {
                            name: name.to_string(),
                        }
                    })?;
                hosts.push((Arc::clone(name), kept.clone()));
            }
        }
    }
    let head = table.route.encode_to_vec();
    let packed = Packed::spliced::<RouteConfiguration, _>(
        &head,
        VIRTUAL_HOSTS_FIELD,
        &mut hosts,
        |(_, host)| &mut host.bytes,
    );
    // The table's version follows its hosts' hashes, not all of its bytes hashed again.
    let mut digest = sha2::Sha256::new();
    digest.update(&head);
    for (_, host) in &hosts {
        digest.update(host.hash);
    }
    let version = version(first_bytes(&digest.finalize()));
    // Listed by name but for the catch-alls at the end: the run in order is taken as it is,
    // and the rest put in their places.
    let in_order = (hosts.windows(2))
        .take_while(|pair| pair[0].0 < pair[1].0)
        .count();
    let rest = hosts.split_off((in_order + 1).min(hosts.len()));
    for (name, host) in rest {
        match hosts.binary_search_by(|(at, _)| at.cmp(&name)) {
            Ok(_) => {
                let kind = format!("virtual host of {}", type_url::short(type_url::ROUTE));
                let name = name.to_string();
                return Err(Inconsistent::Duplicate { kind, name });
            }
            Err(at) => hosts.insert(at, (name, host)),
        }
    }
    let resource = Resource {
        name: table.route.name.clone(),
        version,
        packed,
    };
    Ok((resource, Arc::new(Spliced { hosts })))
}

/// `RouteConfiguration.virtual_hosts`.
const VIRTUAL_HOSTS_FIELD: u32 = 2;

/// A hash of a resource's bytes (prost encodes fields in a fixed order): the first 64 bits of
/// their SHA-256, so the same resource has the same version across builds and Rust releases,
/// and an upgraded controller resends nothing that did not change.
fn content_version(bytes: &[u8]) -> String {
    version(hash(bytes))
}

/// The start of the SHA-256 of `bytes`.
fn hash(bytes: &[u8]) -> [u8; 8] {
    first_bytes(&sha2::Sha256::digest(bytes))
}

fn first_bytes(digest: &[u8]) -> [u8; 8] {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    first
}

fn version(hash: [u8; 8]) -> String {
    format!("{:016x}", u64::from_be_bytes(hash))
}

fn check_references(
    resources: &Resources,
    tables: &BTreeMap<String, Arc<Spliced>>,
) -> Result<(), Inconsistent> {
    let clusters: HashSet<&str> = resources.clusters.iter().map(|c| c.name.as_str()).collect();
    let secrets: BTreeSet<&str> = resources.secrets.iter().map(|s| s.name.as_str()).collect();
    let dangling = |from: String, kind, name: &str, known: &dyn Fn(&str) -> bool| {
        if known(name) {
            Ok(())
        } else {
            Err(Inconsistent::Dangling {
                from,
                kind,
                name: name.to_string(),
            })
        }
    };
    for listener in &resources.listeners {
        for name in route_names(listener) {
            dangling(
                format!("listener {:?}", listener.name),
                "RDS",
                &name,
                &|name| tables.contains_key(name),
            )?;
        }
    }
    for (route, spliced) in tables {
        let mut checked = HashSet::new();
        let referred = (spliced.hosts.iter()).flat_map(|(_, host)| host.clusters.iter());
        for name in referred.filter(|name| checked.insert(name.as_str())) {
            dangling(
                format!("route configuration {route:?}"),
                "CDS",
                name,
                &|name| clusters.contains(name),
            )?;
        }
    }
    for cluster in &resources.clusters {
        if let Some(name) = secret_name(cluster) {
            dangling(
                format!("cluster {:?}", cluster.name),
                "SDS",
                &name,
                &|name| secrets.contains(name),
            )?;
        }
    }
    Ok(())
}

fn route_names(listener: &Listener) -> Vec<String> {
    let filters = listener
        .filter_chains
        .iter()
        .flat_map(|chain| &chain.filters);
    filters
        .filter_map(|filter| match &filter.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => {
                HttpConnectionManager::decode(any.value.as_slice()).ok()
            }
            _ => None,
        })
        .filter_map(|hcm| match hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => Some(rds.route_config_name),
            _ => None,
        })
        .collect()
}

fn cluster_names(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .filter_map(|route| match &route.action {
            Some(Action::Route(action)) => match &action.cluster_specifier {
                Some(ClusterSpecifier::Cluster(name)) => Some(name.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn secret_name(cluster: &Cluster) -> Option<String> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) =
        cluster.transport_socket.as_ref()?.config_type.as_ref()
    else {
        return None;
    };
    let context = UpstreamTlsContext::decode(any.value.as_slice()).ok()?;
    match context.common_tls_context?.validation_context_type? {
        ValidationContextType::CombinedValidationContext(combined) => {
            Some(combined.validation_context_sds_secret_config?.name)
        }
        ValidationContextType::ValidationContextSdsSecretConfig(config) => Some(config.name),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests;
