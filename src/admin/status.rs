//! Proxy status and config dumps, shared by the JSON endpoints and the gRPC service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::admin_api::proxy_status_service_server::ProxyStatusService;
use crate::admin_api::{
    DestinationStatus, GetConfigDumpRequest, GetConfigDumpResponse, ListProxiesRequest,
    ListProxiesResponse, ProxyStatus, TypeStatus,
};
use crate::metrics::Metrics;
use crate::model::{Destination, Mesh};
use crate::trust::fetch::TrustState;
use crate::xds::json::{JsonError, any_to_json};
use crate::xds::registry::{ProxyRecord, Registry, TypeRecord};
use crate::xds::snapshot::Snapshots;
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
    metrics: Arc<Metrics>,
    snapshots: Snapshots,
    /// The mesh the served snapshot was translated from.
    meshes: watch::Receiver<Option<Arc<Mesh>>>,
    trust: watch::Receiver<TrustState>,
    /// Why the process stopped being whole (a supervised task stopped), once it has.
    unready: Arc<std::sync::OnceLock<String>>,
}

impl StatusService {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        snapshots: Snapshots,
        meshes: watch::Receiver<Option<Arc<Mesh>>>,
        trust: watch::Receiver<TrustState>,
    ) -> Self {
        Self {
            registry,
            metrics,
            snapshots,
            meshes,
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

    /// CSDS over the same registry.
    pub fn csds(&self) -> super::csds::Csds {
        super::csds::Csds::new(Arc::clone(&self.registry))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
            proxies: self.registry.list().into_iter().map(proxy_status).collect(),
            snapshot_version: self
                .snapshot_version()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            destinations: self.destinations(),
        }
    }

    /// The destinations of the served snapshot, ordered by `host:port`.
    pub fn destinations(&self) -> Vec<DestinationStatus> {
        let mesh = self.meshes.borrow();
        let destinations = mesh.iter().flat_map(|mesh| mesh.destinations.values());
        let mut rows: Vec<DestinationStatus> =
            destinations.map(|d| destination_status(d)).collect();
        rows.sort_by(|a, b| a.destination.cmp(&b.destination));
        rows
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
            let rendered: Result<Vec<_>, _> = contents
                .iter()
                .map(|packed| any_to_json(&packed.to_any()))
                .collect();
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

/// A destination's row of `proxy-status`.
fn destination_status(destination: &Destination) -> DestinationStatus {
    DestinationStatus {
        destination: format!("{}:{}", destination.host, destination.port),
        route: (destination.route.as_ref())
            .map(|route| route.route.to_string())
            .unwrap_or_default(),
        auth_policies: (destination.route.iter())
            .flat_map(|route| &route.auth_policies)
            .map(ToString::to_string)
            .collect(),
        service: destination
            .service
            .as_ref()
            .map(|service| crate::translate::service_provenance(service))
            .unwrap_or_default(),
    }
}

/// A stream's row of `proxy-status`.
fn proxy_status(record: ProxyRecord) -> ProxyStatus {
    let connected_at = record
        .connected_at
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let metadata = record
        .metadata
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_default();
    ProxyStatus {
        node_id: record.node_id,
        cluster: record.cluster,
        metadata_json: metadata.to_string(),
        protocol: record.protocol,
        connected_at_unix_ms: i64::try_from(connected_at.as_millis()).unwrap_or(i64::MAX),
        types: record.types.into_iter().map(type_status).collect(),
        identity: record.identity.unwrap_or_default(),
    }
}

fn type_status(record: TypeRecord) -> TypeStatus {
    let (nacked_version, nack_error) = record
        .rejected
        .map(|rejected| (rejected.version, rejected.error))
        .unwrap_or_default();
    TypeStatus {
        type_url: record.type_url,
        sent_version: record.sent_version,
        acked_version: record.acked_version,
        nacked_version,
        nack_error,
        pushes: record.pushes,
        sent_bytes: record.sent_bytes,
    }
}

/// `google.protobuf.Struct` as plain JSON.
fn struct_to_json(value: &envoy_types::pb::google::protobuf::Struct) -> serde_json::Value {
    use envoy_types::pb::google::protobuf::value::Kind;
    fn convert(value: &envoy_types::pb::google::protobuf::Value) -> serde_json::Value {
        match &value.kind {
            Some(Kind::NullValue(_)) | None => serde_json::Value::Null,
            Some(Kind::NumberValue(n)) => serde_json::json!(n),
            Some(Kind::StringValue(s)) => serde_json::Value::from(s.as_str()),
            Some(Kind::BoolValue(b)) => serde_json::Value::from(*b),
            Some(Kind::StructValue(s)) => struct_to_json(s),
            Some(Kind::ListValue(list)) => list.values.iter().map(convert).collect(),
        }
    }
    value
        .fields
        .iter()
        .map(|(key, value)| (key.clone(), convert(value)))
        .collect()
}
