//! The standard gRPC health service (`grpc.health.v1.Health`) from both ends, for trying a
//! GRPCRoute through the sidecar: `check` calls it as an application would, in HTTP/2 clear
//! text to the sidecar's egress listener with the destination as `:authority`; `serve` answers
//! it, a stand-in backend for the demo.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

pub use tonic_health::ServingStatus;

/// Calls `Check` for `service` at `target` (the sidecar's egress listener, or a server) with
/// `authority` as the destination; the answer's status, or why there is none.
pub async fn check(target: &str, authority: &str, service: &str) -> anyhow::Result<ServingStatus> {
    let origin = format!("http://{authority}")
        .parse()
        .with_context(|| format!("{authority:?} is not a host name"))?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .with_context(|| format!("{target:?} is not HOST:PORT"))?
        .origin(origin);
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let answer = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| CheckError {
            authority: authority.to_string(),
            status,
        })?;
    let status = answer.into_inner().status();
    Ok(match status {
        tonic_health::pb::health_check_response::ServingStatus::Serving => ServingStatus::Serving,
        tonic_health::pb::health_check_response::ServingStatus::NotServing => {
            ServingStatus::NotServing
        }
        _ => ServingStatus::Unknown,
    })
}

/// The gRPC status a check was answered with.
#[derive(Debug, thiserror::Error)]
#[error("{authority} answered {:?}: {}", status.code(), status.message())]
pub struct CheckError {
    pub authority: String,
    pub status: tonic::Status,
}

/// Serves the health service on `listen` until a signal, reporting the server (`""`) and each
/// of `services` as serving.
pub async fn serve(listen: SocketAddr, services: &[String]) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, ?services, "serving gRPC health");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::supervise::wait_for_signal().await;
        stop.cancel();
    });
    serve_on(listener, services, shutdown).await
}

/// The same on `listener`, until `shutdown`.
pub async fn serve_on(
    listener: TcpListener,
    services: &[String],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
        .context("the gRPC health server failed")
}
