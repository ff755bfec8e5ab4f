//! The ADS stream metrics, counted from the serving layer's events. The gauge of streams whose
//! last response of a type stands rejected follows each stream: a rejection starts with a NACK
//! and ends when the stream accepts the rejected version or anything sent since (a rejected
//! version is never sent again), or when the stream ends.
//!
//! Pushes are timed two ways. A response that brings a stream a newer version of a type than it
//! held is a change reaching that proxy: timed from the snapshot's publication. A stream's first
//! response of each type is its initial sync: timed from the stream opening, so that a proxy
//! that joins an idle mesh is not counted as a slow push of a snapshot published long before.
//! A response to a new subscription with the version the stream already held is neither.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use crate::xds::auth::Identity;
use crate::xds::events::{Callbacks, Sent, StreamId, ends_rejection};

use super::{Metrics, ReasonLabel};

/// Per stream: when it opened; per type: the last version sent and when its snapshot was
/// published, and the version rejected, while it stands.
#[derive(Debug, Default)]
pub(super) struct Streams(Mutex<HashMap<StreamId, StreamState>>);

#[derive(Debug)]
struct StreamState {
    opened: Instant,
    types: BTreeMap<String, TypeState>,
}

impl Default for StreamState {
    fn default() -> Self {
        Self {
            opened: Instant::now(),
            types: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct TypeState {
    sent: String,
    /// When the snapshot of the last response sent was published; `None` before the first.
    sent_snapshot: Option<Instant>,
    rejected: Option<String>,
}

/// What a response is to the stream it goes to.
enum Delivery {
    /// The stream's first response of the type, this long after it opened.
    Initial(std::time::Duration),
    /// A newer version than the stream held, this long after its snapshot was published.
    Change(std::time::Duration),
    /// The version it held, for a new subscription.
    Same,
}

impl Streams {
    fn opened(&self, stream: StreamId) {
        let mut streams = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        streams.insert(stream, StreamState::default());
    }

    fn update<T>(
        &self,
        stream: StreamId,
        type_url: &str,
        change: impl FnOnce(&mut TypeState) -> T,
    ) -> T {
        let mut streams = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let types = &mut streams.entry(stream).or_default().types;
        change(types.entry(type_url.to_string()).or_default())
    }

    /// Records a response sent, and says what it was to the stream.
    fn sent(&self, stream: StreamId, sent: &Sent<'_>) -> Delivery {
        let mut streams = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = streams.entry(stream).or_default();
        let opened = state.opened;
        let types = state.types.entry(sent.type_url.to_string()).or_default();
        let delivery = match types.sent_snapshot {
            None => Delivery::Initial(opened.elapsed()),
            Some(before) if before < sent.snapshot_created && types.sent != sent.version => {
                Delivery::Change(sent.snapshot_created.elapsed())
            }
            Some(_) => Delivery::Same,
        };
        types.sent = sent.version.to_string();
        types.sent_snapshot = Some(sent.snapshot_created);
        delivery
    }

    /// Forgets a stream; the types it was rejecting.
    fn remove(&self, stream: StreamId) -> Vec<String> {
        let mut streams = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let types = streams.remove(&stream).unwrap_or_default().types;
        (types.into_iter())
            .filter(|(_, state)| state.rejected.is_some())
            .map(|(type_url, _)| type_url)
            .collect()
    }
}

impl Metrics {
    fn rejecting(&self, type_url: &str) -> prometheus_client::metrics::gauge::Gauge {
        let label = Metrics::type_label(type_url);
        self.rejecting.get_or_create(&label).clone()
    }
}

impl Callbacks for Metrics {
    fn connected(&self, stream: StreamId, _protocol: &'static str, _identity: Option<&Identity>) {
        self.connected_proxies.inc();
        self.streams.opened(stream);
    }

    fn sent(&self, stream: StreamId, sent: &Sent<'_>) {
        let label = Metrics::type_label(sent.type_url);
        match self.streams.sent(stream, sent) {
            Delivery::Initial(after) => {
                let initial = self.initial_sync.get_or_create(&label);
                initial.observe(after.as_secs_f64());
            }
            Delivery::Change(after) => self.push_latency.observe(after.as_secs_f64()),
            Delivery::Same => {}
        }
        self.pushes.get_or_create(&label).inc();
    }

    fn acked(&self, stream: StreamId, type_url: &str, version: &str) {
        let recovered = self.streams.update(stream, type_url, |state| {
            let ends = (state.rejected.as_ref())
                .is_some_and(|rejected| ends_rejection(rejected, &state.sent, version));
            if ends {
                state.rejected = None;
            }
            ends
        });
        if recovered {
            self.rejecting(type_url).dec();
        }
        self.acks
            .get_or_create(&Metrics::type_label(type_url))
            .inc();
    }

    fn nacked(&self, stream: StreamId, type_url: &str, version: &str, _error: &str) {
        let newly = self.streams.update(stream, type_url, |state| {
            state.rejected.replace(version.to_string()).is_none()
        });
        if newly {
            self.rejecting(type_url).inc();
        }
        self.nacks
            .get_or_create(&Metrics::type_label(type_url))
            .inc();
    }

    fn refused(&self, _stream: Option<StreamId>, reason: &str) {
        let label = ReasonLabel {
            reason: reason.to_string(),
        };
        self.stream_errors.get_or_create(&label).inc();
    }

    fn disconnected(&self, stream: StreamId) {
        self.connected_proxies.dec();
        // A stream that ends while rejecting no longer counts.
        for type_url in self.streams.remove(stream) {
            self.rejecting(&type_url).dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::events::testing::sent_listeners;

    const LDS: &str = crate::xds::type_url::LISTENER;

    fn rejecting(metrics: &Metrics) -> i64 {
        metrics.rejecting(LDS).get()
    }

    #[test]
    fn a_rejection_counts_until_a_later_version_is_accepted_or_the_stream_ends() {
        let metrics = Metrics::default();
        metrics.connected(1, "sotw", None);
        sent_listeners(&metrics, "1");
        metrics.acked(1, LDS, "1");
        sent_listeners(&metrics, "2");
        metrics.nacked(1, LDS, "2", "bad listener");
        metrics.nacked(1, LDS, "2", "bad listener");
        assert_eq!(rejecting(&metrics), 1, "one stream, counted once");
        // Version 2 is never sent again; the proxy accepts version 3.
        sent_listeners(&metrics, "3");
        metrics.acked(1, LDS, "3");
        assert_eq!(rejecting(&metrics), 0);
        sent_listeners(&metrics, "4");
        metrics.nacked(1, LDS, "4", "bad again");
        assert_eq!(rejecting(&metrics), 1);
        metrics.disconnected(1);
        assert_eq!(rejecting(&metrics), 0);
        assert_eq!(metrics.connected_proxies.get(), 0);
    }
}
