//! State-of-the-world ADS streams (`xds_protocol.rst` "State of the World variants").
//!
//! Per type the stream remembers the subscription, the last nonce and version sent, and what
//! the proxy holds (the shared snapshot type it was sent, never a copy). A request whose nonce
//! is not the last one sent is stale and ignored. A NACK is recorded and not answered: the
//! rejected version is never sent again, only a newer one.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use tonic::Status;

use super::events::{Sent, StreamEvents};
use super::holdings::{Holdings, Names};
use super::limits::{Limits, NameUse, truncated};
use super::snapshot::{Resource, Snapshot, TypeResources};
use super::stream::{PerType, Variant};
use super::type_url;
use super::wire::{DiscoveryResponse, Response};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Subscription {
    #[default]
    Wildcard,
    Names(Arc<Names>),
}

impl Subscription {
    /// LDS and CDS with no names is the legacy wildcard, until the type has named resources
    /// once (then no names means none); `*` is the explicit wildcard.
    fn of(request: &DiscoveryRequest, named_before: bool) -> Self {
        let names = &request.resource_names;
        let legacy =
            names.is_empty() && !named_before && type_url::is_full_state(&request.type_url);
        if legacy || names.iter().any(|name| name == "*") {
            Self::Wildcard
        } else {
            Self::Names(Arc::new(
                names.iter().map(|name| Arc::from(name.as_str())).collect(),
            ))
        }
    }

    /// How many names, and their bytes in all.
    fn usage(&self) -> (usize, usize) {
        match self {
            Self::Wildcard => (0, 0),
            Self::Names(names) => (names.len(), names.iter().map(|name| name.len()).sum()),
        }
    }

    fn names(&self) -> Option<Arc<Names>> {
        match self {
            Self::Wildcard => None,
            Self::Names(names) => Some(Arc::clone(names)),
        }
    }
}

#[derive(Debug, Default)]
struct TypeState {
    subscription: Subscription,
    nonce: String,
    /// `None` until the first response for this type.
    version: Option<String>,
    /// What the proxy holds after the last response.
    holdings: Holdings,
    /// The first request of the type or a new subscription: answer even if nothing changed.
    must_answer: bool,
    /// Clusters were sent with the removed ones kept; the final set goes after the others.
    in_transition: bool,
    /// The nonce of the last NACK logged, so that a repeated NACK is logged once.
    nacked_nonce: String,
    /// The type was subscribed by name once: an empty list no longer means the wildcard.
    named: bool,
}

/// The state-of-the-world variant of a stream.
pub(super) struct Sotw {
    limits: Arc<Limits>,
    per: PerType<TypeState>,
}

impl Sotw {
    pub fn new(limits: Arc<Limits>) -> Self {
        Self {
            limits,
            per: PerType::new(),
        }
    }

    /// Whether `type_url` must be sent: answered never or for an old subscription, or its
    /// version moved on.
    /// The types that must be sent, in push order.
    fn due(&self) -> Vec<&'static str> {
        self.per
            .due(|type_url, state| self.needs_send(type_url, state))
    }

    fn needs_send(&self, type_url: &str, state: &TypeState) -> bool {
        let Some(current) = self.per.current(type_url) else {
            return false;
        };
        state.must_answer
            || state.in_transition
            || state
                .version
                .as_ref()
                .is_some_and(|sent| *sent != current.version)
    }

    /// Whether sending the current clusters would remove some the proxy holds.
    fn removes_clusters(&self) -> bool {
        self.clusters().is_some_and(|(held, current)| {
            held.held()
                .keys()
                .any(|name| !current.resources.contains_key(*name))
        })
    }

    /// Whether the current clusters hold any the proxy lacks or holds at another version.
    fn adds_clusters(&self) -> bool {
        self.clusters().is_some_and(|(held, current)| {
            let differs = |r: &Resource| held.version(&r.name) != Some(&r.version);
            current.resources.values().any(differs)
        })
    }

    /// The clusters the proxy holds and the current ones, once both exist.
    fn clusters(&self) -> Option<(&Holdings, &Arc<TypeResources>)> {
        let state = self.per.types.get(type_url::CLUSTER)?;
        Some((&state.holdings, self.per.current(type_url::CLUSTER)?))
    }

    /// Sends `type_url`: its subscribed resources, plus, during a make-before-break cluster
    /// update, the clusters the proxy holds that are going away.
    fn respond(
        &mut self,
        type_url: &'static str,
        transition: bool,
        events: &StreamEvents,
    ) -> Option<DiscoveryResponse> {
        let snapshot = Arc::clone(self.per.snapshot.as_ref()?);
        let current = Arc::clone(snapshot.types.get(type_url)?);
        let nonce = self.per.nonce();
        let state = self.per.types.get_mut(type_url)?;
        let mut holdings = Holdings::of(Arc::clone(&current), state.subscription.names());
        let mut version = current.version.clone();
        if transition {
            for (name, held) in state.holdings.held() {
                if !current.resources.contains_key(name) {
                    holdings.set(Arc::from(name), Some(held));
                }
            }
            version.push_str("-transition");
        }
        state.nonce.clone_from(&nonce);
        state.version = Some(version.clone());
        state.must_answer = false;
        state.in_transition = transition;
        state.holdings = holdings;
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: state.holdings.contents(),
            type_url: type_url.to_string(),
            nonce,
        };
        events.sent(&Sent {
            type_url,
            version: &version,
            holdings: &state.holdings,
            bytes: response.encoded_len(),
            snapshot_created: snapshot.created,
        });
        Some(response)
    }
}

