//! The admin listener: health, readiness, Prometheus metrics, and proxy status as JSON and as
//! the `ProxyStatusService` gRPC API (both on the same port; gRPC over HTTP/2 cleartext). It
//! shows every proxy's configuration, so it listens on loopback by default; the probe listener
//! serves only `/healthz`, `/readyz` and `/metrics`, for the kubelet and Prometheus.

pub mod csds;
pub mod status;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::admin_api::proxy_status_service_server::ProxyStatusServiceServer;
use crate::connections::ConnectionLimits;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryServiceServer;
use status::StatusService;

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: StatusService,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let grpc = tonic::service::Routes::new(ProxyStatusServiceServer::new(status.clone()))
        .add_service(ClientStatusDiscoveryServiceServer::new(status.csds()))
        .into_axum_router();
    // gRPC calls go to their services; any other path not served here is a 404 that lists
    // what is.
    let other = move |request: Request| {
        let grpc = grpc.clone();
        async move {
            let is_grpc = (request.headers().get(header::CONTENT_TYPE))
                .is_some_and(|kind| kind.as_bytes().starts_with(b"application/grpc"));
            match is_grpc {
                true => grpc.oneshot(request).await.into_response(),
                false => not_found(ADMIN_ENDPOINTS),
            }
        }
    };
    let app = probes()
        .route("/debug/proxies", get(proxies))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/trust", get(trust))
        .with_state(Arc::new(status))
        .fallback(other);
    crate::https::serve_plain(listener, app, limits, shutdown).await
}

/// What the admin listener serves, as its 404 lists it.
const ADMIN_ENDPOINTS: &str = "/healthz, /readyz, /metrics, /debug/proxies, /debug/config_dump, \
/debug/trust, and over gRPC envoy.service.status.v3.ClientStatusDiscoveryService and \
lattice_xds.admin.v1.ProxyStatusService";

/// What the probe listener serves, as its 404 lists it.
const PROBE_ENDPOINTS: &str = "/healthz, /readyz, /metrics";

fn not_found(endpoints: &str) -> Response {
    let body = format!("lattice-xds: no such endpoint; this listener serves {endpoints}\n");
    (StatusCode::NOT_FOUND, body).into_response()
}

/// Serves only `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown`.
pub async fn serve_probes(
    listener: tokio::net::TcpListener,
    status: StatusService,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app =
        (probes().with_state(Arc::new(status))).fallback(|| async { not_found(PROBE_ENDPOINTS) });
    crate::https::serve_plain(listener, app, limits, shutdown).await
}

/// What faces the cluster network: health, readiness and metrics.
fn probes() -> axum::Router<Arc<StatusService>> {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

type Shared = State<Arc<StatusService>>;

async fn readyz(State(status): Shared) -> Response {
    if let Some(failure) = status.failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {failure}\n"),
        )
            .into_response();
    }
    match status.snapshot_version() {
        Some(version) => format!("ready: serving snapshot {version}\n").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no consistent snapshot yet\n",
        )
            .into_response(),
    }
}

async fn metrics(State(status): Shared) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        status.metrics().encode(),
    )
        .into_response()
}

async fn trust(State(status): Shared) -> Response {
    Json(status.trust()).into_response()
}

async fn proxies(State(status): Shared) -> Response {
    Json(status.list()).into_response()
}

#[derive(serde::Deserialize)]
struct NodeQuery {
    node: Option<String>,
}

async fn config_dump(State(status): Shared, Query(query): Query<NodeQuery>) -> Response {
    let Some(node) = query.node else {
        return (
            StatusCode::BAD_REQUEST,
            "missing query parameter: node=<node id>\n",
        )
            .into_response();
    };
    match status.config_dump(&node) {
        Ok(dump) => Json(dump).into_response(),
        Err(error) => (error.http_status(), format!("{error}\n")).into_response(),
    }
}
