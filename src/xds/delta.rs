//! Incremental ADS streams (`xds_protocol.rst` "Incremental xDS").
//!
//! Per type the stream tracks what the proxy holds (the shared snapshot type it was last sent,
//! with the names that differ on top, seeded from `initial_resource_versions` on reconnect) and
//! sends only what differs: changed resources in `resources`, deleted or non-existent
//! subscribed ones in `removed_resources`. Subscription changes apply even with a stale nonce;
//! ACK/NACK bookkeeping only with the current one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tonic::Status;

use super::events::{Sent, StreamEvents};
use super::holdings::{Held, Holdings, Names};
use super::limits::{Limits, NameUse, truncated};
use super::snapshot::{Resource, Snapshot, TypeResources};
use super::stream::{PerType, Variant};
use super::type_url;
use super::wire::{DeltaDiscoveryResponse, DeltaResource, Response};

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: Arc<Names>,
    /// What the proxy holds.
    holdings: Holdings,
    /// The snapshot type the last diff was made against.
    diffed: Option<Arc<TypeResources>>,
    /// Subscribed names already reported as not existing.
    reported_absent: BTreeSet<Arc<str>>,
    nonce: String,
    sent_version: String,
    /// The first request of the type: answered even when there is nothing to send.
    must_answer: bool,
    /// New names were subscribed: send them if they exist.
    subscribed: bool,
    /// Clusters whose removal waits until listeners and routes have moved off them.
    removals_waiting: bool,
    /// The nonce of the last NACK logged, so that a repeated NACK is logged once.
    nacked_nonce: String,
}

impl TypeState {
    fn subscription(&self) -> Option<Arc<Names>> {
        (!self.wildcard).then(|| Arc::clone(&self.names))
    }

    /// The subscribed name's shared copy, or a new one.
    fn name(&self, name: &str) -> Arc<str> {
        self.names
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }
}

/// What one response carries.
#[derive(Default)]
struct Diff {
    added: Vec<DeltaResource>,
    removed: Vec<String>,
    /// The subscribed names the snapshot answers without listing them, as made for this diff.
    made: BTreeMap<Arc<str>, Resource>,
}

/// The incremental variant of a stream.
pub(super) struct Delta {
    limits: Arc<Limits>,
    per: PerType<TypeState>,
}

impl Delta {
    pub fn new(limits: Arc<Limits>) -> Self {
        Self {
            limits,
            per: PerType::new(),
        }
    }

