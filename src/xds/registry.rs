//! Which Envoys are connected and, per resource type, what each was sent, accepted and
//! rejected: the data behind `/debug/proxies`, `/debug/config_dump` and `proxy-status`, kept
//! from the streams' events ([`Callbacks`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Struct;

use super::auth::Identity;
use super::events::{Callbacks, Sent, StreamId, ends_rejection};
use super::holdings::{Holdings, Names};

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
    proxies: Mutex<BTreeMap<StreamId, Entry>>,
    /// Bumped whenever a stream starts or ends rejecting a type.
    rejections: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            proxies: Mutex::default(),
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

    fn lock(&self) -> MutexGuard<'_, BTreeMap<StreamId, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written in a way that
        // matters for status reporting, so a poisoned lock is still used.
        self.proxies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registry {
    fn update(&self, stream: StreamId, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.lock().get_mut(&stream) {
            change(entry);
        }
    }

    fn update_type(&self, stream: StreamId, type_url: &str, change: impl FnOnce(&mut TypeRecord)) {
        self.update(stream, |entry| {
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
}

impl Callbacks for Registry {
    fn connected(&self, stream: StreamId, protocol: &'static str, identity: Option<&Identity>) {
        let record = ProxyRecord {
            protocol: protocol.to_string(),
            connected_at: Some(SystemTime::now()),
            identity: identity.map(Identity::describe),
            ..Default::default()
        };
        let entry = Entry {
            record,
            served: Served::new(),
            accepted: Served::new(),
        };
        self.lock().insert(stream, entry);
    }

    /// Records the node on the stream's first request (`xds_protocol.rst`: the node is only
    /// guaranteed on the first request of a stream).
    fn identified(&self, stream: StreamId, node: &Node) {
        self.update(stream, |entry| {
            entry.record.node_id.clone_from(&node.id);
            entry.record.cluster.clone_from(&node.cluster);
            entry.record.metadata.clone_from(&node.metadata);
        });
    }

    fn subscribed(&self, stream: StreamId, type_url: &str, names: Option<Arc<Names>>) {
        self.update_type(stream, type_url, |status| status.subscribed = names);
    }

    /// Records a response: its version, its size, and what the proxy now holds of the type.
    fn sent(&self, stream: StreamId, sent: &Sent<'_>) {
        self.update_type(stream, sent.type_url, |status| {
            status.sent_version = sent.version.to_string();
            status.pushes += 1;
            status.sent_bytes += u64::try_from(sent.bytes).unwrap_or(u64::MAX);
        });
        self.update(stream, |entry| {
            (entry.served).insert(sent.type_url.to_string(), sent.holdings.clone());
        });
    }

    /// Records an ACK. It ends a rejection when it accepts the rejected version or anything
    /// sent since: a rejected version is never sent again, so the proxy recovers by accepting
    /// the next one.
    fn acked(&self, stream: StreamId, type_url: &str, version: &str) {
        let mut recovered = false;
        // An ACK answers the stream's last response, whose resources it now runs.
        self.update(stream, |entry| {
            if let Some(held) = entry.served.get(type_url) {
                entry.accepted.insert(type_url.to_string(), held.clone());
            }
        });
        self.update_type(stream, type_url, |status| {
            status.acked_version = version.to_string();
            let ends = (status.rejected.as_ref()).is_some_and(|rejected| {
                ends_rejection(&rejected.version, &status.sent_version, version)
            });
            if ends {
                status.rejected = None;
                recovered = true;
            }
        });
        if recovered {
            self.rejections_changed();
        }
    }

    fn nacked(&self, stream: StreamId, type_url: &str, version: &str, error: &str) {
        let mut another = false;
        self.update_type(stream, type_url, |status| {
            let previous = status
                .rejected
                .as_ref()
                .map(|rejected| rejected.version.as_str());
            another = previous != Some(version);
            status.rejected = Some(Rejection {
                version: version.to_string(),
                error: error.to_string(),
            });
        });
        if another {
            self.rejections_changed();
        }
    }

    fn disconnected(&self, stream: StreamId) {
        self.lock().remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::events::testing::sent_listeners;

    const LDS: &str = crate::xds::type_url::LISTENER;

    #[test]
    fn a_rejection_ends_when_a_later_version_is_accepted() {
        let registry = Registry::new();
        let mut rejections = registry.rejections();
        let rejected = |registry: &Registry| {
            let status = &registry.list()[0].types[0];
            status.rejected.as_ref().map(|r| r.version.clone())
        };
        registry.connected(1, "sotw", None);
        sent_listeners(&*registry, "1");
        registry.acked(1, LDS, "1");
        sent_listeners(&*registry, "2");
        registry.nacked(1, LDS, "2", "bad listener");
        assert!(rejections.has_changed().unwrap());
        rejections.mark_unchanged();
        registry.nacked(1, LDS, "2", "bad listener");
        assert_eq!(rejected(&registry).as_deref(), Some("2"));
        assert!(!rejections.has_changed().unwrap(), "the same rejection");
        // Version 2 is never sent again; the proxy accepts version 3.
        sent_listeners(&*registry, "3");
        registry.acked(1, LDS, "3");
        assert_eq!(rejected(&registry), None);
        assert_eq!(registry.list()[0].types[0].acked_version, "3");
        assert!(rejections.has_changed().unwrap(), "the rejection ended");
        registry.disconnected(1);
        assert!(registry.list().is_empty());
    }
}
