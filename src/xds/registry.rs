//! Which Envoys are connected and, per resource type, what each was sent, accepted and
//! rejected: the data behind `/debug/proxies`, `/debug/config_dump` and `proxy-status`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Struct;

use super::auth::Identity;
use super::holdings::{Holdings, Names};

use crate::metrics::Metrics;

/// What one stream holds, by type URL: shared with the snapshot it was sent, never a copy.
pub type Served = BTreeMap<String, Holdings>;

/// One stream as the control plane sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyRecord {
    /// Empty until the first request names the node.
    pub node_id: String,
    pub cluster: String,
    pub metadata: Option<Struct>,
    /// `"sotw"` or `"delta"`.
    pub protocol: String,
    pub connected_at: Option<SystemTime>,
    /// Who the stream authenticated as; `None` when streams are not authenticated.
    pub identity: Option<String>,
    /// One per resource type the stream has dealt with, in push order.
    pub types: Vec<TypeRecord>,
}

/// One resource type of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeRecord {
    pub type_url: String,
    /// The last version sent; empty before the first response.
    pub sent_version: String,
    /// The last version Envoy accepted; empty before the first ACK.
    pub acked_version: String,
    /// The rejection that stands: no version sent since has been accepted.
    pub rejected: Option<Rejection>,
    pub pushes: u64,
    /// The encoded size of every response sent, summed.
    pub sent_bytes: u64,
    /// The names the stream subscribed to; `None`: every resource of the type.
    pub subscribed: Option<Arc<Names>>,
}

/// A version Envoy rejected, with its `error_detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub version: String,
    pub error: String,
}

#[derive(Debug, Default)]
struct Entry {
    record: ProxyRecord,
    served: Served,
    /// What the stream held when it last accepted each type.
    accepted: Served,
}

/// One stream with what it holds and what it last accepted, by type URL (for CSDS).
#[derive(Debug)]
pub struct ClientState {
    pub record: ProxyRecord,
    pub served: Served,
    pub accepted: Served,
}

