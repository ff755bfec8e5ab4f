//! `lattice-xds check`: is a controller ready, and does it serve xDS? What the chart's
//! `helm test` runs, and what a user runs when a sidecar will not start.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::xds::type_url;

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// The admin URL, `http://host:port`.
    pub admin: String,
    /// The ADS address, `host:port`.
    pub xds_address: String,
    pub timeout: Duration,
}

/// Checks readiness, then asks for listeners over ADS; prints what it found.
pub async fn run(config: &CheckConfig) -> anyhow::Result<()> {
    let (status, body) =
        tokio::time::timeout(config.timeout, get(&format!("{}/readyz", config.admin)))
            .await
            .with_context(|| {
                format!(
                    "no answer from {} within {:?}",
                    config.admin, config.timeout
                )
            })??;
    anyhow::ensure!(
        status == 200,
        "the controller at {} is not ready ({status}): {}",
        config.admin,
        body.trim()
    );
    println!("ready: {}", config.admin);

    let listeners = tokio::time::timeout(config.timeout, fetch_listeners(&config.xds_address))
        .await
        .with_context(|| {
            format!(
                "no xDS answer from {} within {:?}",
                config.xds_address, config.timeout
            )
        })??;
    println!("serving xDS: {} at {}", listeners, config.xds_address);
    Ok(())
}

async fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "{url:?}: the admin endpoint speaks plain http"
    );
    let host = uri.host().context("the admin URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(uri.path())
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One state-of-the-world request for listeners; a description of the answer.
async fn fetch_listeners(address: &str) -> anyhow::Result<String> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{address}"))
        .await
        .with_context(|| format!("cannot connect to the xDS server at {address}"))?;
    let request = DiscoveryRequest {
        node: Some(Node {
            id: format!("lattice-xds-check-{}", std::process::id()),
            cluster: "lattice-xds-check".to_string(),
            ..Default::default()
        }),
        type_url: type_url::LISTENER.to_string(),
        ..Default::default()
    };
    let mut responses = client
        .stream_aggregated_resources(
            futures::stream::iter([request]).chain(futures::stream::pending()),
        )
        .await
        .context("the xDS server refused the stream")?
        .into_inner();
    let response = responses
        .message()
        .await
        .context("the xDS stream failed")?
        .context("the xDS server closed the stream without an answer")?;
    Ok(format!(
        "{} listeners, version {}",
        response.resources.len(),
        response.version_info
    ))
}
