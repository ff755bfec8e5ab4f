//! Connections that never speak are closed: on plain ADS, on ADS over TLS (before and after
//! the handshake) and on the probe listener, each within `--handshake-timeout`; a flood of them
//! beyond `--xds-max-connections` waits in the backlog and a real client is still served.

mod support;

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lattice_xds::xds::type_url;
use support::process::Controller;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The deadline the controllers here are given.
const DEADLINE: Duration = Duration::from_secs(1);

/// A controller with the short deadline, and its probe listener's port.
async fn controller(dir: &std::path::Path, extra: &[String]) -> (Controller, u16) {
    let probe_port = support::free_port();
    let mut args = vec![
        "--manifests=examples".to_string(),
        "--signing=none".to_string(),
        format!("--handshake-timeout={}s", DEADLINE.as_secs()),
        format!("--probe-listen=127.0.0.1:{probe_port}"),
    ];
    args.extend_from_slice(extra);
    (Controller::start(dir, &args).await, probe_port)
}

/// A connection to `port` that will send nothing.
async fn connect(port: u16) -> (TcpStream, Instant) {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    (stream, Instant::now())
}

/// Waits, sending nothing, until the controller closes the connection; how long it stayed.
async fn until_closed(mut stream: impl tokio::io::AsyncRead + Unpin, since: Instant) -> Duration {
    let mut buffer = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await;
        match read.expect("closed within 30 s") {
            Ok(0) | Err(_) => return since.elapsed(),
            // A TLS alert or an HTTP/2 GOAWAY on the way out.
            Ok(_) => continue,
        }
    }
}

async fn silent(port: u16) -> Duration {
    let (stream, since) = connect(port).await;
    until_closed(stream, since).await
}

/// A TLS session with the controller that sends nothing after its handshake (the certificate
/// is not what this checks).
async fn silent_after_handshake(port: u16) -> Duration {
    let config = lattice_xds::https::client_config(None).expect("TLS client");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    until_closed(tls, Instant::now()).await
}

fn assert_closed_at_the_deadline(what: &str, took: Duration) {
    assert!(
        took >= DEADLINE.mul_f32(0.8) && took < DEADLINE * 5,
        "{what}: closed after {took:?}, the deadline is {DEADLINE:?}"
    );
}

/// A real ADS client's first answer.
async fn served(port: u16) -> Result<(), String> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|error| error.to_string())?;
    let request = DiscoveryRequest {
        type_url: type_url::LISTENER.to_string(),
        node: Some(Node {
            id: "real.apps".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let requests =
        futures::StreamExt::chain(futures::stream::iter([request]), futures::stream::pending());
    let mut responses = client
        .stream_aggregated_resources(requests)
        .await
        .map_err(|status| status.to_string())?
        .into_inner();
    match responses.message().await {
        Ok(Some(_)) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_plain_connections_are_closed_and_a_flood_leaves_a_sidecar_served() {
    let dir = tempfile::tempdir().unwrap();
    let limit = ["--xds-max-connections=20".to_string()];
    let (controller, probe_port) = controller(dir.path(), &limit).await;
    let port = controller.xds_port;

    assert_closed_at_the_deadline("plain ADS", silent(port).await);
    assert_closed_at_the_deadline("the probe listener", silent(probe_port).await);

    // Fifty silent connections, more than the 20 allowed at once, then a real client.
    let mut flood = Vec::new();
    for _ in 0..50 {
        let (stream, since) = connect(port).await;
        flood.push(tokio::spawn(until_closed(stream, since)));
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), served(port))
        .await
        .expect("served within 20 s")
        .expect("served");
    let waited = started.elapsed();
    for silent in flood {
        silent.await.unwrap();
    }
    // It waited for places, never longer than the rounds of silent connections ahead of it.
    assert!(waited < DEADLINE * 8, "a real client waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_are_closed_before_and_after_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = support::self_signed(dir.path(), "xds", "127.0.0.1");
    let tls = [
        format!("--xds-tls-cert={}", certificate.display()),
        format!("--xds-tls-key={}", key.display()),
    ];
    let (controller, _) = controller(dir.path(), &tls).await;
    assert_closed_at_the_deadline("ADS, no TLS handshake", silent(controller.xds_port).await);
    assert_closed_at_the_deadline(
        "ADS over TLS, no HTTP/2 preface",
        silent_after_handshake(controller.xds_port).await,
    );
}
