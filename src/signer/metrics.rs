//! The signer's Prometheus metrics, served as text on its admin listener's `/metrics`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels a count with the interface a request came through (`ext_proc`, `http`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViaLabel {
    pub via: &'static str,
}

/// Labels a refusal with its reason (`no_credentials`, `bad_request`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every metric the signer exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub signed: Family<ViaLabel, Counter>,
    pub refused: Family<ReasonLabel, Counter>,
    /// Seconds spent computing one signature.
    pub latency: Histogram,
    credential_loads: Counter,
    credential_failures: Counter,
    expires_in: Gauge,
    /// Unix seconds of the current credentials' expiry; `i64::MAX` when they never expire,
    /// 0 before any were loaded.
    expiry: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("lattice_xds_signer"),
            signed: Family::default(),
            refused: Family::default(),
            latency: Histogram::new(exponential_buckets(0.000_001, 2.0, 16)),
            credential_loads: Counter::default(),
            credential_failures: Counter::default(),
            expires_in: Gauge::default(),
            expiry: AtomicI64::new(0),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "requests_signed",
            "Requests signed, by interface",
            metrics.signed.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused instead of being sent unsigned, by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "signing_latency_seconds",
            "Time to compute one signature",
            metrics.latency.clone(),
        );
        registry.register(
            "credential_loads",
            "Successful loads of AWS credentials",
            metrics.credential_loads.clone(),
        );
        registry.register(
            "credential_load_failures",
            "Failed loads of AWS credentials",
            metrics.credential_failures.clone(),
        );
        registry.register(
            "credentials_expire_in_seconds",
            "Seconds until the current AWS credentials expire (-1: none loaded, a very large \
             value: they do not expire)",
            metrics.expires_in.clone(),
        );
        metrics
    }
}

impl Metrics {
    pub fn credentials_loaded(&self, expiry: Option<SystemTime>) {
        self.credential_loads.inc();
        let seconds = expiry.map_or(i64::MAX, |expiry| {
            expiry
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs() as i64)
        });
        self.expiry.store(seconds, Ordering::Relaxed);
    }

    pub fn credentials_failed(&self) {
        self.credential_failures.inc();
    }

    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        let expiry = self.expiry.load(Ordering::Relaxed);
        self.expires_in.set(match expiry {
            0 => -1,
            i64::MAX => i64::MAX,
            _ => expiry - now,
        });
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
