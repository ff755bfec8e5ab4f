//! The Aggregated Discovery Service: one task per Envoy stream (`stream.rs`), serving the state
//! of the world (`sotw.rs`) or incremental (`delta.rs`) variant, over `transport.rs`.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::delta::Delta;
use super::limits::Limits;
use super::registry::Registry;
use super::snapshot::Snapshot;
use super::sotw::Sotw;
use super::stream::{self, Outgoing, StreamContext};
use super::transport::AdsService;
use super::wire::{DeltaDiscoveryResponse, DiscoveryResponse};

/// The latest published snapshot; `None` until the first consistent one.
pub type Snapshots = watch::Receiver<Option<Arc<Snapshot>>>;

/// The ADS gRPC service.
#[derive(Clone, Debug)]
pub struct AdsServer {
    snapshots: Snapshots,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    limits: Arc<Limits>,
}

impl AdsServer {
    pub fn new(
        snapshots: Snapshots,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        limits: Limits,
    ) -> Self {
        Self {
            snapshots,
            registry,
            shutdown,
            limits: Arc::new(limits),
        }
    }

    /// The gRPC service for the tonic server.
    pub fn into_service(self) -> AdsService {
        AdsService::new(self)
    }

    /// Bytes a request may have; a larger one ends its stream (`--xds-max-request-bytes`).
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_request_bytes
    }

    /// Serves one state-of-the-world stream.
    pub fn state_of_the_world(
        &self,
        requests: Streaming<DiscoveryRequest>,
    ) -> Outgoing<DiscoveryResponse> {
        let variant = Sotw::new(Arc::clone(&self.limits));
        stream::spawn(variant, self.stream("sotw"), requests)
    }

    /// Serves one incremental stream.
    pub fn incremental(
        &self,
        requests: Streaming<DeltaDiscoveryRequest>,
    ) -> Outgoing<DeltaDiscoveryResponse> {
        let variant = Delta::new(Arc::clone(&self.limits));
        stream::spawn(variant, self.stream("delta"), requests)
    }

    fn stream(&self, protocol: &str) -> StreamContext {
        StreamContext {
            proxy: self.registry.connect(protocol),
            snapshots: self.snapshots.clone(),
            shutdown: self.shutdown.clone(),
            limits: Arc::clone(&self.limits),
        }
    }
}
