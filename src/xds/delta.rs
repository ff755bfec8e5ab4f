//! Incremental ADS streams (`xds_protocol.rst` "Incremental xDS").
//!
//! Per type the stream tracks what the proxy holds (name → resource version, seeded from
//! `initial_resource_versions` on reconnect) and sends only what differs: changed resources in
//! `resources`, deleted or non-existent subscribed ones in `removed_resources`. Subscription
//! changes apply even with a stale nonce; ACK/NACK bookkeeping only with the current one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::protobuf::Any;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::server::StreamContext;
use super::snapshot::Snapshot;
use super::type_url;
use super::wire::{DeltaDiscoveryResponse, DeltaResource as Resource};

type Responses = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

struct Closed;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the proxy holds: resource name → version.
    known: BTreeMap<String, String>,
    /// Subscribed names already reported as not existing.
    reported_absent: BTreeSet<String>,
    nonce: String,
    sent_version: String,
    /// Whether any response was sent; the first request is always answered.
    answered: bool,
    served: BTreeMap<String, Arc<Any>>,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// What one response carries.
#[derive(Default)]
struct Diff {
    added: Vec<Resource>,
    removed: Vec<String>,
}

struct Stream {
    context: StreamContext,
    responses: Responses,
    types: BTreeMap<String, TypeState>,
    snapshot: Option<Arc<Snapshot>>,
    nonces: u64,
}

pub(super) async fn run(
    context: StreamContext,
    requests: Streaming<DeltaDiscoveryRequest>,
    responses: Responses,
) {
    let snapshot = context.snapshots.borrow().clone();
    let mut stream = Stream {
        context,
        responses,
        types: BTreeMap::new(),
        snapshot,
        nonces: 0,
    };
    let _ = stream.serve(requests).await;
}

impl Stream {
    async fn serve(
        &mut self,
        mut requests: Streaming<DeltaDiscoveryRequest>,
    ) -> Result<(), Closed> {
        loop {
            tokio::select! {
                () = self.context.shutdown.cancelled() => return Ok(()),
                changed = self.context.snapshots.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.snapshot = self.context.snapshots.borrow_and_update().clone();
                    self.push_changes().await?;
                }
                request = requests.next() => match request {
                    Some(Ok(request)) => self.on_request(request).await?,
                    Some(Err(status)) => {
                        tracing::debug!(%status, "delta ADS stream ended by the proxy");
                        return Err(Closed);
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Result<(), Closed> {
        if let Some(node) = &request.node {
            self.context.proxy.identify(node);
        }
        let proxy = &self.context.proxy;
        let first = !self.types.contains_key(&request.type_url);
        let state = self.types.entry(request.type_url.clone()).or_default();
        if first {
            state.known = request
                .initial_resource_versions
                .clone()
                .into_iter()
                .collect();
            // Legacy wildcard: a first request that names nothing.
            state.wildcard = request.resource_names_subscribe.is_empty();
        }
        if !request.response_nonce.is_empty() {
            if request.response_nonce == state.nonce {
                match &request.error_detail {
                    Some(error) => {
                        tracing::warn!(type_url = %request.type_url, version = %state.sent_version, error = %error.message, "proxy rejected configuration");
                        proxy.nacked(&request.type_url, &state.sent_version, &error.message);
                    }
                    None => proxy.acked(&request.type_url, &state.sent_version),
                }
            } else {
                tracing::debug!(type_url = %request.type_url, nonce = %request.response_nonce, "stale nonce; applying subscription changes only");
            }
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
                continue;
            }
            state.names.insert(name.clone());
            state.reported_absent.remove(name);
            // A re-subscribe is answered even if the proxy had the resource, unless it told us
            // its version on reconnect.
            if !(first && request.initial_resource_versions.contains_key(name)) {
                state.known.remove(name);
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(name);
                state.known.remove(name);
                state.served.remove(name);
            }
        }
        if first || !request.resource_names_subscribe.is_empty() {
            let diff = self.diff(&request.type_url);
            self.send(&request.type_url, diff, first).await?;
        }
        Ok(())
    }

    /// Pushes what changed in every subscribed type: additions in push order, then the removal
    /// of clusters, once listeners and routes no longer use them.
    async fn push_changes(&mut self) -> Result<(), Closed> {
        let mut type_urls: Vec<String> = self.types.keys().cloned().collect();
        type_urls.sort_by_key(|t| type_url::rank(t));
        let mut removed_clusters = Vec::new();
        for type_url in type_urls {
            let mut diff = self.diff(&type_url);
            if type_url == type_url::CLUSTER {
                removed_clusters = std::mem::take(&mut diff.removed);
            }
            let unanswered = !self.types[&type_url].answered;
            self.send(&type_url, diff, unanswered).await?;
        }
        let removals = Diff {
            added: Vec::new(),
            removed: removed_clusters,
        };
        self.send(type_url::CLUSTER, removals, false).await
    }

    fn diff(&self, type_url: &str) -> Diff {
        let Some(snapshot) = &self.snapshot else {
            return Diff::default();
        };
        let Some(state) = self.types.get(type_url) else {
            return Diff::default();
        };
        let current = snapshot.resources(type_url).map(|typed| &typed.resources);
        let exists = |name: &str| current.is_some_and(|resources| resources.contains_key(name));
        let mut diff = Diff::default();
        for resource in current.into_iter().flat_map(|resources| resources.values()) {
            let fresh = state.known.get(&resource.name) != Some(&resource.version);
            if fresh && state.wants(&resource.name) {
                diff.added.push(Resource {
                    name: resource.name.clone(),
                    version: resource.version.clone(),
                    resource: Arc::clone(&resource.any),
                });
            }
        }
        diff.removed
            .extend(state.known.keys().filter(|name| !exists(name)).cloned());
        diff.removed.extend(
            state
                .names
                .iter()
                .filter(|name| !exists(name) && !state.known.contains_key(*name))
                .filter(|name| !state.reported_absent.contains(*name))
                .cloned(),
        );
        diff
    }

    /// Sends `diff` (or an empty response when `even_if_empty`), and records what the proxy
    /// now holds so that nothing is sent twice.
    async fn send(
        &mut self,
        type_url: &str,
        diff: Diff,
        even_if_empty: bool,
    ) -> Result<(), Closed> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(());
        };
        if diff.added.is_empty() && diff.removed.is_empty() && !even_if_empty {
            return Ok(());
        }
        let version = snapshot
            .resources(type_url)
            .map(|t| t.version.clone())
            .unwrap_or_default();
        self.nonces += 1;
        let state = self.types.entry(type_url.to_string()).or_default();
        state.nonce = self.nonces.to_string();
        state.sent_version.clone_from(&version);
        state.answered = true;
        for resource in &diff.added {
            state
                .known
                .insert(resource.name.clone(), resource.version.clone());
            state
                .served
                .insert(resource.name.clone(), Arc::clone(&resource.resource));
        }
        for name in &diff.removed {
            if state.known.remove(name).is_none() {
                state.reported_absent.insert(name.clone());
            }
            state.served.remove(name);
        }
        let response = DeltaDiscoveryResponse {
            system_version_info: snapshot.version.to_string(),
            resources: diff.added,
            type_url: type_url.to_string(),
            removed_resources: diff.removed,
            nonce: state.nonce.clone(),
        };
        self.context
            .proxy
            .sent(type_url, &version, state.served.clone());
        self.context
            .proxy
            .metrics()
            .push_latency
            .observe(snapshot.created.elapsed().as_secs_f64());
        self.responses.send(Ok(response)).await.map_err(|_| Closed)
    }
}
