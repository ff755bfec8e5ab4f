//! A hostile or broken ADS client costs the controller O(1) and is told why it was refused:
//! unknown type URLs, a missing or changing node id, oversized nodes and requests, too many
//! subscriptions, long resource names, long NACKs, and a client that stops reading, each against
//! a real controller over raw gRPC.

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use lattice_xds::xds::type_url;
use support::eventually;
use support::process::{Controller, type_status};

const WAIT: Duration = Duration::from_secs(20);
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

async fn controller(dir: &std::path::Path, extra: &[&str]) -> Controller {
    let mut args = vec![
        "--manifests=examples".to_string(),
        "--signing=none".to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Controller::start(dir, &args).await
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.to_string(),
        ..Default::default()
    })
}

fn request(type_url: &str, names: &[&str], node_id: Option<&str>) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        node: node_id.and_then(node),
        ..Default::default()
    }
}

/// A raw state-of-the-world stream.
struct Stream {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

impl Stream {
    async fn open(port: u16, first: DiscoveryRequest) -> Stream {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .expect("connect to ADS");
        let (requests, outgoing) = mpsc::channel(8);
        requests.send(first).await.unwrap();
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(outgoing))
            .await
            .expect("open ADS stream")
            .into_inner();
        Stream {
            requests,
            responses,
        }
    }

    async fn send(&self, request: DiscoveryRequest) {
        self.requests.send(request).await.expect("send request");
    }

    async fn next(&mut self) -> Result<DiscoveryResponse, tonic::Status> {
        let next = tokio::time::timeout(Duration::from_secs(10), self.responses.message()).await;
        match next.expect("an answer within 10 s") {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(tonic::Status::ok("the stream ended with OK")),
            Err(status) => Err(status),
        }
    }

    /// The status the server ends the stream with.
    async fn refusal(&mut self) -> tonic::Status {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(status) => return status,
            }
        }
    }
}

fn counted(metrics: &str, reason: &str) -> bool {
    metrics.contains(&format!(
        "lattice_xds_stream_errors_total{{reason=\"{reason}\"}} 1"
    ))
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path(), &[]).await;
    let port = controller.xds_port;

    let unknown = "type.googleapis.com/attacker.Chosen";
    let mut stream = Stream::open(port, request(unknown, &[], Some("pod-a.apps"))).await;
    let status = stream.refusal().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("attacker.Chosen"), "{status:?}");

    let mut stream = Stream::open(port, request(type_url::CLUSTER, &[], None)).await;
    let status = stream.refusal().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("node id"), "{status:?}");

    let mut stream = Stream::open(port, request(type_url::CLUSTER, &[], Some("pod-a.apps"))).await;
    stream
        .next()
        .await
        .expect("clusters for a valid first request");
    stream
        .send(request(type_url::LISTENER, &[], Some("pod-b.apps")))
        .await;
    let status = stream.refusal().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("cannot change"), "{status:?}");

    let metrics = controller.metrics().await;
    for reason in ["unknown_type", "missing_node", "node_changed"] {
        assert!(
            counted(&metrics, reason),
            "{reason} not counted:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("attacker"),
        "a client's type URL became a metric label:\n{metrics}"
    );
}

#[tokio::test]
async fn oversized_input_is_refused_with_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = [
        "--xds-max-subscriptions=3",
        "--xds-max-node-id-bytes=64",
        "--xds-max-node-metadata-bytes=1024",
        "--xds-max-request-bytes=65536",
    ];
    let controller = controller(dir.path(), &limits).await;
    let port = controller.xds_port;

    let names = ["a", "b", "c", "d"];
    let mut stream = Stream::open(port, request(type_url::ROUTE, &names, Some("pod.apps"))).await;
    let status = stream.refusal().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--xds-max-subscriptions"),
        "{status:?}"
    );

    let long_id = "p".repeat(65);
    let mut stream = Stream::open(port, request(type_url::CLUSTER, &[], Some(&long_id))).await;
    let status = stream.refusal().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    let mut first = request(type_url::CLUSTER, &[], Some("pod.apps"));
    let blob = Value {
        kind: Some(Kind::StringValue("x".repeat(2048))),
    };
    first.node.as_mut().unwrap().metadata = Some(Struct {
        fields: [("blob".to_string(), blob)].into(),
    });
    let mut stream = Stream::open(port, first).await;
    let status = stream.refusal().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("metadata"), "{status:?}");

    let huge = "n".repeat(70_000);
    let mut stream = Stream::open(port, request(type_url::ROUTE, &[&huge], Some("pod.apps"))).await;
    let status = stream.refusal().await;
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "a request over the size limit must not end with OK: {status:?}"
    );

    let metrics = controller.metrics().await;
    assert!(counted(&metrics, "too_many_subscriptions"), "{metrics}");
    assert!(
        metrics.contains("lattice_xds_stream_errors_total{reason=\"node_too_large\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lattice_xds_connected_proxies 0"),
        "refused streams are forgotten:\n{metrics}"
    );
}

