//! State-of-the-world ADS streams (`xds_protocol.rst` "State of the World variants").
//!
//! Per type the stream remembers the subscription, the last nonce and version sent, and what
//! was sent. A request whose nonce is not the last one sent is stale and ignored. A NACK is
//! recorded and not answered: the rejected version is never sent again, only a newer one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::protobuf::Any;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::server::StreamContext;
use super::snapshot::Snapshot;
use super::type_url;
use super::wire::DiscoveryResponse;

type Responses = mpsc::Sender<Result<DiscoveryResponse, Status>>;

/// The stream ended because Envoy went away; nothing to report.
struct Closed;

#[derive(Debug, Default, PartialEq, Eq)]
enum Subscription {
    #[default]
    Wildcard,
    Names(BTreeSet<String>),
}

impl Subscription {
    /// LDS and CDS with no names is the legacy wildcard; `*` is the explicit one.
    fn of(request: &DiscoveryRequest) -> Self {
        let names = &request.resource_names;
        let legacy = names.is_empty() && type_url::is_full_state(&request.type_url);
        if legacy || names.iter().any(|name| name == "*") {
            Self::Wildcard
        } else {
            Self::Names(names.iter().cloned().collect())
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Self::Wildcard => true,
            Self::Names(names) => names.contains(name),
        }
    }
}

#[derive(Debug, Default)]
struct TypeState {
    subscription: Subscription,
    nonce: String,
    /// `None` until the first response for this type.
    version: Option<String>,
    sent: BTreeMap<String, Arc<Any>>,
}

struct Stream {
    context: StreamContext,
    responses: Responses,
    types: BTreeMap<String, TypeState>,
    snapshot: Option<Arc<Snapshot>>,
    nonces: u64,
}

/// Serves one stream until Envoy closes it or the server shuts down.
pub(super) async fn run(
    context: StreamContext,
    requests: Streaming<DiscoveryRequest>,
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
    async fn serve(&mut self, mut requests: Streaming<DiscoveryRequest>) -> Result<(), Closed> {
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
                        tracing::debug!(%status, "ADS stream ended by the proxy");
                        return Err(Closed);
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn on_request(&mut self, request: DiscoveryRequest) -> Result<(), Closed> {
        if let Some(node) = &request.node {
            self.context.proxy.identify(node);
        }
        let proxy = &self.context.proxy;
        let state = self.types.entry(request.type_url.clone()).or_default();
        if !request.response_nonce.is_empty() {
            if request.response_nonce != state.nonce {
                tracing::debug!(type_url = %request.type_url, nonce = %request.response_nonce, "stale nonce ignored");
                return Ok(());
            }
            let sent = state.version.clone().unwrap_or_default();
            match &request.error_detail {
                Some(error) => {
                    tracing::warn!(type_url = %request.type_url, version = %sent, error = %error.message, "proxy rejected configuration");
                    proxy.nacked(&request.type_url, &sent, &error.message);
                }
                None => proxy.acked(&request.type_url, &request.version_info),
            }
        }
        let subscription = Subscription::of(&request);
        let resubscribed = subscription != state.subscription;
        state.subscription = subscription;
        // Answer the first request of a type and every change of names; an ACK or a NACK of
        // the current subscription needs no answer.
        if request.response_nonce.is_empty() || resubscribed {
            self.respond(&request.type_url, None).await?;
        }
        Ok(())
    }

    /// Pushes every subscribed type whose version changed, in make-before-break order: new
    /// clusters are added before the listeners and routes that use them, and clusters that are
    /// gone are removed only after the routes have moved off them.
    async fn push_changes(&mut self) -> Result<(), Closed> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(());
        };
        let mut pending: Vec<String> = self
            .types
            .iter()
            .filter(|(type_url, state)| {
                let current = snapshot.resources(type_url).map(|r| r.version.as_str());
                state.version.as_deref() != Some(current.unwrap_or(""))
            })
            .map(|(type_url, _)| type_url.clone())
            .collect();
        pending.sort_by_key(|t| type_url::rank(t));
        let removes_clusters = pending.iter().any(|t| t == type_url::CLUSTER) && {
            let kept = snapshot.resources(type_url::CLUSTER);
            self.types[type_url::CLUSTER]
                .sent
                .keys()
                .any(|name| kept.is_none_or(|kept| !kept.resources.contains_key(name)))
        };
        if removes_clusters && pending.len() > 1 {
            self.respond(
                type_url::CLUSTER,
                Some(&self.types[type_url::CLUSTER].sent.clone()),
            )
            .await?;
            pending.rotate_left(1);
        }
        for type_url in pending {
            self.respond(&type_url, None).await?;
        }
        Ok(())
    }

    /// Sends the subscribed resources of `type_url`; `keep` adds resources already sent that
    /// must survive this response (the first half of a make-before-break cluster update).
    async fn respond(
        &mut self,
        type_url: &str,
        keep: Option<&BTreeMap<String, Arc<Any>>>,
    ) -> Result<(), Closed> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(());
        };
        let state = self.types.entry(type_url.to_string()).or_default();
        let current = snapshot.resources(type_url);
        let mut served: BTreeMap<String, Arc<Any>> = current
            .into_iter()
            .flat_map(|typed| typed.resources.values())
            .filter(|resource| state.subscription.contains(&resource.name))
            .map(|resource| (resource.name.clone(), Arc::clone(&resource.any)))
            .collect();
        let mut version = current
            .map(|typed| typed.version.clone())
            .unwrap_or_default();
        if let Some(keep) = keep {
            for (name, any) in keep {
                served
                    .entry(name.clone())
                    .or_insert_with(|| Arc::clone(any));
            }
            version.push_str("-transition");
        }
        self.nonces += 1;
        state.nonce = self.nonces.to_string();
        state.version = Some(version.clone());
        state.sent.clone_from(&served);
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: served.values().map(Arc::clone).collect(),
            type_url: type_url.to_string(),
            nonce: state.nonce.clone(),
        };
        self.context.proxy.sent(type_url, &version, served);
        let latency = snapshot.created.elapsed().as_secs_f64();
        self.context.proxy.metrics().push_latency.observe(latency);
        self.responses.send(Ok(response)).await.map_err(|_| Closed)
    }
}
