//! One ADS stream's life, the same for both variants: a `select!` loop over "shutdown", "a new
//! snapshot", "a request from Envoy" and "room to send", with every request checked first.
//!
//! A stream never queues responses: a variant only marks what must be sent, and the next
//! response is made from the newest snapshot when the previous one has been taken by the
//! transport. A slow proxy therefore holds at most one response, coalesced to the newest state;
//! one that leaves it unread for the write timeout is closed with `UNAVAILABLE`. Neither blocks
//! other streams or shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::config::core::v3::Node;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};

use super::auth::Identity;
use super::events::StreamEvents;
use super::limits::{Limits, truncated};
use super::snapshot::{Snapshot, Snapshots, TypeResources};
use super::type_url;

/// What the loop needs of a protocol variant (state of the world or incremental).
pub(super) trait Variant: Send + 'static {
    type Request: Message + Default + Send + 'static;
    type Response: Send + 'static;

    /// The request's type URL and node, checked before the variant sees it.
    fn header(request: &Self::Request) -> (&str, Option<&Node>);

    /// Applies a request (ACK, NACK, subscription); an error ends the stream with it.
    fn on_request(&mut self, request: Self::Request, events: &StreamEvents) -> Result<(), Status>;

    /// A new snapshot is served.
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>);

    /// Whether a response is waiting to be made.
    fn pending(&self) -> bool;

    /// Makes the next response, in push order, from the newest state; `None` when, after all,
    /// nothing needs sending.
    fn next_response(&mut self, events: &StreamEvents) -> Option<Self::Response>;
}

/// What both variants keep: per-type state, the snapshot served, and the nonce counter.
pub(super) struct PerType<S> {
    pub types: BTreeMap<&'static str, S>,
    pub snapshot: Option<Arc<Snapshot>>,
    nonces: u64,
}

impl<S> PerType<S> {
    pub fn new() -> Self {
        Self {
            types: BTreeMap::new(),
            snapshot: None,
            nonces: 0,
        }
    }

    /// The served resources of `type_url`, once there is a snapshot.
    pub fn current(&self, type_url: &str) -> Option<&Arc<TypeResources>> {
        self.snapshot.as_ref()?.types.get(type_url)
    }

    /// A nonce never used on this stream before.
    pub fn nonce(&mut self) -> String {
        self.nonces += 1;
        self.nonces.to_string()
    }

    /// The types `needs_send` selects, in push order.
    pub fn due(&self, needs_send: impl Fn(&str, &S) -> bool) -> Vec<&'static str> {
        let mut due: Vec<&'static str> = self
            .types
            .iter()
            .filter(|(type_url, state)| needs_send(type_url, state))
            .map(|(type_url, _)| *type_url)
            .collect();
        due.sort_by_key(|type_url| type_url::rank(type_url));
        due
    }
}

/// What every stream task owns besides its variant.
pub(super) struct StreamContext {
    pub events: StreamEvents,
    /// The pod the stream authenticated as, when streams must authenticate.
    pub identity: Option<Identity>,
    pub snapshots: Snapshots,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub limits: Arc<Limits>,
}

/// The response stream handed to the transport: the responses the task makes, then the status
/// the task ended the stream with (or `OK` when it simply stopped).
pub struct Outgoing<T> {
    responses: mpsc::Receiver<T>,
    end: Option<oneshot::Receiver<Status>>,
    ended: bool,
}

