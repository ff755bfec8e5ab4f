//! The Aggregated Discovery Service: one task per Envoy stream (`stream.rs`), serving the state
//! of the world (`sotw.rs`) or incremental (`delta.rs`) variant, over `transport.rs`.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::auth::{Authenticator, Identity, Refusal};
use super::delta::Delta;
use super::limits::Limits;
use super::registry::Registry;
use super::snapshot::Snapshots;
use super::sotw::Sotw;
use super::stream::{self, Outgoing, StreamContext};
use super::wire::{DeltaDiscoveryResponse, DiscoveryResponse};

/// The ADS gRPC service.
#[derive(Clone, Debug)]
pub struct AdsServer {
    snapshots: Snapshots,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    limits: Arc<Limits>,
    authenticator: Authenticator,
}

impl AdsServer {
    pub fn new(
        snapshots: Snapshots,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        limits: Limits,
        authenticator: Authenticator,
    ) -> Self {
        Self {
            snapshots,
            registry,
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
            self.registry.refused(refusal.reason);
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

    fn stream(&self, protocol: &str, identity: Option<Identity>) -> StreamContext {
        let proxy = self.registry.connect(protocol);
        if let Some(identity) = &identity {
            proxy.authenticated(identity);
        }
        StreamContext {
            proxy,
            identity,
            snapshots: self.snapshots.clone(),
            shutdown: self.shutdown.clone(),
            limits: Arc::clone(&self.limits),
        }
    }
}
