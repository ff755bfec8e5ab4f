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
    /// The admin (or probe) URL, `http://host:port`.
    pub admin: String,
    /// The ADS address, `host:port`.
    pub xds_address: String,
    pub xds_tls: XdsTls,
    /// A pod's token to authenticate the stream with, and that pod's node id.
    pub identity: Option<(String, String)>,
    pub timeout: Duration,
}

/// How the check reaches ADS.
#[derive(Clone, Debug)]
pub enum XdsTls {
    /// Plain text.
    Off,
    /// TLS, verifying the controller's certificate against this CA (PEM).
    Verify(String),
    /// TLS without verifying the certificate: the check sends no credential and only learns
    /// whether ADS answers.
    Unverified,
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

    let listeners = tokio::time::timeout(config.timeout, fetch_listeners(config))
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

pub(crate) async fn get(url: &str) -> anyhow::Result<(u16, String)> {
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
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One state-of-the-world request for listeners; a description of the answer. Without a
/// token, a controller that refuses the stream with `UNAUTHENTICATED` is serving, too; with
/// one, the stream must be served.
async fn fetch_listeners(config: &CheckConfig) -> anyhow::Result<String> {
    let address = &config.xds_address;
    let channel = channel(address, &config.xds_tls)
        .await
        .with_context(|| format!("cannot connect to the xDS server at {address}"))?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let node_id = match &config.identity {
        Some((_, node_id)) => node_id.clone(),
        None => format!("lattice-xds-check-{}", std::process::id()),
    };
    let request = DiscoveryRequest {
        node: Some(Node {
            id: node_id,
            cluster: "lattice-xds-check".to_string(),
            ..Default::default()
        }),
        type_url: type_url::LISTENER.to_string(),
        ..Default::default()
    };
    let mut call =
        tonic::Request::new(futures::stream::iter([request]).chain(futures::stream::pending()));
    if let Some((token, _)) = &config.identity {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .context("the token is not a valid header value")?;
        call.metadata_mut().insert("authorization", value);
    }
    let opened = client.stream_aggregated_resources(call).await;
    let mut responses = match opened {
        Ok(responses) => responses.into_inner(),
        Err(status)
            if status.code() == tonic::Code::Unauthenticated && config.identity.is_none() =>
        {
            return Ok(format!(
                "streams must authenticate as a pod ({})",
                status.message()
            ));
        }
        Err(status) => return Err(status).context("the xDS server refused the stream"),
    };
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

/// A gRPC channel to `address`, over TLS unless `tls` is off.
async fn channel(address: &str, tls: &XdsTls) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?;
    let config = match tls {
        XdsTls::Off => return Ok(endpoint.connect().await?),
        XdsTls::Verify(ca) => crate::https::client_config(Some(ca))?,
        XdsTls::Unverified => crate::https::client_config(None)?,
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("{address:?} is not HOST:PORT"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port: u16 = port
        .parse()
        .with_context(|| format!("{port:?} is not a port"))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .with_context(|| format!("{host:?} is not a host name"))?;
    let connect = tower::service_fn(move |_| {
        let connector = connector.clone();
        let (host, name) = (host.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector(connect).await?)
}