    /// The types that must be sent, in push order.
    fn due(&self) -> Vec<&'static str> {
        self.per
            .due(|type_url, state| self.needs_send(type_url, state))
    }

    /// The served resources of `type_url`, as incremental streams are served them.
    fn current(&self, type_url: &str) -> Option<&Arc<TypeResources>> {
        self.per.snapshot.as_ref()?.incremental.get(type_url)
    }

    fn needs_send(&self, type_url: &str, state: &TypeState) -> bool {
        let Some(current) = self.current(type_url) else {
            return false;
        };
        let moved = state
            .diffed
            .as_ref()
            .is_some_and(|diffed| !Arc::ptr_eq(diffed, current));
        state.must_answer || state.subscribed || state.removals_waiting || moved
    }

    fn diff(&self, type_url: &str) -> Diff {
        let (Some(state), Some(current)) = (self.per.types.get(type_url), self.current(type_url))
        else {
            return Diff::default();
        };
        let mut diff = Diff::default();
        if state.holdings.is_exactly(current) && !state.subscribed {
            return diff;
        }
        let mut offer = |resource: &Resource| {
            let fresh = state.holdings.version(&resource.name) != Some(resource.version.as_str());
            if fresh {
                diff.added.push(DeltaResource {
                    name: resource.name.clone(),
                    version: resource.version.clone(),
                    resource: resource.packed.clone(),
                });
            }
        };
        let mut made = BTreeMap::new();
        if state.wildcard {
            current.resources.values().for_each(&mut offer);
        } else {
            // The subscribed names, which may be few of many, or answered without being listed.
            for name in state.names.iter() {
                match current.resources.get(&**name) {
                    Some(resource) => offer(resource),
                    None => {
                        if let Some(resource) = current.made(name) {
                            offer(&resource);
                            made.insert(Arc::clone(name), resource);
                        }
                    }
                }
            }
        }
        let held = state.holdings.held();
        let exists = |name: &str| {
            current.resources.contains_key(name)
                || made.contains_key(name)
                || current.made(name).is_some()
        };
        diff.removed.extend(
            held.keys()
                .filter(|name| !exists(name))
                .map(|n| n.to_string()),
        );
        diff.removed.extend(
            state
                .names
                .iter()
                .filter(|name| !exists(name) && !held.contains_key(&***name))
                .filter(|name| !state.reported_absent.contains(*name))
                .map(|name| name.to_string()),
        );
        diff.made = made;
        diff
    }

    /// Records that the proxy now holds the current resources of `type_url` (less the
    /// removals still `waiting`) and makes the response, or `None` when it would be empty and
    /// nothing requires an answer.
    fn send(
        &mut self,
        type_url: &'static str,
        diff: Diff,
        waiting: Vec<String>,
        events: &StreamEvents,
    ) -> Option<DeltaDiscoveryResponse> {
        let snapshot = Arc::clone(self.per.snapshot.as_ref()?);
        let current = Arc::clone(snapshot.incremental.get(type_url)?);
        let state = self.per.types.get_mut(type_url)?;
        let answer = state.must_answer;
        let previous = std::mem::take(&mut state.holdings);
        let kept: Vec<(Arc<str>, Held)> = previous
            .held()
            .into_iter()
            .filter(|(name, _)| waiting.iter().any(|w| w == name))
            .map(|(name, held)| (Arc::from(name), held))
            .collect();
        state.holdings = Holdings::of(Arc::clone(&current), state.subscription());
        for (name, held) in kept {
            state.holdings.set(name, Some(held));
        }
        // Answered without being listed: held as made (the diff sent any that differed).
        for (name, resource) in diff.made {
            let held = Held {
                version: resource.version,
                packed: Some(resource.packed),
            };
            state.holdings.set(name, Some(held));
        }
        for name in &diff.removed {
            if let Some(name) = state.names.get(name.as_str())
                && !current.resources.contains_key(&**name)
            {
                state.reported_absent.insert(Arc::clone(name));
            }
        }
        state.diffed = Some(current);
        state.must_answer = false;
        state.subscribed = false;
        state.removals_waiting = !waiting.is_empty();
        if diff.added.is_empty() && diff.removed.is_empty() && !answer {
            return None;
        }
        let nonce = self.per.nonce();
        let state = self.per.types.get_mut(type_url)?;
        state.nonce = nonce;
        state
            .sent_version
            .clone_from(&snapshot.incremental[type_url].version);
        let response = DeltaDiscoveryResponse {
            system_version_info: snapshot.version.to_string(),
            resources: diff.added,
            type_url: type_url.to_string(),
            nonce: state.nonce.clone(),
            removed_resources: diff.removed,
        };
        events.sent(&Sent {
            type_url,
            version: &state.sent_version,
            holdings: &state.holdings,
            bytes: response.encoded_len(),
            snapshot_created: snapshot.created,
        });
        Some(response)
    }

    /// The names the stream would hold after `request`, over every type: its subscriptions,
    /// and on a type's first request the names and versions a reconnecting client claims.
    fn names_after(&self, type_url: &str, request: &DeltaDiscoveryRequest) -> NameUse {
        let mut usage = NameUse::default();
        for (known, state) in &self.per.types {
            if *known != type_url {
                usage.count += state.names.len();
                usage.bytes += state.names.iter().map(|name| name.len()).sum::<usize>();
            }
        }
        let current = self.per.types.get(type_url);
        let mut names: BTreeSet<&str> = current
            .map(|state| state.names.iter().map(|name| &**name).collect())
            .unwrap_or_default();
        names.extend(request.resource_names_subscribe.iter().map(String::as_str));
        for name in &request.resource_names_unsubscribe {
            names.remove(name.as_str());
        }
        usage.bytes += names.iter().map(|name| name.len()).sum::<usize>();
        let claimed = &request.initial_resource_versions;
        let claims = current.is_none().then_some(claimed).into_iter().flatten();
        for (name, version) in claims {
            usage.bytes += name.len() + version.len();
            usage.longest = usage.longest.max(name.len()).max(version.len());
        }
        usage.count += names.len().max(claimed.len());
        let subscribed = request.resource_names_subscribe.iter();
        usage.longest = subscribed.map(String::len).fold(usage.longest, usize::max);
        usage
    }
}