impl Variant for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn header(request: &DiscoveryRequest) -> (&str, Option<&Node>) {
        (&request.type_url, request.node.as_ref())
    }

    fn on_request(
        &mut self,
        request: DiscoveryRequest,
        events: &StreamEvents,
    ) -> Result<(), Status> {
        let Some(type_url) = type_url::known(&request.type_url) else {
            return Err(Status::invalid_argument("unknown type URL"));
        };
        let named_before = self
            .per
            .types
            .get(type_url)
            .is_some_and(|state| state.named);
        let longest = request.resource_names.iter().map(String::len).max();
        let mut usage = NameUse {
            longest: longest.unwrap_or_default(),
            ..NameUse::default()
        };
        // Checked before the names are copied.
        if let Some((reason, status)) = self.limits.refuse_names(usage) {
            events.refused(reason);
            return Err(status);
        }
        let subscription = Subscription::of(&request, named_before);
        let others = (self.per.types.iter())
            .filter(|(known, _)| **known != type_url)
            .map(|(_, state)| state.subscription.usage());
        for (count, bytes) in others.chain([subscription.usage()]) {
            usage.count += count;
            usage.bytes += bytes;
        }
        if let Some((reason, status)) = self.limits.refuse_names(usage) {
            events.refused(reason);
            return Err(status);
        }
        let state = self.per.types.entry(type_url).or_default();
        state.named |= !request.resource_names.is_empty();
        // Nothing was sent yet: whatever nonce the request carries, it is a first request.
        let answered = state.version.is_some();
        if answered && !request.response_nonce.is_empty() {
            if request.response_nonce != state.nonce {
                tracing::debug!(type_url, nonce = %request.response_nonce, "stale nonce ignored");
                return Ok(());
            }
            let sent = state.version.clone().unwrap_or_default();
            match &request.error_detail {
                Some(error) if state.nacked_nonce != request.response_nonce => {
                    let error = truncated(&error.message, self.limits.max_error_detail_bytes);
                    tracing::warn!(type_url, version = %sent, %error, "proxy rejected configuration");
                    events.nacked(type_url, &sent, &error);
                    state.nacked_nonce.clone_from(&request.response_nonce);
                }
                Some(_) => {}
                None => events.acked(type_url, &request.version_info),
            }
        }
        let resubscribed = subscription != state.subscription;
        if resubscribed || !answered {
            events.subscribed(type_url, subscription.names());
        }
        state.subscription = subscription;
        // Answer the first request of a type and every change of names; an ACK or a NACK of
        // the current subscription needs no answer.
        if !answered || request.response_nonce.is_empty() || resubscribed {
            state.must_answer = true;
        }
        Ok(())
    }

    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.per.snapshot = Some(snapshot);
    }

    fn pending(&self) -> bool {
        !self.due().is_empty()
    }

    /// The next type to send, in push order (make-before-break, `xds_protocol.rst` "Eventual
    /// consistency considerations"): new clusters before the listeners and routes that use
    /// them, and clusters that are gone removed only after the routes have moved off them.
    fn next_response(&mut self, events: &StreamEvents) -> Option<DiscoveryResponse> {
        let due = self.due();
        let first = *due.first()?;
        if first != type_url::CLUSTER {
            return self.respond(first, false, events);
        }
        let others = due.len() > 1;
        if self.per.types[type_url::CLUSTER].in_transition {
            // Clusters that appeared meanwhile go before what may use them; the kept ones go
            // once everything else has moved.
            if others && self.adds_clusters() {
                return self.respond(type_url::CLUSTER, true, events);
            }
            return match due.get(1) {
                Some(next) => self.respond(next, false, events),
                None => self.respond(type_url::CLUSTER, false, events),
            };
        }
        let transition = others && self.removes_clusters();
        self.respond(type_url::CLUSTER, transition, events)
    }
}

#[cfg(test)]
mod tests;
