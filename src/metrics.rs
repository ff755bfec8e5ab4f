//! The controller's Prometheus metrics, served as text on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod streams;

/// Labels a metric with the xDS type (`CDS`, `LDS`, `RDS`, `SDS`).
/// Labels the injection counter with what was decided.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

/// Labels an invalid-input gauge with the kind of object that was skipped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Labels a refused or closed ADS stream with why (`unknown_type`, `missing_node`,
/// `node_changed`, `node_too_large`, `too_many_subscriptions`, `write_timeout`,
/// `unauthenticated`, `not_a_pod`, `node_mismatch`, `token_review_failed`, `token_expired`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Labels an outcome: `authenticated`, `refused`, `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

impl ResultLabel {
    pub fn new(result: &str) -> Self {
        Self {
            result: result.to_string(),
        }
    }
}

/// Labels a trust metric with the CA's ARN.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaLabel {
    pub ca: String,
}

/// Labels a stage of a rebuild (`build`, `translate`, `snapshot`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

/// Labels a VPC Lattice API call with its operation (`ListServiceNetworkServiceAssociations`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connected_proxies: Gauge,
    pub pushes: Family<TypeLabel, Counter>,
    /// Seconds from a snapshot's publication to each response that brings a stream a newer
    /// version of a type than it held.
    pub push_latency: Histogram,
    /// Seconds from a stream opening to its first response of each type.
    pub initial_sync: Family<TypeLabel, Histogram, fn() -> Histogram>,
    pub acks: Family<TypeLabel, Counter>,
    pub nacks: Family<TypeLabel, Counter>,
    /// Streams whose last response of a type stands rejected (a later ACK ends it).
    pub rejecting: Family<TypeLabel, Gauge>,
    /// ADS streams the controller refused or closed, by reason.
    pub stream_errors: Family<ReasonLabel, Counter>,
    /// TokenReviews asked of the API server for ADS streams, by result.
    pub token_reviews: Family<ResultLabel, Counter>,
    /// ADS streams whose token was checked recently enough to need no TokenReview.
    pub token_review_cache_hits: Counter,
    /// Objects currently skipped because they are invalid, by kind.
    pub invalid_inputs: Family<KindLabel, Gauge>,
    /// Fields currently ignored in objects that are served (unknown to their schema), by kind.
    pub input_warnings: Family<KindLabel, Gauge>,
    pub snapshots: Counter,
    /// Rebuilds that produced an inconsistent snapshot (kept the previous one).
    pub snapshot_errors: Counter,
    /// Unix seconds of each CA's last successful fetch.
    pub trust_last_success: Family<CaLabel, Gauge>,
    /// Unix seconds when each served CA certificate expires.
    pub trust_not_after: Family<CaLabel, Gauge>,
    /// 1 when each CA's last fetch succeeded, 0 when it failed.
    pub trust_fetch_ok: Family<CaLabel, Gauge>,
    pub trust_fetch_failures: Family<CaLabel, Counter>,
    /// Failed watch requests to the Kubernetes API, by kind (retried with backoff).
    pub kubernetes_watch_errors: Family<KindLabel, Counter>,
    /// 1 while this replica holds the leader Lease (it alone writes Events and ConfigMaps).
    pub leader: Gauge,
    /// Kubernetes Events written about skipped objects.
    pub events_written: Counter,
    /// Failed writes to the Kubernetes API (Events, ConfigMaps), retried on the next change.
    pub kubernetes_write_errors: Counter,
    /// Admission reviews of pods, by decision (injected, not_requested, opted_out,
    /// already_injected).
    pub injections: Family<DecisionLabel, Counter>,
    /// Polls of the VPC Lattice API, by result (`ok`, `failed`).
    pub discovery_polls: Family<ResultLabel, Counter>,
    /// Failed polls by reason (`throttled`, `unreachable`, `denied`, `error`).
    pub discovery_failures: Family<ReasonLabel, Counter>,
    /// Requests sent to the VPC Lattice API (each page counts), by operation.
    pub discovery_api_calls: Family<OperationLabel, Counter>,
    /// VPC Lattice services the last successful poll found.
    pub discovered_services: Gauge,
    /// Unix seconds of the last successful poll.
    pub discovery_last_success: Gauge,
    /// Seconds the last poll took, successful or not.
    pub discovery_poll_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Seconds each stage of the last published rebuild took: building the mesh from the
    /// objects, translating it, and making the snapshot.
    pub rebuild_seconds: Family<StageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// What each ADS stream last sent and has rejected, for `rejecting`.
    streams: streams::Streams,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("lattice_xds"),
            connected_proxies: Gauge::default(),
            pushes: Family::default(),
            push_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            initial_sync: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            acks: Family::default(),
            nacks: Family::default(),
            rejecting: Family::default(),
            streams: streams::Streams::default(),
            stream_errors: Family::default(),
            token_reviews: Family::default(),
            token_review_cache_hits: Counter::default(),
            invalid_inputs: Family::default(),
            input_warnings: Family::default(),
            snapshots: Counter::default(),
            snapshot_errors: Counter::default(),
            trust_last_success: Family::default(),
            trust_not_after: Family::default(),
            trust_fetch_ok: Family::default(),
            trust_fetch_failures: Family::default(),
            kubernetes_watch_errors: Family::default(),
            leader: Gauge::default(),
            events_written: Counter::default(),
            kubernetes_write_errors: Counter::default(),
            injections: Family::default(),
            discovery_polls: Family::default(),
            discovery_failures: Family::default(),
            discovery_api_calls: Family::default(),
            discovered_services: Gauge::default(),
            discovery_last_success: Gauge::default(),
            discovery_poll_seconds: Gauge::default(),
            rebuild_seconds: Family::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "connected_proxies",
            "Envoy ADS streams open now",
            metrics.connected_proxies.clone(),
        );
        registry.register(
            "pushes",
            "xDS responses sent, by type",
            metrics.pushes.clone(),
        );
        registry.register(
            "push_latency_seconds",
            "Time from a snapshot being published to a response that brings a stream a newer version of a type than it held",
            metrics.push_latency.clone(),
        );
        registry.register(
            "initial_sync_seconds",
            "Time from an ADS stream opening to its first response of each type",
            metrics.initial_sync.clone(),
        );
        registry.register(
            "acks",
            "xDS responses Envoy accepted, by type",
            metrics.acks.clone(),
        );
        registry.register(
            "nacks",
            "xDS responses Envoy rejected, by type",
            metrics.nacks.clone(),
        );
        registry.register(
            "rejecting_proxies",
            "ADS streams whose last response of each type Envoy rejected and has not yet replaced with an accepted one",
            metrics.rejecting.clone(),
        );
        registry.register(
            "stream_errors",
            "ADS streams refused or closed by the controller, by reason (bad request, limit, unread responses)",
            metrics.stream_errors.clone(),
        );
        registry.register(
            "token_reviews",
            "TokenReviews of sidecar tokens asked of the Kubernetes API, by result (authenticated, refused, error)",
            metrics.token_reviews.clone(),
        );
        registry.register(
            "token_review_cache_hits",
            "ADS streams authenticated from a recent TokenReview of the same token",
            metrics.token_review_cache_hits.clone(),
        );
        registry.register(
            "invalid_inputs",
            "Input objects skipped because they are invalid, by kind",
            metrics.invalid_inputs.clone(),
        );
        registry.register(
            "input_warnings",
            "Fields ignored in objects that are served all the same (a field their schema does not have, often a misspelling), by kind",
            metrics.input_warnings.clone(),
        );
        registry.register(
            "snapshots",
            "Snapshots published",
            metrics.snapshots.clone(),
        );
        registry.register(
            "snapshot_errors",
            "Rebuilds rejected as inconsistent; the previous snapshot stays served",
            metrics.snapshot_errors.clone(),
        );
        registry.register(
            "trust_last_success_timestamp_seconds",
            "When each CA certificate was last fetched successfully from ACM PCA",
            metrics.trust_last_success.clone(),
        );
        registry.register(
            "trust_not_after_timestamp_seconds",
            "When each served CA certificate expires",
            metrics.trust_not_after.clone(),
        );
        registry.register(
            "trust_fetch_ok",
            "1 if the last fetch of each CA succeeded, 0 if it failed (the last good bundle stays served)",
            metrics.trust_fetch_ok.clone(),
        );
        registry.register(
            "trust_fetch_failures",
            "Failed fetches of each CA certificate",
            metrics.trust_fetch_failures.clone(),
        );
        registry.register(
            "kubernetes_watch_errors",
            "Failed watches of the Kubernetes API, by kind; retried with backoff, the last good state stays served",
            metrics.kubernetes_watch_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and writes Events and ConfigMaps",
            metrics.leader.clone(),
        );
        registry.register(
            "events_written",
            "Kubernetes Events written about skipped objects",
            metrics.events_written.clone(),
        );
        registry.register(
            "kubernetes_write_errors",
            "Failed writes of Events and ConfigMaps to the Kubernetes API",
            metrics.kubernetes_write_errors.clone(),
        );
        registry.register(
            "injections",
            "Pods reviewed by the injection webhook, by decision",
            metrics.injections.clone(),
        );
        registry.register(
            "discovery_polls",
            "Polls of the VPC Lattice API, by result",
            metrics.discovery_polls.clone(),
        );
        registry.register(
            "discovery_failures",
            "Failed polls of the VPC Lattice API, by reason; the last discovered services stay served",
            metrics.discovery_failures.clone(),
        );
        registry.register(
            "discovery_api_calls",
            "Requests sent to the VPC Lattice API, by operation (each page counts)",
            metrics.discovery_api_calls.clone(),
        );
        registry.register(
            "discovered_services",
            "VPC Lattice services found by the last successful poll",
            metrics.discovered_services.clone(),
        );
        registry.register(
            "discovery_last_success_timestamp_seconds",
            "Unix time of the last successful poll of the VPC Lattice API",
            metrics.discovery_last_success.clone(),
        );
        registry.register(
            "discovery_poll_seconds",
            "Seconds the last poll of the VPC Lattice API took",
            metrics.discovery_poll_seconds.clone(),
        );
        registry.register(
            "rebuild_seconds",
            "Seconds each stage of the last published rebuild took (build, translate, snapshot)",
            metrics.rebuild_seconds.clone(),
        );
        metrics
    }
}

impl Metrics {
    pub fn type_label(type_url: &str) -> TypeLabel {
        TypeLabel {
            r#type: crate::xds::type_url::short(type_url).to_string(),
        }
    }

    /// Counts a failed watch of the Kubernetes API for `kind`.
    pub fn watch_failed(&self, kind: &str) {
        self.kubernetes_watch_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
