//! The ADS server from a raw gRPC client's side: a NACK is recorded (proxy status, metrics), the
//! rejected version is not sent again, and accepting the next version ends the rejection; a
//! request with a stale nonce is ignored.

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;
use lattice_xds::xds::type_url;
use support::ads::Sotw;
use support::eventually;
use support::process::{Controller, type_status};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const NODE: &str = "raw-client";

async fn controller(dir: &std::path::Path) -> Controller {
    // A copy of the examples, so that a test can change them.
    let manifests = support::copy_examples(dir);
    Controller::start(
        dir,
        &[
            format!("--manifests={}", manifests.display()),
            "--signing=none".to_string(),
            // Pinned destinations get clusters of their own: CDS then holds several resources.
            "--resolve=demo-cluster1.example.com=127.0.0.1:9".to_string(),
            "--resolve=demo-cluster2.example.com=127.0.0.1:9".to_string(),
            "--resolve=recovery.example.com=127.0.0.1:9".to_string(),
        ],
    )
    .await
}

/// A route to recovery.example.com (pinned: a cluster of its own), in the controller's manifests.
fn add_destination(dir: &std::path::Path) {
    std::fs::write(
        dir.join("manifests/recovery.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: recovery\n  namespace: apps\n\
         spec:\n  hostnames: [recovery.example.com]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n",
    )
    .unwrap();
}

fn request(type_url: &str, names: &[&str]) -> DiscoveryRequest {
    support::ads::request(NODE, type_url, names)
}

/// What `lattice-xds proxy-status` prints.
fn proxy_status(controller: &Controller) -> String {
    let table = std::process::Command::new(support::lattice_xds())
        .args(["proxy-status", "--admin", &controller.admin_url("")])
        .output()
        .expect("proxy-status");
    String::from_utf8_lossy(&table.stdout).into_owned()
}

#[tokio::test]
async fn nack_is_recorded_and_the_rejected_version_is_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path()).await;
    let mut ads = Sotw::open(controller.xds_port).await;

    ads.send(request(type_url::CLUSTER, &[])).await;
    let clusters = ads.next().await;
    assert_eq!(clusters.type_url, type_url::CLUSTER);
    assert!(
        !clusters.resources.is_empty(),
        "the seed routes yield clusters"
    );

    let mut nack = request(type_url::CLUSTER, &[]);
    nack.response_nonce = clusters.nonce.clone();
    nack.error_detail = Some(Status {
        code: 3,
        message: "test rejection: bad cluster".to_string(),
        ..Default::default()
    });
    ads.send(nack).await;

    // The next response on the stream answers a new subscription; had the server re-sent the
    // rejected clusters, they would have come first.
    ads.send(request(type_url::LISTENER, &[])).await;
    let next = ads.next().await;
    assert_eq!(
        next.type_url,
        type_url::LISTENER,
        "the rejected CDS version was sent again"
    );

    let proxies = controller.proxies().await;
    let cds = type_status(&proxies, NODE, "CDS").expect("CDS status of the raw client");
    assert_eq!(cds["nacked_version"], clusters.version_info.as_str());
    assert_eq!(cds["nack_error"], "test rejection: bad cluster");
    assert_eq!(cds["acked_version"], "");
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_nacks_total{type=\"CDS\"} 1"),
        "{metrics}"
    );

    let table = proxy_status(&controller);
    assert!(
        table.contains("NACKED") && table.contains("test rejection: bad cluster"),
        "{table}"
    );
    assert!(
        metrics.contains("lattice_xds_rejecting_proxies{type=\"CDS\"} 1"),
        "{metrics}"
    );

    // A new destination makes a new CDS version; the proxy accepts it, and the rejection ends.
    add_destination(dir.path());
    let recovered = loop {
        let response = ads.next().await;
        if response.type_url == type_url::CLUSTER {
            break response;
        }
    };
    assert_ne!(recovered.version_info, clusters.version_info);
    let mut ack = request(type_url::CLUSTER, &[]);
    ack.response_nonce = recovered.nonce.clone();
    ack.version_info = recovered.version_info.clone();
    ads.send(ack).await;
    let cds = support::eventually("the rejection to end", Duration::from_secs(10), || async {
        let proxies = controller.proxies().await;
        type_status(&proxies, NODE, "CDS")
            .filter(|cds| cds["nacked_version"] == "")
            .cloned()
    })
    .await;
    assert_eq!(cds["acked_version"], recovered.version_info.as_str());
    assert_eq!(cds["nack_error"], "");
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_rejecting_proxies{type=\"CDS\"} 0"),
        "{metrics}"
    );
    let table = proxy_status(&controller);
    assert!(!table.contains("NACKED"), "{table}");
}