impl<T> Stream for Outgoing<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(end) = self.end.as_mut()
            && let Poll::Ready(result) = Pin::new(end).poll(cx)
        {
            self.end = None;
            if let Ok(status) = result {
                self.ended = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        match self.responses.poll_recv(cx) {
            Poll::Ready(Some(response)) => Poll::Ready(Some(Ok(response))),
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Starts the task serving one stream and returns what the transport sends.
pub(super) fn spawn<V: Variant>(
    variant: V,
    context: StreamContext,
    requests: Streaming<V::Request>,
) -> Outgoing<V::Response> {
    // One response in the channel, one being written: a stream never holds more.
    let (responses, receiver) = mpsc::channel(1);
    let (end, end_receiver) = oneshot::channel();
    tokio::spawn(async move {
        let mut task = Task {
            variant,
            context,
            node_id: None,
        };
        // The status goes out before the responses end, or the stream would close as OK.
        if let Some(status) = task.run(requests, &responses).await {
            let _ = end.send(status);
        }
        drop(responses);
    });
    Outgoing {
        responses: receiver,
        end: Some(end_receiver),
        ended: false,
    }
}

struct Task<V> {
    variant: V,
    context: StreamContext,
    /// The node id of the stream's first request; it may not change.
    node_id: Option<String>,
}

impl<V: Variant> Task<V> {
    /// Serves the stream; returns the status to end it with, `None` for a plain close.
    async fn run(
        &mut self,
        mut requests: Streaming<V::Request>,
        responses: &mpsc::Sender<V::Response>,
    ) -> Option<Status> {
        if let Some(snapshot) = self.context.snapshots.borrow_and_update().clone() {
            self.variant.on_snapshot(snapshot);
        }
        let write_timeout = self.context.limits.write_timeout;
        let mut waiting_since: Option<Instant> = None;
        let token_expires = self.context.identity.as_ref().and_then(|identity| {
            let left = identity
                .expires_at?
                .duration_since(std::time::SystemTime::now());
            Some(Instant::now() + left.unwrap_or_default())
        });
        loop {
            let pending = self.variant.pending();
            // The write timeout runs from when a response first waited for room.
            let deadline = if pending {
                *waiting_since.get_or_insert_with(Instant::now) + write_timeout
            } else {
                waiting_since = None;
                Instant::now() + write_timeout
            };
            tokio::select! {
                () = self.context.shutdown.cancelled() => return None,
                changed = self.context.snapshots.changed() => {
                    changed.ok()?;
                    let snapshot = self.context.snapshots.borrow_and_update().clone();
                    if let Some(snapshot) = snapshot {
                        self.variant.on_snapshot(snapshot);
                    }
                }
                request = requests.next() => match request {
                    Some(Ok(request)) => {
                        if let Err(status) = self.on_request(request) {
                            tracing::warn!(node = ?self.node_id, %status, "ADS stream refused");
                            return Some(status);
                        }
                    }
                    Some(Err(status)) => return ended_by_client(status, &self.context.limits),
                    None => return None,
                },
                permit = responses.reserve(), if pending => {
                    let permit = permit.ok()?;
                    waiting_since = None;
                    if let Some(response) = self.variant.next_response(&self.context.events) {
                        permit.send(response);
                    }
                }
                () = tokio::time::sleep_until(token_expires.unwrap_or(deadline)), if token_expires.is_some() => {
                    self.context.events.refused("token_expired");
                    tracing::info!(node = ?self.node_id, "ADS stream closed: its token expired; the proxy reconnects with its current one");
                    return Some(Status::unauthenticated(
                        "the stream's token expired; open a new stream with the current token",
                    ));
                }
                () = tokio::time::sleep_until(deadline), if pending => {
                    self.context.events.refused("write_timeout");
                    tracing::warn!(node = ?self.node_id, timeout = ?write_timeout, "ADS stream closed: the proxy did not read its responses");
                    return Some(Status::unavailable(format!(
                        "the proxy left a response unread for {}",
                        humantime::format_duration(write_timeout)
                    )));
                }
            }
        }
    }

    /// Checks a request's type URL and node, then hands it to the variant.
    fn on_request(&mut self, request: V::Request) -> Result<(), Status> {
        let (type_url, node) = V::header(&request);
        let limits = Arc::clone(&self.context.limits);
        let events = &self.context.events;
        let refused = |label: &str, status: Status| {
            events.refused(label);
            status
        };
        if type_url::known(type_url).is_none() {
            return Err(refused(
                "unknown_type",
                Status::invalid_argument(format!(
                    "this server serves no resources of type {:?}",
                    truncated(type_url, 200)
                )),
            ));
        }
        match (node, &self.node_id) {
            (None, None) => {
                return Err(refused(
                    "missing_node",
                    Status::invalid_argument("the first request of a stream must carry a node id"),
                ));
            }
            (Some(node), None) => {
                check_node(node, &limits).map_err(|(label, status)| refused(label, status))?;
                if let Some(identity) = &self.context.identity
                    && node.id != identity.node_id()
                {
                    return Err(refused(
                        "node_mismatch",
                        Status::permission_denied(format!(
                            "node id {:?} is not the authenticated {}; it must be {:?}",
                            truncated(&node.id, 200),
                            identity.describe(),
                            identity.node_id()
                        )),
                    ));
                }
                self.context.events.identified(node);
                self.node_id = Some(node.id.clone());
            }
            // Later requests may leave the node out or its id empty, but not change it.
            (Some(node), Some(first)) if !node.id.is_empty() && node.id != *first => {
                return Err(refused(
                    "node_changed",
                    Status::invalid_argument(format!(
                        "the node id cannot change within a stream (was {first:?})"
                    )),
                ));
            }
            _ => {}
        }
        self.variant.on_request(request, &self.context.events)
    }
}

/// A node is acceptable: an id, within the size limits.
fn check_node(node: &Node, limits: &Limits) -> Result<(), (&'static str, Status)> {
    if node.id.is_empty() {
        let status = Status::invalid_argument("the first request of a stream must carry a node id");
        return Err(("missing_node", status));
    }
    if node.id.len() > limits.max_node_id_bytes {
        let status = Status::resource_exhausted(format!(
            "the node id is {} bytes, more than the {} allowed (--xds-max-node-id-bytes)",
            node.id.len(),
            limits.max_node_id_bytes
        ));
        return Err(("node_too_large", status));
    }
    let metadata = node.metadata.as_ref().map_or(0, Message::encoded_len);
    if metadata > limits.max_node_metadata_bytes {
        let status = Status::resource_exhausted(format!(
            "the node metadata is {metadata} bytes, more than the {} allowed (--xds-max-node-metadata-bytes)",
            limits.max_node_metadata_bytes
        ));
        return Err(("node_too_large", status));
    }
    Ok(())
}

/// The status to end a stream with when reading a request failed: a request over the size
/// limit is `RESOURCE_EXHAUSTED`; anything else means the proxy went away.
fn ended_by_client(status: Status, limits: &Limits) -> Option<Status> {
    if status.code() == Code::OutOfRange {
        tracing::warn!(%status, "ADS request over the size limit");
        return Some(Status::resource_exhausted(format!(
            "a request exceeded the {} bytes allowed (--xds-max-request-bytes): {}",
            limits.max_request_bytes,
            status.message()
        )));
    }
    tracing::debug!(%status, "ADS stream ended by the proxy");
    None
}
