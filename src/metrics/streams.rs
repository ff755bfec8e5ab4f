//! The ADS stream metrics, counted from the serving layer's events.

use crate::xds::auth::Identity;
use crate::xds::events::{Callbacks, Sent, StreamId};

use super::{Metrics, ReasonLabel};

impl Callbacks for Metrics {
    fn connected(&self, _stream: StreamId, _protocol: &'static str, _identity: Option<&Identity>) {
        self.connected_proxies.inc();
    }

    fn sent(&self, _stream: StreamId, sent: &Sent<'_>) {
        self.pushes
            .get_or_create(&Metrics::type_label(sent.type_url))
            .inc();
        let age = sent.snapshot_created.elapsed();
        self.push_latency.observe(age.as_secs_f64());
    }

    fn acked(&self, _stream: StreamId, type_url: &str, _version: &str) {
        self.acks
            .get_or_create(&Metrics::type_label(type_url))
            .inc();
    }

    fn nacked(&self, _stream: StreamId, type_url: &str, _version: &str, _error: &str) {
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

    fn disconnected(&self, _stream: StreamId) {
        self.connected_proxies.dec();
    }
}