#[tokio::test]
async fn a_long_nack_is_cut_and_a_repeated_one_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path(), &["--xds-max-error-detail-bytes=100"]).await;
    let mut stream = Stream::open(
        controller.xds_port,
        request(type_url::CLUSTER, &[], Some("nacker.apps")),
    )
    .await;
    let clusters = stream.next().await.unwrap();
    let mut nack = request(type_url::CLUSTER, &[], None);
    nack.response_nonce = clusters.nonce.clone();
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: format!("rejected: {}", "z".repeat(10_000)),
        ..Default::default()
    });
    for _ in 0..3 {
        stream.send(nack.clone()).await;
    }
    let status = eventually("the NACK to be recorded", WAIT, || async {
        let proxies = controller.proxies().await;
        type_status(&proxies, "nacker.apps", "CDS")
            .filter(|status| status["nack_error"] != "")
            .cloned()
    })
    .await;
    let error = status["nack_error"].as_str().unwrap();
    assert!(
        error.len() < 200,
        "the stored error is cut: {} bytes",
        error.len()
    );
    assert!(
        error.starts_with("rejected: zzz") && error.contains("bytes cut"),
        "{error}"
    );
    let log = controller.process.log_text();
    assert_eq!(
        log.matches("proxy rejected configuration").count(),
        1,
        "a repeated NACK of one nonce is logged once"
    );
    assert!(
        !log.contains(&"z".repeat(200)),
        "the log holds the whole error"
    );
}

/// A client whose flow-control windows are small and who never reads: the controller holds one
/// response for it at most, closes it after the write timeout, and keeps serving the others.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_others_keep_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    write_routes(&manifests, 0, 2000);
    let manifests_arg = format!("--manifests={}", manifests.display());
    let args = [
        manifests_arg,
        "--signing=none".to_string(),
        "--xds-write-timeout=1s".to_string(),
    ];
    let controller = Controller::start(dir.path(), &args).await;
    let stuck = open_unread(controller.xds_port, "stuck.apps").await;

    let mut healthy = Stream::open(
        controller.xds_port,
        request(type_url::ROUTE, &["egress"], Some("healthy.apps")),
    )
    .await;
    let first = healthy.next().await.unwrap();
    let mut ack = request(type_url::ROUTE, &["egress"], None);
    ack.response_nonce = first.nonce.clone();
    ack.version_info = first.version_info.clone();
    healthy.send(ack).await;

    // New versions until the stuck client's transport buffers are full and a response waits
    // in vain for the write timeout; the healthy client gets every one meanwhile.
    let mut closed_after = None;
    for round in 1..=12 {
        write_routes(&manifests, 10_000 + round, 1);
        let update = healthy.next().await.unwrap();
        assert_ne!(update.version_info, first.version_info);
        let mut ack = request(type_url::ROUTE, &["egress"], None);
        ack.response_nonce = update.nonce.clone();
        ack.version_info = update.version_info.clone();
        healthy.send(ack).await;
        if write_timeout_seen(&controller, Duration::from_millis(2500)).await {
            closed_after = Some(round);
            break;
        }
    }
    let rounds = closed_after.expect("the stuck stream was never closed");
    eprintln!("the stuck stream was closed after {rounds} new versions");
    let proxies = controller.proxies().await;
    assert!(
        type_status(&proxies, "stuck.apps", "RDS").is_none(),
        "the stuck stream is forgotten: {proxies}"
    );
    assert!(type_status(&proxies, "healthy.apps", "RDS").is_some());
    drop(stuck);

    // A proxy stuck when the controller is told to stop does not keep it running.
    let _stuck_at_shutdown = open_unread(controller.xds_port, "stuck-again.apps").await;
    let mut controller = controller;
    controller.process.terminate();
    let status = controller.process.wait();
    assert!(status.success(), "{status:?}");
}