#[tokio::test]
async fn a_stale_nonce_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path()).await;
    let mut ads = Sotw::open(controller.xds_port).await;

    ads.send(request(type_url::CLUSTER, &[])).await;
    let clusters = ads.next().await;

    // A NACK carrying a nonce the server never sent must change nothing...
    let mut stale = request(type_url::CLUSTER, &[]);
    stale.response_nonce = "not-a-nonce-we-sent".to_string();
    stale.error_detail = Some(Status {
        message: "stale rejection".to_string(),
        ..Default::default()
    });
    ads.send(stale).await;
    // ...and must not be answered: the next response is the route configuration asked next.
    ads.send(request(type_url::ROUTE, &["egress"])).await;
    let next = ads.next().await;
    assert_eq!(next.type_url, type_url::ROUTE);

    let mut ack = request(type_url::CLUSTER, &[]);
    ack.response_nonce = clusters.nonce.clone();
    ack.version_info = clusters.version_info.clone();
    ads.send(ack).await;
    let proxies = support::eventually(
        "the ACK to be recorded",
        Duration::from_secs(10),
        || async {
            let proxies = controller.proxies().await;
            let acked =
                type_status(&proxies, NODE, "CDS").is_some_and(|s| s["acked_version"] != "");
            acked.then_some(proxies)
        },
    )
    .await;
    let cds = type_status(&proxies, NODE, "CDS").unwrap();
    assert_eq!(cds["nacked_version"], "", "the stale NACK was recorded");
    assert_eq!(cds["acked_version"], clusters.version_info.as_str());
}

#[tokio::test]
async fn delta_nack_is_recorded_and_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path()).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        controller.xds_port
    ))
    .await
    .unwrap();
    let (requests, outgoing) = mpsc::channel(8);
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .unwrap()
        .into_inner();
    let node = Some(Node {
        id: NODE.to_string(),
        ..Default::default()
    });
    let subscribe = |type_url: &str, names: &[&str]| DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
        node: node.clone(),
        ..Default::default()
    };
    requests
        .send(subscribe(type_url::CLUSTER, &["*"]))
        .await
        .unwrap();
    let clusters = responses.message().await.unwrap().unwrap();
    assert!(!clusters.resources.is_empty());
    let mut nack = subscribe(type_url::CLUSTER, &[]);
    nack.response_nonce = clusters.nonce.clone();
    nack.error_detail = Some(Status {
        message: "delta rejection".to_string(),
        ..Default::default()
    });
    requests.send(nack).await.unwrap();
    requests
        .send(subscribe(type_url::ROUTE, &["egress", "no-such-route"]))
        .await
        .unwrap();
    let next = responses.message().await.unwrap().unwrap();
    assert_eq!(
        next.type_url,
        type_url::ROUTE,
        "the rejected CDS was sent again"
    );
    assert_eq!(next.resources.len(), 1);
    assert_eq!(
        next.removed_resources,
        ["no-such-route"],
        "a missing subscribed name is reported as removed"
    );

    let proxies = controller.proxies().await;
    let cds = type_status(&proxies, NODE, "CDS").unwrap();
    assert_eq!(cds["nack_error"], "delta rejection");
}

