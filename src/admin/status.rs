//! Proxy status and config dumps, shared by the JSON endpoints and the gRPC service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::admin_api::proxy_status_service_server::ProxyStatusService;
use crate::admin_api::{
    DestinationStatus, GetConfigDumpRequest, GetConfigDumpResponse, ListProxiesRequest,
    ListProxiesResponse,
};
use crate::metrics::Metrics;
use crate::translate;
use crate::trust::fetch::TrustState;
use crate::xds::json::{JsonError, any_to_json};
use crate::xds::registry::Registry;
use crate::xds::server::Snapshots;
use crate::xds::type_url;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use prost::Message;
use tokio::sync::watch;

/// Why a config dump cannot be produced.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("no connected proxy has node id {0:?}")]
    UnknownNode(String),
    #[error(transparent)]
    Render(#[from] JsonError),
}

impl DumpError {
    pub fn http_status(&self) -> axum::http::StatusCode {
        match self {
            Self::UnknownNode(_) => axum::http::StatusCode::NOT_FOUND,
            Self::Render(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Read access to the registry and the served snapshot.
#[derive(Clone, Debug)]
pub struct StatusService {
    registry: Arc<Registry>,
    snapshots: Snapshots,
    trust: watch::Receiver<TrustState>,
    /// Why the process stopped being whole (a supervised task stopped), once it has.
    unready: Arc<std::sync::OnceLock<String>>,
}

impl StatusService {
    pub fn new(
        registry: Arc<Registry>,
        snapshots: Snapshots,
        trust: watch::Receiver<TrustState>,
    ) -> Self {
        Self {
            registry,
            snapshots,
            trust,
            unready: Arc::default(),
        }
    }

    /// Where to say why the process is no longer ready; `/readyz` fails from then on.
    pub fn unready(&self) -> Arc<std::sync::OnceLock<String>> {
        Arc::clone(&self.unready)
    }

    /// Why the process is not ready, beyond having no snapshot yet.
    pub fn failure(&self) -> Option<&str> {
        self.unready.get().map(String::as_str)
    }

    /// Every configured ACM PCA CA: what is served and how the last fetch went.
    pub fn trust(&self) -> TrustState {
        self.trust.borrow().clone()
    }

    pub fn metrics(&self) -> &Metrics {
        self.registry.metrics()
    }

    /// The version of the snapshot being served, once there is one.
    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshots
            .borrow()
            .as_ref()
            .map(|snapshot| snapshot.version)
    }

    pub fn list(&self) -> ListProxiesResponse {
        ListProxiesResponse {
            proxies: self.registry.list(),
            snapshot_version: self
                .snapshot_version()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            destinations: self.destinations(),
        }
    }

    /// The destinations of the served snapshot, read back from its virtual hosts' provenance.
    pub fn destinations(&self) -> Vec<DestinationStatus> {
        let snapshot = self.snapshots.borrow();
        let Some(routes) = snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.resources(type_url::ROUTE))
        else {
            return Vec::new();
        };
        let configurations = routes
            .resources
            .values()
            .filter_map(|resource| RouteConfiguration::decode(resource.any.value.as_slice()).ok());
        let mut destinations: Vec<DestinationStatus> = configurations
            .flat_map(|configuration| configuration.virtual_hosts)
            .filter_map(|virtual_host| destination_status(&virtual_host))
            .collect();
        destinations.sort_by(|a, b| a.destination.cmp(&b.destination));
        destinations
    }

    /// What `node_id` has been sent, as `{ "node": ..., "resources": { type_url: [...] } }`.
    pub fn config_dump(&self, node_id: &str) -> Result<serde_json::Value, DumpError> {
        let served = self
            .registry
            .served(node_id)
            .ok_or_else(|| DumpError::UnknownNode(node_id.to_string()))?;
        let mut resources = serde_json::Map::new();
        for (type_url, items) in served {
            let contents = items.contents();
            let rendered: Result<Vec<_>, _> = contents.iter().map(|any| any_to_json(any)).collect();
            resources.insert(type_url, serde_json::Value::Array(rendered?));
        }
        Ok(serde_json::json!({ "node": node_id, "resources": resources }))
    }
}

#[tonic::async_trait]
impl ProxyStatusService for StatusService {
    async fn list_proxies(
        &self,
        _request: Request<ListProxiesRequest>,
    ) -> Result<Response<ListProxiesResponse>, Status> {
        Ok(Response::new(self.list()))
    }

    async fn get_config_dump(
        &self,
        request: Request<GetConfigDumpRequest>,
    ) -> Result<Response<GetConfigDumpResponse>, Status> {
        match self.config_dump(&request.into_inner().node_id) {
            Ok(dump) => Ok(Response::new(GetConfigDumpResponse {
                config_json: dump.to_string(),
            })),
            Err(error @ DumpError::UnknownNode(_)) => Err(Status::not_found(error.to_string())),
            Err(error) => Err(Status::internal(error.to_string())),
        }
    }
}

/// A destination's row, from the provenance its virtual host carries; `None` for other hosts.
fn destination_status(virtual_host: &VirtualHost) -> Option<DestinationStatus> {
    let mut status = DestinationStatus::default();
    for entry in translate::provenance(virtual_host) {
        if let Some(destination) = entry.strip_prefix("destination ") {
            status.destination = destination.to_string();
        } else if let Some(route) = entry.strip_prefix("route ") {
            status.route = route.to_string();
        } else if let Some(policy) = entry.strip_prefix("auth policy ") {
            status.auth_policies.push(policy.to_string());
        }
    }
    (!status.destination.is_empty()).then_some(status)
}