/// The connected proxies of this controller replica.
#[derive(Debug)]
pub struct Registry {
    proxies: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Bumped whenever a stream starts or ends rejecting a type.
    rejections: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            proxies: Mutex::default(),
            next_id: AtomicU64::new(1),
            metrics,
            rejections: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Changes whenever a stream starts rejecting a type, rejects another version, or accepts
    /// one again; read [`Registry::list`] for the state.
    pub fn rejections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rejections.subscribe()
    }

    fn rejections_changed(&self) {
        self.rejections.send_modify(|count| *count += 1);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Registers a new stream; it is removed when the handle drops.
    pub fn connect(self: &Arc<Self>, protocol: &str) -> ProxyHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let record = ProxyRecord {
            protocol: protocol.to_string(),
            connected_at: Some(SystemTime::now()),
            ..Default::default()
        };
        self.lock().insert(
            id,
            Entry {
                record,
                served: Served::new(),
                accepted: Served::new(),
            },
        );
        self.metrics.connected_proxies.inc();
        ProxyHandle {
            id,
            registry: Arc::clone(self),
        }
    }

    /// Every connected proxy, ordered by node id.
    pub fn list(&self) -> Vec<ProxyRecord> {
        let mut proxies: Vec<_> = self
            .lock()
            .values()
            .map(|entry| entry.record.clone())
            .collect();
        proxies.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        proxies
    }

    /// What the (first) stream of `node_id` has been served.
    pub fn served(&self, node_id: &str) -> Option<Served> {
        let proxies = self.lock();
        let entry = proxies
            .values()
            .find(|entry| entry.record.node_id == node_id)?;
        Some(entry.served.clone())
    }

    /// Every stream whose node id `select` accepts, ordered by node id.
    pub fn clients(&self, select: impl Fn(&str) -> bool) -> Vec<ClientState> {
        let mut clients: Vec<ClientState> = self
            .lock()
            .values()
            .filter(|entry| select(&entry.record.node_id))
            .map(|entry| ClientState {
                record: entry.record.clone(),
                served: entry.served.clone(),
                accepted: entry.accepted.clone(),
            })
            .collect();
        clients.sort_by(|a, b| a.record.node_id.cmp(&b.record.node_id));
        clients
    }

    /// Counts a stream refused or closed by the controller, by reason.
    pub fn refused(&self, reason: &str) {
        let label = crate::metrics::ReasonLabel {
            reason: reason.to_string(),
        };
        self.metrics.stream_errors.get_or_create(&label).inc();
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written in a way that
        // matters for status reporting, so a poisoned lock is still used.
        self.proxies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One stream's entry in the registry.
#[derive(Debug)]
pub struct ProxyHandle {
    id: u64,
    registry: Arc<Registry>,
}

impl ProxyHandle {
    fn update(&self, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.registry.lock().get_mut(&self.id) {
            change(entry);
        }
    }

    fn update_type(&self, type_url: &str, change: impl FnOnce(&mut TypeRecord)) {
        self.update(|entry| {
            let types = &mut entry.record.types;
            let index = match types.iter().position(|t| t.type_url == type_url) {
                Some(index) => index,
                None => {
                    types.push(TypeRecord {
                        type_url: type_url.to_string(),
                        ..Default::default()
                    });
                    types.sort_by_key(|t| crate::xds::type_url::rank(&t.type_url));
                    types
                        .iter()
                        .position(|t| t.type_url == type_url)
                        .unwrap_or_default()
                }
            };
            change(&mut types[index]);
        });
    }

    pub fn metrics(&self) -> &Metrics {
        self.registry.metrics()
    }

    /// Records the node on the stream's first request (`xds_protocol.rst`: the node is only
    /// guaranteed on the first request of a stream).
    pub fn identify(&self, node: &Node) {
        self.update(|entry| {
            entry.record.node_id.clone_from(&node.id);
            entry.record.cluster.clone_from(&node.cluster);
            entry.record.metadata.clone_from(&node.metadata);
        });
    }

    /// Records a response: its version and the resources the proxy now has of that type.
    /// Records a response of `bytes` (encoded) that makes the proxy hold `served`.
    pub fn sent(&self, type_url: &str, version: &str, served: Holdings, bytes: usize) {
        self.update_type(type_url, |status| {
            status.sent_version = version.to_string();
            status.pushes += 1;
            status.sent_bytes += u64::try_from(bytes).unwrap_or(u64::MAX);
        });
        self.update(|entry| {
            entry.served.insert(type_url.to_string(), served);
        });
        let metrics = self.registry.metrics();
        metrics
            .pushes
            .get_or_create(&Metrics::type_label(type_url))
            .inc();
    }

    /// Counts a stream refused or closed by the controller, by reason.
    pub fn refused(&self, reason: &str) {
        self.registry.refused(reason);
    }

    /// Records the names the stream subscribed to (`None`: every resource of the type).
    pub fn subscribed(&self, type_url: &str, names: Option<Arc<Names>>) {
        self.update_type(type_url, |status| status.subscribed = names);
    }

    /// Records who the stream authenticated as.
    pub fn authenticated(&self, identity: &Identity) {
        let described = identity.describe();
        self.update(|entry| entry.record.identity = Some(described));
    }

    /// Records an ACK. It ends a rejection when it accepts the rejected version or anything
    /// sent since: a rejected version is never sent again, so the proxy recovers by accepting
    /// the next one.
    pub fn acked(&self, type_url: &str, version: &str) {
        let mut recovered = false;
        // An ACK answers the stream's last response, whose resources it now runs.
        self.update(|entry| {
            if let Some(held) = entry.served.get(type_url) {
                entry.accepted.insert(type_url.to_string(), held.clone());
            }
        });
        self.update_type(type_url, |status| {
            status.acked_version = version.to_string();
            let ends = status.rejected.as_ref().is_some_and(|rejected| {
                rejected.version == version || status.sent_version == version
            });
            if ends {
                status.rejected = None;
                recovered = true;
            }
        });
        if recovered {
            self.rejecting(type_url).dec();
            self.registry.rejections_changed();
        }
        self.registry
            .metrics()
            .acks
            .get_or_create(&Metrics::type_label(type_url))
            .inc();
    }

    pub fn nacked(&self, type_url: &str, version: &str, error: &str) {
        let (mut newly, mut another) = (false, false);
        self.update_type(type_url, |status| {
            let previous = status
                .rejected
                .as_ref()
                .map(|rejected| rejected.version.as_str());
            newly = previous.is_none();
            another = previous != Some(version);
            status.rejected = Some(Rejection {
                version: version.to_string(),
                error: error.to_string(),
            });
        });
        if newly {
            self.rejecting(type_url).inc();
        }
        if another {
            self.registry.rejections_changed();
        }
        self.registry
            .metrics()
            .nacks
            .get_or_create(&Metrics::type_label(type_url))
            .inc();
    }
}

impl ProxyHandle {
    /// The gauge of streams whose last response of `type_url` stands rejected.
    fn rejecting(&self, type_url: &str) -> prometheus_client::metrics::gauge::Gauge {
        self.registry
            .metrics
            .rejecting
            .get_or_create(&Metrics::type_label(type_url))
            .clone()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        let removed = self.registry.lock().remove(&self.id);
        self.registry.metrics.connected_proxies.dec();
        // A stream that ends while rejecting no longer counts.
        for status in removed.iter().flat_map(|entry| &entry.record.types) {
            if status.rejected.is_some() {
                self.rejecting(&status.type_url).dec();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LDS: &str = crate::xds::type_url::LISTENER;

    fn rejecting(registry: &Registry) -> i64 {
        registry
            .metrics()
            .rejecting
            .get_or_create(&Metrics::type_label(LDS))
            .get()
    }

    #[test]
    fn a_rejection_ends_when_a_later_version_is_accepted() {
        let registry = Registry::new(Arc::default());
        let proxy = registry.connect("sotw");
        proxy.sent(LDS, "1", Holdings::default(), 10);
        proxy.acked(LDS, "1");
        proxy.sent(LDS, "2", Holdings::default(), 10);
        proxy.nacked(LDS, "2", "bad listener");
        proxy.nacked(LDS, "2", "bad listener");
        let rejected = registry.list()[0].types[0].rejected.clone();
        assert_eq!(
            rejected.map(|rejected| rejected.version).as_deref(),
            Some("2")
        );
        assert_eq!(rejecting(&registry), 1, "one stream, counted once");
        // Version 2 is never sent again; the proxy accepts version 3.
        proxy.sent(LDS, "3", Holdings::default(), 10);
        proxy.acked(LDS, "3");
        let status = &registry.list()[0].types[0];
        assert_eq!(status.rejected, None);
        assert_eq!(status.acked_version, "3");
        assert_eq!(rejecting(&registry), 0);
        // A stream that goes away while rejecting is no longer counted.
        proxy.sent(LDS, "4", Holdings::default(), 10);
        proxy.nacked(LDS, "4", "bad again");
        assert_eq!(rejecting(&registry), 1);
        drop(proxy);
        assert_eq!(rejecting(&registry), 0);
    }
}