#[tokio::test]
async fn sigterm_closes_streams_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut controller = controller(dir.path()).await;
    let mut ads = Sotw::open(controller.xds_port).await;
    ads.send(request(type_url::CLUSTER, &[])).await;
    ads.next().await;

    controller.process.terminate();
    let end = tokio::time::timeout(Duration::from_secs(10), ads.responses.message())
        .await
        .expect("stream ends");
    assert!(
        matches!(end, Ok(None)),
        "the stream ends with an OK status, not an error: {end:?}"
    );
    // The client goes away as Envoy does, answering the server's last HTTP/2 frames (its
    // connection task keeps running while the test waits for the exit).
    drop(ads);
    let status = eventually("the controller to exit", Duration::from_secs(10), || {
        let exited = controller.process.exited();
        async move { exited }
    })
    .await;
    assert!(
        status.success(),
        "the controller exits cleanly on SIGTERM: {status:?}\n{}",
        controller.process.log_text()
    );
    assert!(
        !controller.process.log_text().contains("exiting anyway"),
        "shutdown waited for its grace period"
    );
}

#[tokio::test]
async fn delta_reconnect_with_initial_versions_gets_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path()).await;
    let endpoint = format!("http://127.0.0.1:{}", controller.xds_port);
    let first_request =
        |initial: std::collections::HashMap<String, String>| DeltaDiscoveryRequest {
            type_url: type_url::CLUSTER.to_string(),
            resource_names_subscribe: vec!["*".to_string()],
            initial_resource_versions: initial,
            node: Some(Node {
                id: NODE.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
    let open = |request: DeltaDiscoveryRequest| {
        let endpoint = endpoint.clone();
        async move {
            let mut client = AggregatedDiscoveryServiceClient::connect(endpoint)
                .await
                .unwrap();
            let (requests, outgoing) = mpsc::channel(8);
            requests.send(request).await.unwrap();
            let mut responses = client
                .delta_aggregated_resources(ReceiverStream::new(outgoing))
                .await
                .unwrap()
                .into_inner();
            let response = responses.message().await.unwrap().unwrap();
            (requests, response)
        }
    };
    let (_first, everything) = open(first_request(Default::default())).await;
    assert!(everything.resources.len() >= 2);

    // Reconnect claiming every cluster at its current version, except one at a stale version,
    // and one that no longer exists.
    let mut initial: std::collections::HashMap<String, String> = everything
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let stale = everything.resources[0].name.clone();
    initial.insert(stale.clone(), "stale-version".to_string());
    initial.insert("lattice|gone.example.com|443".to_string(), "1".to_string());
    let (_second, update) = open(first_request(initial)).await;
    let names: Vec<&str> = update.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [stale.as_str()],
        "only the cluster held at a stale version is resent"
    );
    assert_eq!(update.removed_resources, ["lattice|gone.example.com|443"]);
}

/// The value of the metric line that starts with `name` (labels included), 0 when absent.
fn metric(metrics: &str, name: &str) -> f64 {
    (metrics.lines())
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// A proxy that joins a mesh whose snapshot was published a while ago is timed as an initial
/// sync, not as a push that took that long; a change it receives afterwards is a push.
#[tokio::test]
async fn a_joining_proxy_is_an_initial_sync_and_a_change_it_receives_a_push() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(dir.path()).await;
    let mut ads = Sotw::open(controller.xds_port).await;
    ads.send(request(type_url::CLUSTER, &[])).await;
    let clusters = ads.next().await;
    let mut ack = request(type_url::CLUSTER, &[]);
    ack.response_nonce = clusters.nonce.clone();
    ack.version_info = clusters.version_info.clone();
    ads.send(ack).await;

    let metrics = controller.metrics().await;
    let initial = "lattice_xds_initial_sync_seconds_count{type=\"CDS\"}";
    assert_eq!(metric(&metrics, initial), 1.0, "{metrics}");
    assert_eq!(
        metric(&metrics, "lattice_xds_push_latency_seconds_count"),
        0.0,
        "{metrics}"
    );

    add_destination(dir.path());
    let changed = ads.next().await;
    assert_eq!(changed.type_url, type_url::CLUSTER);
    assert_ne!(changed.version_info, clusters.version_info);
    let metrics = controller.metrics().await;
    assert_eq!(
        metric(&metrics, "lattice_xds_push_latency_seconds_count"),
        1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, initial), 1.0, "{metrics}");
}
