//! The Aggregated Discovery Service: one task per Envoy stream (`stream.rs`), serving the state
//! of the world (`sotw.rs`) or incremental (`delta.rs`) variant, over `transport.rs`.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::auth::{Authenticate, Identity, Refusal};
use super::delta::Delta;
use super::events::{Callbacks, StreamEvents};
use super::limits::Limits;
use super::snapshot::Snapshots;
use super::sotw::Sotw;
use super::stream::{self, Outgoing, StreamContext};
use super::wire::{DeltaDiscoveryResponse, DiscoveryResponse};

/// The ADS gRPC service.
#[derive(Clone)]
pub struct AdsServer {
    snapshots: Snapshots,
    callbacks: Arc<dyn Callbacks>,
    shutdown: CancellationToken,
    limits: Arc<Limits>,
    authenticator: Arc<dyn Authenticate>,
}

impl std::fmt::Debug for AdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsServer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AdsServer {
    pub fn new(
        snapshots: Snapshots,
        callbacks: Arc<dyn Callbacks>,
        shutdown: CancellationToken,
        limits: Limits,
        authenticator: Arc<dyn Authenticate>,
    ) -> Self {
        Self {
            snapshots,
            callbacks,
            shutdown,
            limits: Arc::new(limits),
            authenticator,
        }
    }

    /// Who a new stream's credentials say it is; a refusal is counted and logged here.
    pub async fn authenticate(
        &self,
        headers: &tonic::codegen::http::HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Option<Identity>, Refusal> {
        let authenticated = self.authenticator.authenticate(headers, peer).await;
        if let Err(refusal) = &authenticated {
            self.callbacks.refused(None, refusal.reason);
            tracing::info!(reason = refusal.reason, status = %refusal.status, "ADS stream refused");
        }
        authenticated
    }

    /// Bytes a request may have; a larger one ends its stream (`--xds-max-request-bytes`).
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_request_bytes
    }

    /// Serves one state-of-the-world stream.
    pub fn state_of_the_world(
        &self,
        requests: Streaming<DiscoveryRequest>,
        identity: Option<Identity>,
    ) -> Outgoing<DiscoveryResponse> {
        let variant = Sotw::new(Arc::clone(&self.limits));
        stream::spawn(variant, self.stream("sotw", identity), requests)
    }

    /// Serves one incremental stream.
    pub fn incremental(
        &self,
        requests: Streaming<DeltaDiscoveryRequest>,
        identity: Option<Identity>,
    ) -> Outgoing<DeltaDiscoveryResponse> {
        let variant = Delta::new(Arc::clone(&self.limits));
        stream::spawn(variant, self.stream("delta", identity), requests)
    }

    fn stream(&self, protocol: &'static str, identity: Option<Identity>) -> StreamContext {
        let events = StreamEvents::open(Arc::clone(&self.callbacks), protocol, identity.as_ref());
        StreamContext {
            events,
            identity,
            snapshots: self.snapshots.clone(),
            shutdown: self.shutdown.clone(),
            limits: Arc::clone(&self.limits),
        }
    }
}
