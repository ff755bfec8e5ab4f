//! The Aggregated Discovery Service: one task per Envoy stream, each a `select!` loop over
//! "a new snapshot", "a request from Envoy" and "shutdown".

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::registry::{ProxyHandle, Registry};
use super::snapshot::Snapshot;
use super::{delta, sotw};

/// Responses queued per stream before the stream task waits for Envoy to read.
const RESPONSE_BUFFER: usize = 16;

/// The latest published snapshot; `None` until the first consistent one.
pub type Snapshots = watch::Receiver<Option<Arc<Snapshot>>>;

/// The ADS gRPC service.
#[derive(Clone, Debug)]
pub struct AdsServer {
    snapshots: Snapshots,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
}

impl AdsServer {
    pub fn new(snapshots: Snapshots, registry: Arc<Registry>, shutdown: CancellationToken) -> Self {
        Self {
            snapshots,
            registry,
            shutdown,
        }
    }

    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
    }

    fn stream(&self, protocol: &str) -> StreamContext {
        StreamContext {
            proxy: self.registry.connect(protocol),
            snapshots: self.snapshots.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// What every stream task owns: its registry entry, the snapshot feed and the shutdown signal.
pub(super) struct StreamContext {
    pub proxy: ProxyHandle,
    pub snapshots: Snapshots,
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (responses, stream) = mpsc::channel(RESPONSE_BUFFER);
        let context = self.stream("sotw");
        tokio::spawn(sotw::run(context, request.into_inner(), responses));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (responses, stream) = mpsc::channel(RESPONSE_BUFFER);
        let context = self.stream("delta");
        tokio::spawn(delta::run(context, request.into_inner(), responses));
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}