/// An ADS stream whose flow-control windows are small and whose responses are never read.
async fn open_unread(
    port: u16,
    node_id: &str,
) -> (
    mpsc::Sender<DiscoveryRequest>,
    tonic::Response<tonic::Streaming<DiscoveryResponse>>,
) {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535));
    let mut client = AggregatedDiscoveryServiceClient::new(endpoint.connect().await.unwrap());
    let (requests, outgoing) = mpsc::channel(8);
    requests
        .send(request(type_url::ROUTE, &["egress"], Some(node_id)))
        .await
        .unwrap();
    let unread = client
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .unwrap();
    (requests, unread)
}

/// Whether the controller counts a stream closed for its write timeout within `wait`.
async fn write_timeout_seen(controller: &Controller, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if counted(&controller.metrics().await, "write_timeout") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Writes `count` HTTPRoutes (`svc-<first>` onwards) on the walkthrough's gateway into `dir`.
fn write_routes(dir: &std::path::Path, first: usize, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let gateway = std::fs::read_to_string("examples/cluster1/gateway.yaml").unwrap();
    std::fs::write(dir.join("gateway.yaml"), gateway).unwrap();
    let routes: String = (first..first + count)
        .map(|n| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  \
                 name: svc-{n}\n  namespace: apps\nspec:\n  hostnames:\n  - svc-{n}.example.com\n  \
                 parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n    \
                 sectionName: https-listener-with-custom-domain\n"
            )
        })
        .collect();
    std::fs::write(dir.join(format!("routes-{first}.yaml")), routes).unwrap();
}

/// A Delta request for `names` of `type_url`.
fn delta_request(type_url: &str, names: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: names,
        node: node("pod.apps"),
        ..Default::default()
    }
}

/// Sends `requests` on one Delta stream and returns the status it ends with, or `None` if
/// every request was answered.
async fn delta_refusal(port: u16, requests: Vec<DeltaDiscoveryRequest>) -> Option<tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to ADS")
        .max_encoding_message_size(usize::MAX);
    let (sender, outgoing) = mpsc::channel(requests.len().max(1));
    let count = requests.len();
    for request in requests {
        sender.send(request).await.unwrap();
    }
    let mut responses = match client
        .delta_aggregated_resources(ReceiverStream::new(outgoing))
        .await
    {
        Ok(responses) => responses.into_inner(),
        Err(status) => return Some(status),
    };
    for _ in 0..count {
        let next = tokio::time::timeout(Duration::from_secs(10), responses.message()).await;
        match next.expect("an answer within 10 s") {
            Ok(Some(_)) => continue,
            Ok(None) => return Some(tonic::Status::ok("ended")),
            Err(status) => return Some(status),
        }
    }
    None
}

#[tokio::test]
async fn long_resource_names_are_refused_before_they_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path(), &[]).await;
    let port = controller.xds_port;
    // A stream that subscribes within the limits is served.
    let fine = delta_request(type_url::ROUTE, vec!["egress".to_string()]);
    assert!(delta_refusal(port, vec![fine]).await.is_none());
    let before = controller.process.rss_kib().expect("the controller's RSS");

    // The probe: names of 1 MiB, a hundred of them.
    for _ in 0..100 {
        let huge = delta_request(type_url::ROUTE, vec!["n".repeat(1024 * 1024)]);
        let status = delta_refusal(port, vec![huge]).await.expect("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("--xds-max-name-bytes"),
            "{status:?}"
        );
    }
    // Names each within the limit, a hundred a request, until all of them are too many bytes.
    let batch = |first: usize| {
        let names = (first..first + 100)
            .map(|n| format!("{n:0>1000}"))
            .collect();
        delta_request(type_url::ROUTE, names)
    };
    let status = delta_refusal(port, vec![batch(0), batch(100), batch(200)])
        .await
        .expect("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--xds-max-names-bytes"),
        "{status:?}"
    );

    let after = controller.process.rss_kib().expect("the controller's RSS");
    assert!(
        after < before + 5 * 1024,
        "the controller grew from {before} KiB to {after} KiB"
    );
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_stream_errors_total{reason=\"name_too_long\"} 100"),
        "{metrics}"
    );
    assert!(counted(&metrics, "names_too_large"), "{metrics}");
}