impl Variant for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn header(request: &DeltaDiscoveryRequest) -> (&str, Option<&Node>) {
        (&request.type_url, request.node.as_ref())
    }

    fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        events: &StreamEvents,
    ) -> Result<(), Status> {
        let Some(type_url) = type_url::known(&request.type_url) else {
            return Err(Status::invalid_argument("unknown type URL"));
        };
        let usage = self.names_after(type_url, &request);
        if let Some((reason, status)) = self.limits.refuse_names(usage) {
            events.refused(reason);
            return Err(status);
        }
        let max_error = self.limits.max_error_detail_bytes;
        let first = !self.per.types.contains_key(type_url);
        let state = self.per.types.entry(type_url).or_default();
        if first {
            state.must_answer = true;
            // Legacy wildcard: a first request for listeners or clusters that names nothing.
            state.wildcard =
                request.resource_names_subscribe.is_empty() && type_url::is_full_state(type_url);
        }
        if !request.response_nonce.is_empty() {
            if request.response_nonce == state.nonce {
                match &request.error_detail {
                    Some(error) if state.nacked_nonce != request.response_nonce => {
                        let error = truncated(&error.message, max_error);
                        tracing::warn!(type_url, version = %state.sent_version, %error, "proxy rejected configuration");
                        events.nacked(type_url, &state.sent_version, &error);
                        state.nacked_nonce.clone_from(&request.response_nonce);
                    }
                    Some(_) => {}
                    None => events.acked(type_url, &state.sent_version),
                }
            } else {
                tracing::debug!(type_url, nonce = %request.response_nonce, "stale nonce; applying subscription changes only");
            }
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
                state.subscribed = true;
                continue;
            }
            let name = state.name(name);
            Arc::make_mut(&mut state.names).insert(Arc::clone(&name));
            state.reported_absent.remove(&name);
            state.subscribed = true;
            // A re-subscribe is answered even if the proxy had the resource, unless it told us
            // its version on reconnect.
            if !(first && request.initial_resource_versions.contains_key(&*name)) {
                state.holdings.set(name, None);
            }
        }
        if first {
            for (name, version) in &request.initial_resource_versions {
                let held = Held {
                    version: version.clone(),
                    packed: None,
                };
                let name = state.name(name);
                state.holdings.set(name, Some(held));
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
                continue;
            }
            Arc::make_mut(&mut state.names).remove(name.as_str());
            state.reported_absent.remove(name.as_str());
            if state.wildcard {
                // Still wanted through the wildcard: the proxy is answered with it again.
                state.subscribed = true;
            }
            if state.holdings.version(name).is_some() {
                state.holdings.set(Arc::from(name.as_str()), None);
            }
        }
        let changed = !request.resource_names_subscribe.is_empty()
            || !request.resource_names_unsubscribe.is_empty();
        if changed || first {
            events.subscribed(type_url, state.subscription());
        }
        Ok(())
    }

    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.per.snapshot = Some(snapshot);
    }

    fn pending(&self) -> bool {
        !self.due().is_empty()
    }

    /// What changed, type by type in push order: additions first, then the removal of
    /// clusters, once listeners and routes no longer use them.
    fn next_response(&mut self, events: &StreamEvents) -> Option<DeltaDiscoveryResponse> {
        loop {
            let due = self.due();
            let first = *due.first()?;
            let others = due.len() > 1;
            let mut diff = self.diff(first);
            let waiting = if first == type_url::CLUSTER && others {
                std::mem::take(&mut diff.removed)
            } else {
                Vec::new()
            };
            if first == type_url::CLUSTER && others && self.per.types[first].removals_waiting {
                // Clusters that appeared meanwhile go before what may use them; removals wait
                // for the other types.
                if !diff.added.is_empty() {
                    return self.send(first, diff, waiting, events);
                }
                let next = due[1];
                let diff = self.diff(next);
                if let Some(response) = self.send(next, diff, Vec::new(), events) {
                    return Some(response);
                }
                continue;
            }
            if let Some(response) = self.send(first, diff, waiting, events) {
                return Some(response);
            }
        }
    }
}

#[cfg(test)]
mod tests;
